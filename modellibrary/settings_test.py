"""Settings for the test suite: the embedded defaults under a fresh temporary
folder (database file, broker folder, artifacts), so that a test run never
touches ``var/`` and a worker process started by a test shares that folder
(the variable is inherited)."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("MODELLIBRARY_VAR_DIR", tempfile.mkdtemp(prefix="modellibrary-test-"))
# Tests and the live servers they start speak plain HTTP (http://testserver,
# http://127.0.0.1:port): the HTTPS-only settings stay off, here and in the
# worker processes that inherit the environment. tests/test_settings.py checks
# the production settings in a subprocess without it.
os.environ.setdefault("MODELLIBRARY_LOCAL_HTTP", "1")

from modellibrary.settings import *  # noqa: E402,F403
from modellibrary.settings import DATABASES, VAR_DIR  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so that a Celery worker process can open it too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

COMPILE_ON_READY = False  # tests that want it turn it on
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Request rates off for the suite (thousands of API requests from one address,
# schemathesis's wrong-credential cases included); tests/test_security*.py turn
# them on with override_settings and check the production defaults.
API_THROTTLE_USER = "off"
API_THROTTLE_ANON = "off"
AUTH_FAILURE_LIMIT = 1_000_000

# Whole-answer cache off for the suite (tests write rows directly and read the
# pages back at once); tests/catalog/test_page_cache.py turns it on.
PAGE_CACHE_SECONDS = 0

# No per-process LISTEN connection (catalog/selectors/live_state.py) in the
# suite: it would hold the test database open; tests/catalog/selectors/
# test_live_state.py turns it on and stops it.
CATALOG_STATE_LISTEN = False

"""The settings as production and ``make run`` get them, each in a fresh
process with a clean environment (the test settings are not involved)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET = "prod-" + "k3y-" * 12
STRIPPED = (
    "DJANGO_SECRET_KEY",
    "DJANGO_DEBUG",
    "DJANGO_SETTINGS_MODULE",
    "MODELLIBRARY_LOCAL_HTTP",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_ALLOW_ASYNC_UNSAFE",  # set by the root conftest for Playwright
)


def run(args: list[str], var: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "MODELLIBRARY_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "modellibrary.settings", **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


SHOW = """
import json, django
django.setup()
from django.conf import settings as s
names = ["DEBUG", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
         "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "SECRET_KEY",
         "API_THROTTLE_USER", "API_THROTTLE_ANON", "AUTH_FAILURE_LIMIT", "LOGIN_FAILURE_LIMIT"]
out = {n: getattr(s, n) for n in names}
out["SECURITY_CACHE_BACKEND"] = s.CACHES[s.SECURITY_CACHE]["BACKEND"]
out["AUTHENTICATION_BACKENDS"] = s.AUTHENTICATION_BACKENDS
print(json.dumps(out))
"""


def show(var: Path, **env: str) -> dict[str, object]:
    result = run(["-c", SHOW], var, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_check_deploy_prints_no_warning_with_production_settings(tmp_path: Path) -> None:
    result = run(["manage.py", "check", "--deploy"], tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    assert "WARNINGS" not in result.stderr + result.stdout, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced).", result.stdout + result.stderr


def test_debug_is_off_unless_asked_for(tmp_path: Path) -> None:
    assert show(tmp_path)["DEBUG"] is False
    assert show(tmp_path, DJANGO_DEBUG="1")["DEBUG"] is True


def test_production_is_https_only_with_hsts(tmp_path: Path) -> None:
    s = show(tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY=SECRET)
    assert s["SECURE_SSL_REDIRECT"] is s["SESSION_COOKIE_SECURE"] is s["CSRF_COOKIE_SECURE"] is True
    assert s["SECURE_HSTS_SECONDS"] == 31_536_000
    assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is s["SECURE_HSTS_PRELOAD"] is True
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["SECRET_KEY"] == SECRET
    # Rates on by default.
    assert s["API_THROTTLE_USER"] != "off"
    assert s["API_THROTTLE_ANON"] != "off"
    assert s["AUTH_FAILURE_LIMIT"] == 20
    assert s["LOGIN_FAILURE_LIMIT"] == 5
    # Failure counts are shared by every web process (a per-process memory
    # cache would multiply the limits by the number of gunicorn workers).
    assert s["SECURITY_CACHE_BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert s["AUTHENTICATION_BACKENDS"] == ["modellibrary.security.backends.LockoutModelBackend"]


def test_the_loopback_launcher_serves_plain_http(tmp_path: Path) -> None:
    s = show(tmp_path, MODELLIBRARY_LOCAL_HTTP="1")
    assert s["DEBUG"] is False
    assert s["SECURE_SSL_REDIRECT"] is s["SESSION_COOKIE_SECURE"] is s["CSRF_COOKIE_SECURE"] is False
    assert s["SECURE_HSTS_SECONDS"] == 0
    assert s["SECURE_PROXY_SSL_HEADER"] is None


def test_without_a_secret_a_random_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = show(tmp_path, MODELLIBRARY_LOCAL_HTTP="1")["SECRET_KEY"]
    second = show(tmp_path)["SECRET_KEY"]
    assert isinstance(first, str)
    assert len(first) >= 50
    assert first == second  # the same key on the next start (sessions survive)
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert show(tmp_path / "other")["SECRET_KEY"] != first  # another clone, another key
    # check --deploy says so while the key is not set in the environment.
    result = run(["manage.py", "check", "--deploy"], tmp_path, DJANGO_DEBUG="0")
    assert "security.W900" in result.stderr


CLIENT = """
import json, django
django.setup()
from django.test import Client
c = Client()
plain = c.get("/accounts/login/")
secure = c.get("/accounts/login/", secure=True)
proxied = c.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "secure": secure.status_code,
    "proxied": proxied.status_code,
    "hsts": secure.get("Strict-Transport-Security", ""),
    "csp": secure.get("Content-Security-Policy", ""),
    "cookie_secure": bool(secure.cookies["csrftoken"]["secure"]),
}))
"""


@pytest.mark.parametrize("local", [False, True])
def test_production_answers_with_https_headers(tmp_path: Path, local: bool) -> None:
    env = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": SECRET}
    if local:
        env["MODELLIBRARY_LOCAL_HTTP"] = "1"
    result = run(["-c", CLIENT], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout.strip().splitlines()[-1])
    assert r["secure"] == 200
    assert "default-src 'self'" in r["csp"]
    if local:
        assert r["plain"][0] == 200
        assert r["hsts"] == ""
        assert r["cookie_secure"] is False
    else:
        assert r["plain"] == [301, "https://testserver/accounts/login/"]
        assert r["proxied"] == 200  # the proxy's X-Forwarded-Proto: https is trusted
        assert r["hsts"] == "max-age=31536000; includeSubDomains; preload"
        assert r["cookie_secure"] is True


def test_migrate_creates_the_shared_failure_cache_table(tmp_path: Path) -> None:
    import sqlite3

    result = run(["manage.py", "migrate", "--verbosity", "0"], tmp_path, MODELLIBRARY_LOCAL_HTTP="1")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master where type = 'table'")}
    assert "modellibrary_security_cache" in tables

"""Settings, from the environment only (12-factor).

Every variable has an embedded default so that ``make run`` needs no server:
SQLite under ``var/``, artifacts on the filesystem under ``var/artifacts/`` and
Celery over kombu's filesystem transport under ``var/broker/``.

``DEBUG`` is off unless ``DJANGO_DEBUG=1``. With it off the site is
HTTPS-only (HSTS, SSL redirect, secure cookies; see "Security" below) except
when ``MODELLIBRARY_LOCAL_HTTP=1``, which only the loopback launcher
(``scripts/run.py``, ``make run``) and the test settings set. Without
``DJANGO_SECRET_KEY`` a random key is generated once into ``var/secret_key``
(mode 0600); production sets ``DJANGO_SECRET_KEY`` (the same on every host).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

VAR_DIR = Path(env("MODELLIBRARY_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Security -------------------------------------------------------------------
# DEBUG is opt-in: with it off, errors render the branded 404/500 pages and
# never list URL patterns or the process environment.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Plain HTTP on loopback (``make run``): turns the HTTPS-only settings below
# off. Only scripts/run.py and the test settings set it; never behind a proxy.
LOCAL_HTTP = env.bool("MODELLIBRARY_LOCAL_HTTP", default=False)


def _generated_secret_key(path: Path) -> str:
    """A random key made once and kept in ``path`` (0600), so that a fresh clone
    needs no secret and sessions survive restarts; concurrent first starts agree
    (the first link wins)."""
    if not path.exists():
        import secrets

        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
# ``check --deploy`` warns while the key comes from the file (security.W900).
SECRET_KEY_GENERATED = not SECRET_KEY
if SECRET_KEY_GENERATED:
    SECRET_KEY = _generated_secret_key(VAR_DIR / "secret_key")

# HTTPS-only unless debugging or on the loopback launcher. Production runs
# behind a TLS-terminating proxy (README, "Production"): it must set
# X-Forwarded-Proto (overwriting any value the client sent), which
# SECURE_PROXY_SSL_HEADER trusts to tell an HTTPS request from plain HTTP;
# turn that off with DJANGO_SECURE_PROXY_SSL_HEADER=0 when Django terminates
# TLS itself or the proxy does not set the header.
HTTPS_ONLY = not DEBUG and not LOCAL_HTTP
SECURE_SSL_REDIRECT = HTTPS_ONLY
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if HTTPS_ONLY and env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=True)
    else None
)
# HSTS: one year. includeSubDomains and preload are on by default: the
# catalogue's host name has no plain-HTTP subdomains, and ``preload`` only
# allows a submission to the browsers' preload list (which is made for a
# registrable domain by its owner, never by this header). Turn either off with
# DJANGO_HSTS_INCLUDE_SUBDOMAINS=0 / DJANGO_HSTS_PRELOAD=0, HSTS itself with
# DJANGO_HSTS_SECONDS=0 (check --deploy then warns).
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000) if HTTPS_ONLY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=True)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Content-Security-Policy (django-csp) ------------------------------------------
# Scripts, styles, fonts and connections from this origin only: no inline
# script or style, no eval. The pages keep their behaviour in static/js/ and
# their looks in static/css/app.css; htmx's own indicator <style> is turned off
# by the htmx-config meta tag in base.html. img-src allows data: URIs (icons
# inlined by the API docs' stylesheet).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Models are loaded from installed packages or files only, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "modellibrary.security",
    "catalog",
    "discovery",
    "evaluations",
]

MIDDLEWARE = [
    "catalog.middleware.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "catalog.api.errors.ApiErrorMiddleware",
    # Content-Security-Policy header (policy below, "Content-Security-Policy").
    "csp.middleware.CSPMiddleware",
    # 429 for a client address after repeated wrong API credentials.
    "modellibrary.security.throttling.AuthFailureThrottleMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Whole answers of the hot read routes, per viewer and catalogue generation.
    "catalog.page_cache.PageCacheMiddleware",
]

ROOT_URLCONF = "modellibrary.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "modellibrary.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The web server's shape (scripts/run.py and modellibrary/gunicorn.conf.py read
# these too): worker processes × threads, from the CPU count by default.
WEB_WORKERS = env.int("WEB_WORKERS", default=max(2, min(os.cpu_count() or 1, 8)))
WEB_THREADS = env.int("WEB_THREADS", default=16)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets readers run while one writer writes; IMMEDIATE takes the write
    # lock when a transaction begins, so a writer waits (up to ``timeout`` s)
    # for its turn instead of failing with "database is locked" when a read
    # transaction cannot be upgraded. synchronous=NORMAL is safe under WAL.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    _sqlite = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    _sqlite["transaction_mode"] = "IMMEDIATE"
    _sqlite.setdefault("timeout", env.int("SQLITE_TIMEOUT_S", default=30))
elif DATABASES["default"]["ENGINE"].endswith("postgresql") and env.bool("DATABASE_POOL", default=True):
    # A bounded psycopg pool per process: at most WEB_WORKERS × max_size
    # connections from the web server, whatever the number of clients; a
    # request waits up to ``timeout`` s for a free connection. The pool
    # requires CONN_MAX_AGE = 0 (the connection goes back to the pool).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=min(WEB_THREADS, 10)),
        "timeout": env.float("DATABASE_POOL_TIMEOUT_S", default=20.0),
    }
else:
    # Keep connections between requests (a new PostgreSQL connection forks a
    # backend: milliseconds per request); checked before reuse.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)

# Per-process memory cache by default (entries are keyed by the catalogue's
# generation token, so a write anywhere invalidates them everywhere); set
# CACHE_URL (e.g. redis://127.0.0.1:6379/1) to share one between processes.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://modellibrary")}
# Rendered answers of the catalogue's hot routes (catalog/page_cache.py): keyed
# by the generation token, so any catalogue write invalidates them; at most
# PAGE_CACHE_SECONDS old for what bypasses it (download counters); 0: off.
PAGE_CACHE_ALIAS = "pages"
PAGE_CACHE_SECONDS = env.int("PAGE_CACHE_SECONDS", default=30)
# One store for every web process on the host (files under var/, no server
# needed); PAGE_CACHE_URL=redis://… shares it between hosts.
CACHES[PAGE_CACHE_ALIAS] = env.cache("PAGE_CACHE_URL", default=f"filecache://{VAR_DIR / 'cache' / 'pages'}")
CACHES[PAGE_CACHE_ALIAS].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 2000)
# Failed-authentication counters and login lockouts: one store for every web
# process (a database table by default, created by ``migrate``).
SECURITY_CACHE = "security"
CACHES[SECURITY_CACHE] = env.cache("SECURITY_CACHE_URL", default="dbcache://modellibrary_security_cache")
# The database cache culls a third of its rows, whichever, past MAX_ENTRIES
# (300 by default): an attacker making many distinct failures could evict locks.
CACHES[SECURITY_CACHE].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 200_000)

# --- Throttling ---------------------------------------------------------------------
# API requests per user (token or session) and per anonymous client address, in
# DRF's "N/second|minute|hour|day" form; "off" disables one. Counted in the
# default cache: per web process unless CACHE_URL names a shared cache.
API_THROTTLE_USER = env("API_THROTTLE_USER", default="1200/minute")
API_THROTTLE_ANON = env("API_THROTTLE_ANON", default="300/minute")
# "Try it" / POST /api/v1/models/{slug}/predict: per token (the `predict` throttle scope).
API_THROTTLE_PREDICT = env("API_THROTTLE_PREDICT", default="60/minute")
PREDICT_POOL_SIZE = env.int("PREDICT_POOL_SIZE", default=4)  # onnxruntime sessions kept per process
PREDICT_MAX_INPUTS = env.int("PREDICT_MAX_INPUTS", default=16)
PREDICT_MAX_CHARS = env.int("PREDICT_MAX_CHARS", default=2000)
# Serving sessions use the thread count the variant's manifest recorded for this
# CPU, capped at the cores available; PREDICT_THREADS caps it further (e.g. 1 when
# many web threads share few cores). PREDICT_BATCH_SIZE: rows per length-sorted batch.
PREDICT_THREADS = env.int("PREDICT_THREADS", default=0) or None
PREDICT_BATCH_SIZE = env.int("PREDICT_BATCH_SIZE", default=32)
EVALUATION_MAX_MODELS = env.int("EVALUATION_MAX_MODELS", default=5)
# Wrong API credentials (401) from one client address: past the limit within
# the window, requests with credentials from it answer 429 until the window ends.
AUTH_FAILURE_LIMIT = env.int("AUTH_FAILURE_LIMIT", default=20)
AUTH_FAILURE_WINDOW_S = env.int("AUTH_FAILURE_WINDOW_S", default=60)
# Wrong passwords for one username from one client address: after the limit,
# that pair is locked (the right password refused too) for LOGIN_LOCKOUT_S.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LOCKOUT_S = env.int("LOGIN_LOCKOUT_S", default=900)
# ... and from one address over any usernames (password spraying): the address is locked.
LOGIN_IP_FAILURE_LIMIT = env.int("LOGIN_IP_FAILURE_LIMIT", default=50)
AUTHENTICATION_BACKENDS = ["modellibrary.security.backends.LockoutModelBackend"]
# How many proxies' X-Forwarded-For entries to trust for the client address:
# behind the production proxy one (the address it appends), else none (a
# client cannot choose its address by sending the header).
NUM_PROXIES = env.int("DJANGO_NUM_PROXIES", default=1 if SECURE_PROXY_SSL_HEADER else 0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# WhiteNoise serves STATIC_ROOT (``collectstatic``, run by scripts/run.py); in
# development it also finds files in the app folders directly.
WHITENOISE_USE_FINDERS = DEBUG
# (An empty folder before the first collectstatic: WhiteNoise warns otherwise.)
with contextlib.suppress(OSError):
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog:index"
LOGOUT_REDIRECT_URL = "catalog:index"

# --- Artifact storage -------------------------------------------------------
# "filesystem" (default) or "s3" (django-storages + boto3).
ARTIFACT_STORAGE = env("ARTIFACT_STORAGE", default="filesystem")
ARTIFACT_ROOT = Path(env("ARTIFACT_ROOT", default=str(VAR_DIR / "artifacts")))
ARTIFACT_TMP_DIR = Path(env("ARTIFACT_TMP_DIR", default=str(VAR_DIR / "tmp")))
ARTIFACT_TMP_DIR.mkdir(parents=True, exist_ok=True)
# With S3, downloads redirect to a short-lived presigned URL unless this is off.
ARTIFACT_PRESIGNED_DOWNLOADS = env.bool("ARTIFACT_PRESIGNED_DOWNLOADS", default=True)
ARTIFACT_PRESIGNED_TTL_S = env.int("ARTIFACT_PRESIGNED_TTL_S", default=300)

if ARTIFACT_STORAGE == "s3":
    _artifacts = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_S3_REGION_NAME", default="us-east-1"),
            "access_key": env("AWS_ACCESS_KEY_ID", default=None),
            "secret_key": env("AWS_SECRET_ACCESS_KEY", default=None),
            "file_overwrite": True,
            "querystring_expire": ARTIFACT_PRESIGNED_TTL_S,
        },
    }
elif ARTIFACT_STORAGE == "filesystem":
    _artifacts = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Content-addressed: the same key always holds the same bytes.
        "OPTIONS": {"location": str(ARTIFACT_ROOT), "allow_overwrite": True},
    }
else:
    raise ImproperlyConfigured(f"ARTIFACT_STORAGE must be 'filesystem' or 's3', not {ARTIFACT_STORAGE!r}")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "artifacts": _artifacts,
}

# --- Celery -------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport works with Celery 5.x when both folders are
    # the same one; store_processed stays off.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        # The exchange → queue tables; kombu's default is ./control in the
        # current directory (the repository root).
        "control_folder": str(BROKER_DIR / "control"),
        # The transport polls its folder; the default (1 s) adds up to a
        # second to every job's start.
        "polling_interval": 0.2,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "catalog.tasks.finetune_*": {"queue": "finetune"},
    "catalog.tasks.compile_*": {"queue": "compile"},
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- API ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # ``Authorization: Token <key>`` (or ``Bearer <key>``); keys stored hashed.
        "catalog.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "catalog.api.errors.exception_handler",
    # `?format=` is a resolve constraint (onnx …), not a renderer override.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_THROTTLE_CLASSES": [
        "modellibrary.security.throttling.ApiUserRateThrottle",
        "modellibrary.security.throttling.ApiAnonRateThrottle",
    ],
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_THROTTLE_RATES": {"predict": API_THROTTLE_PREDICT},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Model Library API",
    "DESCRIPTION": "Catalogue, search, fine-tune and pull the organisation's models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request and response shapes as separate components (read-only fields stay out of requests).
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "catalog.api.schema.request_constraints_hook",
    ],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Choice sets shared by several serializers get one named enum each.
    "ENUM_NAME_OVERRIDES": {
        "VisibilityEnum": "catalog.models.Visibility.choices",
        "VariantStatusEnum": "catalog.models.VariantStatus.choices",
        "VersionStatusEnum": "catalog.models.VersionStatus.choices",
        "JobStatusEnum": "catalog.models.JobStatus.choices",
        "LifecycleEnum": "catalog.models.Lifecycle.choices",
        "EvaluationStatusEnum": "evaluations.models.EvaluationStatus.choices",
        "EvaluationEntryStatusEnum": "evaluations.models.EntryStatus.choices",
    },
}

CATALOG_PAGE_SIZE = env.int("CATALOG_PAGE_SIZE", default=20)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="WARNING")},
}

# --- Datasets and fine-tuning ------------------------------------------------------
DATASET_MAX_BYTES = env.int("DATASET_MAX_BYTES", default=20 * 1024 * 1024)
DATASET_MAX_ROWS = env.int("DATASET_MAX_ROWS", default=200_000)
DATASET_MAX_TEXT_CHARS = env.int("DATASET_MAX_TEXT_CHARS", default=2_000)
# More labels than this is refused (a classifier head and its confusion matrix grow with it).
DATASET_MAX_LABELS = env.int("DATASET_MAX_LABELS", default=200)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Model registration: a request larger than MODEL_MAX_BYTES is refused by its
# Content-Length before a byte is read; uploaded files go to temporary files
# (never whole in memory) and are hashed into the artifact store.
MODEL_MAX_BYTES = env.int("MODEL_MAX_BYTES", default=8 * 1024**3)
MODEL_MAX_FILES = env.int("MODEL_MAX_FILES", default=100)  # Django refuses more than DATA_UPLOAD_MAX_NUMBER_FILES (100)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Upload temporary files live beside the artifact store's, locked by their
# request: a web worker killed mid-upload leaves nothing that the sweep
# (catalog.storage.artifact_tmp_sweep, run when a web or Celery worker starts)
# does not remove.
FILE_UPLOAD_TEMP_DIR = str(ARTIFACT_TMP_DIR)
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "catalog.uploads.LockedTemporaryFileUploadHandler",
]
# A running job whose heartbeat is older than this is taken to have lost its
# worker and is claimed again (by a worker starting or finishing a task).
FINETUNE_STALE_AFTER_S = env.int("FINETUNE_STALE_AFTER_S", default=120)
# A worker retries the steps that record finished work (fine-tune registration,
# compiled variants) on transient database errors: this many attempts, with
# exponential backoff from this first delay (capped at 30 s between attempts).
DB_RETRY_ATTEMPTS = env.int("DB_RETRY_ATTEMPTS", default=10)
DB_RETRY_FIRST_DELAY_S = env.float("DB_RETRY_FIRST_DELAY_S", default=0.5)
# Queue a compile (ONNX variants) whenever a version becomes ready.
COMPILE_ON_READY = env.bool("COMPILE_ON_READY", default=True)
# A compile whose variants are still pending after this long lost its worker
# (kill -9, machine gone) and is queued again by the next worker's check.
COMPILE_STALE_AFTER_S = env.int("COMPILE_STALE_AFTER_S", default=1800)

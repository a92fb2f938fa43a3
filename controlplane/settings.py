"""Arbiter's one settings module. Everything comes from the environment (see the README's table).

With nothing configured it runs on the embedded defaults: PostgreSQL and Redis under `.data/`
(controlplane.embedded) and development-only secrets. With `ARBITER_ENV=production` every secret
must be given and `manage.py check --deploy` is clean.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from pathlib import Path

from controlplane import embedded
from controlplane.env import (
    ConfigError,
    check_broker_url,
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = embedded.data_dir()

ARBITER_ENV = env_str("ARBITER_ENV", "development")
if ARBITER_ENV not in {"development", "production", "test"}:
    raise ConfigError(f"ARBITER_ENV={ARBITER_ENV!r} must be development, production or test")
PRODUCTION = ARBITER_ENV == "production"

DEBUG = env_bool("DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ConfigError("DEBUG=true is not allowed with ARBITER_ENV=production")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ConfigError("SECRET_KEY is required when ARBITER_ENV=production (50+ random characters)")
    SECRET_KEY = "dev-insecure-" + "arbiter-development-key-never-use-in-production-0123456789"
elif PRODUCTION and len(SECRET_KEY) < 50:
    raise ConfigError("SECRET_KEY must be at least 50 characters when ARBITER_ENV=production")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS is required when ARBITER_ENV=production (comma-separated host names)")
if PRODUCTION and "*" in ALLOWED_HOSTS:
    # '*' accepts any Host header: password-reset links, absolute URLs and caches can then be poisoned.
    raise ConfigError("ALLOWED_HOSTS='*' is not allowed when ARBITER_ENV=production: list the host names")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "pgtrigger",
    "axes",
    "audit",
    "routing",
    "review",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "controlplane.signin.SessionIdleMiddleware",
    # Last, as django-axes requires: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

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

# Database: PostgreSQL only. -------------------------------------------------------------------
if PRODUCTION and not env_str("DATABASE_URL"):
    raise ConfigError(
        "DATABASE_URL is required when ARBITER_ENV=production (postgres://user:pass@host:5432/db)"
    )
_database_url = env_str("DATABASE_URL") or embedded.postgres_url()
DATABASES = {"default": database_from_url("DATABASE_URL", _database_url)}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Parallel test runs (several checkouts on one server) need distinct test databases.
DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", f"test_{DATABASES['default']['NAME']}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis (circuit breakers, rate limits, latency windows) and the Celery broker. ------------------
if PRODUCTION and not env_str("REDIS_URL"):
    raise ConfigError("REDIS_URL is required when ARBITER_ENV=production (redis://host:6379/0)")
REDIS_URL = env_str("REDIS_URL") or embedded.redis_url()
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ConfigError(f"REDIS_URL must be a redis://, rediss:// or unix:// URL, got {REDIS_URL!r}")
_default_broker = (
    "redis+socket://" + REDIS_URL.removeprefix("unix://") if REDIS_URL.startswith("unix://") else REDIS_URL
)
CELERY_BROKER_URL = check_broker_url("CELERY_BROKER_URL", env_str("CELERY_BROKER_URL") or _default_broker)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env_str("ARBITER_QUEUE", "arbiter")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 4.0, minimum=0.1)
# A provider call times out first, then the soft limit, then the hard limit, then redelivery.
PROVIDER_TIMEOUT_S = env_float("ARBITER_PROVIDER_TIMEOUT_S", 30.0, minimum=0.1)
CELERY_TASK_SOFT_TIME_LIMIT = int(PROVIDER_TIMEOUT_S * 4 + 30)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# "priority": Redis polls a worker's queues in the order given, so the recovery queue that workers read
# first (routing.tasks) is never left behind the default queue's backlog.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT + 300,
    "queue_order_strategy": "priority",
}
CELERY_TIMEZONE = "UTC"
# Celery's Django integration closes the database connection around every task; reusing it for up to
# this many tasks saves a connection set-up per job (about a third of the pipeline's throughput here).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
if CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ: quorum queues (replicated, durable; a classic queue is lost with its node). They allow no
    # global QoS, which the worker then leaves off (detect_quorum_queues); countdowns (a webhook's retry)
    # go through native delayed delivery, which needs a topic exchange; publishes are confirmed, so a
    # message the broker did not take is an error for the sender, never a silent loss.
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    # The recovery queue (`<queue>.recovery`, named only on the worker's command line and by its senders) is
    # one Celery creates as "missing": the same kind, or it would be a classic queue on a direct exchange,
    # lost with its node and with no delayed delivery for a tier wait's countdown.
    CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = "quorum"
    CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = "topic"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_BROKER_TRANSPORT_OPTIONS["confirm_publish"] = True
ARBITER_DEMO_TRICKLE_S = env_float("ARBITER_DEMO_TRICKLE_S", 0.0, minimum=0)
# Exactly one beat process runs this schedule (see the README's production notes).
CELERY_BEAT_SCHEDULE = {
    "seal-ledger": {"task": "audit.seal_ledger", "schedule": 1.0},
    "expire-payloads": {"task": "audit.expire_payloads", "schedule": 3600.0},
    "sweep-stale-jobs": {"task": "routing.sweep_stale_jobs", "schedule": 10.0},
    "expire-approvals": {"task": "routing.expire_approvals", "schedule": 30.0},
}
if ARBITER_DEMO_TRICKLE_S:
    CELERY_BEAT_SCHEDULE["demo-trickle"] = {
        "task": "routing.demo_trickle",
        "schedule": ARBITER_DEMO_TRICKLE_S,
    }

# Authentication, sessions, security. ----------------------------------------------------------
ARBITER_PASSWORD_MIN_LENGTH = 12
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": ARBITER_PASSWORD_MIN_LENGTH},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
# django-axes checks every sign-in (UI and Django admin) before the password is even compared.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ARBITER_SIGNIN_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("ARBITER_SIGNIN_LOCKOUT_SECONDS", 15 * 60, minimum=1))
# Per username and address together: a guesser from one address cannot lock everybody out, and
# one user's typos do not lock out an office behind one NAT address.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "controlplane.signin.lockout_response"
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # every failed sign-in kept (axes' access failure log)
AXES_VERBOSE = False  # our own INFO line per sign-in (controlplane.signin) says what is needed
# The absolute lifetime of a session, and how long one may sit unused (both enforced by
# controlplane.signin.SessionIdleMiddleware; the cookie lasts the absolute lifetime).
SESSION_ABSOLUTE_SECONDS = env_int("ARBITER_SESSION_SECONDS", 8 * 3600, minimum=60)
SESSION_IDLE_SECONDS = env_int("ARBITER_SESSION_IDLE_SECONDS", 1800, minimum=300)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_SECONDS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Static files, i18n. --------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles" if PRODUCTION else DATA_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
if not PRODUCTION:
    # Outside production static files are served from the finders (no collectstatic needed to run the
    # tests); WhiteNoise still wants its root to exist.
    WHITENOISE_USE_FINDERS = True
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# REST API. ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Arbiter API",
    "DESCRIPTION": "Governed routing of model calls, with an append-only, tamper-evident decision ledger.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Arbiter. -------------------------------------------------------------------------------------
ARBITER_METRICS_TOKEN = env_str("ARBITER_METRICS_TOKEN", "")
if PRODUCTION and not ARBITER_METRICS_TOKEN:
    # Metrics name every application, policy and deployment, with their volumes and costs.
    raise ConfigError(
        "ARBITER_METRICS_TOKEN is required when ARBITER_ENV=production (/metrics is otherwise anonymous)"
    )
ARBITER_MODELSERVER_URL = env_str("ARBITER_MODELSERVER_URL", "" if PRODUCTION else "http://127.0.0.1:8100/v1")
ARBITER_RETRY_BASE_S = env_float("ARBITER_RETRY_BASE_S", 0.25, minimum=0)
ARBITER_RETRY_MAX_S = env_float("ARBITER_RETRY_MAX_S", 8.0, minimum=0)
ARBITER_MAX_RETRY_AFTER_S = env_float("ARBITER_MAX_RETRY_AFTER_S", 30.0, minimum=0)
ARBITER_TRIES_PER_DEPLOYMENT = env_int("ARBITER_TRIES_PER_DEPLOYMENT", 3, minimum=1, maximum=10)
ARBITER_BREAKER_THRESHOLD = env_int("ARBITER_BREAKER_THRESHOLD", 5, minimum=1)
ARBITER_BREAKER_COOLDOWN_S = env_float("ARBITER_BREAKER_COOLDOWN_S", 30.0, minimum=0.1)
# Failures are counted within this window, re-armed by each one. It must outlast a provider timeout, or
# a deployment that hangs (one failure per timeout) never reaches the threshold and never opens.
ARBITER_BREAKER_WINDOW_S = env_int("ARBITER_BREAKER_WINDOW_S", max(30, int(PROVIDER_TIMEOUT_S * 3)), minimum=1)
if ARBITER_BREAKER_WINDOW_S <= PROVIDER_TIMEOUT_S:
    raise ConfigError(
        f"ARBITER_BREAKER_WINDOW_S={ARBITER_BREAKER_WINDOW_S} must be longer than ARBITER_PROVIDER_TIMEOUT_S="
        f"{PROVIDER_TIMEOUT_S:g}: a provider that hangs fails once per timeout and would never open its breaker"
    )
# A worker renews its lease every third of it while it runs a job (routing.execute.fencing.lease_kept),
# so the lease can be short: a dead worker's job is claimed again within about one lease.
ARBITER_LEASE_S = env_int("ARBITER_LEASE_S", 15, minimum=3)
# All the calls of one cascade step (retries, fallbacks, waits) end within this; the lease is renewed no
# longer than that, so a stuck step loses its lease.
ARBITER_STEP_BUDGET_S = env_float("ARBITER_STEP_BUDGET_S", PROVIDER_TIMEOUT_S * 2 + 15, minimum=0.1)
if ARBITER_STEP_BUDGET_S < PROVIDER_TIMEOUT_S:
    raise ConfigError(
        f"ARBITER_STEP_BUDGET_S={ARBITER_STEP_BUDGET_S:g} must be at least ARBITER_PROVIDER_TIMEOUT_S="
        f"{PROVIDER_TIMEOUT_S:g}: a step must have time for one whole call"
    )
ARBITER_MAX_ATTEMPTS = env_int("ARBITER_MAX_ATTEMPTS", 3, minimum=1, maximum=20)
ARBITER_DISPATCH_STALE_S = env_int("ARBITER_DISPATCH_STALE_S", 30, minimum=1)
ARBITER_FLAGSHIP_PRICE_IN = env_float("ARBITER_FLAGSHIP_PRICE_IN", 2.50, minimum=0)
ARBITER_FLAGSHIP_PRICE_OUT = env_float("ARBITER_FLAGSHIP_PRICE_OUT", 15.00, minimum=0)
ARBITER_LEDGER_SIGNING_KEY = env_str("ARBITER_LEDGER_SIGNING_KEY")
if PRODUCTION and not ARBITER_LEDGER_SIGNING_KEY:
    raise ConfigError(
        "ARBITER_LEDGER_SIGNING_KEY is required when ARBITER_ENV=production (base64 Ed25519 seed)"
    )
if PRODUCTION:
    try:
        _seed_bytes = len(base64.b64decode(ARBITER_LEDGER_SIGNING_KEY, validate=True))
    except (binascii.Error, ValueError):
        _seed_bytes = 0
    if _seed_bytes < 32:
        raise ConfigError(
            f"ARBITER_LEDGER_SIGNING_KEY decodes to {_seed_bytes} bytes; production needs a 32-byte seed, "
            "base64 (openssl rand -base64 32)"
        )
ARBITER_CHECKPOINT_FILE = Path(env_str("ARBITER_CHECKPOINT_FILE", str(DATA_DIR / "checkpoints.jsonl")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # One line per provider HTTP request is noise at INFO; failures are logged by the pipeline.
    "loggers": {name: {"level": "WARNING"} for name in ("httpx", "httpx2", "openai")},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- ledger (audit) ----------------------------------------------------------------------------
# Settings of the audit app live in this block.
# Public keys (base64, raw 32 bytes) of retired signing keys whose checkpoints still count.
ARBITER_LEDGER_TRUSTED_PUBLIC_KEYS = env_list("ARBITER_LEDGER_TRUSTED_PUBLIC_KEYS", [])


def _key_beside_the_data(configured: str, trusted: list[str]) -> Path | None:
    """The development key file in the data directory, if it holds the signing key or a trusted one:
    whoever can rewrite the data could then re-sign the rewrite, and verify would call it intact."""
    path = DATA_DIR / "ledger-signing.key"
    try:
        seed = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError, binascii.Error):
        return None
    if seed == base64.b64decode(configured):
        return path
    if len(seed) != 32 or not trusted:
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return path if base64.b64encode(public).decode("ascii") in trusted else None


if PRODUCTION and (_beside := _key_beside_the_data(ARBITER_LEDGER_SIGNING_KEY, ARBITER_LEDGER_TRUSTED_PUBLIC_KEYS)):
    raise ConfigError(
        f"the ledger signing key is readable from the data directory ({_beside}): a rewrite of the data could be "
        "re-signed with it; keep the key only in ARBITER_LEDGER_SIGNING_KEY (a secret store) and delete that file"
    )
# Extra redaction detectors: dotted paths of callables (text) -> iterable of (start, end, label).
ARBITER_REDACTORS = env_list("ARBITER_REDACTORS", [])
# Checkpoints of the chain head every this many seconds (from the beat process: audit.checkpointer).
# Events sealed since the newest checkpoint are the ones a truncation could remove unnoticed.
ARBITER_CHECKPOINT_EVERY_S = env_int("ARBITER_CHECKPOINT_EVERY_S", 2, minimum=1, maximum=300)
# A URL (JSON POST) or a command (the JSON line on stdin) that receives each checkpoint: audit.witness.
ARBITER_CHECKPOINT_WITNESS = env_str("ARBITER_CHECKPOINT_WITNESS", "")
ARBITER_CHECKPOINT_WITNESS_TIMEOUT_S = env_float("ARBITER_CHECKPOINT_WITNESS_TIMEOUT_S", 10.0, minimum=0.1)
if "://" in ARBITER_CHECKPOINT_WITNESS.split(" ", 1)[0] and not ARBITER_CHECKPOINT_WITNESS.startswith(
    ("http://", "https://")
):
    raise ConfigError("ARBITER_CHECKPOINT_WITNESS must be an http(s):// URL or a command line")


def _payload_retention(name: str) -> dict:
    """ "prompt=30d,output=90d" -> {"prompt": timedelta(30), ...}; kinds not listed are kept until erased."""
    from datetime import timedelta

    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    retention = {}
    for item in env_list(name, []):
        kind, _, amount = item.partition("=")
        number, unit = amount.strip()[:-1], amount.strip()[-1:]
        if not kind.strip() or unit not in units or not number.isdigit() or int(number) == 0:
            raise ConfigError(f"{name}: {item!r} must look like kind=30d (units d, h, m, s)")
        retention[kind.strip()] = timedelta(seconds=int(number) * units[unit])
    return retention


ARBITER_PAYLOAD_RETENTION = _payload_retention("ARBITER_PAYLOAD_RETENTION")

# --- API (routing.api) -------------------------------------------------------------------------
# Settings of the REST and OpenAI-compatible APIs live in this block.
INSTALLED_APPS.append("drf_spectacular_sidecar")  # Swagger UI from our own static files, no CDN
REST_FRAMEWORK["EXCEPTION_HANDLER"] = "routing.api.errors.problem_exception_handler"
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["routing.api.parsers.StrictJSONParser"]
SPECTACULAR_SETTINGS.update(
    {
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        "COMPONENT_SPLIT_REQUEST": True,
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "routing.api.schema.close_request_objects",
        ],
        "ENUM_NAME_OVERRIDES": {
            "JobStatusEnum": "routing.models.jobs.JobStatus.choices",
            "TierEnum": "routing.models.catalog.TIER_CHOICES",
            "FunctionTypeEnum": [("function", "function")],
            "ResponseFormatTypeEnum": [
                ("text", "text"),
                ("json_object", "json_object"),
                ("json_schema", "json_schema"),
            ],
        },
    }
)
ARBITER_API_MAX_BODY_BYTES = env_int("ARBITER_API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
ARBITER_API_MAX_JSON_DEPTH = env_int("ARBITER_API_MAX_JSON_DEPTH", 32, minimum=4, maximum=200)
ARBITER_RATE_LIMIT_PER_MINUTE = env_int("ARBITER_RATE_LIMIT_PER_MINUTE", 600, minimum=0)
# Synchronous completions hold a web thread for the whole job: bounded per key and across the
# deployment (Redis leases), and per process so that each always keeps a thread for everything else.
ARBITER_SYNC_CALLS_PER_KEY = env_int("ARBITER_SYNC_CALLS_PER_KEY", 4, minimum=1)
ARBITER_SYNC_CALLS_TOTAL = env_int("ARBITER_SYNC_CALLS_TOTAL", 6, minimum=1)
ARBITER_WEB_THREADS = env_int("ARBITER_WEB_THREADS", 4, minimum=1)
ARBITER_SYNC_CALLS_PER_PROCESS = env_int(
    "ARBITER_SYNC_CALLS_PER_PROCESS", max(1, ARBITER_WEB_THREADS - 1), minimum=1
)
ARBITER_SYNC_RETRY_AFTER_S = env_int("ARBITER_SYNC_RETRY_AFTER_S", 2, minimum=1)
ARBITER_OPENAI_WAIT_S = env_float("ARBITER_OPENAI_WAIT_S", 120.0, minimum=0.1)
# The synchronous endpoint runs its job in the web process (same claim, fencing and ledger as a worker)
# instead of handing it to Celery and waiting: the request thread waits for the job either way.
ARBITER_OPENAI_INLINE = env_bool("ARBITER_OPENAI_INLINE", default=True)
# A /v1/chat/completions request without Idempotency-Key repeating an identical one whose job still runs
# or was answered less than this many seconds ago is the same call (an SDK's automatic retry); 0: off.
ARBITER_OPENAI_IMPLICIT_IDEMPOTENCY_S = env_float("ARBITER_OPENAI_IMPLICIT_IDEMPOTENCY_S", 30.0, minimum=0.0)
# The address people reach the web UI at: links in what Arbiter sends out (a review request to a chat tool).
ARBITER_PUBLIC_URL = (
    env_str("ARBITER_PUBLIC_URL") or f"http://127.0.0.1:{env_int('ARBITER_PORT', 8000, minimum=1, maximum=65535)}"
).rstrip("/")
ARBITER_WEBHOOK_SECRET = env_str("ARBITER_WEBHOOK_SECRET") or (
    None if PRODUCTION else "dev-insecure-webhook-secret-never-use-in-production"
)
ARBITER_WEBHOOK_ALLOW_PRIVATE = env_bool("ARBITER_WEBHOOK_ALLOW_PRIVATE", default=False)
ARBITER_WEBHOOK_ALLOW_LOOPBACK = env_bool("ARBITER_WEBHOOK_ALLOW_LOOPBACK", default=not PRODUCTION)
ARBITER_WEBHOOK_MAX_ATTEMPTS = env_int("ARBITER_WEBHOOK_MAX_ATTEMPTS", 6, minimum=1, maximum=20)
# A reviewer's token for the review API (routing.services.personal_tokens) always expires, at most this far ahead.
ARBITER_PERSONAL_TOKEN_MAX_DAYS = env_int("ARBITER_PERSONAL_TOKEN_MAX_DAYS", 90, minimum=1, maximum=366)
ARBITER_WEBHOOK_TIMEOUT_S = env_float("ARBITER_WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1)
# A deployment's key variable and URL are a policy admin's to choose, within these bounds (routing.execute.providers).
ARBITER_PROVIDER_KEY_ENV_ALLOWLIST = frozenset(env_list("ARBITER_PROVIDER_KEY_ENV_ALLOWLIST", []))
ARBITER_ALLOW_PRIVATE_PROVIDER_URLS = env_bool("ARBITER_ALLOW_PRIVATE_PROVIDER_URLS", default=not PRODUCTION)

# --- UI ----------------------------------------------------------------------------------------
# Settings of the web UI (web/, each app's pages and templates, templates/, static/) live in this block.
# A Content Security Policy without inline script or style: htmx is configured by a meta tag, every
# script and stylesheet is a static file of ours, charts are inline SVG with presentation attributes.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.clickjacking.XFrameOptionsMiddleware") + 1,
    "web.security.ContentSecurityPolicyMiddleware",
)
ARBITER_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# drf-spectacular's Swagger page starts itself with an inline script (SpectacularSwaggerSplitView does not).
ARBITER_CSP_EXEMPT_PREFIXES = tuple(env_list("ARBITER_CSP_EXEMPT_PREFIXES", ["/api/docs/"]))
TEMPLATES[0]["OPTIONS"]["libraries"] = {"ui": "web.templatetags"}
LOGOUT_REDIRECT_URL = "login"
ARBITER_UI_EXPORT_DIR = Path(env_str("ARBITER_UI_EXPORT_DIR", str(DATA_DIR / "evidence-exports")))
ARBITER_UI_PAGE_SIZE = env_int("ARBITER_UI_PAGE_SIZE", 50, minimum=5, maximum=500)

# How long an approval grant (routing.services.grants) may be redeemed after the decision that issued it.
ARBITER_GRANT_TTL_S = env_int("ARBITER_GRANT_TTL_S", 3600, minimum=10, maximum=30 * 24 * 3600)
# The longest a chat completion may wait on a held job's decision (`x-arbiter-wait-for-approval`).
ARBITER_APPROVAL_WAIT_MAX_S = env_int("ARBITER_APPROVAL_WAIT_MAX_S", 900, minimum=1, maximum=24 * 3600)
# A streamed chat completion waiting on a decision sends an SSE comment this often, so proxies and clients
# with read timeouts keep the connection.
ARBITER_STREAM_KEEPALIVE_S = env_float("ARBITER_STREAM_KEEPALIVE_S", 15.0, minimum=0.1)
# Requests of one web process that may wait on approvals at once (each holds one of its synchronous slots).
ARBITER_APPROVAL_WAITS_PER_PROCESS = env_int(
    "ARBITER_APPROVAL_WAITS_PER_PROCESS", max(1, ARBITER_SYNC_CALLS_PER_PROCESS // 2), minimum=1
)

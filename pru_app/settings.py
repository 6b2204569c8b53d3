"""Settings for pru_app: every value comes from the environment (see .env.example)."""

from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from kombu import Exchange, Queue

from core.secret_values import PlaceholderSecret, env_secret, example_values, refuse_placeholder_secrets
from pru_app.beat_schedules import image_beat_schedule
from pru_app.logging_setup import build_logging_config, configure_structlog
from pru_app.s3_options import s3_storage_options
from pru_app.sentry_setup import init_sentry

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is missing: set it in the environment (bin/init-env writes one into .env), "
            "or set DJANGO_DEBUG=true for local development."
        )
    SECRET_KEY = "insecure-development-only-key-never-used-when-debug-is-off"  # noqa: S105 (DEBUG only)
# Rotation: the new key in DJANGO_SECRET_KEY, the old ones here until their sessions and signed
# links have expired (comma-separated).
SECRET_KEY_FALLBACKS = [key for key in env_secret("DJANGO_SECRET_KEY_FALLBACKS").split(",") if key]

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "storages",
    "django_structlog",
    "rest_framework",
    # Before chat: chat.admin replaces its token admin with one fit for a million users.
    "rest_framework.authtoken",
    "drf_spectacular",
    "chat",
]

MIDDLEWARE = [
    # /healthz before everything else (see the class).
    "core.middleware.LivenessProbeMiddleware",
    # Times each request by route and status; answers /metrics (nginx refuses it from outside).
    "core.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # SECURE_CSP below; nginx adds the same policy only where Django did not answer.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Django's own session and CSRF middleware, by name: `check --deploy` looks for these exact paths
    # (security.W003, and the session cookie checks run only when it finds SessionMiddleware). For a token
    # request they cost next to nothing: the session is never loaded, the API's views are CSRF-exempt.
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's user and messages middleware, skipped for API requests that carry a token
    # (core.middleware.is_api_token_request): the recipients' API path does not pay for browser state.
    "core.middleware.AuthenticationMiddleware",
    "core.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
]

ROOT_URLCONF = "pru_app.urls"

# Recipients sign in with Django's own auth views (/accounts/login/) and land on their chat.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:chat_page"
LOGOUT_REDIRECT_URL = "login"

# The JSON API (/api/v1/): token first, so an anonymous caller gets 401 with
# WWW-Authenticate: Token (DRF answers 403 when the first class has no challenge).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "pru_app API",
    "DESCRIPTION": "A recipient's own chat: its messages, their images and the read state.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
}
WSGI_APPLICATION = "pru_app.wsgi.application"

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

# Database: PostgreSQL in production and tests; an embedded SQLite file when unset. Either one
# URL, or its parts (compose passes parts: a password needs no escaping there, whatever it holds).
DATABASE_HOST = env.str("DATABASE_HOST", default="")
if DATABASE_HOST:
    if env.str("DATABASE_URL", default=""):
        raise ImproperlyConfigured(
            "Set DATABASE_URL or DATABASE_HOST (with DATABASE_PORT, _NAME, _USER, _PASSWORD), not both."
        )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": DATABASE_HOST,
            "PORT": env.str("DATABASE_PORT", default="") or "5432",
            "NAME": env.str("DATABASE_NAME", default="") or "pru_app",
            "USER": env.str("DATABASE_USER", default="") or "pru_app",
            "PASSWORD": env_secret("DATABASE_PASSWORD"),
        }
    }
else:
    DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's PostgreSQL backend, its per-request health check reading the socket instead of a SELECT 1
# round trip (core/postgresql/base.py).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "core.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files are collected at build time and served by nginx.
STATIC_URL = "/static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=str(BASE_DIR / "media"))

# Object storage: django-storages' S3 backend whenever a bucket is configured
# (MinIO in compose, moto's server in tests); the file system otherwise.
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="") or None
AWS_SECRET_ACCESS_KEY = env_secret("AWS_SECRET_ACCESS_KEY") or None
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="us-east-1")
# The public address browsers use for presigned URLs when it differs from the
# internal endpoint (for example http://localhost:9000 versus http://minio:9000).
AWS_S3_PUBLIC_ENDPOINT_URL = env.str("AWS_S3_PUBLIC_ENDPOINT_URL", default="") or None
AWS_QUERYSTRING_EXPIRE = env.int("AWS_QUERYSTRING_EXPIRE", default=300)
USE_S3_STORAGE = bool(AWS_STORAGE_BUCKET_NAME)

if USE_S3_STORAGE:
    DEFAULT_STORAGE = {
        # django-storages' S3Storage plus per-object metadata and one shared boto3 session.
        "BACKEND": "core.s3_backend.SharedClientS3Storage",
        "OPTIONS": s3_storage_options(
            bucket_name=AWS_STORAGE_BUCKET_NAME,
            endpoint_url=AWS_S3_ENDPOINT_URL,
            access_key=AWS_ACCESS_KEY_ID,
            secret_key=AWS_SECRET_ACCESS_KEY,
            region_name=AWS_S3_REGION_NAME,
            querystring_expire=AWS_QUERYSTRING_EXPIRE,
            connect_timeout=env.int("AWS_S3_CONNECT_TIMEOUT", default=5),
            read_timeout=env.int("AWS_S3_READ_TIMEOUT", default=30),
            max_attempts=env.int("AWS_S3_MAX_ATTEMPTS", default=3),
            max_pool_connections=env.int("AWS_S3_MAX_POOL_CONNECTIONS", default=32),
        ),
    }
else:
    # Overwrite, like file_overwrite above: deterministic keys, never a second copy.
    DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"allow_overwrite": True}}

# Production refuses a secret copied from the example files or shaped like a placeholder: the
# quick start must never run with a password anyone can read in the repository (bin/init-env).
if not DEBUG:
    _examples = example_values([BASE_DIR / ".env.example"])
    # Compose hands .env's POSTGRES_APP_PASSWORD to the app as DATABASE_PASSWORD (init: POSTGRES_OWNER_PASSWORD).
    _examples["DATABASE_PASSWORD"] = _examples.get("POSTGRES_APP_PASSWORD", "")
    _database_password_key = "DATABASE_PASSWORD" if DATABASE_HOST else "DATABASE_URL (its password)"
    try:
        refuse_placeholder_secrets(
            {
                "DJANGO_SECRET_KEY": SECRET_KEY,
                **{
                    f"DJANGO_SECRET_KEY_FALLBACKS ({number})": key for number, key in enumerate(SECRET_KEY_FALLBACKS, 1)
                },
                _database_password_key: DATABASES["default"].get("PASSWORD") or "",
                "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
            },
            examples=_examples,
        )
    except PlaceholderSecret as error:
        raise ImproperlyConfigured(str(error)) from error

STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# The photo API and image downloads.
IMAGE_API_URL = env.str("IMAGE_API_URL", default="https://api.slingacademy.com/v1/sample-data/photos")
IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS = env.bool("IMAGE_FETCH_ALLOW_PRIVATE_NETWORKS", default=False)
IMAGE_FETCH_MAX_BYTES = env.int("IMAGE_FETCH_MAX_BYTES", default=20 * 1024 * 1024)
IMAGE_FETCH_MAX_PIXELS = env.int("IMAGE_FETCH_MAX_PIXELS", default=50_000_000)
IMAGE_FETCH_CONNECT_TIMEOUT = env.float("IMAGE_FETCH_CONNECT_TIMEOUT", default=5.0)
IMAGE_FETCH_READ_TIMEOUT = env.float("IMAGE_FETCH_READ_TIMEOUT", default=30.0)
IMAGE_FETCH_RETRIES = env.int("IMAGE_FETCH_RETRIES", default=3)
IMAGE_FETCH_WORKERS = env.int("IMAGE_FETCH_WORKERS", default=16)
# Wall-clock bounds on a whole outbound request, headers and body, however slowly the peer sends
# (core.deadlines): one photo's download, one page of the photo API, one object storage call.
IMAGE_FETCH_DEADLINE = env.float("IMAGE_FETCH_DEADLINE", default=max(IMAGE_FETCH_READ_TIMEOUT * 4, 60.0))
IMAGE_API_PAGE_DEADLINE = env.float("IMAGE_API_PAGE_DEADLINE", default=60.0)
STORAGE_CALL_DEADLINE = env.float("STORAGE_CALL_DEADLINE", default=120.0)
# How stored images reach browsers: "x-accel" (nginx fetches from storage),
# "stream" (Django streams the bytes: file system or no nginx) or "presigned"
# (redirect to a short-lived URL for AWS_S3_PUBLIC_ENDPOINT_URL).
IMAGE_SERVE_MODE = env.str("IMAGE_SERVE_MODE", default="x-accel")
if IMAGE_SERVE_MODE not in ("x-accel", "stream", "presigned"):
    raise ImproperlyConfigured(f"IMAGE_SERVE_MODE must be x-accel, stream or presigned, not {IMAGE_SERVE_MODE!r}.")
# verify_images: concurrent HEAD requests (at most AWS_S3_MAX_POOL_CONNECTIONS are useful) and rows per batch.
IMAGE_VERIFY_WORKERS = env.int("IMAGE_VERIFY_WORKERS", default=32)
IMAGE_VERIFY_BATCH_SIZE = env.int("IMAGE_VERIFY_BATCH_SIZE", default=1_000)

# The pages' Content-Security-Policy. Presigned image URLs point at the storage's public origin,
# which img-src must then allow (and only then: a redirect elsewhere stays blocked).
_image_sources = [CSP.SELF, "data:", "blob:"]
if IMAGE_SERVE_MODE == "presigned" and USE_S3_STORAGE:
    _public_storage = urlsplit(AWS_S3_PUBLIC_ENDPOINT_URL or AWS_S3_ENDPOINT_URL or "https://s3.amazonaws.com")
    _image_sources.append(f"{_public_storage.scheme}://{_public_storage.netloc}")
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "img-src": _image_sources,
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "script-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Broadcasts (docs/broadcasts.md). A broadcast is recorded as chunks of chats, each about this
# many messages: one transaction, one Celery task and one Sentry transaction per chunk.
BROADCAST_CHUNK_MESSAGES = env.int("BROADCAST_CHUNK_MESSAGES", default=50_000)
# Database connections an in-process broadcast runs its chunks on (one per database core is plenty).
BROADCAST_WORKERS = env.int("BROADCAST_WORKERS", default=2)
# With a Celery broker, broadcasts of at least this many messages go to the workers (0: never);
# smaller ones run in the request (200,000 messages take ~2 s).
BROADCAST_QUEUE_FROM_MESSAGES = env.int("BROADCAST_QUEUE_FROM_MESSAGES", default=200_000)
# A claimed chunk's lease: a chunk takes ~1 s, and no statement of it may run longer than this
# (statement_timeout), so a chunk still "running" past its lease has lost its runner.
BROADCAST_CHUNK_LEASE_SECONDS = env.int("BROADCAST_CHUNK_LEASE_SECONDS", default=60)
# Claims a chunk gets (worker deaths, database outages) before it is failed for staff to resume.
BROADCAST_CHUNK_MAX_ATTEMPTS = env.int("BROADCAST_CHUNK_MAX_ATTEMPTS", default=5)
# The sweeper (Celery beat) runs this often, and re-queues a broadcast none of whose chunks was
# queued, claimed or finished for BROADCAST_STALL_SECONDS.
BROADCAST_SWEEP_SECONDS = env.float("BROADCAST_SWEEP_SECONDS", default=30.0)
BROADCAST_STALL_SECONDS = env.int("BROADCAST_STALL_SECONDS", default=120)
# Broadcast chunks inserting at once, over every worker, host and in-process runner (0: no bound),
# and for any one broadcast: each is one busy database core. Keep the total below the database's
# cores so the site's own queries always find one (docs/broadcasts.md, "Sizing").
BROADCAST_MAX_CONCURRENT_CHUNKS = env.int("BROADCAST_MAX_CONCURRENT_CHUNKS", default=1)
BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST = env.int("BROADCAST_MAX_CONCURRENT_CHUNKS_PER_BROADCAST", default=1)
# How long a runner waits for a free slot before it lets the chunk go (a Celery task retries it later).
BROADCAST_SLOT_WAIT_SECONDS = env.float("BROADCAST_SLOT_WAIT_SECONDS", default=10.0)
# The database role the app connects as, when migrations run as another one (empty: the same role):
# migration 0007 grants it SET on session_replication_role for the broadcasts' insert (docs/broadcasts.md).
DATABASE_APP_ROLE = env.str("DATABASE_APP_ROLE", default="")

# Celery (Redis broker). Tasks run in-process when no broker is configured.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Tasks with a queue of their own, so that no backlog of other tasks holds them back:
# - the sweeper's, so a backlog of chunks or a long fetch never delays a sweep (docs/concurrency.md);
#   every worker but broadcast-worker consumes it beside the default queue, compose's `sweeper` only it;
# - broadcast chunks', so a send never delays the other jobs, on a worker of their own (compose
#   `broadcast-worker`) with its own concurrency (docs/broadcasts.md).
CELERY_SWEEPER_QUEUE = env.str("CELERY_SWEEPER_QUEUE", default=f"{CELERY_TASK_DEFAULT_QUEUE}.sweeper")
CELERY_BROADCAST_QUEUE = env.str("CELERY_BROADCAST_QUEUE", default=f"{CELERY_TASK_DEFAULT_QUEUE}.broadcasts")
# Task name → the setting naming its queue; every other task goes to CELERY_TASK_DEFAULT_QUEUE.
# Read at each publish by pru_app.celery.route_task (a test may point a setting at its own queue).
CELERY_QUEUE_SETTING_BY_TASK = {
    "chat.tasks.broadcasts_sweep_task": "CELERY_SWEEPER_QUEUE",
    "chat.tasks.broadcast_chunk_task": "CELERY_BROADCAST_QUEUE",
}
CELERY_TASK_ROUTES = ("pru_app.celery.route_task",)
# Every queue a worker started without -Q consumes (bin/serve's one worker); compose's workers
# pick theirs with CELERY_WORKER_QUEUES / CELERY_WORKER_EXCLUDE_QUEUES (deploy/compose/worker/start).
# Declared as Celery declares a missing queue: a direct exchange of the same name.
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name), routing_key=name)
    for name in (CELERY_TASK_DEFAULT_QUEUE, CELERY_SWEEPER_QUEUE, CELERY_BROADCAST_QUEUE)
]
CELERY_TASK_ACKS_LATE = True
# A task whose worker process died goes back to the queue instead of being acknowledged.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers send task events from their start (Flower's task list and the worker metrics read them), and a
# publisher sends task-sent: Flower's own `enable_events` broadcast reaches only the workers up when it is
# sent, so a task run by a worker that started after it was never seen.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis gives an unacknowledged message to another worker after this long. A message stays
    # unacknowledged while a worker holds it: a chunk runs ~1 s and never past its lease (60 s),
    # a retry's countdown is at most 61 s. Ten minutes is far above both (no second delivery of
    # a live task) and bounds how long a message reserved by a killed worker stays lost, should
    # the sweeper not run. Redis's default is an hour.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
}
# Celery beat (the compose `beat` service): the image jobs as crontab lines in UTC; empty turns one off.
IMAGE_FETCH_SCHEDULE = env.str("IMAGE_FETCH_SCHEDULE", default="0 3 * * *")
IMAGE_VERIFY_SCHEDULE = env.str("IMAGE_VERIFY_SCHEDULE", default="30 4 * * *")
# The scheduled verify downloads missing and corrupt images again (verify_images --repair).
IMAGE_VERIFY_SCHEDULE_REPAIR = env.bool("IMAGE_VERIFY_SCHEDULE_REPAIR", default=True)
CELERY_BEAT_SCHEDULE = {
    "broadcasts-sweep": {
        "task": "chat.tasks.broadcasts_sweep_task",
        "schedule": BROADCAST_SWEEP_SECONDS,
        # A sweep that waited a whole interval in its queue is replaced by the next one; the queue is
        # its own (CELERY_SWEEPER_QUEUE), so it waits only behind another sweep, never behind chunks.
        "options": {"expires": BROADCAST_SWEEP_SECONDS, "queue": CELERY_SWEEPER_QUEUE},
    },
    **image_beat_schedule(
        fetch=IMAGE_FETCH_SCHEDULE, verify=IMAGE_VERIFY_SCHEDULE, verify_repair=IMAGE_VERIFY_SCHEDULE_REPAIR
    ),
}

# Behind nginx: trust its X-Forwarded-Proto and Host, nothing from the client directly.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env.bool("DJANGO_USE_X_FORWARDED_HOST", default=False)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# /healthz is answered before SecurityMiddleware (core.middleware.LivenessProbeMiddleware).
SECURE_REDIRECT_EXEMPT = [r"^readyz$"]
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])

# Logging (structlog + django-structlog) and Sentry.
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = build_logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
configure_structlog(log_format=LOG_FORMAT)
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = env.bool("DJANGO_TRUST_UPSTREAM_REQUEST_ID", default=True)
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False

# Backups (docs/backup.md): finished backups kept in the destination, the oldest beyond it deleted (0: all kept).
BACKUP_KEEP = env.int("BACKUP_KEEP", default=7)
if BACKUP_KEEP < 0:
    raise ImproperlyConfigured("BACKUP_KEEP must be 0 (keep every backup) or more")

SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_CRON_MONITOR_SLUG = env.str("SENTRY_CRON_MONITOR_SLUG", default="fetch-images")
# A crontab ("0 * * * *") lets the first check-in create the monitor with that schedule.
SENTRY_CRON_SCHEDULE = env.str("SENTRY_CRON_SCHEDULE", default="")
SENTRY_VERIFY_MONITOR_SLUG = env.str("SENTRY_VERIFY_MONITOR_SLUG", default="verify-images")
SENTRY_VERIFY_CRON_SCHEDULE = env.str("SENTRY_VERIFY_CRON_SCHEDULE", default="")
init_sentry(
    dsn=SENTRY_DSN,
    environment=env.str("SENTRY_ENVIRONMENT", default="production"),
    release=env.str("SENTRY_RELEASE", default="") or None,
    traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    job_traces_sample_rate=env.float("SENTRY_JOB_TRACES_SAMPLE_RATE", default=1.0),
)

# Prometheus (docs/observability.md#metrics): gauges read from the database and the broker at each
# scrape of /metrics, beside the counters of Gunicorn's processes (PROMETHEUS_MULTIPROC_DIR).
METRICS_COLLECTORS = ["chat.metrics.DatabaseCollector", "chat.metrics.QueueDepthCollector"]

"""Django settings, read from the environment through shop.env with local defaults."""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from shop import env

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.get_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.get("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string, "
            "or set DJANGO_DEBUG=true for a local run (make run does)."
        )
    SECRET_KEY = "insecure-local-development-key-only-used-with-DJANGO_DEBUG"

ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "orders",
    "readmodels",
]

MIDDLEWARE = [
    "shop.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
ASGI_APPLICATION = "shop.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": env.database_from_url(env.get("DATABASE_URL"))}
# Commands open their own transactions; a global ATOMIC_REQUESTS would wrap projected
# reads in transactions and nest commands.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.get_int("DATABASE_CONN_MAX_AGE", 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": env.get("DATABASE_TEST_NAME", "test_shop")}
# A worker's segment lock is a session-level advisory lock: it lasts while PostgreSQL
# believes the session alive. When a worker's host vanishes (power, network), the
# server learns it only from TCP keepalives, after about two hours by default, and the
# segment stalls that long. So our sessions ask the server to probe after 5 s idle,
# every 2 s, and to give up after 3 misses (tcp_user_timeout: 10 s for data never
# acknowledged); libpq's keepalives do the same on the client side, so a worker whose
# server vanished does not wait either. A pooler between workers and PostgreSQL must
# run in session mode (the lock is the session's) and pass these options on.
DATABASES["default"].setdefault("OPTIONS", {}).update(
    keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
    options="-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
    "-c tcp_keepalives_count=3 -c tcp_user_timeout=10000",
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REDIS_URL = env.get("REDIS_URL")
ELASTICSEARCH_URL = env.get("ELASTICSEARCH_URL")

CELERY_BROKER_URL = env.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Workers log through LOGGING below (JSON), not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every database connection before and after each task
# unless this is set; a projector run is a few milliseconds of work, and a new
# connection per task cost it about a fifth of its time. Connections are kept for
# this many tasks (per thread), and shop.celery drops unusable or old ones before each
# task the way Django does per request (CONN_MAX_AGE, CONN_HEALTH_CHECKS).
CELERY_DB_REUSE_MAX = env.get_int("CELERY_DB_REUSE_MAX", 1000)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["orders.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "orders.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Shop API",
    "DESCRIPTION": (
        "Commands write to PostgreSQL and answer with an `X-Consistency-Token`. "
        "Reads say how consistent they are in `X-Consistency` (strong, eventual, "
        "strong-fallback)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "shop.openapi.add_error_responses",
    ],
}

# The write side's knobs.
SHOP = {
    "IDEMPOTENCY_KEY_TTL_SECONDS": env.get_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600),
    # Benchmark-only switch, to measure what the outbox costs. Off, no read model is
    # ever updated again: never turn it off anywhere else.
    "OUTBOX_ENABLED": env.get_bool("BENCHMARK_ONLY_DISABLE_OUTBOX", False) is False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "shop.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": env.get("LOG_LEVEL", "INFO")},
    # One line per HTTP request to Elasticsearch is noise at INFO.
    "loggers": {
        # Django's own console handler would print each line a second time, unformatted.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "elastic_transport": {"level": "WARNING"},
        # A line per task received and succeeded is noise with a sweep every second.
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
    },
}

if not DEBUG and env.get_bool("DJANGO_SECURE_COOKIES", default=False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

if DEBUG is False and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is empty; set it to the host names you serve.")

# The read side's knobs, in one namespaced dict (read through readmodels.config).
READMODELS = {
    # Prefix of Elasticsearch index names and Redis keys, so that tests and several
    # shops can share servers without touching each other's views.
    "NAMESPACE": env.get("READMODELS_NAMESPACE", "shop"),
    "SEGMENTS": {
        "products_search": env.get_int("SEGMENTS_PRODUCTS_SEARCH", 1),
        "orders_search": env.get_int("SEGMENTS_ORDERS_SEARCH", 1),
        "order_summary": env.get_int("SEGMENTS_ORDER_SUMMARY", 1),
        "customer_dashboard": env.get_int("SEGMENTS_CUSTOMER_DASHBOARD", 1),
    },
    # Lag SLOs; each can be set by SLO_SECONDS_<READ_MODEL> (e.g. SLO_SECONDS_ORDER_STATS).
    "SLO_SECONDS": {
        name: float(env.get(f"SLO_SECONDS_{name.upper()}", default))
        for name, default in {
            "products_search": "2",
            "orders_search": "2",
            "order_summary": "2",
            "customer_dashboard": "2",
            "order_stats": "30",
        }.items()
    },
    "BATCH_SIZE": env.get_int("READMODELS_BATCH_SIZE", 1000),
    "MAX_WAIT_MS_DEFAULT": 2000,
    "MAX_WAIT_MS_CAP": 10000,
    "POISON_MAX_ATTEMPTS": 5,
    "SWEEP_INTERVAL_SECONDS": 1.0,
    "RUN_TIME_BUDGET_SECONDS": 10.0,
    "STORE_TIMEOUT_SECONDS": 5.0,
    "REBUILD_GRACE_SECONDS": 600.0,
    "OUTBOX_RETENTION_DAYS": env.get_int("OUTBOX_RETENTION_DAYS", 7),
}

CELERY_BEAT_SCHEDULE = {
    "sweep-projections": {
        "task": "readmodels.tasks.sweep",
        "schedule": READMODELS["SWEEP_INTERVAL_SECONDS"],
        "options": {"expires": 2 * READMODELS["SWEEP_INTERVAL_SECONDS"]},
    },
    "record-projection-lag": {
        "task": "readmodels.tasks.record_lag",
        "schedule": 10.0,
        "options": {"expires": 10},
    },
    "purge-outbox": {"task": "readmodels.tasks.purge_outbox", "schedule": 3600.0},
    "reconcile-read-models": {"task": "readmodels.tasks.reconcile_all", "schedule": 86400.0},
    "purge-idempotency-keys": {
        "task": "orders.tasks.purge_idempotency_keys",
        "schedule": 3600.0,
    },
}

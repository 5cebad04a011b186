"""Django settings, read from the environment through shop.env with local defaults."""

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from shop import env
from shop.web import redis_clients

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
# Rotating the key: put the old one here (comma separated) while signatures made with
# it (sessions, consistency tokens) are still in flight, then drop it.
SECRET_KEY_FALLBACKS = env.get_list("DJANGO_SECRET_KEY_FALLBACKS")

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
    # API tokens: stored hashed, expiring, revocable (logout).
    "knox",
    "drf_spectacular",
    # Swagger UI's files from the package, not a CDN (SPECTACULAR_SETTINGS below).
    "drf_spectacular_sidecar",
    "orders",
    "readmodels",
    "shop.storefront",
    # Its ready() connects the revocation of API tokens on a password change.
    "shop.web",
]

MIDDLEWARE = [
    "shop.web.request_ids.RequestIdMiddleware",
    # Outermost after the request id: a pool timeout anywhere below becomes 503.
    "shop.web.database_busy.DatabaseBusyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS/JS, Swagger UI) from the app server itself: the
    # image runs uvicorn with no web server in front that could serve them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A sign-in form over the login throttles' limits: a 429 page, not a 500.
    "shop.error_pages.LoginThrottledPages",
]

ROOT_URLCONF = "shop.urls"
# Under /api/ a CSRF refusal is the API's JSON error; elsewhere Django's page.
CSRF_FAILURE_VIEW = "shop.error_pages.csrf_failure"
WSGI_APPLICATION = "shop.wsgi.application"
ASGI_APPLICATION = "shop.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The wiring's own pages (the admin's error page, shop.error_pages).
        "DIRS": [BASE_DIR / "shop" / "templates"],
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
DATABASES["default"].setdefault("OPTIONS", {})
# Connections show up in pg_stat_activity under the process kind that opened them.
DATABASES["default"]["OPTIONS"]["application_name"] = env.get("DATABASE_APPLICATION_NAME", "shop")
# The connection budget (README, "Connection budget"). Web processes (shop.asgi turns
# DATABASE_POOL on) share a bounded pool per process: under ASGI every request's sync
# code runs in a thread of its own, and persistent connections would pile up, one per
# thread. Celery workers and beat keep one persistent connection per process instead:
# a prefork child must never inherit its parent's pool (its maintenance threads do not
# survive fork), and a projector's segment lock is a session-level advisory lock that
# must stay on the connection that took it.
DATABASE_POOL = env.get_bool("DATABASE_POOL", default=False)
if DATABASE_POOL:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections instead
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.get_int("DATABASE_POOL_MIN_SIZE", 1),
        "max_size": env.get_int("DATABASE_POOL_MAX_SIZE", 10),
        # A request that cannot get a connection within this many seconds answers 503
        # database_busy with Retry-After, instead of queueing into the client's timeout.
        "timeout": float(env.get("DATABASE_POOL_TIMEOUT_SECONDS", "2")),
        # Connections above min_size that sat unused this long are closed again.
        "max_idle": float(env.get("DATABASE_POOL_MAX_IDLE_SECONDS", "60")),
        "name": "shop-web",
    }
DATABASES["default"]["TEST"] = {"NAME": env.get("DATABASE_TEST_NAME", "test_shop")}
# A worker's segment lock is a session-level advisory lock: it lasts while PostgreSQL
# believes the session alive. When a worker's host vanishes (power, network), the
# server learns it only from TCP, after about two hours by default, and the segment
# stalls that long. So our sessions ask the server to probe after 2 s idle, every 1 s,
# and to give up 5 s after the last sign of the client (tcp_user_timeout: for data never
# acknowledged, and as the bound of the keepalive probes); libpq does the same on the
# client side, so a worker whose server vanished fails its call within about 5 s
# instead of hanging in it for the whole outage (the kernel retransmits unacknowledged
# data for about 15 minutes). The server then drops a vanished worker's session, and
# its locks, within about 5 s; the segment's wake flag lapses later (its lease, see
# readmodels.pipeline.wake_groups), which is what sets the takeover time (README,
# "Running it on several machines"). A pooler between workers and PostgreSQL must run
# in session mode (the lock is the session's) and pass these options on.
#
# A write transaction of this database holds the outbox horizon (orders.outbox.horizon)
# for as long as it stays open, and with it every view. The shop's own transactions last
# milliseconds; one left idle in a transaction (a bug, a debugging session through the
# app's settings) is ended by the server after DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS
# (0: never), so it holds the views at most that long.
IDLE_IN_TRANSACTION_TIMEOUT_MS = int(
    1000 * float(env.get("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", "10"))
)
DATABASES["default"].setdefault("OPTIONS", {}).update(
    keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=3,
    tcp_user_timeout=5000,
    options="-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 "
    "-c tcp_keepalives_count=3 -c tcp_user_timeout=5000 "
    f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}",
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every password presented (API, storefront, admin, browsable API) is counted on the
# login throttles before a backend checks it (shop/web/login_throttle.py).
# (Sessions signed in through Django's own ModelBackend before it was replaced sign in
# again: a session names its backend.)
AUTHENTICATION_BACKENDS = ["shop.web.login_throttle.ThrottledModelBackend"]
# Django's database sessions, read by one fixed statement per request (shop.web.sessions).
SESSION_ENGINE = "shop.web.sessions"

# Wherever a person sets a password: the admin's forms, createsuperuser and
# changepassword, POST /api/auth/password (its 400 lists each rule broken, by code).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.get("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (cached forever by browsers) and compressed copies, made by
    # collectstatic; with DEBUG on the plain finder-served files are used.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# A file missing from collectstatic's manifest gets its plain URL instead of failing the
# page: test servers run with DEBUG off on a checkout where collectstatic never ran.
# The image always runs collectstatic (Dockerfile), so there every name is hashed.
WHITENOISE_MANIFEST_STRICT = False

REDIS_URL = env.get("REDIS_URL")
# Redis through Sentinel (README, "Redis through Sentinel"): with sentinels given, every
# Redis client (shop.web.redis_clients) and the Celery broker ask them for the primary
# named REDIS_SENTINEL_MASTER, and follow it through a failover; REDIS_URL and a redis://
# CELERY_BROKER_URL then give only the database number and credentials.
REDIS_SENTINELS = env.get_addresses("REDIS_SENTINELS", default_port=26379)
REDIS_SENTINEL_MASTER = env.get("REDIS_SENTINEL_MASTER", "shop")
# The sentinels' own password (requirepass in sentinel.conf), if they have one.
REDIS_SENTINEL_PASSWORD = env.get("REDIS_SENTINEL_PASSWORD", "") or None
ELASTICSEARCH_URL = env.get("ELASTICSEARCH_URL")

CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = redis_clients.broker(
    env.get("CELERY_BROKER_URL", REDIS_URL),
    sentinels=REDIS_SENTINELS,
    master=REDIS_SENTINEL_MASTER,
    sentinel_password=REDIS_SENTINEL_PASSWORD,
)
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

# Redis clients: one bounded pool per process and client kind (redis_store, and the
# asyncio client that waits for consistency tokens). A caller that finds every
# connection busy waits this long, then the store counts as unavailable.
REDIS_MAX_CONNECTIONS = env.get_int("REDIS_MAX_CONNECTIONS", 20)
REDIS_POOL_TIMEOUT_SECONDS = float(env.get("REDIS_POOL_TIMEOUT_SECONDS", "1"))

# Load shedding in each web process (shop.web.admission): requests in flight beyond these
# answer 503 `overloaded` with Retry-After at once. Reads are refused first: commands
# get the whole capacity, reads only WEB_MAX_READS of it. Token waits and consistency
# streams do not count while they wait (they hold no thread and no connection); their
# own bound is READMODELS["MAX_WAITING_READERS"].
WEB_MAX_REQUESTS = env.get_int("WEB_MAX_REQUESTS", 32)
WEB_MAX_READS = env.get_int("WEB_MAX_READS", 24)
WEB_RETRY_AFTER_SECONDS = env.get_int("WEB_RETRY_AFTER_SECONDS", 1)

# Request bodies (shop.web.request_bodies), received whole before admission: at most
# WEB_MAX_BODY_BYTES (a larger declared Content-Length is a 413 before any byte is
# read; a chunked body is cut off there), within WEB_BODY_TIMEOUT_SECONDS of the
# headers (else 408), and at most WEB_MAX_RECEIVING requests per process waiting for
# the rest of a body (beyond it 503 `overloaded`). The API takes JSON of a few KB.
WEB_MAX_BODY_BYTES = env.get_int("WEB_MAX_BODY_BYTES", 1024 * 1024)
WEB_BODY_TIMEOUT_SECONDS = float(env.get("WEB_BODY_TIMEOUT_SECONDS", "10"))
WEB_MAX_RECEIVING = env.get_int("WEB_MAX_RECEIVING", 8)
# Django's own limits at the same size, and uploads in memory only: a body that got
# this far is never spooled to a temporary file.
DATA_UPLOAD_MAX_MEMORY_SIZE = WEB_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = WEB_MAX_BODY_BYTES
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler"]

# Readiness probes (shop.health) are admitted whatever the load, so each is cheap: every
# dependency is checked at once within this timeout, on connections of the probe's own
# (never the web's pool), and a process answers probes from one check per this long.
HEALTH_CHECK_TIMEOUT_SECONDS = float(env.get("HEALTH_CHECK_TIMEOUT_SECONDS", "1"))
HEALTH_CACHE_SECONDS = float(env.get("HEALTH_CACHE_SECONDS", "1"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "shop.web.api_tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["shop.web.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "shop.web.exception_handler.exception_handler",
    # The browsable API's titles and breadcrumbs: "Shop API / Orders / Order search".
    "VIEW_NAME_FUNCTION": "shop.api_names.view_name",
    "DEFAULT_SCHEMA_CLASS": "shop.web.openapi.AutoSchema",
    # Anonymous reads and every command are throttled per client; login has its own
    # throttles (per address and per account), counted by authenticate() for every
    # sign-in form alike. See shop/web/throttles.py and shop/web/login_throttle.py.
    "DEFAULT_THROTTLE_CLASSES": [
        "shop.web.throttles.AnonymousReadThrottle",
        "shop.web.throttles.CommandThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        scope: env.get(f"THROTTLE_RATE_{scope.upper()}", default)
        for scope, default in {
            "login_address": "30/min",
            "login_account": "10/min",
            "anon_read": "300/min",
            "commands": "300/min",
            "stream": "60/min",
        }.items()
    },
    # Proxies in front of the app that append to X-Forwarded-For. 0 (the default): the
    # client's address is the socket's, so a client cannot dodge a throttle by sending
    # its own X-Forwarded-For. Behind one reverse proxy, set 1.
    "NUM_PROXIES": env.get_int("NUM_PROXIES", 0),
}

# Open consistency streams per client at once (counted in Redis, each slot expiring
# with its stream's deadline so a crashed server leaks none).
STREAMS_PER_CLIENT = env.get_int("STREAMS_PER_CLIENT", 5)

REST_KNOX = {
    # Tokens expire this long after login; logout revokes one at once.
    "TOKEN_TTL": timedelta(seconds=env.get_int("API_TOKEN_TTL_SECONDS", 10 * 3600)),
    # Clients send `Authorization: Token <token>`, as before knox.
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Shop API",
    "DESCRIPTION": (
        "Commands write to PostgreSQL and answer with an `X-Consistency-Token`. "
        "Reads say how consistent they are in `X-Consistency` (strong, eventual, "
        "strong-fallback). Session consistency: a signed-in user's projected reads wait "
        "(bounded by max_wait_ms) for that user's latest command without sending a token; "
        "an explicit `X-Consistency-Token` wins, `X-Consistency-Token: none` or "
        "`?consistency=none` opts out, and `X-Consistency-Source` says which governed. "
        "Start at `GET /api/`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Row ids as shop.web.url_ids matches them.
    "PATH_CONVERTER_OVERRIDES": {"id": {
        "type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1,
    }},
    # Swagger UI from drf-spectacular-sidecar's static files: no third-party script on
    # the admin's origin, and the page works with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "readmodels.api.openapi.add_stream",
        "shop.web.openapi.add_error_responses",
        "shop.web.openapi.add_common_headers",
    ],
}

# Bearer token Prometheus sends to scrape /metrics. Unset: /metrics answers only local
# requests with DEBUG on, and refuses every request (403) with DEBUG off.
METRICS_TOKEN = env.get("METRICS_TOKEN")
# Shared secret of the payment provider's callback (POST /api/payments/webhook). Unset:
# the callback is refused (503), so no balance can be credited that way.
PAYMENT_WEBHOOK_SECRET = env.get("PAYMENT_WEBHOOK_SECRET")

# The write side's knobs.
SHOP = {
    # A payment callback older (or newer) than this is refused, so a captured one cannot
    # be replayed later; within it, the provider's event id makes a replay a no-op.
    "PAYMENT_WEBHOOK_TOLERANCE_SECONDS": env.get_int("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", 300),
    "IDEMPOTENCY_KEY_TTL_SECONDS": env.get_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600),
    # Benchmark-only switch, to measure what the outbox costs. Off, no read model is
    # ever updated again: never turn it off anywhere else.
    "OUTBOX_ENABLED": env.get_bool("BENCHMARK_ONLY_DISABLE_OUTBOX", False) is False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "shop.web.logs.JsonFormatter"}},
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
        # Beat sends the sweep every second: a line each ("Sending due task") buried
        # `make run`'s banner. BEAT_LOG_LEVEL=INFO shows them again.
        "celery.beat": {"level": env.get("BEAT_LOG_LEVEL", "WARNING")},
    },
}

# HTTPS. The shop runs behind a TLS-terminating proxy that sets X-Forwarded-Proto; each
# switch is on by default with DEBUG off (so `check --deploy` passes as shipped) and can
# be turned off for a plain-HTTP trial (DJANGO_SECURE_SSL_REDIRECT=false and so on).
# Trust X-Forwarded-Proto only behind a proxy that always sets it (and strips a client's).
if env.get_bool("DJANGO_BEHIND_TLS_PROXY", default=not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.get_bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# The health checks and Prometheus talk plain HTTP to the container itself.
SECURE_REDIRECT_EXEMPT = [r"^api/health", r"^metrics$"]
SESSION_COOKIE_SECURE = env.get_bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.get_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.get_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preload is a promise to browsers' built-in lists that is slow to take back; the
# operator opts in (DJANGO_HSTS_PRELOAD=true), so security.W021 is silenced below.
SECURE_HSTS_PRELOAD = env.get_bool("DJANGO_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = ["security.W021"]

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
    "STORE_TIMEOUT_SECONDS": float(env.get("READMODELS_STORE_TIMEOUT_SECONDS", "5")),
    # A projected read may spend its max_wait_ms waiting, plus this much for the read
    # itself: every store call on a read path is bounded by what is left of the two.
    "READ_TIMEOUT_SECONDS": float(env.get("READMODELS_READ_TIMEOUT_SECONDS", "1")),
    # Token waits (and consistency streams) one web process holds at once; a read
    # beyond it answers at once, stale if its token is not reached yet.
    "MAX_WAITING_READERS": env.get_int("READMODELS_MAX_WAITING_READERS", 1000),
    # Session consistency: how long the token of a user's latest command is remembered.
    # A signed-in user's projected reads wait for it (bounded by max_wait_ms) until then.
    "SESSION_TOKEN_TTL_SECONDS": env.get_int("READMODELS_SESSION_TOKEN_TTL_SECONDS", 3600),
    # Between two passes of a busy projector: lets batches grow with load (a run's fixed
    # cost is paid once per batch), at the price of this much added lag under load. 5 ms:
    # at 50 orders/s the Redis views' p99 was 38 ms with 5, 48-58 ms with 20, for 1.3 ms
    # more worker CPU per order (bench/projection_lag.py); under heavier load a pass takes
    # longer and batches grow by themselves.
    "MICRO_BATCH_LINGER_MS": env.get_int("MICRO_BATCH_LINGER_MS", 5),
    "REBUILD_GRACE_SECONDS": 600.0,
    # Beat's own process samples every segment's lag this often, for the admin's chart
    # (readmodels.operations.lag_samples): not a task, so a stalled worker cannot
    # silence the chart that should show it.
    "LAG_SAMPLE_SECONDS": float(env.get("READMODELS_LAG_SAMPLE_SECONDS", "10")),
    "OUTBOX_RETENTION_DAYS": env.get_int("OUTBOX_RETENTION_DAYS", 7),
    # A transaction of this database that holds the outbox horizon (and so every view)
    # longer than this is named by `projections status`, /metrics, the projections admin
    # and /api/health/ready (degraded).
    "HORIZON_HOLD_ALERT_SECONDS": float(env.get("HORIZON_HOLD_ALERT_SECONDS", "5")),
}

CELERY_BEAT_SCHEDULE = {
    "sweep-projections": {
        "task": "readmodels.tasks.sweep",
        "schedule": READMODELS["SWEEP_INTERVAL_SECONDS"],
        "options": {"expires": 2 * READMODELS["SWEEP_INTERVAL_SECONDS"]},
    },
    "purge-outbox": {"task": "readmodels.tasks.purge_outbox", "schedule": 3600.0},
    "reconcile-read-models": {"task": "readmodels.tasks.reconcile_all", "schedule": 86400.0},
    "purge-expired-api-tokens": {"task": "orders.tasks.purge_expired_api_tokens", "schedule": 3600.0},
    "purge-idempotency-keys": {
        "task": "orders.tasks.purge_idempotency_keys",
        "schedule": 3600.0,
    },
}

# The throttles' counters live in Redis so every web process (and container) shares
# them; the namespace keeps a test run's or another shop's counters apart. Their client
# is bounded like every other Redis client of a web process: past the pool's wait the
# throttles let the request through (shop.web.throttles).
THROTTLE_KEY_PREFIX = env.get("THROTTLE_KEY_PREFIX", f"{READMODELS['NAMESPACE']}:throttle")

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

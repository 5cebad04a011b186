"""Settings for the test suite: the same wiring as production, on names of its own.

Tests use the real servers, but each test run gets its own database, Elasticsearch
indices, Redis keys and broker queues (named after TEST_RUN_ID, the pid by default),
so a running `make run` is not disturbed and two test runs on one machine do not
clobber each other. Processes a test starts inherit TEST_RUN_ID and so share its names.
"""

import os

RUN_ID = os.environ.setdefault("TEST_RUN_ID", str(os.getpid()))
# Always this run's own names, whatever the shell exports: a READMODELS_NAMESPACE left
# over from `make run` would otherwise put the suite's views, keys and broker queues on
# the running stack's.
os.environ["READMODELS_NAMESPACE"] = f"test{RUN_ID}"
# Every test client comes from 127.0.0.1 and counters last a whole run: the throttles
# tests are about start their own server with low rates (tests/access/test_throttles.py).
for _scope in ("LOGIN_ADDRESS", "LOGIN_ACCOUNT", "ANON_READ", "COMMANDS", "STREAM"):
    os.environ.setdefault(f"THROTTLE_RATE_{_scope}", "100000/min")
os.environ.setdefault("STREAMS_PER_CLIENT", "1000")
# The ES dev server serves one request at a time and stalls while it saves its state,
# so a read in the suite gets a longer allowance than the shipped 1 s; the deadline tests
# (test_read_store_deadlines) set the shipped one on their servers.
os.environ.setdefault("READMODELS_READ_TIMEOUT_SECONDS", "10")
# A test may keep its transaction open while it waits on a server or a worker for longer
# than the shipped 10 s (tests/complete/test_outbox_horizon.py checks the shipped value).
os.environ.setdefault("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", "300")

from shop.settings import *  # noqa: E402,F403
from shop.settings import (  # noqa: E402
    DATABASES,
    READMODELS,
    REDIS_SENTINEL_MASTER,
    REDIS_SENTINEL_PASSWORD,
    REDIS_SENTINELS,
    REDIS_URL,
)
from shop.web import redis_clients  # noqa: E402

DATABASES["default"]["TEST"] = {"NAME": os.environ.get("DATABASE_TEST_NAME", f"test_shop_{RUN_ID}")}
CELERY_BROKER_URL, _broker_options = redis_clients.broker(
    os.environ.get("CELERY_BROKER_URL_TEST") or REDIS_URL.rsplit("/", 1)[0] + "/15",
    sentinels=REDIS_SENTINELS,
    master=REDIS_SENTINEL_MASTER,
    sentinel_password=REDIS_SENTINEL_PASSWORD,
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **_broker_options, "global_keyprefix": f"{READMODELS['NAMESPACE']}:"
}
READMODELS["RUN_TIME_BUDGET_SECONDS"] = 5.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

"""Settings for the test suite: the same wiring as production, on names of its own.

Tests use the real servers, but each test run gets its own database, Elasticsearch
indices, Redis keys and broker queues (named after TEST_RUN_ID, the pid by default),
so a running `make run` is not disturbed and two test runs on one machine do not
clobber each other. Processes a test starts inherit TEST_RUN_ID and so share its names.
"""

import os

RUN_ID = os.environ.setdefault("TEST_RUN_ID", str(os.getpid()))
os.environ.setdefault("READMODELS_NAMESPACE", f"test{RUN_ID}")

from shop.settings import *  # noqa: E402,F403
from shop.settings import DATABASES, READMODELS, REDIS_URL  # noqa: E402

DATABASES["default"]["TEST"] = {"NAME": os.environ.get("DATABASE_TEST_NAME", f"test_shop_{RUN_ID}")}
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL_TEST") or REDIS_URL.rsplit("/", 1)[0] + "/15"
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{READMODELS['NAMESPACE']}:"}
READMODELS["RUN_TIME_BUDGET_SECONDS"] = 5.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

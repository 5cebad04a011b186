"""A real ASGI server process for tests that need one (HTTP clients, streams, fuzzing)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from tests.support import ROOT
from tests.support.ports import free_port, port_answers
from tests.support.waiting import wait_until


@contextmanager
def uvicorn_server(**env_overrides):
    """uvicorn serving shop.asgi on the test database and this run's namespace; yields the port."""
    with uvicorn_process(**env_overrides) as (port, _):
        yield port


@contextmanager
def uvicorn_process(**env_overrides):
    """As uvicorn_server, yielding the port and the server's process id."""
    port = free_port()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings_test",
        # Production behaviour (JSON error pages, no debug pages), on plain HTTP: no
        # TLS proxy in front, so no redirect to https and cookies sent over http.
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SECURE_COOKIES": "false",
        # The test process's own key: tokens it signs (consistency tokens of commands
        # run in-process) are then tokens the server issued too.
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        **env_overrides,
    }
    log = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log", delete=False)
    process = subprocess.Popen(
        # --no-proxy-headers as in the Dockerfile: the app alone decides which
        # X-Forwarded-* headers to trust (NUM_PROXIES, SECURE_PROXY_SSL_HEADER).
        [sys.executable, "-m", "uvicorn", "shop.asgi:application", "--port", str(port),
         "--log-level", "warning", "--no-proxy-headers"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: port_answers(port), timeout=30, message="uvicorn did not start")
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        os.unlink(log.name)


# What the deployed-like server of the access tests is started with.
METRICS_TOKEN = "metrics-token-only-for-these-tests"
WEBHOOK_SECRET = "payment-webhook-secret-only-for-these-tests"
OLD_KEY = "the-secret-key-before-the-rotation-only-for-these-tests"

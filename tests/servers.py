"""A real ASGI server process for tests that need one (HTTP clients, streams, fuzzing)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.readside import wait_until

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def uvicorn_server(**env_overrides):
    """uvicorn serving shop.asgi on the test database and this run's namespace; yields the port."""
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
        wait_until(lambda: _answers(port), timeout=30, message="uvicorn did not start")
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        os.unlink(log.name)

"""Processes for benchmarks: the web server, Celery worker and beat, on the bench env."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing answers on port {port}") from None
            time.sleep(0.1)


class Processes:
    def __init__(self, env: dict | None = None):
        self.env = {**os.environ, **(env or {})}
        self.running: list[subprocess.Popen] = []

    def start(self, command: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self.running.append(process)
        return process

    def web(self, workers: int = 4) -> int:
        """The API under gunicorn (WSGI, sync workers), as docker-compose's web service."""
        port = free_port()
        self.start([str(BIN / "gunicorn"), "shop.wsgi:application", "--bind",
                    f"127.0.0.1:{port}", "--workers", str(workers), "--log-level", "warning"])
        wait_port(port)
        return port

    def worker(self, concurrency: int = 4) -> None:
        self.start([str(BIN / "celery"), "-A", "shop", "worker", "--pool=threads",
                    f"--concurrency={concurrency}", "--loglevel=WARNING", "--without-mingle",
                    "--without-gossip"])

    def beat(self, schedule: str) -> None:
        self.start([str(BIN / "celery"), "-A", "shop", "beat", "--loglevel=WARNING",
                    f"--schedule={schedule}"])

    def stop(self) -> None:
        for process in self.running:
            try:
                os.killpg(process.pid, 15)
                process.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, 9)
        self.running.clear()


class Http:
    """A keep-alive JSON client for one thread."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        payload = json.dumps(body)
        for attempt in range(2):
            try:
                self.conn.request("POST", path, body=payload, headers={
                    "Authorization": f"Token {self.token}", "Content-Type": "application/json"})
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def staff_token() -> str:
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    # Every back-office power (top-ups, orders for any customer): permissions are checked.
    user, _ = get_user_model().objects.get_or_create(username="bench-staff",
                                                      defaults={"is_staff": True})
    user.is_staff = user.is_superuser = True
    user.save()
    return AuthToken.objects.create(user=user)[1]

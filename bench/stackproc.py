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


def _shipped(*, port: int = 0, schedule: str = "/tmp/bench-beat") -> dict[str, list[str]]:
    """shop.devstack's command lines, at WARNING so logging does not weigh on the run."""
    from shop.devstack import stack_commands

    return stack_commands(port=port, schedule=Path(schedule), loglevel="WARNING",
                          worker_name=f"bench-{os.getpid()}@%h")


def _role_of(command: list[str]) -> str:
    for role, shipped in _shipped().items():
        if Path(command[0]).name == Path(shipped[0]).name and command[1:4] == shipped[1:4]:
            return role
    return "other"


def _children(pid: int) -> list[int]:
    try:
        found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return found + [g for c in found for g in _children(c)]


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes together, in MB (from /proc)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) these processes have used so far, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


class Processes:
    def __init__(self, env: dict | None = None):
        self.env = {**os.environ, **(env or {})}
        # The code of this checkout, whichever checkout the virtualenv was installed from.
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), self.env.get("PYTHONPATH", "")) if p)
        self.running: list[subprocess.Popen] = []

    def start(self, command: list[str]) -> subprocess.Popen:
        # BENCH_LOG_DIR keeps each role's output (warnings only) for a run one wants to explain.
        role = _role_of(command)
        log_dir = os.environ.get("BENCH_LOG_DIR")
        output = open(Path(log_dir) / f"{role}.log", "ab") if log_dir else subprocess.DEVNULL
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        process.role = role
        self.running.append(process)
        return process

    def web(self) -> int:
        """The API as `make run` serves it (shop.devstack: uvicorn, its worker count)."""
        port = free_port()
        self.start(_shipped(port=port)["web"])
        wait_port(port)
        return port

    def worker(self) -> None:
        """The Celery worker as `make run` starts it (pool and concurrency included).

        Returns once the worker answers a ping: a load offered while it still boots
        measures its boot, not the pipeline (the first orders of a run waited about
        0.7 s for it, the p99 of a 20 s run at 25/s).
        """
        self.start(_shipped()["worker"])
        self.wait_worker()

    def wait_worker(self, seconds: float = 60) -> None:
        from django.conf import settings

        from shop.celery import app

        broker = self.env.get("CELERY_BROKER_URL") or settings.CELERY_BROKER_URL
        deadline = time.monotonic() + seconds
        with app.connection_for_write(broker) as connection:
            while not app.control.ping(timeout=0.5, connection=connection):
                if time.monotonic() > deadline:
                    raise SystemExit(f"no Celery worker answers on {broker}")

    def beat(self, schedule: str) -> None:
        self.start(_shipped(schedule=schedule)["beat"])

    def pids(self, role: str) -> list[int]:
        """Process ids of a role ("web", "worker", "beat") and of their children."""
        found = []
        for process in self.running:
            if process.poll() is not None or getattr(process, "role", None) != role:
                continue
            found.append(process.pid)
            found += _children(process.pid)
        return found

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
        status, _, answer = self.call("POST", path, body)
        return status, answer

    def call(self, method: str, path: str, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict, dict]:
        """Send one request; return the status, the headers (lower-case) and the JSON body."""
        payload = json.dumps(body) if body is not None else None
        sent = {"Authorization": f"Token {self.token}", **(headers or {})}
        if payload is not None:
            sent["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=payload, headers=sent)
                response = self.conn.getresponse()
                raw = response.read()
                answer = json.loads(raw) if raw else {}
                return (response.status, {k.lower(): v for k, v in response.getheaders()},
                        answer if isinstance(answer, dict) else {"items": answer})
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

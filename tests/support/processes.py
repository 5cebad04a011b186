"""Real server and worker processes that a fault test owns: start them, stop them, kill them.

A test that stops a server starts its own throwaway instance (redis-server or the
Elasticsearch-compatible dev server on a free port, data in a temporary directory) and
never touches the machine's shared ones. Celery workers run as subprocesses on this
test run's database, namespace and broker, so that they can be killed for real.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.support import ROOT
from tests.support.ports import free_port, port_answers
from tests.support.waiting import wait_until

VENV_BIN = Path(sys.executable).parent


def _stop_group(process: subprocess.Popen | None, sig: int, timeout: float) -> None:
    """Send `sig` to the process group started for `process`, and reap it."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


class ThrowawayRedis:
    """A redis-server without persistence unless `args` ask for it (later options win):
    a restart then brings it back EMPTY."""

    def __init__(self, directory: Path, *args: str):
        self.port = free_port()
        self.dir = directory
        self.args = args
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        """A client of this server alone (for the test to inject faults with)."""
        import redis

        return redis.Redis(port=self.port, socket_timeout=10)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), *self.args],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: port_answers(self.port), 20, message="redis-server did not start",
                   process=self.process)

    def stop(self) -> None:
        _stop_group(self.process, signal.SIGTERM, 20)
        self.process = None
        wait_until(lambda: not port_answers(self.port), 10, message="redis-server did not stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL: the server ends at once, saving nothing, telling no client; what it
        had not persisted is gone."""
        _stop_group(self.process, signal.SIGKILL, 10)
        self.process = None
        wait_until(lambda: not port_answers(self.port), 10, message="redis-server did not die")


@contextmanager
def throwaway_redis(*args: str):
    """A redis-server of this test's own on a free port; stopped (and its dir removed) after.

    `args` are more redis-server options (e.g. "--maxmemory", "1mb").
    """
    directory = Path(tempfile.mkdtemp(prefix="throwaway-redis-"))
    server = ThrowawayRedis(directory, *args)
    server.start()
    try:
        yield server
    finally:
        _stop_group(server.process, signal.SIGKILL, 10)
        shutil.rmtree(directory, ignore_errors=True)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ThrowawayElasticsearch:
    """The Elasticsearch-compatible dev server (noida-db) on a free port."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.dir = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = VENV_BIN / "noida-db"
        log = open(self.dir / "es.log", "ab")
        self.process = subprocess.Popen(
            [str(binary if binary.exists() else "noida-db"), "start", "--only", "elasticsearch",
             "--host", "127.0.0.1", "--elasticsearch-port", str(self.port),
             "--data-dir", str(self.dir / "data")],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_until(lambda: http_ok(self.url + "/"), 30,
                   message="the ES dev server did not answer 200", process=self.process)

    def stop(self) -> None:
        # SIGINT, not SIGKILL: the dev server saves its state on the way out.
        _stop_group(self.process, signal.SIGINT, 30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def throwaway_elasticsearch():
    directory = Path(tempfile.mkdtemp(prefix="throwaway-es-"))
    server = ThrowawayElasticsearch(directory)
    server.start()
    try:
        yield server
    finally:
        _stop_group(server.process, signal.SIGINT, 30)
        shutil.rmtree(directory, ignore_errors=True)


class WorkerProcess:
    """A `celery -A shop worker` subprocess in a process group of its own."""

    def __init__(self, process: subprocess.Popen, log_path: Path, name: str):
        self.process = process
        self.log_path = log_path
        self.name = name

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def poll(self):
        """As Popen's (so wait_until(..., process=worker) fails as soon as it exits)."""
        return self.process.poll()

    @property
    def returncode(self):
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: no shutdown, no acks."""
        _stop_group(self.process, signal.SIGKILL, 30)

    def terminate(self, timeout: float = 30) -> None:
        """A warm shutdown (SIGTERM); SIGKILL if it does not end in time."""
        _stop_group(self.process, signal.SIGTERM, timeout)

    def stall(self) -> None:
        """SIGSTOP the worker and its pool children: alive, connected, doing nothing."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(lambda: " ready." in self.log(), timeout,
                   message=f"celery worker {self.name} did not report ready\n{self.log()[-3000:]}",
                   process=self.process)


def worker_env(**overrides: str) -> dict[str, str]:
    """The environment of a process that works on this test's database and namespace."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    env = {
        **os.environ,  # TEST_RUN_ID and READMODELS_NAMESPACE: this run's names
        "DJANGO_SETTINGS_MODULE": "shop.settings_test",
        "DJANGO_DEBUG": "true",
        # The database pytest-django made for this run (test_shop_<run id>), not `shop`.
        "DATABASE_URL": f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "ELASTICSEARCH_URL": settings.ELASTICSEARCH_URL,
        # The broker stays where this process sends tasks, even if REDIS_URL moves.
        "CELERY_BROKER_URL_TEST": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@contextmanager
def celery_worker_process(
    name: str = "worker", *, pool: str = "prefork", concurrency: int = 1, ready: bool = True,
    **env_overrides: str,
):
    """A Celery worker subprocess on this run's broker queue; terminated (or killed) after.

    `env_overrides` are environment variables of the worker (READMODELS_BATCH_SIZE,
    SEGMENTS_*, REDIS_URL, ELASTICSEARCH_URL, ...).
    """
    log_dir = Path(tempfile.mkdtemp(prefix=f"celery-{name}-"))
    log_path = log_dir / "worker.log"
    command = [
        sys.executable, "-m", "celery", "-A", "shop", "worker", f"--pool={pool}",
        "-Q", "celery", "--without-mingle", "--without-gossip", "--loglevel=INFO",
        f"--hostname={name}@%h",
    ]
    if pool != "solo":
        command.append(f"--concurrency={concurrency}")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=worker_env(**env_overrides), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    worker = WorkerProcess(process, log_path, name)
    try:
        if ready:
            worker.wait_ready()
        yield worker
    finally:
        worker.terminate(timeout=20)
        shutil.rmtree(log_dir, ignore_errors=True)


@contextmanager
def celery_beat_process(**env_overrides: str):
    """`celery -A shop beat`, as `make run` starts it, on this run's database and broker.

    Yields it as a WorkerProcess (its log, alive(), poll()); terminated after.
    """
    from shop.devstack import stack_commands

    directory = Path(tempfile.mkdtemp(prefix="celery-beat-"))
    log_path = directory / "beat.log"
    command = stack_commands(port=0, schedule=directory / "beat-schedule")["beat"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=worker_env(**env_overrides), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    beat = WorkerProcess(process, log_path, "beat")
    try:
        yield beat
    finally:
        beat.terminate(timeout=20)
        shutil.rmtree(directory, ignore_errors=True)


_HOLD_A_SEGMENT_LOCK = """
import sys, time, django
django.setup()
from django.db import connection
from readmodels.pipeline import locks
name, segment, segments = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with locks.try_lock(locks.segment_key(name, segment, segments)) as acquired:
    raw = connection.connection
    print(acquired, raw.info.backend_pid, raw.fileno(), flush=True)
    time.sleep(3600)
"""


class LockHolder:
    """A worker process that holds a projector segment's lock (and does nothing else)."""

    def __init__(self, process: subprocess.Popen, backend_pid: int, socket_fd: int):
        self.process = process
        self.backend_pid = backend_pid  # its PostgreSQL session
        self.socket_fd = socket_fd  # its end of that session's TCP connection

    def vanish(self) -> None:
        """Let the process's host vanish: its TCP connection ends without a FIN or a
        reset, as when a machine loses power or its network.

        The test takes a duplicate of the process's socket (pidfd_getfd), puts it in
        repair mode (TCP_REPAIR: the kernel then closes it silently), and SIGKILLs the
        process. PostgreSQL is told nothing; only a packet it sends can find out.
        """
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(self.process.pid)
        try:
            fd = libc.syscall(438, pidfd, self.socket_fd, 0)  # pidfd_getfd
            if fd < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
        finally:
            os.close(pidfd)
        connection = socket.socket(fileno=fd)
        # First let the server's last reply be acknowledged (delayed ACK): a reply left
        # unacknowledged would be retransmitted and meet a reset at once on loopback,
        # and that is not what a vanished host looks like to an idle session.
        local, peer = connection.getsockname(), connection.getpeername()
        wait_until(lambda: _unacknowledged(peer, local) == 0, 10,
                   message="the last reply was not acked")
        connection.setsockopt(socket.IPPROTO_TCP, 19, 1)  # TCP_REPAIR
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        connection.close()


def _unacknowledged(source: tuple, destination: tuple) -> int:
    """Bytes sent on a TCP connection and not yet acknowledged (ss's Send-Q)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{source[1]} and "
         f"dport = :{destination[1]} )"], capture_output=True, text=True, check=True,
    ).stdout.split()
    return int(out[1]) if out else -1


@contextmanager
def segment_lock_holder(projector: str, segment: int = 0, segments: int = 1):
    """A subprocess on this run's database that takes a segment's lock and keeps it."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_SEGMENT_LOCK, projector, str(segment), str(segments)],
        cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        start_new_session=True, text=True,
    )
    try:
        acquired, backend_pid, socket_fd = process.stdout.readline().split()
        assert acquired == "True", "the lock holder did not get the lock"
        yield LockHolder(process, int(backend_pid), int(socket_fd))
    finally:
        _stop_group(process, signal.SIGKILL, 10)


# --- a Redis that refuses writes as a whole -------------------------------------------

REFUSALS = ("oom", "readonly", "misconf", "noperm", "busy", "noreplicas")


def _fill_past_maxmemory(client) -> None:
    """Fill Redis with data and cap it below what it holds (noeviction): every write is
    refused with OOM, reads and deletes still work."""
    for n in range(32):
        client.set(f"filler:{n}", b"x" * 65536)
    client.config_set("maxmemory", "1mb")
    assert client.info("memory")["used_memory"] > 1024 * 1024


def _stop_being_full(client) -> None:
    client.delete(*client.keys("filler:*"))
    client.config_set("maxmemory", "0")


def redis_refusal(server: ThrowawayRedis, kind: str):
    """Make a throwaway redis-server refuse writes as a whole; return (refuse, repair).

    The server must run with `--maxmemory-policy noeviction --enable-protected-configs
    yes` (throwaway_redis(*REFUSING_SERVER_ARGS)). Each kind is an error reply, never a
    dropped connection: OOM (full, noeviction), READONLY (demoted to a replica), MISCONF
    (snapshots failing with stop-writes-on-bgsave-error), NOPERM (the ACL took the app's
    commands away), BUSY (a script running too long), NOREPLICAS (min-replicas-to-write).
    """
    import threading

    import redis

    client = server.client()
    if kind == "oom":
        return lambda: _fill_past_maxmemory(client), lambda: _stop_being_full(client)
    if kind == "readonly":
        # A failover demoted it: a replica of a master that is not there (yet).
        return (lambda: client.execute_command("REPLICAOF", "127.0.0.1", str(free_port())),
                lambda: client.execute_command("REPLICAOF", "NO", "ONE"))
    if kind == "noreplicas":
        return (lambda: client.config_set("min-replicas-to-write", 1),
                lambda: client.config_set("min-replicas-to-write", 0))
    if kind == "noperm":
        # The operator's own user keeps every right; the app's (default) loses writes.
        client.execute_command("ACL", "SETUSER", "operator", "on", ">operator", "~*", "&*", "+@all")
        operator = redis.Redis(port=server.port, username="operator", password="operator",
                               socket_timeout=10)
        return (lambda: operator.execute_command("ACL", "SETUSER", "default", "-@write",
                                                 "-@scripting"),
                lambda: operator.execute_command("ACL", "SETUSER", "default", "+@all"))
    if kind == "busy":
        busy: dict = {}

        def hold_the_server():
            # A script that spins until it is killed: past lua-time-limit every other
            # client is answered BUSY.
            client.config_set("lua-time-limit", 50)
            spinning = redis.Redis(port=server.port, socket_timeout=60)
            busy["thread"] = threading.Thread(
                target=lambda: _ignore_errors(
                    lambda: spinning.eval("while true do redis.call('PING') end", 0)),
                daemon=True,
            )
            busy["thread"].start()
            probe = redis.Redis(port=server.port, socket_timeout=10)
            wait_until(lambda: _answers_busy(probe), 10, message="the server never became busy")

        def release():
            killer = redis.Redis(port=server.port, socket_timeout=10)
            wait_until(lambda: _ignore_errors(lambda: killer.script_kill()) is not False, 10,
                       message="the script could not be killed")
            busy["thread"].join(10)

        return hold_the_server, release
    assert kind == "misconf"
    gone = server.dir / "gone"

    def break_snapshots():
        # A snapshot that cannot be written, with stop-writes-on-bgsave-error (default).
        gone.mkdir()
        client.config_set("save", "3600 1")
        client.config_set("dir", str(gone))
        gone.rmdir()
        client.bgsave()
        wait_until(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err",
                   timeout=30, message="the snapshot did not fail")

    def repair():
        client.config_set("dir", str(server.dir))
        client.bgsave()
        wait_until(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "ok",
                   timeout=30, message="the snapshot did not succeed again")

    return break_snapshots, repair


# Options of a throwaway redis-server that redis_refusal can make refuse writes.
REFUSING_SERVER_ARGS = ("--maxmemory-policy", "noeviction", "--enable-protected-configs", "yes")


def _ignore_errors(call):
    import redis

    try:
        return call()
    except redis.RedisError:
        return False


def _answers_busy(client) -> bool:
    import redis

    try:
        client.set("probe", 1)
    except redis.exceptions.BusyLoadingError:
        return False
    except redis.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False

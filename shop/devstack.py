"""Local stack for `make run` and `make test`: make sure the servers answer, then run.

PostgreSQL and Redis are expected as local servers; if they are installed but
stopped they are started, otherwise we stop and point at `docker compose up`. The
Elasticsearch API comes from the noida-db dev server when ELASTICSEARCH_URL does not
answer. Whatever this module starts, it stops again (the ES dev server with SIGINT,
so that it saves its state).

    python -m shop.devstack run            # web + Celery worker + beat, Ctrl-C stops all
    python -m shop.devstack exec -- CMD    # servers up, run CMD, stop what was started
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".devstack"
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")

from shop import env  # noqa: E402  (after the environment defaults above)


class StackError(SystemExit):
    pass


def say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def fail(message: str) -> None:
    raise StackError(
        f"[devstack] {message}\n"
        "[devstack] The other way to get every server: `docker compose up` (see README)."
    )


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    fail(f"{what} did not come up within {seconds:.0f} s")


def ensure_postgres() -> None:
    url = urlparse(env.get("DATABASE_URL"))
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    if not port_answers(host, port):
        clusters = Path("/etc/postgresql")
        if host in ("127.0.0.1", "localhost") and shutil.which("pg_ctlcluster") and clusters.exists():
            for version in sorted(p.name for p in clusters.iterdir()):
                say(f"starting the local PostgreSQL {version} cluster")
                subprocess.run(
                    ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                    check=False,
                )
            wait_for(lambda: port_answers(host, port), "PostgreSQL")
        else:
            fail(f"PostgreSQL does not answer on {host}:{port} and no local server is installed.")
    create_database()


def create_database() -> None:
    import psycopg
    from psycopg import sql

    settings = env.database_from_url(env.get("DATABASE_URL"))
    conninfo = {
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
        "user": settings["USER"] or None,
        "password": settings["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [settings["NAME"]]
        ).fetchone()
        if not exists:
            say(f"creating database {settings['NAME']}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings["NAME"])))


def ensure_redis() -> None:
    sentinels = env.get_addresses("REDIS_SENTINELS", default_port=26379)
    if sentinels:
        # The sentinels name the primary; this stack does not start a topology of its own.
        if not any(port_answers(host, port) for host, port in sentinels):
            fail(f"no Redis sentinel answers on {env.get('REDIS_SENTINELS')}.")
        return
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        url = urlparse(env.get(name) or env.get("REDIS_URL"))
        if url.scheme not in ("redis", "rediss"):
            continue
        host, port = url.hostname or "127.0.0.1", url.port or 6379
        if port_answers(host, port):
            continue
        if host in ("127.0.0.1", "localhost") and shutil.which("redis-server"):
            say(f"starting a local Redis on port {port}")
            subprocess.run(
                [
                    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1",
                    "--port", str(port), "--save", "", "--appendonly", "no",
                ],
                check=True,
                cwd="/tmp",
            )
            wait_for(lambda h=host, p=port: port_answers(h, p), "Redis")
        else:
            fail(f"Redis does not answer on {host}:{port} and no local server is installed.")


def elasticsearch_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def ensure_elasticsearch() -> subprocess.Popen | None:
    """Start the ES-compatible dev server if ELASTICSEARCH_URL does not answer."""
    url = env.get("ELASTICSEARCH_URL")
    if elasticsearch_answers(url):
        return None
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        fail(f"Elasticsearch does not answer at {url}.")
    binary = VENV_BIN / "noida-db"
    if not binary.exists():
        binary = Path(shutil.which("noida-db") or "noida-db")
    STATE.mkdir(exist_ok=True)
    port = parsed.port or 9200
    say(f"starting the Elasticsearch-compatible dev server (noida-db) on port {port}")
    log = open(STATE / "elasticsearch.log", "ab")
    process = subprocess.Popen(
        [
            str(binary), "start", "--only", "elasticsearch", "--host", "127.0.0.1",
            "--elasticsearch-port", str(port), "--data-dir", str(STATE / "es-data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not elasticsearch_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            fail(f"the ES dev server did not start; see {STATE / 'elasticsearch.log'}")
        time.sleep(0.2)
    return process


def stop_gently(process: subprocess.Popen | None, sig=signal.SIGINT, seconds: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)


def ensure_servers() -> subprocess.Popen | None:
    ensure_postgres()
    ensure_redis()
    return ensure_elasticsearch()


def stack_commands(*, port: int | str, schedule: Path, loglevel: str = "INFO",
                   worker_name: str = "worker@%h") -> dict[str, list[str]]:
    """The shipped processes' command lines: web, Celery worker, beat.

    The one place they are written: `make run` starts these, and the benchmarks
    (bench/stackproc.py) start the same ones, so that the record measures what runs.
    docker-compose.yml mirrors them (same server, worker count and concurrency).
    """
    return {
        "web": [
            str(VENV_BIN / "uvicorn"), "shop.asgi:application", "--host", "127.0.0.1",
            # The app alone decides which X-Forwarded-* to trust (NUM_PROXIES): a
            # client must not pick the address its throttles count against.
            "--port", str(port), "--workers", "2", "--no-proxy-headers",
        ],
        "worker": [
            str(VENV_BIN / "celery"), "-A", "shop", "worker", f"--loglevel={loglevel}",
            "--concurrency=2", f"--hostname={worker_name}",
        ],
        "beat": [
            str(VENV_BIN / "celery"), "-A", "shop", "beat", f"--loglevel={loglevel}",
            f"--schedule={schedule}",
        ],
    }


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run() -> int:
    # Ctrl-C, and a plain `kill`, stop everything started here (SIGINT may arrive
    # ignored when started from a script, so set it explicitly).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    es = ensure_servers()
    children: list[subprocess.Popen] = []
    try:
        manage("migrate", "--noinput")
        manage("setup_readmodels")
        manage("load_demo_data")
        port = env.get("PORT", "8000")
        commands = list(stack_commands(port=port, schedule=STATE / "celerybeat-schedule").values())
        STATE.mkdir(exist_ok=True)
        # One metrics directory for the web server and the workers (multiprocess mode),
        # emptied first: files of a previous run must not add to this one's counters.
        metrics_dir = STATE / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        for command in commands:
            children.append(subprocess.Popen(command, cwd=ROOT, start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: port_answers("127.0.0.1", int(port)), "the web server", 60)
        print(
            "\n"
            f"  Storefront: {base}/shop/    (login: customer0@example.com / demo)\n"
            f"  API:        {base}/api/\n"
            f"  API docs:   {base}/api/docs/\n"
            f"  Admin:      {base}/admin/   (login: admin / admin)\n"
            "  Ctrl-C stops everything started here.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        say("a process stopped; stopping the rest")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        for child in children:
            stop_gently(child, signal.SIGTERM)
        stop_gently(es)


def exec_(command: list[str]) -> int:
    es = ensure_servers()
    try:
        return subprocess.call(command, cwd=ROOT)
    finally:
        stop_gently(es)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "exec"):
        print(__doc__)
        return 2
    if argv[0] == "run":
        return run()
    command = argv[1:]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("exec needs a command after --")
        return 2
    return exec_(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

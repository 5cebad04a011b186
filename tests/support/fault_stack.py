"""A whole throwaway shop for fault tests: its own servers, processes and clients.

Every scenario gets a PostgreSQL cluster made by initdb in a temporary directory, a
redis-server (broker and views) and the Elasticsearch-compatible dev server on free
ports, the web app (uvicorn), Celery workers and beat as real processes. Faults are
injected for real by stopping, killing and restarting those; the machine's shared
servers are never touched.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from shop.devstack import stack_commands
from tests.support import ROOT
from tests.support.ports import free_port, port_answers
from tests.support.waiting import wait_until

VENV_BIN = Path(sys.executable).parent


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise AssertionError(f"PostgreSQL's {name} is not installed")
    return candidates[-1]


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb and the server refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class Postgres:
    def __init__(self, root: Path, address: str = "127.0.0.1"):
        # Another address than loopback (the test's hosts' bridge): the server listens
        # there too, and trusts clients of its network.
        self.address = address
        self.data = root / "pg-data"
        self.sockets = root / "pg-sockets"
        self.log = root / "pg.log"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/shop"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres_user([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                               "-w", "-t", "60", *args]),
            check=True, stdout=subprocess.DEVNULL,
        )

    def start(self, settings: str = "") -> None:
        """Start the cluster (made by initdb on first start); `settings`: more `-c` options."""
        if not self.data.exists():
            for path in (self.data, self.sockets):
                path.mkdir(parents=True)
            if os.geteuid() == 0:
                shutil.chown(self.data.parent, "postgres")
                for path in (self.data, self.sockets):
                    shutil.chown(path, "postgres")
                self.log.touch()
                shutil.chown(self.log, "postgres")
            subprocess.run(
                _as_postgres_user([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                                   "-A", "trust", "--no-sync", "-E", "UTF8"]),
                check=True, stdout=subprocess.DEVNULL,
            )
            if self.address != "127.0.0.1":
                with open(self.data / "pg_hba.conf", "a") as hba:
                    hba.write(f"host all all {self.address}/24 trust\n")
        self._ctl("-o", f"-p {self.port} -k {self.sockets} -c listen_addresses={self._listen} "
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off " + settings, "start")
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname='shop'").fetchone():
                conn.execute("CREATE DATABASE shop")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self._ctl("-m", "fast", "-o", f"-p {self.port} -k {self.sockets} "
                  f"-c listen_addresses={self._listen} -c fsync=off", "restart")

    @property
    def _listen(self) -> str:
        return "127.0.0.1" if self.address == "127.0.0.1" else f"127.0.0.1,{self.address}"

    def connect(self):
        return psycopg.connect(self.url, autocommit=True)


class Redis:
    def __init__(self, root: Path, address: str = "127.0.0.1"):
        self.address = address
        self.port = free_port()
        self.dir = root / "redis"
        self.dir.mkdir()
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", *sorted({"127.0.0.1", self.address}),
             # Clients of the test's hosts come from the private bridge, not loopback.
             "--protected-mode", "no" if self.address != "127.0.0.1" else "yes", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_answers(self.port), 20, message="redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


class Elasticsearch:
    def __init__(self, root: Path, address: str = "127.0.0.1"):
        self.address = address
        self.port = free_port()
        self.data = root / "es-data"
        self.log = root / "es.log"
        self.process = None

    def start(self) -> None:
        binary = VENV_BIN / "noida-db"
        self.process = subprocess.Popen(
            [str(binary if binary.exists() else "noida-db"), "start", "--only", "elasticsearch",
             "--host", self.address, "--elasticsearch-port", str(self.port),
             "--data-dir", str(self.data)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_until(lambda: port_answers(self.port, self.address), 30,
                   message="the ES dev server did not start")

    def stop(self) -> None:
        # SIGINT: it saves its state on the way out.
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(30)


class Gate:
    """A TCP port in front of a server, which a test can close and open again.

    Closed, it refuses new connections and cuts the open ones (a reset), while the
    server behind it keeps running with everything it has acknowledged: the fault is
    the network's, not a restart's. (The Elasticsearch dev server can lose writes it
    has acknowledged when it is stopped under load, which no real cluster does with
    its default request durability; an outage test must not measure that.)
    """

    def __init__(self, target_port: int, target_address: str = "127.0.0.1"):
        self.port = free_port()
        self.target_port = target_port
        self.target_address = target_address
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener: socket.socket | None = None

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        with self.lock:
            cut, self.sockets = self.sockets, set()
        for sock in cut:
            self._reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection((self.target_address, self.target_port))
            except OSError:
                self._reset(client)
                continue
            with self.lock:
                if self.listener is not listener:
                    self._reset(client)
                    self._reset(upstream)
                    return
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with self.lock:
            self.sockets -= {source, sink}
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # shutdown first: it wakes the pipe thread blocked reading this socket (a close
        # alone would not); no linger, so what is left unsent is dropped with a reset.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


@dataclass
class Ledger:
    """What the clients were told: the effects the shop must show, exactly once."""

    orders: dict[str, dict] = field(default_factory=dict)  # order id -> {customer, product, qty}
    paid: set[str] = field(default_factory=set)
    top_ups: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    refused: int = 0
    retries: int = 0
    # Answers of 500 and above the clients retried, by (status, error code): an outage
    # must be answered explicitly (503 and a code), never with a 500.
    server_errors: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    # (started, finished) of every command, on the wall clock: when commands were in flight.
    spans: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def in_flight_at(self, moment: float) -> int:
        """Commands sent before `moment` and answered only after it."""
        with self.lock:
            return sum(1 for s, e in self.spans if s < moment <= e)


class Stack:
    def __init__(self, address: str = "127.0.0.1", **settings_env: str):
        """`address`: where the servers listen besides loopback, for processes on other
        hosts (tests.support.hosts); `settings_env`: environment of every process."""
        self.root = Path(tempfile.mkdtemp(prefix="shop-faults-"))
        self.address = address
        self.pg = Postgres(self.root, address)
        self.redis = Redis(self.root, address)
        self.es = Elasticsearch(self.root, address)
        # Every process reaches Elasticsearch through a gate that a test can close.
        self.es_gate = Gate(self.es.port, address)
        self.web_port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        # How each process was started (its command and environment), to start it again.
        self.started: dict[str, tuple[list[str], dict[str, str]]] = {}
        # Held while a process is started or stopped on purpose (see _supervise).
        self.process_lock = threading.RLock()
        self.stopping = threading.Event()
        self.restarted: list[str] = []  # workers that exited on their own and came back
        self.settings_env = settings_env
        self.token = None
        self.customers: list[int] = []
        self.products: dict[int, int] = {}  # id -> initial stock
        self.initial_balance = 0

    @property
    def env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TEST_RUN_ID",))},
            "DJANGO_SETTINGS_MODULE": "shop.settings",
            "DJANGO_DEBUG": "true",
            "DATABASE_URL": self.pg.url,
            "DATABASE_CONN_MAX_AGE": "60",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis.port}/1",
            "ELASTICSEARCH_URL": f"http://127.0.0.1:{self.es_gate.port}",
            "READMODELS_NAMESPACE": "shop",
            # FAULT_STACK_LOG_LEVEL=INFO logs every projected batch, to trace a failure.
            "LOG_LEVEL": os.environ.get("FAULT_STACK_LOG_LEVEL", "WARNING"),
            **self.settings_env,
        }

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.env,
            check=check, capture_output=True, text=True, timeout=300,
        )

    @property
    def remote_env(self) -> dict[str, str]:
        """The environment of a process on another host: every server at `address`."""
        a = self.address
        return {
            **self.env,
            "DATABASE_URL": f"postgres://postgres@{a}:{self.pg.port}/shop",
            "REDIS_URL": f"redis://{a}:{self.redis.port}/0",
            "CELERY_BROKER_URL": f"redis://{a}:{self.redis.port}/1",
            "ELASTICSEARCH_URL": f"http://{a}:{self.es.port}",
        }

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "ab")
        env = self.env if env is None else env
        with self.process_lock:
            self.started[name] = (command, env)
            self.processes[name] = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_worker(self, name: str = "worker", host=None) -> None:
        """The shipped worker (prefork, its concurrency), as `make run` and compose start
        it; `host` (a tests.support.hosts.Host): inside that host, reaching the servers
        over its link."""
        command = stack_commands(port=self.web_port, schedule=self.root / "beat-schedule",
                                 loglevel=self.env["LOG_LEVEL"], worker_name=f"{name}@%h")
        if host is None:
            self._spawn(name, command["worker"])
        else:
            self._spawn(name, host.command(command["worker"]), self.remote_env)

    def kill(self, name: str, sig=signal.SIGKILL) -> None:
        with self.process_lock:
            process = self.processes.pop(name)
            os.killpg(process.pid, sig)
            process.wait(30)

    def _supervise(self) -> None:
        """Start again a worker that exited on its own, as compose's `restart:
        unless-stopped` does for the shipped worker (a worker the test kills stays down
        until the test starts it). Celery's worker can exit on a broker outage: kombu's
        Redis transport fails restoring unacknowledged messages after the connection is
        gone ("Unrecoverable error: 'NoneType' object has no attribute 'hostname'")."""
        while not self.stopping.wait(0.5):
            with self.process_lock:
                for name, process in list(self.processes.items()):
                    if name.startswith("worker") and process.poll() is not None:
                        self.restarted.append(name)
                        self._spawn(name, *self.started[name])

    def log_of(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def start(self, workers: int = 1) -> Stack:
        self.pg.start()
        self.redis.start()
        self.es.start()
        self.es_gate.open()
        self.manage("migrate", "--noinput")
        self.manage("setup_readmodels")
        self.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "o@x.io")
        self.token = self.manage("create_api_token", "ops").stdout.split()[2]
        self._spawn("web", [str(VENV_BIN / "uvicorn"), "shop.asgi:application", "--port",
                            str(self.web_port), "--log-level", "warning"])
        for n in range(workers):
            self.start_worker(f"worker{n}")
        self._spawn("beat", [str(VENV_BIN / "celery"), "-A", "shop", "beat", "--loglevel=INFO",
                             f"--schedule={self.root / 'beat-schedule'}"])
        wait_until(lambda: port_answers(self.web_port), 60, message="the web server did not start")
        threading.Thread(target=self._supervise, daemon=True).start()
        return self

    def stop(self, keep_logs: bool = False) -> None:
        """Stop everything and remove the stack; `keep_logs` keeps its logs for a look."""
        self.stopping.set()
        for name in list(self.processes):
            try:
                self.kill(name, signal.SIGTERM)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.es_gate.close()
        for server in (self.es, self.redis):
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - cleaning up after a test
                pass
        try:
            self.pg.stop()
        except subprocess.CalledProcessError:
            pass
        if keep_logs:
            kept = Path(tempfile.mkdtemp(prefix="shop-faults-logs-"))
            for log in self.root.glob("*.log"):
                shutil.copy(log, kept)
            sys.stderr.write(f"\nthe fault stack's logs are kept in {kept}\n")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the client side ---------------------------------------------------------

    def call(self, method: str, path: str, body=None, key: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=30)
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data[:1] == b"{" else None)
        finally:
            conn.close()

    def command(self, ledger: Ledger, method: str, path: str, body=None, deadline: float = 120):
        """Send a command until it gets an answer, retrying with the same Idempotency-Key."""
        key = str(uuid.uuid4())
        give_up = time.monotonic() + deadline
        sent = time.time()
        last = None
        while True:
            try:
                status, data = self.call(method, path, body, key)
                if status < 500:
                    with ledger.lock:
                        ledger.spans.append((sent, time.time()))
                    return status, data
                last = (status, data)
                with ledger.lock:
                    code = ((data or {}).get("error") or {}).get("code", "")
                    ledger.server_errors[(status, code)] += 1
            except (OSError, http.client.HTTPException) as exc:
                last = exc
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"{method} {path} got no answer within {deadline} s; last: {last!r}; "
                    f"the web's log ends:\n{self.log_of('web')[-3000:]}"
                )
            with ledger.lock:
                ledger.retries += 1
            time.sleep(0.2)

    def seed(self, customers: int = 6, products: int = 4, balance: int = 10_000_000) -> None:
        ledger = Ledger()
        self.initial_balance = balance
        for n in range(customers):
            _, data = self.command(ledger, "POST", "/api/customers",
                                   {"email": f"c{n}@example.com", "name": f"Customer {n}"})
            self.customers.append(data["id"])
            self.command(ledger, "POST", f"/api/customers/{data['id']}/top-ups",
                         {"amount_cents": balance})
        for n in range(products):
            _, data = self.command(ledger, "POST", "/api/products",
                                   {"sku": f"P-{n}", "name": f"Product {n}", "category": "c",
                                    "price_cents": 100 + n, "stock": 1_000_000})
            self.products[data["id"]] = 1_000_000

    def client_loop(self, ledger: Ledger, stop: threading.Event, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            customer = rng.choice(self.customers)
            product = rng.choice(list(self.products))
            quantity = rng.randint(1, 3)
            status, order = self.command(
                ledger, "POST", "/api/orders",
                {"customer_id": customer, "lines": [{"product_id": product, "quantity": quantity}]},
            )
            if status != 201:
                with ledger.lock:
                    ledger.refused += 1
                continue
            with ledger.lock:
                ledger.orders[order["id"]] = {"customer": customer, "product": product,
                                              "quantity": quantity, "total": order["total_cents"]}
            if rng.random() < 0.6:
                status, _ = self.command(ledger, "POST", f"/api/orders/{order['id']}/pay")
                if status == 200:
                    with ledger.lock:
                        ledger.paid.add(order["id"])
            if rng.random() < 0.2:
                status, _ = self.command(ledger, "POST", f"/api/customers/{customer}/top-ups",
                                         {"amount_cents": 500})
                if status == 200:
                    with ledger.lock:
                        ledger.top_ups[customer] += 500

    def run_clients(self, ledger: Ledger, threads: int = 4):
        stop = threading.Event()
        workers = [threading.Thread(target=self.client_loop, args=(ledger, stop, n), daemon=True)
                   for n in range(threads)]
        for worker in workers:
            worker.start()
        return stop, workers

    # -- the checks --------------------------------------------------------------

    def status(self) -> list[dict]:
        result = self.manage("projections", "status", "--json", check=False)
        return json.loads(result.stdout)

    def wait_until_projected(self, timeout: float = 120) -> None:
        def caught_up():
            try:
                return all(row["rows_behind"] == 0 for row in self.status())
            except (json.JSONDecodeError, KeyError):
                return False

        try:
            wait_until(caught_up, timeout, message="the projectors did not catch up")
        except AssertionError as exc:
            logs = {name: self.log_of(name)[-3000:] for name in self.processes}
            raise AssertionError(f"{exc}\nstatus: {self.status()}\nworkers restarted after "
                                 f"exiting: {self.restarted}\nlogs: {logs}") from None

    def assert_views_equal_write_model(self) -> None:
        result = self.manage("projections", "reconcile", "--all", check=False)
        if result.returncode != 0:
            raise AssertionError(result.stdout + result.stderr + self._outbox_of(result.stdout))

    def _outbox_of(self, report: str) -> str:
        """The outbox rows and checkpoints behind the differing keys the report names."""
        keys = sorted(set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                                     report)))
        with self.pg.connect() as conn:
            rows = conn.execute(
                "SELECT aggregate_id, aggregate_version, event_type, xid::text, position, "
                "created_at FROM orders_outboxmessage WHERE aggregate_id = ANY(%s) "
                "ORDER BY xid, position", [keys]).fetchall()
            checkpoints = conn.execute(
                "SELECT projector, segment, xid, position, last_success_at "
                "FROM readmodels_checkpoint ORDER BY projector").fetchall()
        return (f"\noutbox rows of those keys: {rows}\ncheckpoints: {checkpoints}")

    def assert_ledger(self, ledger: Ledger) -> None:
        """Every acknowledged effect is there exactly once; nothing else is."""
        with self.pg.connect() as conn:
            orders = {
                str(r[0]): r[1:]
                for r in conn.execute("SELECT id, customer_id, status, total_cents FROM orders_order")
            }
            assert set(orders) == set(ledger.orders), "orders lost or created twice"
            charges = conn.execute(
                "SELECT order_id::text, count(*) FROM orders_payment WHERE kind='charge' "
                "GROUP BY order_id").fetchall()
            assert {o for o, n in charges} == ledger.paid
            assert all(n == 1 for _, n in charges)
            for order_id, (_, status, _) in orders.items():
                assert status == ("paid" if order_id in ledger.paid else "pending")
            for customer in self.customers:
                spent = sum(o["total"] for oid, o in ledger.orders.items()
                            if o["customer"] == customer and oid in ledger.paid)
                balance = conn.execute("SELECT balance_cents FROM orders_customer WHERE id=%s",
                                       [customer]).fetchone()[0]
                assert balance == self.initial_balance + ledger.top_ups[customer] - spent
            for product, initial in self.products.items():
                sold = sum(o["quantity"] for o in ledger.orders.values() if o["product"] == product)
                stock = conn.execute("SELECT stock FROM orders_product WHERE id=%s",
                                     [product]).fetchone()[0]
                assert stock == initial - sold
            rows = conn.execute("SELECT count(*) FROM orders_outboxmessage").fetchone()[0]
            assert rows > 0

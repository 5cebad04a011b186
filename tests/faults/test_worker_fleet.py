"""A worker fleet on several hosts: segments spread, a host cut off mid-batch, its return.

Two "hosts" (network namespaces on a private bridge, tests.support.hosts) each run the
shipped worker command; PostgreSQL, Redis and the Elasticsearch dev server listen on the
bridge, web and beat run beside them. Who ran which segment is read from PostgreSQL
itself: a segment's advisory lock, held by a session whose client address is a host's.

One host is cut off while it holds a segment (its link goes down: no FIN, no reset, its
kernel keeps retransmitting into nothing). The other host must take its segments over;
commands keep being answered. Then the link comes back, and whatever the cut-off worker
still had in flight arrives late: it must not move any view or any published progress
back, and must not let go of wake flags that are no longer its own. At the end the views
equal PostgreSQL (reconcile) and every acknowledged command is there exactly once.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
import zlib
from collections import defaultdict
from datetime import datetime

import pytest
import redis

from tests.support.fault_stack import Ledger, Stack
from tests.support.hosts import Hosts, namespaces_available
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

SEGMENTED = {"order_summary": 2, "customer_dashboard": 2, "orders_search": 2}
SEGMENTS = {"products_search": 1, **SEGMENTED}
NAMESPACE = "shop"


def _segment_keys() -> dict[tuple[int, int], tuple[str, int]]:
    """Advisory lock keys (pg_locks' classid, objid) -> (read model, segment), as
    readmodels.pipeline.locks.segment_key makes them."""
    return {
        (zlib.crc32(name.encode()) & 0x7FFFFFFF, segments * 1000 + segment): (name, segment)
        for name, segments in SEGMENTS.items() for segment in range(segments)
    }


class Observer(threading.Thread):
    """Watches the servers from the host side, every few milliseconds, while the scenario runs:

    - which host holds which segment's lock (pg_locks joined with the sessions' client
      addresses), with the time;
    - every segment's published progress and every customer's dashboard version in
      Redis, which must never go back.
    """

    def __init__(self, stack: Stack, addresses: dict[str, str]):
        super().__init__(daemon=True)
        self.stack = stack
        self.hosts_by_address = {address: name for name, address in addresses.items()}
        self.keys = _segment_keys()
        self.holding: list[tuple[float, str, tuple[str, int]]] = []  # (time, host, segment)
        self.held_now: dict[str, set] = {}
        self.sessions: list[tuple[float, dict[str, int]]] = []  # (time, sessions by host)
        self.progress: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.dashboards: dict[str, list[int]] = defaultdict(list)
        self.backwards: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def _locks(self, conn) -> None:
        counts = dict(conn.execute(
            "SELECT host(client_addr), count(*) FROM pg_stat_activity "
            "WHERE client_addr IS NOT NULL GROUP BY 1").fetchall())
        self.sessions.append((time.time(), {h: counts.get(a, 0)
                                            for a, h in self.hosts_by_address.items()}))
        rows = conn.execute(
            "SELECT host(a.client_addr), l.classid::bigint, l.objid::bigint FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND a.client_addr IS NOT NULL").fetchall()
        now = time.time()
        held: dict[str, set] = defaultdict(set)
        for address, classid, objid in rows:
            segment = self.keys.get((classid, objid))
            host = self.hosts_by_address.get(address)
            if segment and host:
                held[host].add(segment)
                self.holding.append((now, host, segment))
        with self.lock:
            self.held_now = dict(held)

    def _redis(self, client) -> None:
        progress_keys = [f"{NAMESPACE}:progress:{name}:{s}of{n}"
                         for name, n in SEGMENTS.items() for s in range(n)]
        generation = client.get(f"{NAMESPACE}:customer_dashboard:generation") or b"1"
        dashboards = [f"{NAMESPACE}:customer_dashboard:g{int(generation)}:{c}"
                      for c in self.stack.customers]
        pipe = client.pipeline(transaction=False)
        for key in progress_keys:
            pipe.get(key)
        for key in dashboards:
            pipe.hget(key, "v")
        values = pipe.execute()
        for key, value in zip(progress_keys, values[:len(progress_keys)], strict=True):
            if value is None:
                if self.progress[key]:
                    self.backwards.append(f"{key} vanished")
                continue
            report = json.loads(value)
            seen = (int(report["xid"]), int(report["position"]))
            if self.progress[key] and seen < self.progress[key][-1]:
                self.backwards.append(f"{key}: {self.progress[key][-1]} -> {seen}")
            if not self.progress[key] or seen != self.progress[key][-1]:
                self.progress[key].append(seen)
        for key, value in zip(dashboards, values[len(progress_keys):], strict=True):
            if value is None and not self.dashboards[key]:
                continue
            version = int(value or 0)
            if self.dashboards[key] and version < self.dashboards[key][-1]:
                self.backwards.append(f"{key}: v{self.dashboards[key][-1]} -> v{version}")
            if not self.dashboards[key] or version != self.dashboards[key][-1]:
                self.dashboards[key].append(version)

    def run(self) -> None:
        try:
            client = redis.Redis(port=self.stack.redis.port, socket_timeout=10)
            with self.stack.pg.connect() as conn:
                while not self.stop.wait(0.02):
                    self._locks(conn)
                    self._redis(client)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def holds(self, host: str) -> set:
        with self.lock:
            return set(self.held_now.get(host, ()))

    def segments_run_by(self, host: str, since: float = 0.0, until: float = float("inf")) -> set:
        return {segment for t, h, segment in list(self.holding) if h == host and since <= t <= until}

    def sessions_gone(self, host: str, since: float) -> float | None:
        """When PostgreSQL had no session of `host` left, first after `since`."""
        return next((t for t, counts in list(self.sessions) if t >= since and not counts[host]),
                    None)

    def first_held(self, host: str, segment, since: float) -> float | None:
        return next((t for t, h, s in list(self.holding)
                     if h == host and s == segment and t >= since), None)


class WakeFlagWatch(threading.Thread):
    """Every command the servers' Redis runs on a wake flag, with who sent it (MONITOR)."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.commands: list[tuple[float, str, list[str]]] = []  # (time, client address, argv)
        self.stop = threading.Event()

    def run(self) -> None:
        # No timeout: beat's sweep touches the flags every second, so lines keep coming.
        client = redis.Redis(port=self.port)
        with client.monitor() as monitor:
            while not self.stop.is_set():
                try:
                    line = monitor.connection.read_response()
                except redis.ConnectionError:
                    return
                self._note(line.decode(errors="replace") if isinstance(line, bytes) else str(line))

    def _note(self, line: str) -> None:
        # 1733389234.123456 [0 10.200.5.2:43210] "DEL" "shop:wake:redis.0"
        if ":wake:" not in line or "[" not in line:
            return
        stamp, rest = line.split(" ", 1)
        source, _, command = rest[1:].partition("] ")
        address = source.split(" ", 1)[-1].rsplit(":", 1)[0]
        self.commands.append((float(stamp), address, shlex.split(command)))

    def unowned_releases(self, address: str, since: float) -> list[str]:
        """Commands from `address` after `since` that end or overwrite a wake flag whatever
        it holds (a script that checks the owner first is not one of them; taking a free
        flag, SET NX, is not either)."""
        found = []
        for stamp, source, argv in list(self.commands):
            if source != address or stamp < since or not argv:
                continue
            name = argv[0].upper()
            options = {a.upper() for a in argv[3:]}
            if name in ("DEL", "UNLINK", "GETDEL", "EXPIRE", "PEXPIRE") or (
                name == "SET" and "NX" not in options
            ):
                found.append(" ".join(argv))
        return found


def _failed_calls(log: str, since: float, until: float) -> list[float]:
    """Seconds after `since` at which the worker logged a failed PostgreSQL or store call."""
    found = []
    for line in log.splitlines():
        if not line.startswith("{") or ("cannot reach PostgreSQL" not in line
                                        and "will retry" not in line):
            continue
        try:
            stamp = datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
        except (ValueError, KeyError):
            continue
        if since <= stamp <= until:
            found.append(round(stamp - since, 1))
    return found


def _orders(ledger: Ledger) -> int:
    with ledger.lock:
        return len(ledger.orders)


@pytest.fixture
def hosts():
    unavailable = namespaces_available()
    if unavailable:
        pytest.skip(unavailable)
    with Hosts(2) as made:
        yield made


@pytest.fixture
def fleet(request, hosts):
    env = {f"SEGMENTS_{name.upper()}": str(n) for name, n in SEGMENTS.items()}
    shop = Stack(address=hosts.server_address, **env)
    try:
        shop.start(workers=0)
        shop.seed(customers=8, products=3)
        for n, host in enumerate(hosts.hosts):
            shop.start_worker(f"worker-{'ab'[n]}", host=host)
        yield shop
    finally:
        call = getattr(request.node, "outcome_call", None)
        shop.stop(keep_logs=call is None or call.failed)


def test_a_host_cut_off_mid_batch_is_taken_over_and_cannot_move_anything_back(fleet, hosts):
    stack = fleet
    a, b = hosts.hosts
    names = {"a": a.address, "b": b.address}
    every_segment = set(_segment_keys().values())
    observer = Observer(stack, names)
    flags = WakeFlagWatch(stack.redis.port)
    observer.start()
    flags.start()
    ledger = Ledger()
    stop, clients = stack.run_clients(ledger, threads=2)
    timeline: dict[str, float] = {}
    try:
        # 1. The segments spread across the hosts: both run some, every one runs.
        wait_until(lambda: _orders(ledger) >= 20, 60, message="no orders")
        wait_until(lambda: observer.segments_run_by("a") and observer.segments_run_by("b")
                   and observer.segments_run_by("a") | observer.segments_run_by("b")
                   == every_segment, 120, interval=0.1,
                   message=f"segments did not spread: {observer.held_now}")
        spread = {h: sorted(observer.segments_run_by(h)) for h in names}

        # 2. Cut host a while it holds a segment's lock: in the middle of a run.
        cut_off = wait_until(lambda: observer.holds("a"), 60, interval=0.005,
                             message="host a never held a segment")
        hosts.cut(a)
        timeline["cut"] = time.time()
        orders_at_cut = _orders(ledger)
        # Host b takes every segment host a held over (its lock is free once PostgreSQL
        # has dropped host a's session).
        wait_until(lambda: all(observer.first_held("b", s, timeline["cut"]) for s in cut_off),
                   120, interval=0.05, message=f"host b did not take {cut_off} over")
        takeover = {s: round(observer.first_held("b", s, timeline["cut"]) - timeline["cut"], 1)
                    for s in cut_off}
        dropped = wait_until(lambda: observer.sessions_gone("a", timeline["cut"]), 120,
                             message="PostgreSQL kept host a's sessions")
        wait_until(lambda: _orders(ledger) >= orders_at_cut + 40, 120,
                   message="commands stopped while host a was cut off")

        # 3. Heal: what host a had in flight arrives now.
        hosts.heal(a)
        timeline["heal"] = time.time()
        wait_until(lambda: observer.segments_run_by("a", since=timeline["heal"]), 120,
                   interval=0.05, message="host a never ran a segment again after the heal")
        orders_at_heal = _orders(ledger)
        wait_until(lambda: _orders(ledger) >= orders_at_heal + 40, 120,
                   message="no orders after the heal")
    finally:
        hosts.heal(a)  # also when the scenario failed: the worker must be able to stop
        stop.set()
        for client in clients:
            client.join(180)
    stack.wait_until_projected()
    observer.stop.set()
    observer.join(30)
    flags.stop.set()
    flags.join(30)

    report = (f"\nsegments run before the cut: {spread}\nhost a held {sorted(cut_off)} at the "
              f"cut; PostgreSQL dropped its sessions {dropped - timeline['cut']:.1f} s after the cut; "
              f"host b took them over after {takeover} s\norders: {len(ledger.orders)}, "
              f"restarted workers: {stack.restarted}\nhost a's worker logged failed calls "
              f"{_failed_calls(stack.log_of('worker-a'), timeline['cut'], time.time())} s "
              f"after the cut (healed after {timeline['heal'] - timeline['cut']:.1f} s); its tasks "
              f"that found their group given to another: "
              f"{stack.log_of('worker-a').count('was given to another task')}")
    print(report)
    assert observer.error is None, observer.error
    assert not [k for k in ledger.server_errors if k[0] == 500], dict(ledger.server_errors)
    stack.assert_views_equal_write_model()
    stack.assert_ledger(ledger)
    assert all(row["dead_letters"] == 0 for row in stack.status()), stack.status()
    # Nothing went back, during the cut or after the heal.
    assert not observer.backwards, observer.backwards + [report]
    assert all(len(observer.progress[f"{NAMESPACE}:progress:{name}:{s}of{n}"]) > 1
               for name, n in SEGMENTED.items() for s in range(n)), observer.progress
    # The returning worker let go of no flag it did not hold any more.
    released = flags.unowned_releases(a.address, timeline["heal"])
    assert not released, f"host a ended wake flags after the heal: {released}{report}"

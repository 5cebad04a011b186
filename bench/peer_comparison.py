"""The peer side by side: django-elasticsearch-dsl with its Celery signal processor.

    .venv/bin/python bench/peer_comparison.py [--rates 50,100] [--seconds 30] [--quick]
                                              [--fault-seconds 20] [--volatile-broker]
                                              [--peers shipped,on_commit]

Both systems index the same orders in the same run: the web app and the worker run
with bench/peer/settings.py (the shop plus the peer's app), so every command commits
outbox rows for our projectors and fires the model signals the peer listens to. The
Celery broker of both is a redis-server of this benchmark's own, so "broker down"
stops it for real without touching the views' Redis. It keeps an append-only file as
docker-compose's Redis does (queued messages survive the restart); `--volatile-broker`
runs it with `--appendonly no`, so a restart also loses what was queued.

What the peer's CelerySignalProcessor does (django_elasticsearch_dsl/signals.py, 8.x):
on every post_save of any model it calls registry_update_task.delay(pk, ...) and
registry_update_related_task.delay(pk, ...) at once, inside the saving transaction
(no transaction.on_commit); the task re-reads the row by pk in the worker and indexes
it (refresh=true by default). QuerySet.update() and bulk_create() send no signal.
Many projects send those tasks with `transaction.on_commit` instead: the peer runs in
both configurations (`--peers`; bench/peer/processors.py), each in a run of its own
next to ours, every scenario once per configuration (the broker outage with the
peer's signals off once).

- lag: the open-loop HTTP load of projection_lag.py; visibility is a search that
  finds the order, in our orders_search and in the peer's index; after the load both
  indices are checked against PostgreSQL (missing / stale / incomplete);
- correctness, each checked against PostgreSQL after things settle (a condition with
  a deadline): a transaction that rolls back after the save, place-and-pay with no
  fault (the baseline), a worker killed with SIGKILL while tasks are in flight, and the
  broker stopped for 10 s (once with the peer's signals off, once on), and the
  process placing the orders killed with SIGKILL over and over (a web process that
  dies: whatever it owed the broker after a commit is gone). A worker or beat that
  exits on its own is started again, as docker-compose's `restart: unless-stopped`
  does, and counted.
Elasticsearch figures come from the ES-compatible dev server (noida-db), which serves
one request at a time and scans linearly: indices here stay at a few thousand orders.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchdb  # noqa: E402
import projection_lag  # noqa: E402
import stackproc  # noqa: E402

DATABASE, NAMESPACE = "shop_bench_peer", "benchpeer"
RESULTS = HERE / "results"
SETTLE_SECONDS = 60
ES_NOTE = ("Elasticsearch figures: the ES-compatible dev server (noida-db), one request at a "
           "time, linear scans; not real Elasticsearch.")
PROCESSOR_NOTE = ("CelerySignalProcessor: .delay() of two tasks per post_save of any model, "
                  "inside the transaction (no on_commit); the task re-reads the row by pk.")
PEER_NOTES = {
    "shipped": PROCESSOR_NOTE,
    "on_commit": ("the same two tasks per post_save, sent by a transaction.on_commit callback "
                  "once the save's transaction has committed (bench/peer/processors.py); "
                  "nothing records that they are owed."),
}
PEER_LABELS = {"shipped": "peer as shipped", "on_commit": "peer sending on commit"}
WRITER_KILLS = 20


class Broker:
    """A redis-server of our own as the Celery broker, to stop and start for real."""

    def __init__(self, persistent: bool = True):
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="bench-broker-")
        self.port = stackproc.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persistent = persistent
        self.process: subprocess.Popen | None = None
        self.started = 0.0  # epoch of the newest start

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stackproc.wait_port(self.port)
        self.started = time.time()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def busy(self, since: float = 0.0) -> int:
        """Messages queued, plus those delivered since `since` (epoch) and not acked yet
        (acks_late: a task leaves kombu's unacked set when it has finished)."""
        client = self.client()
        return client.llen("celery") + client.zcount("unacked_index", since, "+inf")

    def in_flight(self) -> int:
        return self.client().hlen("unacked")

    def stuck(self, after: float, before: float) -> dict:
        """Deliveries made between `after` and `before` (epoch) and still unacked: tasks
        of a worker that died or of a connection the broker's restart cut, which the Redis
        transport gives back only after its visibility timeout (1 h by default)."""
        client = self.client()
        tags = client.zrangebyscore("unacked_index", after, before)
        counts = {"peer": 0, "ours": 0}
        for raw in client.hmget("unacked", tags) if tags else []:
            if raw is None:
                continue
            task = json.loads(raw)[0].get("headers", {}).get("task", "")
            counts["peer" if task.startswith("django_elasticsearch_dsl") else "ours"] += 1
        return counts


class Supervisor:
    """Restarts a worker or beat that exits on its own, as docker-compose's
    `restart: unless-stopped` does for both, and counts the restarts. (A Celery 5.7 /
    kombu 5.7 worker can exit with "Unrecoverable error" when the Redis broker goes away
    while it holds unacknowledged messages.)"""

    def __init__(self, processes: stackproc.Processes):
        self.processes = processes
        self.lock = threading.Lock()
        self.restarts = 0
        self.worker_started = 0.0  # epoch of the newest worker's start
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def start_worker(self) -> None:
        with self.lock:
            self.worker_started = time.time()
            self.processes.worker()

    def kill_worker(self) -> None:
        """SIGKILL the worker (the fault, not a crash: not restarted here)."""
        with self.lock:
            worker = next(p for p in self.processes.running if "worker" in p.args)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            self.processes.running.remove(worker)

    def stop_all(self) -> None:
        with self.lock:
            self.processes.stop()

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.stop_all()

    def _watch(self) -> None:
        while not self.done.wait(0.2):
            with self.lock:
                for process in [p for p in self.processes.running if p.poll() is not None]:
                    self.processes.running.remove(process)
                    if "worker" in process.args:
                        self.worker_started = time.time()
                    self.processes.start(process.args)
                    self.restarts += 1


def peer_index() -> str:
    from peer.documents import PeerOrderDocument

    return PeerOrderDocument._index._name


def reset_peer_index() -> None:
    from django_elasticsearch_dsl.registries import registry
    from elasticsearch import NotFoundError

    for index in registry.get_indices():
        try:
            index.delete()
        except NotFoundError:
            pass
        index.create()


def use_peer(config: str, processes: stackproc.Processes) -> None:
    """Index with the peer's `config` processor, in this process and in the processes
    started from now on (bench/peer/settings.py reads PEER_PROCESSOR)."""
    from django.apps import apps
    from django.conf import settings
    from django.utils.module_loading import import_string
    from elasticsearch_dsl.connections import connections

    os.environ["PEER_PROCESSOR"] = processes.env["PEER_PROCESSOR"] = config
    app = apps.get_app_config("django_elasticsearch_dsl")
    app.signal_processor.teardown()
    app.signal_processor = import_string(settings.PEER_PROCESSORS[config])(connections)


def peer_signals(on: bool) -> None:
    """Connect or disconnect the peer's signal processor in this process."""
    from django.apps import apps

    processor = apps.get_app_config("django_elasticsearch_dsl").signal_processor
    processor.teardown()
    if on:
        processor.setup()


def peer_watcher(watch, stop: threading.Event) -> None:
    from readmodels.stores import es

    index = peer_index()
    while not stop.is_set():
        waiting = [o for o, _ in watch.waiting("peer")][:500]
        if not waiting:
            stop.wait(0.005)
            continue
        found = es.client().search(index=index, query={"terms": {"order_id": waiting}},
                                   size=len(waiting), source=["order_id"])
        now = time.monotonic()
        for hit in found["hits"]["hits"]:
            watch.seen(hit["_source"]["order_id"], "peer", now)
        stop.wait(0.005)


def _state(status, version, total, items) -> dict:
    return {"status": status, "version": version, "total_cents": total,
            "items": sorted(items)}


def peer_documents() -> dict[str, dict]:
    from readmodels.stores import es

    client, index = es.client(), peer_index()
    client.indices.refresh(index=index)
    found = client.search(index=index, query={"match_all": {}}, size=10_000)
    out = {}
    for hit in found["hits"]["hits"]:
        s = hit["_source"]
        out[s["order_id"]] = _state(s.get("status"), s.get("version"), s.get("total_cents"),
                                    [line.get("product_name") for line in s.get("lines") or []])
    return out


def write_model() -> dict[str, dict]:
    from orders.models import Order, OrderLine

    items: dict[str, list] = {}
    for order_id, name in OrderLine.objects.values_list("order_id", "product_name"):
        items.setdefault(str(order_id), []).append(name)
    return {str(pk): _state(status, version, total, items.get(str(pk), []))
            for pk, status, version, total in
            Order.objects.values_list("pk", "status", "version", "total_cents")}


def peer_differences() -> dict:
    """The peer's index against PostgreSQL. Stale: an older status/version (a later save's
    task re-read the row before that save committed). Incomplete: right version, wrong
    total or item names."""
    expected, stored = write_model(), peer_documents()
    missing = stale = incomplete = paid_shown_pending = 0
    for key, want in expected.items():
        have = stored.get(key)
        if have is None:
            missing += 1
        elif (have["status"], have["version"]) != (want["status"], want["version"]):
            stale += 1
            paid_shown_pending += want["status"] == "paid" and have["status"] == "pending"
        elif have != want:
            incomplete += 1
    return {"orders": len(expected), "missing": missing, "stale": stale,
            "incomplete": incomplete, "phantom": sum(1 for k in stored if k not in expected),
            "paid": sum(1 for w in expected.values() if w["status"] == "paid"),
            "paid_shown_pending": paid_shown_pending}


def our_differences() -> dict:
    from orders.models import Order
    from readmodels.operations import reconcile

    found = reconcile.reconcile("orders_search")
    counts = found.counts
    return {"orders": Order.objects.count(), "missing": counts["missing"],
            "stale": counts["behind"] + counts["ahead"], "phantom": counts["stray"]}


def orphaned_before(broker: Broker, supervisor: Supervisor) -> float:
    """Unacked deliveries older than this belong to a worker or a connection that is gone."""
    return max(broker.started, supervisor.worker_started)


def settle(broker: Broker, supervisor: Supervisor, since: float = 0.0) -> dict:
    """Wait until the broker is idle (nothing queued, and no task delivered since `since`
    to the running worker on its current connection still unfinished) and our
    orders_search equals the write model; at most SETTLE_SECONDS. Deliveries to a worker
    that died, or made before the broker restarted, are left out: they wait for the
    visibility timeout (reported as tasks_held_by_broker)."""
    started = time.monotonic()
    deadline = started + SETTLE_SECONDS
    while True:
        idle = broker.busy(max(since, orphaned_before(broker, supervisor))) == 0
        if idle and sum(our_differences()[k] for k in ("missing", "stale", "phantom")) == 0:
            return {"settled": True, "settle_seconds": round(time.monotonic() - started, 1)}
        if time.monotonic() > deadline:
            return {"settled": False, "settle_seconds": round(time.monotonic() - started, 1)}
        time.sleep(0.2)  # polling the condition, with the deadline above


def run_writes(seconds: float, customers: list[int], products: list[int], *,
               during=None) -> dict:
    """Place and pay orders from 4 threads for `seconds`; `during` runs meanwhile.

    Counts what a client sees: commands that raised, and of those, how many had
    committed anyway (an order that exists, a payment that went through)."""
    from django.db import connection

    from orders import commands
    from orders.models import Order

    stop = threading.Event()
    counts = {"commands": 0, "failed": 0, "max_command_ms": 0.0}
    placed_ok, failed_pays = [0], []
    lock = threading.Lock()
    orders_before = Order.objects.count()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                customer = rng.choice(customers)
                for attempt in ("place", "pay"):
                    began = time.monotonic()
                    try:
                        if attempt == "place":
                            order = commands.place_order(
                                customer_id=customer,
                                lines=[commands.LineRequest(rng.choice(products), 1)]).value
                        else:
                            commands.pay_order(order_id=order.pk)
                        ok = True
                    except Exception:  # noqa: BLE001 - counted: what a client would see
                        ok = False
                    took = (time.monotonic() - began) * 1000
                    with lock:
                        counts["commands"] += 1
                        counts["failed"] += 0 if ok else 1
                        counts["max_command_ms"] = round(max(counts["max_command_ms"], took), 1)
                        if attempt == "place" and ok:
                            placed_ok[0] += 1
                        if attempt == "pay" and not ok:
                            failed_pays.append(order.pk)
                    if not ok:
                        break
                    time.sleep(0.02)  # pacing: ~4 x 25 commands/s, the load's shape
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    started = time.monotonic()
    try:
        if during:
            during()
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))  # the load's duration
    finally:
        stop.set()
        for t in threads:
            t.join()
    placed_anyway = Order.objects.count() - orders_before - placed_ok[0]
    paid_anyway = Order.objects.filter(pk__in=failed_pays).exclude(status="pending").count()
    counts["failed_but_committed"] = placed_anyway + paid_anyway
    return counts


def scenario_rollback(broker: Broker, supervisor: Supervisor) -> dict:
    """Orders saved inside transactions that then roll back; a committed sentinel after
    them. Done when our view shows the sentinel and the broker is idle (every task the
    rolled-back saves queued has run: acks_late), or at the deadline."""
    from django.db import transaction

    from orders import commands
    from orders.models import Customer, Product
    from readmodels.stores import es

    customer = Customer.objects.order_by("pk").first()
    product = Product.objects.order_by("pk").first()
    ids = []

    class Abort(Exception):
        pass

    for _ in range(20):
        try:
            with transaction.atomic():
                order = commands.place_order(customer_id=customer.pk,
                                             lines=[commands.LineRequest(product.pk, 1)]).value
                ids.append(str(order.pk))
                # The rest of the request's work, after the save: the peer's task is
                # already queued and a worker is free to run it meanwhile.
                time.sleep(0.2)
                raise Abort
        except Abort:
            pass
    sentinel = str(commands.place_order(customer_id=customer.pk,
                                        lines=[commands.LineRequest(product.pk, 1)]).value.pk)
    client, index = es.client(), peer_index()
    everything = [*ids, sentinel]
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        client.indices.refresh(index=index)
        peer = {h["_source"]["order_id"] for h in client.search(
            index=index, query={"terms": {"order_id": everything}}, size=len(everything),
            source=["order_id"])["hits"]["hits"]}
        ours = {h["_source"]["order_id"] for h in es.search(
            "orders_search", query={"terms": {"order_id": everything}}, size=len(everything),
            _source=["order_id"])["hits"]["hits"]}
        # The sentinel is not awaited in the peer's index: its own task can lose the race
        # with the commit (see the lag table's never-seen).
        done = sentinel in ours and broker.busy(orphaned_before(broker, supervisor)) == 0
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling the condition, with the deadline above
    return {"rolled_back_orders": len(ids), "ours_phantom": len(ours - {sentinel}),
            "peer_phantom": len(peer - {sentinel}), "sentinel_seen_ours": int(sentinel in ours),
            "sentinel_seen_peer": int(sentinel in peer)}


def write_until_killed() -> int:
    """The writer the kill scenario kills: place orders until SIGKILL, as a web process
    serving them would. Runs in a child with the parent's environment (no migrate)."""
    import django

    django.setup()
    from orders import commands
    from orders.models import Customer, Product

    customers = list(Customer.objects.values_list("pk", flat=True)[:200])
    products = list(Product.objects.values_list("pk", flat=True)[:50])
    rng = random.Random()
    print("ready", flush=True)
    while True:
        commands.place_order(customer_id=rng.choice(customers),
                             lines=[commands.LineRequest(rng.choice(products), 1)])


def scenario_writer_killed(kills: int) -> dict:
    """A process placing orders is killed with SIGKILL `kills` times, each time after a
    random 0.2-0.7 s of placing: a crash lands wherever the process is, sometimes
    between an order's commit and what it sends after the commit."""
    from orders.models import Order

    before = Order.objects.count()
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, __file__, "--writer"], cwd=HERE.parent,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("the writer did not start")
        time.sleep(random.uniform(0.2, 0.7))  # the crash's random instant
        child.send_signal(signal.SIGKILL)
        child.wait()
    return {"kills": kills, "orders_placed": Order.objects.count() - before}


def main() -> int:
    if sys.argv[1:] == ["--writer"]:
        return write_until_killed()
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="50,100")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--fault-seconds", type=float, default=20)
    parser.add_argument("--volatile-broker", action="store_true",
                        help="run the broker with --appendonly no (a restart loses its queue)")
    parser.add_argument("--peers", default=",".join(PEER_NOTES),
                        help=f"the peer's configurations, comma-separated, of {', '.join(PEER_NOTES)}")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.seconds, args.fault_seconds = "20", 5, 14
    broker = Broker(persistent=not args.volatile_broker)
    broker.start()
    try:
        return run(args, broker)
    finally:
        broker.stop()
        shutil.rmtree(broker.dir, ignore_errors=True)


def run(args, broker: Broker) -> int:
    benchdb.setup(DATABASE, NAMESPACE, DJANGO_SETTINGS_MODULE="peer.settings",
                  CELERY_BROKER_URL=broker.url,
                  PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))

    peers = args.peers.split(",")
    report = {"machine": benchdb.machine(), "notes": {
        "elasticsearch": ES_NOTE, "peer": PROCESSOR_NOTE,
        "peers": {peer: PEER_NOTES[peer] for peer in peers},
        "broker": "redis-server " + ("--appendonly yes (as docker-compose)" if broker.persistent
                                     else "--appendonly no (a restart loses its queue)")},
        "peers": {}, "command": " ".join(["bench/peer_comparison.py", *sys.argv[1:]]),
        "load_average": {"start": benchdb.load_average()}}

    def fresh_shop(customers: int):
        ids = benchdb.fresh_shop(customers)
        reset_peer_index()  # after fresh_shop: it drops the namespace's indices
        return ids

    def show(label: str, result: dict) -> None:
        print(f"  {label}: {json.dumps(result)}", flush=True)

    supervisor = Supervisor(stackproc.Processes())

    def outcome(since: float, restarts_before: int) -> dict:
        """After a scenario's load: settle, then both systems against PostgreSQL."""
        settled = settle(broker, supervisor, since)
        return {**settled, "worker_restarts": supervisor.restarts - restarts_before,
                "tasks_held_by_broker": broker.stuck(since, orphaned_before(broker, supervisor)),
                "ours": our_differences(), "peer": peer_differences()}

    try:
        for peer in peers:
            with supervisor.lock:
                use_peer(peer, supervisor.processes)
            figures = report["peers"][peer] = {"lag": {}, "scenarios": {}}
            for rate in [int(r) for r in args.rates.split(",")]:
                customers, products = fresh_shop(int(rate * args.seconds))
                token = stackproc.staff_token()
                since, restarts = time.time(), supervisor.restarts
                supervisor.start_worker()
                with supervisor.lock:
                    supervisor.processes.beat(f"/tmp/bench-peer-beat-{rate}")
                    port = supervisor.processes.web()
                print(f"lag at {rate}/s for {args.seconds:.0f} s (ours and the {peer} peer) ...",
                      flush=True)
                result = projection_lag.run_rate(
                    rate, args.seconds, port, token, customers, products,
                    views=("orders_search", "peer"),
                    watchers=(projection_lag.es_watcher, peer_watcher))
                result["after"] = outcome(since, restarts)
                supervisor.stop_all()
                figures["lag"][str(rate)] = result
                for view, label in (("orders_search", "ours"), ("peer", "peer")):
                    r = result[view]
                    print(f"  {label:<5} p50 {r['p50_ms']:>7} ms  p95 {r['p95_ms']:>7}  p99 "
                          f"{r['p99_ms']:>7}  max {r['max_ms']}  never seen {r['never_seen']}",
                          flush=True)
                show("after the load", result["after"])

            scenarios = figures["scenarios"]
            customers, products = fresh_shop(200)
            supervisor.start_worker()
            with supervisor.lock:
                supervisor.processes.beat(f"/tmp/bench-peer-beat-faults-{peer}")
            print(f"rollback after the save ({peer}) ...", flush=True)
            scenarios["rollback_after_save"] = scenario_rollback(broker, supervisor)
            show("rollback", scenarios["rollback_after_save"])

            print(f"place and pay, no fault (baseline, {peer}) ...", flush=True)
            fresh_shop(200)
            since, restarts = time.time(), supervisor.restarts
            counts = run_writes(args.fault_seconds, customers, products)
            scenarios["no_fault"] = {**counts, **outcome(since, restarts)}
            show("no fault", scenarios["no_fault"])

            print(f"worker killed with SIGKILL mid-task ({peer}) ...", flush=True)
            fresh_shop(200)
            kill: dict = {}

            def kill_and_restart(kill=kill):
                time.sleep(args.fault_seconds / 3)  # let the load run first
                deadline = time.monotonic() + 10
                while broker.in_flight() == 0 and time.monotonic() < deadline:
                    time.sleep(0.005)  # until a task is in flight, with the deadline above
                kill["in_flight_at_kill"] = broker.in_flight()
                supervisor.kill_worker()
                time.sleep(1)  # the worker stays dead for a second
                supervisor.start_worker()

            since, restarts = time.time(), supervisor.restarts
            counts = run_writes(args.fault_seconds, customers, products,
                                during=kill_and_restart)
            scenarios["worker_killed"] = {**counts,
                                          "in_flight_at_kill": kill["in_flight_at_kill"],
                                          **outcome(since, restarts)}
            show("worker killed", scenarios["worker_killed"])

            print(f"the process placing orders killed {WRITER_KILLS} times ({peer}) ...",
                  flush=True)
            fresh_shop(200)
            since, restarts = time.time(), supervisor.restarts
            scenarios["writer_killed"] = {**scenario_writer_killed(WRITER_KILLS),
                                          **outcome(since, restarts)}
            show("writer killed", scenarios["writer_killed"])

            for peer_on in (False, True) if peer == peers[0] else (True,):
                label = "broker_down_peer_on" if peer_on else "broker_down_ours_alone"
                print(f"broker stopped for 10 s ({label}, {peer}) ...", flush=True)
                fresh_shop(200)
                peer_signals(peer_on)

                def outage():
                    time.sleep(2)
                    broker.stop()
                    time.sleep(10)  # the outage itself
                    broker.start()

                since, restarts = time.time(), supervisor.restarts
                counts = run_writes(max(args.fault_seconds, 16), customers, products,
                                    during=outage)
                # Workers and beat reconnect on their own (or are restarted, as
                # docker-compose would); the settle deadline covers it.
                scenarios[label] = {**counts, **outcome(since, restarts)}
                show(label, scenarios[label])
            peer_signals(True)
            supervisor.stop_all()
    finally:
        supervisor.close()
    report["load_average"]["end"] = benchdb.load_average()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peer_comparison.json").write_text(json.dumps(report, indent=2))
    print(render(report))
    return 0


def _diff(d: dict, peer: bool) -> str:
    text = f"{d['missing']} / {d['stale']} / {d['phantom']}"
    if peer:
        text = f"{d['missing']} / {d['stale']} / {d.get('incomplete', 0)} / {d['phantom']}"
    return f"{text} of {d['orders']}"


def _by_peer(report: dict) -> dict:
    """The report's figures per peer configuration (an older report ran the shipped one)."""
    if "peers" in report:
        return report["peers"]
    return {"shipped": {"lag": report.get("lag", {}), "scenarios": report.get("scenarios", {})}}


def render(report: dict) -> str:
    notes = report.get("notes", {})
    peers = _by_peer(report)
    rows = []
    for peer, figures in peers.items():
        name = PEER_LABELS.get(peer, peer)
        for rate, r in figures["lag"].items():
            after = r.get("after", {})
            for view, label, key in (("orders_search", f"ours: orders_search (run with the "
                                      f"{name})", "ours"),
                                     ("peer", f"{name}: django-elasticsearch-dsl", "peer")):
                f = r[view]
                final = _diff(after[key], key == "peer") if key in after else "—"
                rows.append(f"| {rate}/s ({r['achieved_rate']}/s achieved) | {label} | "
                            f"{f['p50_ms']} | {f['p95_ms']} | {f['p99_ms']} | {f['max_ms']} | "
                            f"{f['never_seen']} | {final} |")
    how = notes.get("peers") or {"shipped": notes.get("peer", PROCESSOR_NOTE)}
    out = [f"Commit-to-searchable lag, both systems indexing the same orders (POST /api/orders "
           f"over HTTP, open loop) in the same run, on the same worker pool and broker; one "
           f"run per configuration of the peer, each next to ours. "
           f"{notes.get('elasticsearch', ES_NOTE)}", "",
           "| offered rate | system | p50 ms | p95 ms | p99 ms | max ms | never seen | "
           "after the drain: missing / stale / (incomplete /) phantom |",
           "|---|---|---|---|---|---|---|---|", *rows, "",
           *([benchdb.shared_machine_note(report) + "Command: `.venv/bin/python -m "
              f"shop.devstack exec -- .venv/bin/python {report['command']}`.", ""]
             if report.get("command") else []),
           "How the peer indexes: " + " ".join(f"{PEER_LABELS.get(p, p)}: {text}"
                                               for p, text in how.items()),
           "", "As shipped, a worker that takes the task before the command commits finds no "
           "row (Order.DoesNotExist) and the order stays unindexed until a later save of it; "
           "one that takes a later save's task early re-reads the previous state, and the "
           "document stays stale. Sent on commit, the task always finds the committed row. "
           "Both systems share the dev server and the worker pool here, and the peer sends one "
           "index request with refresh=true per save (the library's default), so at the "
           "higher rate both columns mostly measure that server's queue, not real "
           "Elasticsearch. Percentiles are over the orders each system did show; the peer's "
           "never-seen orders are not in them.", "",
           "Correctness after the fault, once the broker is idle and our view matches "
           "PostgreSQL (or a 60 s deadline): documents missing / stale / phantom against "
           "PostgreSQL; for the peer also incomplete (right version, wrong total or item "
           f"names). Broker: {notes.get('broker', 'redis-server, own')}.", "",
           "| scenario | peer | commands (failed; of those committed) | ours | peer | peer: "
           "paid orders shown pending | worker restarts (tasks held: ours / peer) |",
           "|---|---|---|---|---|---|---|"]
    for peer, figures in peers.items():
        name = PEER_LABELS.get(peer, peer)
        scenarios = figures["scenarios"]
        if "rollback_after_save" in scenarios:
            s = scenarios["rollback_after_save"]
            out.append(f"| rollback after the save ({s['rolled_back_orders']} orders) | {name} "
                       f"| — | {s['ours_phantom']} phantom | {s['peer_phantom']} phantom | — | "
                       "— |")
        for key, title in (("no_fault", "place and pay, no fault (baseline)"),
                           ("worker_killed", "worker killed (SIGKILL) mid-task"),
                           ("writer_killed", "process placing orders killed (SIGKILL)"),
                           ("broker_down_ours_alone", "broker down 10 s, peer's signals off"),
                           ("broker_down_peer_on", "broker down 10 s, peer's signals on")):
            if key not in scenarios:
                continue
            s = scenarios[key]
            off = key == "broker_down_ours_alone"
            peer_cell = "— (not indexing)" if off else _diff(s["peer"], True)
            pending = "—" if off else f"{s['peer'].get('paid_shown_pending', '?')} of " \
                                      f"{s['peer'].get('paid', '?')}"
            settled = "" if s.get("settled", True) else " (not settled in 60 s)"
            held = s.get("tasks_held_by_broker", {})
            commands = (f"{s['commands']} ({s['failed']}; {s.get('failed_but_committed', '?')})"
                        if "commands" in s else
                        f"{s['orders_placed']} orders, {s['kills']} kills")
            out.append(f"| {title}{settled} | {'—' if off else name} | {commands} | "
                       f"{_diff(s['ours'], False)} | {peer_cell} | {pending} | "
                       f"{s.get('worker_restarts', '?')} "
                       f"({held.get('ours', '?')} / {held.get('peer', '?')}) |")
    out += ["", "Worker restarts: the worker exited on its own and the benchmark started it "
            "again, as docker-compose's `restart: unless-stopped` does (the SIGKILL scenario's "
            "own restart is not counted). Tasks held: deliveries to a worker that died or "
            "over a connection the broker's restart cut, still unacknowledged after the "
            "settle; the Redis transport gives them back only after its visibility timeout "
            "(1 h), so until then they are lost. Our beat sweep re-runs every projector each "
            "second, so a lost task of ours costs latency only. Process placing orders "
            "killed: a process placing orders in a loop (the commands a web process runs) "
            "is killed with SIGKILL after a random 0.2-0.7 s, again and again; an order whose "
            "commit made it to PostgreSQL and whose task had not been sent yet is never "
            "indexed by a peer that sends on commit (missing), while our outbox row "
            "committed with it. The peer as shipped sent its task before the commit, so a "
            "crash costs it nothing here; what it misses in that row is its race with the "
            "commit (the queue is short between kills: the worker re-read the row before "
            "the command committed), as in the lag table's never-seen."]
    for peer, figures in peers.items():
        name = PEER_LABELS.get(peer, peer)
        killed = figures["scenarios"].get("worker_killed")
        if killed and "in_flight_at_kill" in killed:
            out += ["", f"Worker killed ({name}): {killed['in_flight_at_kill']} deliveries "
                    "were in flight at the kill."]
        peer_on = figures["scenarios"].get("broker_down_peer_on")
        if not peer_on:
            continue
        failed = (f"{peer_on['failed']} failed, {peer_on.get('failed_but_committed', '?')} "
                  f"committed anyway; slowest command {peer_on.get('max_command_ms', '?')} ms")
        if peer == "on_commit":
            out += ["", f"Broker down with the {name}: its .delay() runs after the commit, so "
                    "a publish that fails raises out of a command that has committed (the "
                    f"client sees an error for an order that exists) and the task is never "
                    f"sent: nothing records it ({failed}); our wake-up is after commit and "
                    "best effort, and our outbox row is already committed."]
        else:
            out += ["", f"Broker down with the {name}: its .delay() runs inside the "
                    "command's transaction, so a publish that fails fails the command and "
                    f"rolls it back ({failed}); our wake-up is after commit and best effort."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())

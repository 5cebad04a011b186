"""Redis through Sentinel: the primary killed in the middle of a load, a replica promoted.

The test's own topology (tests/support/sentinels.py): a primary redis-server, a replica
and three sentinels on free ports. The web server (uvicorn), a Celery worker and beat
run as real processes, and with this test process they all reach Redis only through the
sentinels: views, progress and the token waits' subscription, remembered session
tokens, wake flags, throttles and the Celery broker. Customers place and pay orders
over HTTP and read each order's summary back with the command's token (right after the
command, again later, and every order once more after the load and after convergence),
while the primary is killed with SIGKILL and the sentinels promote the replica. Then:

- every command answered its success (201, 200), also those whose after-commit steps
  (session token, wake-ups) met the failover: those steps are best effort;
- no token read answered `X-Stale: false` with an order older than its token (a 404 or
  a lower version), during the failover or after it;
- the worker is still running, and every view converges to PostgreSQL (0 drift).

Twice: with the replica caught up when the primary dies, and with the replica behind
(its link cut for real while the projectors kept writing to the primary, so the
promoted replica lacks documents and progress that the checkpoints in PostgreSQL have
passed: asynchronous replication's loss). The second converges only when a projector
notices that the store holds less than its checkpoint says and rewinds.

What the failover costs is measured on the way and printed (run with -s): from the
kill to the promotion, to this process's Redis client writing again, to the first
token read of a command sent after the kill that answers fresh, and to convergence.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from readmodels.stores import redis_store
from tests.support.http import Http, api_token_for
from tests.support.processes import celery_beat_process, celery_worker_process
from tests.support.readside import assert_views_fresh, checkpoint_position, reset_read_models
from tests.support.sentinels import MASTER, down_after_ms, sentinel_topology
from tests.support.servers import uvicorn_server
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

REDIS_VIEWS = ("order_summary", "customer_dashboard")
CONVERGENCE_SECONDS = 90


@dataclass
class Read:
    sent: float
    answered: float
    status: int
    consistency: str
    stale: str
    version: int | None  # the order's version in the answer
    wanted: int  # the version the command answered

    @property
    def fresh_with_older_data(self) -> bool:
        """It said it shows the token's write (eventual, not stale), and it did not."""
        return (self.consistency == "eventual" and self.stale == "false"
                and (self.status == 404 or self.version is None or self.version < self.wanted))

    @property
    def fresh(self) -> bool:
        return self.status == 200 and self.consistency == "eventual" and self.stale == "false"


@dataclass
class Load:
    """Customers placing and paying orders over HTTP, reading each one back with its token."""

    port: int
    tokens: list[str]
    product_id: int
    commands: list[tuple[float, float, str, int]] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    latest: dict[str, dict] = field(default_factory=dict)  # per customer, when it stopped
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._customer, args=(token,), daemon=True)
                   for token in self.tokens]
        for thread in threads:
            thread.start()
        return threads

    def _command(self, http: Http, kind: str, path: str, body) -> dict | None:
        sent = time.monotonic()
        try:
            status, headers, answer = http.call(
                "POST", path, body, {"Idempotency-Key": str(uuid.uuid4())}, timeout=30)
        except OSError as exc:
            with self.lock:
                self.failures.append(f"{kind}: no answer: {exc!r}")
            return None
        with self.lock:
            self.commands.append((sent, time.monotonic(), kind, status))
            if status not in (200, 201):
                self.failures.append(f"{kind}: {status} {answer}")
                return None
        return {"order": answer, "token": headers["X-Consistency-Token"]}

    def _read_back(self, http: Http, order: dict, token: str) -> None:
        sent = time.monotonic()
        status, headers, body = http.call(
            "GET", f"/api/orders/{order['id']}/summary?max_wait_ms=2000",
            headers={"X-Consistency-Token": token}, timeout=30)
        read = Read(sent, time.monotonic(), status, headers.get("X-Consistency", ""),
                    headers.get("X-Stale", ""),
                    body.get("version") if status == 200 and isinstance(body, dict) else None,
                    order["version"])
        with self.lock:
            self.reads.append(read)

    def _customer(self, token: str) -> None:
        http = Http(self.port, token)
        rng = random.Random(token)
        mine: dict[str, tuple[dict, str]] = {}  # order id -> its latest answer and token
        n = 0
        while not self.stop.is_set():
            n += 1
            placed = self._command(http, "place", "/api/orders",
                                   {"lines": [{"product_id": self.product_id, "quantity": 1}]})
            if placed is None:
                continue
            mine[placed["order"]["id"]] = (placed["order"], placed["token"])
            self._read_back(http, placed["order"], placed["token"])
            if n % 2:
                paid = self._command(http, "pay", f"/api/orders/{placed['order']['id']}/pay", {})
                if paid is not None:
                    mine[paid["order"]["id"]] = (paid["order"], paid["token"])
                    self._read_back(http, paid["order"], paid["token"])
            # An older order of the customer's, read again with its latest token.
            self._read_back(http, *mine[rng.choice(list(mine))])
        with self.lock:
            self.latest[token] = mine

    def read_everything_back(self) -> None:
        """Read every order once more with the token of its latest command."""
        with self.lock:
            latest = dict(self.latest)
        for token, mine in latest.items():
            http = Http(self.port, token)
            for order, order_token in mine.values():
                self._read_back(http, order, order_token)

    def commands_sent_after(self, moment: float) -> int:
        with self.lock:
            return sum(1 for sent, *_ in self.commands if sent > moment)

    def first_fresh_read_sent_after(self, moment: float) -> Read | None:
        with self.lock:
            return next((r for r in self.reads if r.sent > moment and r.fresh), None)


def _views_fresh() -> bool:
    try:
        assert_views_fresh()
    except AssertionError:
        return False
    return True


def _wait(condition, timeout: float, what: str, load: Load, worker):
    """wait_until(), failing with what the load and the worker saw by then."""
    try:
        return wait_until(condition, timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(f"{what} within {timeout} s; failed commands: "
                             f"{load.failures[:5]}; the worker's log ends:\n"
                             f"{worker.log()[-3000:]}") from None


def _redis_writes_again() -> bool:
    try:
        redis_store.client().set("failover-probe", 1)
    except redis_store.ANY_ERROR:
        return False
    return True


def _only_on_the_primary(topology) -> list[str]:
    """Order summaries the primary holds in a newer version than the replica (or alone)."""
    prefix = redis_store.doc_key("order_summary", "", 1)
    primary, replica = topology.primary.client(), topology.replica.client()
    keys = list(primary.scan_iter(match=f"{prefix}*", count=1000))
    theirs = primary.pipeline(transaction=False)
    ours = replica.pipeline(transaction=False)
    for key in keys:
        theirs.hget(key, "v")
        ours.hget(key, "v")
    return [key.decode()[len(prefix):]
            for key, new, old in zip(keys, theirs.execute(), ours.execute(), strict=True)
            if old is None or int(old) < int(new)]


def _stored_checkpoints() -> dict:
    return {name: checkpoint_position(name) for name in REDIS_VIEWS}


@pytest.mark.parametrize("replica", ["caught_up", "behind"])
def test_the_primary_killed_mid_load_fails_over_and_loses_no_change(
    read_models, settings, make_customer, make_product, replica
):
    product = make_product(stock=1_000_000, price_cents=100)
    customers = [make_customer(balance_cents=100_000_000) for _ in range(3)]
    with sentinel_topology() as topology:
        # This process too: the convergence check reads the views through the sentinels.
        settings.REDIS_SENTINELS = topology.addresses
        settings.REDIS_SENTINEL_MASTER = MASTER
        reset_read_models()
        assert redis_store.client().connection_pool.service_name == MASTER
        env = topology.env()
        with (
            uvicorn_server(**env) as port,
            celery_worker_process("failover", concurrency=2, **env) as worker,
            celery_beat_process(**env) as beat,
        ):
            load = Load(port, [api_token_for(c) for c in customers], product.pk)
            clients = load.start()
            try:
                # The pipeline runs: token reads answer fresh from the views.
                _wait(lambda: load.first_fresh_read_sent_after(0), 60,
                      "no token read answered fresh before the failover", load, worker)
                lost = []
                if replica == "behind":
                    topology.cut_replication()
                    # The projectors write documents the replica never gets...
                    wait_until(lambda: len(_only_on_the_primary(topology)) >= 3, 60,
                               message="no documents were written after replication was cut")
                    # ... and move their checkpoints in PostgreSQL past them.
                    before = _stored_checkpoints()
                    wait_until(lambda: all(checkpoint_position(name) != before[name]
                                           for name in REDIS_VIEWS), 60,
                               message="no checkpoint moved after replication was cut")
                    lost = _only_on_the_primary(topology)
                killed = topology.kill_primary()
                promoted = topology.wait_for_promotion(60)
                wait_until(_redis_writes_again, 60, interval=0.05,
                           message="this process's client did not reach the new primary")
                writes_again = time.monotonic()
                back = _wait(lambda: load.first_fresh_read_sent_after(killed), 90,
                             "no token read answered fresh after the failover", load, worker)
                # Commands keep coming for a while on the new primary.
                after = load.commands_sent_after(back.sent)
                wait_until(lambda: load.commands_sent_after(back.sent) >= after + 20, 60,
                           message="commands stopped after the failover")
            finally:
                load.stop.set()
                for client in clients:
                    client.join(60)
            stopped = time.monotonic()
            load.read_everything_back()
            converged = _converged_by(stopped + CONVERGENCE_SECONDS)
            load.read_everything_back()
            problems = []
            if converged is None:
                problems.append(f"the views did not converge within {CONVERGENCE_SECONDS} s "
                                f"of the load's end: {_drift()}{_lost(lost)}")
            if not worker.alive():
                problems.append(f"the worker exited:\n{worker.log()[-5000:]}")
            if not beat.alive():
                problems.append(f"beat exited:\n{beat.log()[-3000:]}")

    if any(client.is_alive() for client in clients):
        problems.append("a client is stuck")
    if load.failures:
        problems.append(f"commands without their success: {load.failures[:10]}")
    if not [c for c in load.commands if killed <= c[0] < promoted]:
        problems.append("no command was sent while the primary was down")
    lying = [r for r in load.reads if r.fresh_with_older_data]
    if lying:
        problems.append(f"{len(lying)} of {len(load.reads)} token reads answered fresh with "
                        f"older data, e.g. {lying[:3]}")
    slowest = max((answered - sent for sent, answered, _, _ in load.commands
                   if sent < promoted and answered > killed), default=0.0)
    print(f"\nSentinel failover, replica {replica.replace('_', ' ')}"
          f"{f' ({len(lost)} order summaries only on the primary)' if lost else ''}: "
          f"promoted {promoted - killed:.1f} s after the kill; this process's client writing "
          f"again at {writes_again - killed:.1f} s; the first token read of a command sent "
          f"after the kill to answer fresh at {back.answered - killed:.1f} s; views "
          + (f"converged at {converged - killed:.1f} s ({converged - stopped:.1f} s after the "
             f"load stopped)" if converged else "never converged")
          + f"; the slowest command in flight during the failover took {slowest:.2f} s "
          f"(sentinels' down-after-milliseconds {down_after_ms()}); "
          f"{len(load.commands)} commands, {len(load.reads)} token reads")
    assert not problems, "\n".join(problems)


def _converged_by(deadline: float) -> float | None:
    """When every view equals PostgreSQL (checked until `deadline`), or None."""
    while time.monotonic() < deadline:
        if _views_fresh():
            return time.monotonic()
        time.sleep(0.5)
    return None


def _lost(keys: list[str] | None) -> str:
    if not keys:
        return ""
    return (f"\n{len(keys)} order summaries were on the primary only when it died, "
            f"e.g. {keys[:5]}; now in the view: "
            f"{redis_store.read_versions('order_summary', keys[:5])}")


def _drift() -> str:
    try:
        assert_views_fresh()
    except AssertionError as exc:
        return str(exc)
    return "none"

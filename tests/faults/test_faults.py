"""Fault injection on a whole throwaway shop: writes keep coming, one real fault, heal,
then every read model must equal the write model (reconcile) and every command the
clients were told succeeded must be there exactly once (the ledger).
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.support.fault_stack import Ledger, Stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

FAULT_SECONDS = 10


@pytest.fixture
def stack(request):
    shop = Stack().start(workers=1)
    try:
        shop.seed()
        yield shop
    finally:
        call = getattr(request.node, "outcome_call", None)
        shop.stop(keep_logs=call is None or call.failed)


def _orders_so_far(ledger: Ledger) -> int:
    with ledger.lock:
        return len(ledger.orders)


def _load_around(stack: Stack, fault, heal, threads: int = 4) -> Ledger:
    """Clients write before, during and after the fault; return what they were told."""
    ledger = Ledger()
    stop, clients = stack.run_clients(ledger, threads)
    try:
        wait_until(lambda: _orders_so_far(ledger) >= 20, 60, message="no orders before the fault")
        # The fault must hit a running pipeline: every projector has written already.
        wait_until(lambda: all(r["last_success_at"] for r in stack.status()), 60,
                 message="the projectors never ran before the fault")
        fault()
        before = _orders_so_far(ledger)
        threading.Event().wait(FAULT_SECONDS)
        heal()
        wait_until(lambda: _orders_so_far(ledger) >= before + 20, 120, message="no orders after healing")
    finally:
        stop.set()
        for client in clients:
            client.join(180)
    assert not any(client.is_alive() for client in clients), "a client is stuck"
    return ledger


def _converged(stack: Stack, ledger: Ledger) -> None:
    # Whatever the fault, the shop answered explicitly: never a bare 500.
    assert not [k for k in ledger.server_errors if k[0] == 500], dict(ledger.server_errors)
    stack.wait_until_projected()
    stack.assert_views_equal_write_model()
    stack.assert_ledger(ledger)
    # A failure of a store or a server is never a row's: nothing was set aside.
    assert all(row["dead_letters"] == 0 for row in stack.status()), stack.status()


def _met_by_a_projector(stack: Stack, read_models: set[str], store: str) -> None:
    """Wait until a projector run met the fault with rows waiting for it (its last error
    names the store): the fault hit projection work, not an idle pipeline."""
    wait_until(
        lambda: [r for r in stack.status() if r["read_model"] in read_models
                 and r["rows_behind"] > 0 and store in (r["last_error"] or "")],
        60, message=f"no projector met the {store} fault with rows to project")


def test_worker_killed_mid_batch_then_restarted(stack):
    def fault():
        stack.kill("worker0", signal.SIGKILL)

    ledger = _load_around(stack, fault, lambda: stack.start_worker("worker0"))
    _converged(stack, ledger)


def test_redis_broker_and_views_down_for_a_while(stack):
    ledger = _load_around(stack, stack.redis.stop, stack.redis.start)
    # Redis came back empty (no persistence): the projectors notice and re-project.
    _converged(stack, ledger)
    assert "lost its documents" in stack.log_of("worker0")


def test_elasticsearch_unreachable_for_a_while(stack):
    def fault():
        stack.es_gate.close()  # refused, and open connections cut mid-request
        _met_by_a_projector(stack, {"orders_search", "products_search"}, "Elasticsearch")

    ledger = _load_around(stack, fault, stack.es_gate.open)
    _converged(stack, ledger)


def test_postgresql_restarted_while_commands_and_projectors_run(stack):
    restart = {}

    def fault():
        stack.pg.restart()
        restart["back"] = time.time()  # pg_ctl -w returns once it accepts connections

    ledger = _load_around(stack, fault, lambda: None)
    _converged(stack, ledger)
    # Commands met the restart: some were still in flight at the moment PostgreSQL was
    # back (waiting for a connection, or retried with the same key after a 503). No
    # retry is needed for that: the pool's checkout can wait out a short restart. The
    # ledger above shows each command took effect exactly once.
    assert ledger.in_flight_at(restart["back"]) > 0, (restart, ledger.spans[-20:])


def test_long_write_transaction_holds_the_horizon_then_everything_catches_up(stack):
    ledger = Ledger()
    stop, clients = stack.run_clients(ledger, threads=3)
    holder = stack.pg.connect()
    try:
        wait_until(lambda: _orders_so_far(ledger) >= 20, 60, message="no orders yet")
        holder.autocommit = False
        holder.execute("SELECT pg_current_xact_id()")  # takes an xid: holds the horizon
        # Lag grows and is reported: the status check fails and names the breach.
        breached = wait_until(
            lambda: [r for r in stack.status() if r["state"] == "breach"], 60, message="no SLO breach"
        )
        assert {r["read_model"] for r in breached} >= {"order_summary", "customer_dashboard"}
        result = stack.manage("projections", "status", check=False)
        assert result.returncode == 1
        assert "lag SLO breached" in result.stderr + result.stdout
        # The periodic lag sample (in beat's own process) logs the alarm too.
        wait_until(lambda: "lag SLO breached" in stack.log_of("beat"), 60, message="no alarm logged")
        holder.rollback()
        holder.autocommit = True
        wait_until(lambda: _orders_so_far(ledger) >= 40, 60, message="no orders after the release")
    finally:
        holder.close()
        stop.set()
        for client in clients:
            client.join(180)
    _converged(stack, ledger)
    assert all(r["state"] == "ok" for r in stack.status())


def test_duplicate_delivery_every_projection_task_twice(stack):
    """Every wake group's task is delivered twice, to two workers, and one batch is
    replayed after it was written (a crash between the write and the checkpoint)."""
    stack.start_worker("worker1")
    ledger = Ledger()
    stop, clients = stack.run_clients(ledger, threads=3)
    duplicating = threading.Event()

    def duplicate_everything():
        code = (
            "import time\n"
            "from readmodels import tasks\n"
            "from readmodels.pipeline import wake_groups\n"
            "deadline = time.monotonic() + 25\n"
            "while time.monotonic() < deadline:\n"
            "    for group in wake_groups.all_groups():\n"
            "        for _ in range(2):\n"
            "            tasks.wake.apply_async((group,), expires=5)\n"
            "    time.sleep(0.05)\n"
        )
        stack.manage("shell", "-c", code)
        duplicating.set()

    sender = threading.Thread(target=duplicate_everything, daemon=True)
    try:
        wait_until(lambda: _orders_so_far(ledger) >= 20, 60, message="no orders yet")
        sender.start()
        wait_until(lambda: _orders_so_far(ledger) >= 60, 120, message="too few orders")
        with stack.pg.connect() as conn:
            # Wind every checkpoint back a little: those batches are projected again.
            conn.execute(
                "UPDATE readmodels_checkpoint SET xid = greatest(xid - 30, 0), position = 0"
            )
        wait_until(duplicating.is_set, 60, message="duplicates were not all sent")
    finally:
        stop.set()
        for client in clients:
            client.join(180)
        sender.join(60)
    _converged(stack, ledger)

"""Projection under real faults: a store that does not answer, a Redis that comes back
empty, a worker killed mid-batch, and a row no projector can handle.

Every fault is real (a closed port, a redis-server of the test's own stopped and
started again, a worker process killed with SIGKILL, a corrupt outbox row in the
database), and every test ends with the reconcile check: each affected view equals
the documents rebuilt from PostgreSQL now.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
from django.utils import timezone

from orders import commands
from orders.models import Order, OutboxMessage
from orders.outbox import Position
from readmodels import projectors, tasks
from readmodels.models import Checkpoint, DeadLetter, DeadLetterStatus
from readmodels.pipeline import checkpoints, failures, progress, runner
from readmodels.stores import StoreUnavailable, redis_store
from tests.support.ports import free_port
from tests.support.processes import (
    REFUSALS,
    celery_worker_process,
    redis_refusal,
    segment_lock_holder,
    throwaway_redis,
)
from tests.support.readside import (
    all_segments_cover,
    assert_views_fresh,
    checkpoint_position,
    newest_committed,
    project_all,
    redis_docs,
    view_docs,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

ES_MODELS = ("orders_search", "products_search")
REDIS_MODELS = ("order_summary", "customer_dashboard")


def _place(customer, product, quantity: int = 1) -> Order:
    return commands.place_order(
        customer_id=customer.pk,
        lines=[commands.LineRequest(product_id=product.pk, quantity=quantity)],
    ).value


def _run(name: str, **kwargs) -> runner.RunResult:
    return runner.run_segment(projectors.get(name), ignore_backoff=True, **kwargs)


def _run_to_completion(name: str) -> runner.RunResult:
    while True:
        result = _run(name)
        if result.complete:
            return result


def _last_row_of(order: Order) -> Position:
    row = OutboxMessage.objects.filter(aggregate_id=str(order.pk)).order_by("xid", "position")
    last = row.last()
    return Position(last.xid, last.position)


def _at(row) -> Position:
    return Position(row.xid, row.position)


def _checkpoint(name: str) -> Checkpoint:
    return Checkpoint.objects.get(projector=name, segment=0, segments=1)


def test_elasticsearch_unreachable_for_a_while(read_models, settings, make_customer, make_product):
    """ES answers nothing (a closed port): its projectors keep their checkpoints and back
    off, the Redis views go on; when ES is back, everything converges, nothing is lost."""
    product = make_product(stock=1000, name="Copper Pot")
    customers = [make_customer(balance_cents=100_000) for _ in range(3)]
    orders = [_place(customer, product) for customer in customers]
    project_all()
    assert_views_fresh(*ES_MODELS, *REDIS_MODELS)
    before = {name: checkpoint_position(name) for name in ES_MODELS}

    real_url = settings.ELASTICSEARCH_URL
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for customer in customers:
        _place(customer, product, 2)
    commands.pay_order(order_id=orders[0].pk)
    commands.cancel_order(order_id=orders[1].pk)
    commands.update_customer(customer_id=customers[2].pk, name="Renamed While ES Was Down")
    commands.update_product(product_id=product.pk, name="Copper Saucepan")
    target = newest_committed()

    def cut():
        settings.ELASTICSEARCH_URL = closed

    for name in ES_MODELS:
        settings.ELASTICSEARCH_URL = real_url
        for attempt in (1, 2):
            if attempt == 1:
                # Elasticsearch goes away once the batch has been read, before its write:
                # the checkpoint must not move onto the batch.
                with _when_a_batch_is_read(name, cut) as in_flight:
                    assert "Elasticsearch" in str(_run_into_the_fault(name, in_flight))
            else:
                with pytest.raises(StoreUnavailable, match="Elasticsearch"):
                    _run(name)
            checkpoint = _checkpoint(name)
            # Not one step past rows that are not in the view.
            assert Position(checkpoint.xid, checkpoint.position) == before[name]
            assert not Position(checkpoint.xid, checkpoint.position).covers(target)
            assert checkpoint.failures == attempt
            assert "Elasticsearch" in checkpoint.last_error
            assert checkpoint.last_error_at is not None
            assert checkpoint.retry_after > timezone.now()
        # Within its backoff a run does not even try.
        backing_off = runner.run_segment(projectors.get(name))
        assert backing_off.backing_off and backing_off.rows == 0

    # The Redis views do not wait for Elasticsearch.
    for name in REDIS_MODELS:
        _run_to_completion(name)
        assert checkpoint_position(name).covers(target)
    assert_views_fresh(*REDIS_MODELS)

    settings.ELASTICSEARCH_URL = real_url
    project_all()
    for name in ES_MODELS:
        checkpoint = _checkpoint(name)
        assert Position(checkpoint.xid, checkpoint.position).covers(target)
        assert checkpoint.failures == 0 and checkpoint.retry_after is None
    assert_views_fresh(*ES_MODELS, *REDIS_MODELS)
    renamed = view_docs("orders_search")[f"{orders[2].pk}"][1]
    assert renamed["customer_name"] == "Renamed While ES Was Down"
    assert not DeadLetter.objects.exists()


def test_a_store_down_for_long_is_tried_again_within_seconds_of_each_failure(
    read_models, settings, make_customer, make_product
):
    """The backoff of a store that keeps failing grows, but never past MAX_BACKOFF_SECONDS:
    once the store is back, the lag that remains is at most that, not half a minute.

    (It was capped at 30 s: after a 10 s Elasticsearch outage the fault suite saw the
    projectors first try the store that was back 13-16 s later; the doubling allowed
    up to 25.6 s.)
    """
    _place(make_customer(balance_cents=100_000), make_product(stock=10))
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    waits = []
    for _ in range(16):  # a long outage: far past where 0.1 s doubling reaches the cap
        with pytest.raises(StoreUnavailable):
            _run("orders_search")
        checkpoint = _checkpoint("orders_search")
        waits.append((checkpoint.retry_after - checkpoint.last_error_at).total_seconds())
    assert waits == sorted(waits)  # it does grow
    assert waits[-1] == checkpoints.MAX_BACKOFF_SECONDS <= 5


def test_redis_restarted_empty(read_models, settings, make_customer, make_product):
    """A redis-server without persistence stopped during writes, then started EMPTY.

    While it is down the Redis projectors fail with StoreUnavailable and keep their
    checkpoints. It comes back with nothing: every document, the populated marker, the
    progress reports (readers see "not reported" until the next batch), wake-up flags
    and the newest-commit marks. The checkpoints in PostgreSQL still say those documents
    are there, so replaying the outbox from them alone would leave every aggregate not
    changed since the restart missing. What repairs it: segment 0's run notices the
    marker is gone and re-projects every aggregate from PostgreSQL before carrying on
    (store_loss.heal_if_store_lost), so no manual rebuild is needed.
    """
    broker = settings.CELERY_BROKER_URL
    with throwaway_redis() as redis_server:
        settings.REDIS_URL = redis_server.url
        # Only the views move to the throwaway server; the broker stays on the shared one.
        assert settings.CELERY_BROKER_URL == broker
        assert f":{redis_server.port}/" not in broker
        product = make_product(stock=1000)
        customers = [make_customer(balance_cents=100_000) for _ in range(4)]
        orders = [_place(customer, product) for customer in customers for _ in range(2)]
        project_all()
        assert_views_fresh(*REDIS_MODELS)
        before = {name: checkpoint_position(name) for name in REDIS_MODELS}
        untouched = orders[1]  # not changed again after the restart

        redis_server.stop()
        commands.pay_order(order_id=orders[0].pk)
        written_while_down = _place(customers[0], product, 3)
        target = newest_committed()
        for name in REDIS_MODELS:
            with pytest.raises(StoreUnavailable, match="Redis"):
                _run(name)
            checkpoint = _checkpoint(name)
            assert Position(checkpoint.xid, checkpoint.position) == before[name]
            assert checkpoint.failures == 1 and "Redis" in checkpoint.last_error
        # Elasticsearch views carry on; only their progress announcement is skipped.
        for name in ES_MODELS:
            _run_to_completion(name)
            assert checkpoint_position(name).covers(target)

        redis_server.start()  # same port, no data
        for name in REDIS_MODELS:
            assert redis_docs(name) == {}, "a restarted Redis without persistence is empty"
            assert redis_store.lost_data(name)
            assert not progress.state(name).reported
        # Writes after the restart.
        commands.pay_order(order_id=orders[2].pk)
        written_after = _place(customers[3], product, 1)

        project_all()
        for name in REDIS_MODELS:
            checkpoint = _checkpoint(name)
            assert Position(checkpoint.xid, checkpoint.position).covers(newest_committed())
            assert checkpoint.failures == 0
            assert not redis_store.lost_data(name)
            assert progress.state(name).reported
        assert_views_fresh(*REDIS_MODELS, *ES_MODELS)
        summaries = redis_docs("order_summary")
        for order in (untouched, written_while_down, written_after, orders[0], orders[2]):
            order.refresh_from_db()
            assert summaries[str(order.pk)][0] == order.version
        assert not DeadLetter.objects.exists()


def test_worker_killed_mid_batch(read_models, make_customer, make_product):
    """A worker process SIGKILLed while it works through a backlog in small batches: a
    new worker picks up from the checkpoints; replayed rows converge, none is lost."""
    from shop.celery import app

    app.control.purge()
    product = make_product(stock=100_000)
    customers = [make_customer(balance_cents=10_000_000) for _ in range(10)]
    orders = [_place(customers[i % len(customers)], product) for i in range(200)]
    for order in orders[::7]:
        commands.pay_order(order_id=order.pk)
    target = newest_committed()
    # The wake-ups queued while no worker ran: drop them, the sweep starts the work.
    app.control.purge()

    def moved_but_not_finished():
        return [
            c for c in Checkpoint.objects.filter(rows_projected__gt=0)
            if not Position(c.xid, c.position).covers(target)
        ]

    with celery_worker_process("victim", READMODELS_BATCH_SIZE="5") as victim:
        # Sweep the way beat does, not once: a run that starts while a transaction
        # anywhere in the cluster holds the outbox horizon back reads nothing and ends,
        # and a queued run expires after a few seconds; only the next sweep starts the
        # work then. (A single sweep here failed 1 run in 5 on a shared PostgreSQL.)
        deadline = time.monotonic() + 60
        next_sweep = 0.0
        while not moved_but_not_finished():
            assert victim.alive(), victim.log()[-3000:]
            assert time.monotonic() < deadline, f"no checkpoint moved\n{victim.log()[-3000:]}"
            if time.monotonic() >= next_sweep:
                tasks.sweep.delay()
                next_sweep = time.monotonic() + 0.5
            time.sleep(0.005)
        victim.kill()
        assert not victim.alive()
    halfway = moved_but_not_finished()
    assert halfway, "the worker finished before it was killed: nothing was interrupted"
    assert not all_segments_cover(target)

    # The worker that takes over (a restarted one, or another) uses full-size batches.
    with celery_worker_process("rescuer") as rescuer:
        deadline = time.monotonic() + 90
        while not all_segments_cover(target):
            assert rescuer.alive(), rescuer.log()[-3000:]
            assert time.monotonic() < deadline, f"did not catch up\n{rescuer.log()[-3000:]}"
            tasks.sweep.delay()  # what beat does every second
            time.sleep(0.5)
    for checkpoint in halfway:
        assert checkpoint_position(checkpoint.projector).covers(target)
    assert_views_fresh()
    summaries = redis_docs("order_summary")
    assert len(summaries) == Order.objects.count() == 200
    for order_id, version in Order.objects.values_list("pk", "version"):
        assert summaries[str(order_id)][0] == version
    assert not DeadLetter.objects.exists()


def test_poison_row_is_retried_then_set_aside(read_models, settings, make_customer, make_product):
    """A corrupt outbox row among good ones: retried a bounded number of times (the rows
    before it are projected meanwhile), then a dead letter, and the projector moves on."""
    settings.READMODELS = {**settings.READMODELS, "POISON_MAX_ATTEMPTS": 3}
    product = make_product(stock=1000)
    customer = make_customer(balance_cents=1_000_000)
    before = [_place(customer, product) for _ in range(3)]
    poison = OutboxMessage.objects.create(
        aggregate_type="order", aggregate_id="not-a-uuid", aggregate_version=1,
        event_type="OrderPlaced", partition_key="1", payload={},
    )
    poison.refresh_from_db()
    poison_at = Position(poison.xid, poison.position)
    after = [_place(customer, product) for _ in range(3)]
    commands.pay_order(order_id=before[0].pk)  # a later change to a key seen before
    target = newest_committed()

    failing = ("order_summary", "orders_search")
    for name in failing:
        projector = projectors.get(name)
        for attempt in (1, 2):
            with pytest.raises(failures.RetryLater):
                _run(name)
            letter = DeadLetter.objects.get(projector=name, outbox_position=poison.position)
            assert letter.attempts == attempt
            assert letter.status == DeadLetterStatus.RETRYING
            checkpoint = _checkpoint(name)
            at = Position(checkpoint.xid, checkpoint.position)
            # Stopped right before the poison row: everything before it is visible.
            assert at.covers(_last_row_of(before[-1])) and not at.covers(poison_at)
            assert checkpoint.failures == attempt
            assert "RetryLater" in checkpoint.last_error
            versions = projector.stored_versions([str(o.pk) for o in before + after])
            assert {str(o.pk) for o in before} <= set(versions)
            assert not {str(o.pk) for o in after} & set(versions)

        result = _run_to_completion(name)
        letter = DeadLetter.objects.get(projector=name, outbox_position=poison.position)
        assert letter.status == DeadLetterStatus.DEAD
        assert letter.attempts == 3
        assert "ValueError" in letter.error
        assert letter.aggregate_id == "not-a-uuid" and letter.event_type == "OrderPlaced"
        assert result.dead_lettered == 1
        checkpoint = _checkpoint(name)
        assert Position(checkpoint.xid, checkpoint.position).covers(target)
        assert checkpoint.failures == 0

    # customer_dashboard consumes "order" rows too but keys them by partition key ("1":
    # a customer id), so the row is no poison to it: it rebuilds customer 1's dashboard
    # (if there is such a customer) and moves on.
    result = _run_to_completion("customer_dashboard")
    assert result.dead_lettered == 0
    project_all()
    assert set(DeadLetter.objects.values_list("projector", "outbox_position", "status")) == {
        (name, poison.position, DeadLetterStatus.DEAD) for name in failing
    }
    assert_views_fresh()  # nothing lost: every good row before and after it is visible
    summaries = redis_docs("order_summary")
    for order in before + after:
        order.refresh_from_db()
        assert summaries[str(order.pk)][0] == order.version


def test_rebuild_rides_out_a_store_that_stops_answering_for_a_moment(
    read_models, settings, make_product, caplog
):
    """Elasticsearch stops answering (a closed port) after the rebuild's first batch and
    comes back a second later: the batch is retried with backoff, the rebuild finishes,
    and the new index holds exactly what PostgreSQL says."""
    import logging
    import threading

    from readmodels.models import RebuildStatus
    from readmodels.operations import rebuild
    from tests.support.readside import fresh_docs

    for n in range(9):
        make_product(name=f"Reading Lamp {n}")
    project_all()
    real_url = settings.ELASTICSEARCH_URL
    came_back = threading.Event()

    def store_back():
        settings.ELASTICSEARCH_URL = real_url
        came_back.set()

    outage = threading.Timer(1.0, store_back)

    def cut_the_store_after_the_first_batch(run, rate):
        if not outage.is_alive() and not came_back.is_set():
            settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens
            outage.start()

    with caplog.at_level(logging.WARNING, logger="readmodels.operations.rebuild"):
        done = rebuild.rebuild(
            "products_search", batch_size=3, grace_seconds=0,
            on_progress=cut_the_store_after_the_first_batch,
        )
    outage.join(10)
    assert came_back.is_set()
    retries = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert retries, "no batch met the outage: nothing was tested"
    assert done.status == RebuildStatus.DONE and done.copied == 9 and not done.error
    assert view_docs("products_search") == fresh_docs("products_search")


@contextmanager
def _when_a_batch_is_read(name: str, fault):
    """Call `fault()` once, when `name` has read a batch and written nothing of it yet.

    Yields the rows of that batch (empty if no batch came), so the test can show the
    fault met work in flight, not a pre-check before the read.
    """
    seen: list = []

    def receiver(sender, projector, rows, **kwargs):
        if projector.name == name and not seen:
            seen.extend(rows)
            fault()

    runner.batch_read.connect(receiver)
    try:
        yield seen
    finally:
        runner.batch_read.disconnect(receiver)


def _run_into_the_fault(name: str, in_flight: list) -> StoreUnavailable:
    """Run until a batch is read (a transaction elsewhere in the cluster can hold rows
    back for a moment) and return the StoreUnavailable its write met."""
    deadline = time.monotonic() + 60
    while True:
        try:
            _run(name)
        except StoreUnavailable as exc:
            assert in_flight, f"the fault came before a batch was read: {exc}"
            return exc
        assert not in_flight, "a batch was read, its store refused writes, and the run passed"
        assert time.monotonic() < deadline, "no batch came to read"
        time.sleep(0.02)


@pytest.mark.parametrize("kind", REFUSALS)
def test_redis_refusing_writes_mid_batch_is_an_outage_not_bad_rows(
    read_models, settings, make_customer, make_product, kind
):
    """Redis refuses every write (OOM with noeviction, READONLY after a failover, MISCONF)
    once a batch has been read: an error reply, not a dropped connection. No row is
    blamed: no dead letter however often it is tried, the checkpoint stays before the
    batch; when Redis takes writes again the views converge."""
    settings.READMODELS = {**settings.READMODELS, "POISON_MAX_ATTEMPTS": 2}
    # noeviction: a full Redis refuses writes instead of dropping documents.
    # enable-protected-configs: the MISCONF case moves the snapshot directory.
    with throwaway_redis(
        "--maxmemory-policy", "noeviction", "--enable-protected-configs", "yes"
    ) as server:
        settings.REDIS_URL = server.url
        product = make_product(stock=1000)
        customers = [make_customer(balance_cents=100_000) for _ in range(3)]
        orders = [_place(customer, product) for customer in customers]
        project_all()
        commands.pay_order(order_id=orders[0].pk)
        late = [_place(customer, product, 2) for customer in customers]
        target = newest_committed()

        refuse, repair = redis_refusal(server, kind)
        for name in REDIS_MODELS:
            with _when_a_batch_is_read(name, refuse) as in_flight:
                assert "Redis" in str(_run_into_the_fault(name, in_flight))
            # More runs than a row has attempts: the store's failure is never a row's.
            for _ in range(3):
                with pytest.raises(StoreUnavailable, match="Redis"):
                    _run(name)
            checkpoint = _checkpoint(name)
            # Not one step onto the batch that met the fault.
            assert not Position(checkpoint.xid, checkpoint.position).covers(_at(in_flight[0]))
            assert checkpoint.failures == 4 and checkpoint.retry_after > timezone.now()
            assert not DeadLetter.objects.exists()
            repair()

        project_all()
        for name in REDIS_MODELS:
            assert checkpoint_position(name).covers(target)
            assert _checkpoint(name).failures == 0
        assert_views_fresh(*REDIS_MODELS)
        summaries = redis_docs("order_summary")
        for order in [orders[0], *late]:
            order.refresh_from_db()
            assert summaries[str(order.pk)][0] == order.version
        assert not DeadLetter.objects.exists()


@pytest.mark.parametrize("block", ["index.blocks.write", "index.blocks.read_only_allow_delete"])
def test_elasticsearch_write_block_mid_batch_is_an_outage_not_bad_rows(
    read_models, settings, make_customer, make_product, block
):
    """The index refuses writes once a batch has been read: a write block (403
    cluster_block_exception) or the flood-stage disk watermark's read-only-allow-delete
    block (429). No dead letter, the checkpoint stays; once the block is lifted the
    view converges."""
    from readmodels.stores import es

    settings.READMODELS = {**settings.READMODELS, "POISON_MAX_ATTEMPTS": 2}
    product = make_product(stock=1000)
    customers = [make_customer(balance_cents=100_000) for _ in range(3)]
    orders = [_place(customer, product) for customer in customers]
    project_all()
    commands.pay_order(order_id=orders[0].pk)
    commands.update_customer(customer_id=customers[1].pk, name="Renamed Under A Block")
    late = [_place(customer, product, 2) for customer in customers]
    target = newest_committed()
    index = es.current_index("orders_search")

    def block_writes():
        es.client().indices.put_settings(index=index, settings={block: True})

    try:
        with _when_a_batch_is_read("orders_search", block_writes) as in_flight:
            assert "Elasticsearch" in str(_run_into_the_fault("orders_search", in_flight))
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="Elasticsearch"):
                _run("orders_search")
        checkpoint = _checkpoint("orders_search")
        assert not Position(checkpoint.xid, checkpoint.position).covers(_at(in_flight[0]))
        assert checkpoint.failures == 4
        assert not DeadLetter.objects.exists()
    finally:
        es.client().indices.put_settings(index=index, settings={block: False})

    project_all()
    assert checkpoint_position("orders_search").covers(target)
    assert_views_fresh("orders_search")
    docs = view_docs("orders_search")
    assert docs[str(late[1].pk)][1]["customer_name"] == "Renamed Under A Block"
    assert not DeadLetter.objects.exists()


def test_projected_read_on_a_missing_index_degrades_instead_of_a_500(
    read_models, make_product, staff_client
):
    """The index behind a view is gone (deleted by hand, or not created yet after a
    deploy): Elasticsearch answers 404 to the search. That is the view being down, so
    the endpoint answers 503 with Retry-After and a JSON code, never a 500."""
    from readmodels.stores import es

    make_product(name="Enamel Kettle")
    project_all()
    assert staff_client.get("/api/products/search", {"q": "kettle"}).status_code == 200
    es.drop_index(es.current_index("products_search"))

    response = staff_client.get("/api/products/search", {"q": "kettle"})
    assert response.status_code == 503, response.content
    assert response["Retry-After"]
    assert response.json()["error"]["code"] == "read_model_unavailable"


def _run_until_it_raises(name: str, kind: type[Exception]) -> Exception:
    """Run until the run raises `kind` (rows may be held back behind a transaction
    elsewhere in the cluster for a moment, and a run over nothing raises nothing)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            _run(name)
        except kind as exc:
            return exc
        assert time.monotonic() < deadline, f"{name} never raised {kind.__name__}"
        time.sleep(0.02)


def test_a_row_whose_load_times_out_is_retried_with_backoff_then_set_aside(
    read_models, settings, make_customer, make_product
):
    """One order's load is far heavier than the others' (1.5 million lines, as a bad
    import could leave) and PostgreSQL cancels it at the statement timeout (SQLSTATE
    57014). That is the row's failure, not an outage: the rows before it are projected,
    it is retried with a growing backoff, then set aside, and the segment moves on.
    (Before: every run hit the same timeout, with no backoff and no dead letter, and the
    segment stalled for good.)"""
    from django.db import connection

    from orders.models import OrderLine

    settings.READMODELS = {**settings.READMODELS, "POISON_MAX_ATTEMPTS": 3}
    product = make_product(stock=1000)
    customer = make_customer(balance_cents=10_000_000)
    project_all()
    first = _place(customer, product)
    huge = _place(customer, product)
    last = _place(customer, product)
    lines = OrderLine._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {lines} (order_id, product_id, quantity, unit_price_cents, "
            "product_name, product_sku) SELECT l.order_id, l.product_id, l.quantity, "
            f"l.unit_price_cents, l.product_name, l.product_sku FROM {lines} l, "
            "generate_series(1, 1500000) WHERE l.order_id = %s",
            [huge.pk],
        )
    target = newest_committed()
    huge_at = _last_row_of(huge)

    backoffs = []
    with connection.cursor() as cursor:
        # Loads of an ordinary order take a few milliseconds; the huge one, seconds.
        cursor.execute("SET statement_timeout = '300ms'")
    try:
        for attempt in (1, 2):
            failure = _run_until_it_raises("order_summary", failures.RetryLater)
            assert "statement timeout" in str(failure)
            letter = DeadLetter.objects.get(projector="order_summary")
            assert letter.aggregate_id == str(huge.pk)
            assert letter.attempts == attempt and letter.status == DeadLetterStatus.RETRYING
            checkpoint = _checkpoint("order_summary")
            at = Position(checkpoint.xid, checkpoint.position)
            assert at.covers(_last_row_of(first)) and not at.covers(huge_at)
            assert checkpoint.failures == attempt
            backoffs.append((checkpoint.retry_after - checkpoint.last_error_at).total_seconds())
            # Within its backoff the segment waits.
            assert runner.run_segment(projectors.get("order_summary")).backing_off
        assert backoffs[1] > backoffs[0] > 0, backoffs

        result = _run_to_completion("order_summary")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
    assert result.dead_lettered == 1
    letter = DeadLetter.objects.get(projector="order_summary")
    assert letter.status == DeadLetterStatus.DEAD and "statement timeout" in letter.error
    assert checkpoint_position("order_summary").covers(target)
    summaries = redis_docs("order_summary")
    for order in (first, last):
        order.refresh_from_db()
        assert summaries[str(order.pk)][0] == order.version


def test_a_segment_lock_is_released_soon_after_its_worker_host_vanishes(
    read_models, make_customer, make_product
):
    """A worker holds order_summary's segment lock and its host vanishes: the TCP
    connection ends without a FIN or reset (the process is killed with its socket in
    repair mode). PostgreSQL keeps the session, and so the lock, until a keepalive
    probe finds the peer gone: about two hours by default, seconds with the probes our
    sessions ask for. Another worker takes the segment and projects the waiting rows.

    On loopback the kernel answers the first probe with a reset, where a powered-off
    host would not answer at all: then the session ends after the missed probes
    (5 s + 3 x 2 s) instead of at the first one."""
    from django.db import connection

    customer = make_customer(balance_cents=100_000)
    order = _place(customer, make_product(stock=10))
    with segment_lock_holder("order_summary") as holder:
        assert _run("order_summary").locked_out
        holder.vanish()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [holder.backend_pid]
            )
            assert cursor.fetchone()[0] == 1, "PostgreSQL saw the session end: not a vanish"
        # Generous: the point is seconds, not the two hours of the default keepalive.
        wait_until(lambda: not _run("order_summary").locked_out, timeout=120, interval=0.2,
                   message="the vanished worker's session still holds the segment lock")
    project_all()
    assert redis_docs("order_summary")[str(order.pk)][0] == order.version


def test_one_by_one_refreshes_elasticsearch_once_not_per_row(
    read_models, settings, make_customer, make_product
):
    """A bad row among twenty good ones sends orders_search through the one-by-one pass:
    the good rows are written one at a time, and the index is refreshed once after the
    pass, not once per row (a refresh per row made a bad batch cost a refresh per row)."""
    from readmodels.stores import es

    settings.READMODELS = {**settings.READMODELS, "POISON_MAX_ATTEMPTS": 1}
    product = make_product(stock=1000)
    customer = make_customer(balance_cents=1_000_000)
    project_all()
    orders = [_place(customer, product) for _ in range(10)]
    OutboxMessage.objects.create(
        aggregate_type="order", aggregate_id="not-a-uuid", aggregate_version=1,
        event_type="OrderPlaced", partition_key=str(customer.pk), payload={},
    )
    orders += [_place(customer, product) for _ in range(10)]
    target = newest_committed()
    index = es.current_index("orders_search")

    def refreshes() -> int:
        stats = es.client().indices.stats(index=index, metric="refresh")
        refresh = stats["indices"][index]["primaries"]["refresh"]
        return refresh.get("external_total", refresh["total"])

    before = refreshes()
    deadline = time.monotonic() + 60
    dead_lettered = 0
    while not checkpoint_position("orders_search").covers(target):
        assert time.monotonic() < deadline
        dead_lettered += _run("orders_search").dead_lettered
    assert dead_lettered == 1
    assert refreshes() - before <= 2, f"{refreshes() - before} refreshes for {len(orders)} rows"
    assert_views_fresh("orders_search")


def _clone_order(order: Order, copies: int) -> None:
    """Give the order's customer `copies` more orders like it, straight in SQL (a
    customer with thousands of orders, without thousands of commands)."""
    from django.db import connection

    from orders.models import OrderLine

    orders, lines = Order._meta.db_table, OrderLine._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new AS (INSERT INTO {orders} (id, customer_id, status, total_cents, "
            "version, created_at, updated_at) SELECT gen_random_uuid(), customer_id, status, "
            f"total_cents, version, created_at, updated_at FROM {orders}, "
            "generate_series(1, %s) WHERE id = %s RETURNING id) "
            f"INSERT INTO {lines} (order_id, product_id, quantity, unit_price_cents, "
            "product_name, product_sku) SELECT new.id, l.product_id, l.quantity, "
            f"l.unit_price_cents, l.product_name, l.product_sku FROM new, {lines} l "
            "WHERE l.order_id = %s",
            [copies, order.pk, order.pk],
        )


def test_a_customer_update_loads_their_orders_page_by_page(
    read_models, settings, make_customer, make_product
):
    """A CustomerUpdated row touches every order of the customer (5,000 here): the
    orders_search projector loads and writes them a batch at a time, never all at once
    (memory follows the batch size; bench/customer_with_many_orders.py measures it on
    100,000 orders)."""
    from orders import outbox

    settings.READMODELS = {**settings.READMODELS, "BATCH_SIZE": 500}
    customer = make_customer(balance_cents=1_000_000)
    _clone_order(_place(customer, make_product(stock=100)), 4999)
    project_all()
    before = checkpoint_position("orders_search")
    commands.update_customer(customer_id=customer.pk, name="Renamed With Many Orders")
    rows = wait_until(
        lambda: outbox.read_after(before, limit=10, aggregate_types=["customer"]).rows,
        timeout=60,
    )
    assert [row.event_type for row in rows] == ["CustomerUpdated"]

    projector = projectors.get("orders_search")
    pages = list(projector.document_batches(rows, 500))
    assert max(len(page) for page in pages) <= 500
    keys = [doc.key for page in pages for doc in page]
    assert len(keys) == len(set(keys)) == 5000
    assert set(keys) == {str(pk) for pk in Order.objects.values_list("pk", flat=True)}

    project_all()
    docs = view_docs("orders_search")
    assert len(docs) == 5000
    assert {body["customer_name"] for _, body in docs.values()} == {"Renamed With Many Orders"}
    assert_views_fresh("orders_search")


def test_a_metrics_scrape_counts_rows_behind_only_up_to_a_cap(
    read_models, make_product, client, settings
):
    """A scrape counts each segment's rows behind along the commit-order index and stops
    at a cap, so a segment far behind (a long outage, a new segment) does not make every
    scrape scan the outbox after its checkpoint. Operators' status keeps exact counts."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from readmodels.operations import status

    for n in range(30):
        make_product(name=f"Butter Dish {n}")
    wait_until(lambda: {s.projector: s for s in status.segment_statuses()}[
        "products_search"].rows_behind == 30, timeout=60)
    capped = {s.projector: s for s in status.segment_statuses(rows_behind_cap=10)}
    assert capped["products_search"].rows_behind == 10
    assert capped["products_search"].lag_seconds > 0

    settings.METRICS_TOKEN = "scraper-token"
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer scraper-token"
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/metrics")
    assert response.status_code == 200
    # (The outbox size is an exact count only while the table is small: status.outbox_size.)
    behind = [q["sql"] for q in queries if "(xid, position) >" in q["sql"]
              and "count(*)" in q["sql"].lower()]
    assert len(behind) == len(capped) and all("LIMIT" in sql for sql in behind), behind


def test_rows_the_store_refuses_are_blamed_only_while_it_takes_other_rows(
    read_models, settings, make_customer, make_product
):
    """Elasticsearch refuses a document for its own reason (400: an item count past a
    32-bit integer). While it refuses every row of the batch, nothing tells the rows'
    fault from the store's, so no row is blamed and the segment backs off. Once it takes
    another row, the refused rows are retried and set aside, and the segment moves on."""
    from django.db import connection

    from orders.models import OrderLine

    settings.READMODELS = {**settings.READMODELS, "POISON_MAX_ATTEMPTS": 2}
    customer = make_customer(balance_cents=1_000_000)
    product = make_product(stock=1000)
    project_all()
    bad = [_place(customer, product) for _ in range(3)]
    lines = OrderLine._meta.db_table
    with connection.cursor() as cursor:
        # No command takes such quantities (they are capped): written in SQL.
        cursor.execute(
            f"INSERT INTO {lines} (order_id, product_id, quantity, unit_price_cents, "
            "product_name, product_sku) SELECT order_id, product_id, 2147483647, "
            f"unit_price_cents, product_name, product_sku FROM {lines} "
            "WHERE order_id = ANY(%s::uuid[])",
            [[o.pk for o in bad]],
        )
    for _ in range(3):
        refused = _run_until_it_raises("orders_search", StoreUnavailable)
        assert "refused every row" in str(refused)
    assert not DeadLetter.objects.exists()
    assert _checkpoint("orders_search").failures == 3

    good = _place(customer, product)
    target = newest_committed()
    deadline = time.monotonic() + 60
    while not checkpoint_position("orders_search").covers(target):
        assert time.monotonic() < deadline, "the segment did not move past the refused rows"
        try:
            _run("orders_search")
        except failures.RetryLater:
            pass  # a refused row blamed, with attempts left
        except StoreUnavailable:
            pass  # the good row is not readable yet (a transaction elsewhere holds it back)
    letters = DeadLetter.objects.filter(projector="orders_search")
    assert {letter.aggregate_id for letter in letters} == {str(o.pk) for o in bad}
    assert all(letter.status == DeadLetterStatus.DEAD for letter in letters)
    assert "out of range" in letters[0].error
    from tests.support.readside import fresh_docs

    assert view_docs("orders_search")[str(good.pk)] == fresh_docs("orders_search")[str(good.pk)]

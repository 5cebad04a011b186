"""Segmented projectors: two worker processes share the work, each key stays in order.

customer_dashboard and order_summary run in two segments (rows split by partition key,
the customer). Each segment has a checkpoint of its own and runs in one place at a
time (a PostgreSQL advisory lock), so two workers project in parallel without ever
writing one key from two places.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import ExitStack

import pytest
from django.db import connection

from orders import commands, outbox
from readmodels import projectors, tasks
from readmodels.models import Checkpoint
from readmodels.pipeline import locks, runner
from readmodels.stores import redis_store
from tests.support.processes import celery_worker_process
from tests.support.readside import all_segments_cover, assert_views_fresh, fresh_docs, newest_committed

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

SEGMENTED = ("customer_dashboard", "order_summary")
WORKER_ENV = {"SEGMENTS_CUSTOMER_DASHBOARD": "2", "SEGMENTS_ORDER_SUMMARY": "2"}


@pytest.fixture
def two_segments(settings):
    """This process sees the same segment counts as the workers (whose env sets them)."""
    settings.READMODELS = {
        **settings.READMODELS,
        "SEGMENTS": {**settings.READMODELS["SEGMENTS"], **dict.fromkeys(SEGMENTED, 2)},
    }


def _segment_of(partition_key: str, segments: int = 2) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {outbox.segment_sql(segments)} FROM (SELECT %s::text AS partition_key) k",
            [partition_key],
        )
        return cursor.fetchone()[0]


class DashboardSampler(threading.Thread):
    """Reads every customer's dashboard version from Redis in a loop, as readers would."""

    def __init__(self, keys: list[str]):
        super().__init__(daemon=True)
        self.keys = keys
        self.seen: dict[str, list[int]] = defaultdict(list)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.rounds = 0

    def sample(self) -> None:
        gen = redis_store.generation("customer_dashboard")
        pipe = redis_store.client().pipeline(transaction=False)
        for key in self.keys:
            pipe.hget(redis_store.doc_key("customer_dashboard", key, gen), "v")
        for key, value in zip(self.keys, pipe.execute(), strict=True):
            # A document that vanished after being seen counts as version 0: backwards.
            if value is not None or self.seen[key]:
                self.seen[key].append(int(value or 0))
        self.rounds += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.sample()
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_two_workers_project_two_segments_in_order(
    read_models, two_segments, make_customer, make_product
):
    from shop.celery import app

    app.control.purge()
    product = make_product(stock=1_000_000)
    customers = [make_customer(balance_cents=10_000_000) for _ in range(16)]
    assert {_segment_of(str(c.pk)) for c in customers} == {0, 1}, "customers in one segment only"

    sampler = DashboardSampler([str(c.pk) for c in customers])
    with ExitStack() as stack:
        workers = [
            stack.enter_context(celery_worker_process(name, ready=False, **WORKER_ENV))
            for name in ("seg-a", "seg-b")
        ]
        for worker in workers:
            worker.wait_ready()
        sampler.start()
        orders = defaultdict(list)
        for round_ in range(6):
            for n, customer in enumerate(customers):
                order = commands.place_order(
                    customer_id=customer.pk,
                    lines=[commands.LineRequest(product_id=product.pk, quantity=1 + n % 3)],
                ).value
                orders[customer.pk].append(order)
                if round_ % 2 == 1:
                    commands.pay_order(order_id=orders[customer.pk][-2].pk)
                if round_ == 5 and n % 3 == 0:
                    commands.cancel_order(order_id=order.pk)
                if n % 5 == round_ % 5:
                    commands.top_up_balance(customer_id=customer.pk, amount_cents=100)
            tasks.sweep.delay()  # what beat does every second
            time.sleep(0.3)
        target = newest_committed()
        deadline = time.monotonic() + 90
        while not all_segments_cover(target):
            for worker in workers:
                assert worker.alive(), worker.log()[-3000:]
            assert time.monotonic() < deadline, "the workers did not catch up"
            tasks.sweep.delay()
            time.sleep(0.3)
        sampler.stop.set()
        sampler.join(10)
        logs = {worker.name: worker.log() for worker in workers}
    assert sampler.error is None, sampler.error
    sampler.sample()  # one last look, after catching up

    for name in SEGMENTED:
        checkpoints = Checkpoint.objects.filter(projector=name)
        assert {(c.segment, c.segments) for c in checkpoints} == {(0, 2), (1, 2)}
        for checkpoint in checkpoints:
            assert checkpoint.rows_projected > 0, checkpoint
            assert checkpoint.failures == 0 and checkpoint.last_error == ""
    # Both workers did projection work.
    for name, log in logs.items():
        assert "projected " in log, f"worker {name} projected nothing\n{log[-3000:]}"
    assert_views_fresh()

    # Per key, the dashboard never went backwards, and it ended at the fresh version.
    fresh = fresh_docs("customer_dashboard")
    for key, versions in sampler.seen.items():
        assert versions == sorted(versions), f"dashboard {key} went backwards: {versions}"
        assert versions[-1] == fresh[key][0]
    assert len(sampler.seen) == len(customers)
    # The samples saw the views move while the commands ran (not only the end state).
    assert sum(len(set(v)) for v in sampler.seen.values()) > len(customers)
    assert sampler.rounds > 20


def test_a_segment_held_elsewhere_is_locked_out(read_models, two_segments, make_order):
    make_order()
    projector = projectors.get("customer_dashboard")
    held, release = threading.Event(), threading.Event()
    outcome: dict[str, bool] = {}

    def hold():
        # Another thread: another database connection, as another worker would have.
        try:
            with locks.try_lock(locks.segment_key("customer_dashboard", 0, 2)) as acquired:
                outcome["acquired"] = acquired
                held.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert outcome["acquired"]
        locked = runner.run_segment(projector, 0, 2, ignore_backoff=True)
        assert locked.locked_out and locked.rows == 0 and not locked.complete
        assert not Checkpoint.objects.filter(projector="customer_dashboard", segment=0).exists()
        # The other segment is free.
        other = runner.run_segment(projector, 1, 2, ignore_backoff=True)
        assert not other.locked_out and other.complete
    finally:
        release.set()
        holder.join(10)
    freed = runner.run_segment(projector, 0, 2, ignore_backoff=True)
    assert not freed.locked_out and freed.complete
    assert {c.segment for c in Checkpoint.objects.filter(projector="customer_dashboard")} == {0, 1}

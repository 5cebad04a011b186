"""Slow is not down: a store that answers too late keeps the projection moving.

Under load the Elasticsearch dev server serves one request at a time, and a bulk write
can wait behind other clients' requests past the client's timeout. That store is busy,
not gone: a backoff that grows with every timeout turns a busy second into half a
minute of lag. The fault here is real: a TCP proxy between the client and the
Elasticsearch server passes every request on, but holds back the answer to a bulk
write until the client has given up waiting (the server did the write; the client
only learns too late), exactly what a client sees of a server with a long queue.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest

from orders import commands
from orders.outbox import Position, high_water_mark
from readmodels import projectors, tasks
from readmodels.models import Checkpoint
from readmodels.pipeline import checkpoints, runner
from readmodels.stores import StoreUnavailable
from shop.celery import app as celery_app
from tests.support.processes import celery_worker_process
from tests.support.readside import (
    assert_views_fresh,
    checkpoint_position,
    newest_committed,
    project_all,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

VIEW = "orders_search"


class LateAnswers:
    """A TCP proxy that answers the next `hold` bulk writes only after the client left."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.hold = 0
        self.answered_too_late = 0  # held answers whose client had hung up
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        self.closed = False
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold_next_bulk_writes(self, count: int) -> None:
        with self.lock:
            self.hold = count

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            state = {"held": False}
            self._spawn(self._requests, client, server, state)
            self._spawn(self._answers, server, client, state)

    def _requests(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        try:
            while chunk := client.recv(65536):
                if b"/_bulk" in chunk:
                    with self.lock:
                        if self.hold > 0:
                            self.hold -= 1
                            state["held"] = True
                server.sendall(chunk)
        except OSError:
            pass
        finally:
            if state["held"]:
                with self.lock:
                    self.answered_too_late += 1
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _answers(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while chunk := server.recv(65536):
                if not state["held"]:  # a held answer never reaches the client
                    client.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        """Stop, and cut every connection: a client waiting for a held answer fails now."""
        self.closed = True
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def late_answers(url: str):
    parsed = urlparse(url)
    proxy = LateAnswers((parsed.hostname or "127.0.0.1", parsed.port or 9200))
    try:
        yield proxy
    finally:
        proxy.close()


def _wait_until_readable(target: Position) -> None:
    """Until the outbox reader can see the rows (a write transaction anywhere in the
    cluster holds the horizon back), so that the run under test has rows to write."""
    wait_until(lambda: high_water_mark().covers(target), timeout=60)


def test_a_store_that_answers_too_late_gets_the_next_batch_at_once(
    read_models, settings, make_customer, make_product
):
    product = make_product(stock=1000)
    customers = [make_customer(balance_cents=100_000) for _ in range(3)]
    project_all()
    before = checkpoint_position(VIEW)
    real_url, real_conf = settings.ELASTICSEARCH_URL, settings.READMODELS

    with late_answers(settings.ELASTICSEARCH_URL) as proxy:
        settings.ELASTICSEARCH_URL = proxy.url
        # A short client timeout only makes the test quicker; nothing is timed.
        settings.READMODELS = {**settings.READMODELS, "STORE_TIMEOUT_SECONDS": 1.0}
        for customer in customers:
            commands.place_order(customer_id=customer.pk,
                                 lines=[commands.LineRequest(product.pk, 1)])
        target = newest_committed()
        _wait_until_readable(target)
        proxy.hold_next_bulk_writes(1)

        with pytest.raises(StoreUnavailable, match="timed out"):
            runner.run_segment(projectors.get(VIEW))
        assert proxy.answered_too_late == 1
        checkpoint = Checkpoint.objects.get(projector=VIEW, segment=0, segments=1)
        assert checkpoint_position(VIEW) == before, "no step past rows it did not see written"
        assert "timed out" in checkpoint.last_error
        # Busy is not down: no backoff, so the very next run (which honours backoffs,
        # as the tasks' runs do) writes the rows.
        assert checkpoint.retry_after is None

        result = runner.run_segment(projectors.get(VIEW))
        assert not result.backing_off
        assert result.rows >= len(customers) and result.complete
        assert checkpoint_position(VIEW).covers(target)
        checkpoint.refresh_from_db()
        assert checkpoint.failures == 0 and checkpoint.retry_after is None
    settings.ELASTICSEARCH_URL, settings.READMODELS = real_url, real_conf
    assert_views_fresh(VIEW)


def test_a_store_that_keeps_answering_too_late_is_backed_off_after_a_few_attempts(
    read_models, settings, make_customer, make_product
):
    """Past a few timeouts in a row the store counts as unreachable: backoff, as before."""
    product = make_product(stock=1000)
    customer = make_customer(balance_cents=100_000)
    project_all()
    real_url, real_conf = settings.ELASTICSEARCH_URL, settings.READMODELS

    with late_answers(settings.ELASTICSEARCH_URL) as proxy:
        settings.ELASTICSEARCH_URL = proxy.url
        settings.READMODELS = {**settings.READMODELS, "STORE_TIMEOUT_SECONDS": 0.5}
        commands.place_order(customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 1)])
        _wait_until_readable(newest_committed())
        proxy.hold_next_bulk_writes(checkpoints.SLOW_ATTEMPTS_BEFORE_BACKOFF + 1)
        for attempt in range(1, checkpoints.SLOW_ATTEMPTS_BEFORE_BACKOFF + 2):
            with pytest.raises(StoreUnavailable, match="timed out"):
                runner.run_segment(projectors.get(VIEW))
            checkpoint = Checkpoint.objects.get(projector=VIEW, segment=0, segments=1)
            assert checkpoint.failures == attempt
            backing_off = attempt > checkpoints.SLOW_ATTEMPTS_BEFORE_BACKOFF
            assert (checkpoint.retry_after is not None) == backing_off, (
                attempt, checkpoint.last_error)
        assert runner.run_segment(projectors.get(VIEW)).backing_off

    settings.ELASTICSEARCH_URL, settings.READMODELS = real_url, real_conf
    project_all()
    assert_views_fresh(VIEW)


def test_a_write_stuck_in_elasticsearch_holds_no_redis_view_back(
    read_models, settings, make_customer, make_product
):
    """The shipped worker has two processes, one per store's lane. While a bulk write
    hangs in Elasticsearch (its answer held back), the sweep, every half second as beat
    sends it, must not give the Elasticsearch lane the other process too: the Redis
    views keep projecting new orders."""
    # Messages earlier tests queued for lanes (their flags were reset since) would give
    # this worker a second task per lane from the start: a fresh worker, an empty queue.
    celery_app.control.purge()
    product = make_product(stock=1000)
    customers = [make_customer(balance_cents=100_000) for _ in range(4)]
    project_all()

    def place(customer):
        commands.place_order(customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 1)])

    with late_answers(settings.ELASTICSEARCH_URL) as proxy, celery_worker_process(
        "two", concurrency=2, ELASTICSEARCH_URL=proxy.url,
        # Longer than the test waits: the write stays stuck for all of it.
        READMODELS_STORE_TIMEOUT_SECONDS="300",
    ) as worker:
        proxy.hold_next_bulk_writes(10**6)
        place(customers[0])
        wait_until(lambda: proxy.hold < 10**6, timeout=60,
                   message="no bulk write reached Elasticsearch")
        # The write stays stuck for longer than the sweep takes a lane's task for dead
        # when it has not heard from it (two intervals); beat keeps sweeping meanwhile.
        stuck_for = 3 * settings.READMODELS["SWEEP_INTERVAL_SECONDS"]
        stuck_until = time.monotonic() + stuck_for
        while time.monotonic() < stuck_until:
            tasks.sweep.delay()
            time.sleep(0.5)  # beat's cadence (twice as often), for the length of the fault
        for customer in customers[1:]:
            place(customer)
        target = newest_committed()
        _wait_until_readable(target)

        def redis_views_caught_up():
            assert worker.alive(), worker.log()[-3000:]
            tasks.sweep.delay()  # what beat does (every second; here twice as often)
            return all(checkpoint_position(v).covers(target)
                       for v in ("order_summary", "customer_dashboard"))

        wait_until(redis_views_caught_up, timeout=60, interval=0.5,
                   message="a stuck Elasticsearch write held the Redis views back")
        # The Elasticsearch write was still stuck all the while (no answer came back).
        assert proxy.hold <= 10**6 - 1
        assert not checkpoint_position(VIEW).covers(target)
    project_all()
    assert_views_fresh()

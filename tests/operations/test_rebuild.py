"""Zero-downtime rebuilds: readers never see an empty or partial view, no change is lost."""

import threading

import pytest
from django.db import connection

from orders import commands
from orders.outbox import Position
from readmodels import config, projectors, queries
from readmodels.models import Rebuild, RebuildStatus
from readmodels.operations import rebuild
from readmodels.pipeline import locks, progress, runner
from readmodels.stores import es, redis_store
from tests.support.readside import fresh_docs, project_all, view_docs
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _writes_while(stop: threading.Event, customers, products, errors: list) -> None:
    try:
        i = 0
        while not stop.is_set():
            customer = customers[i % len(customers)]
            product = products[i % len(products)]
            order = commands.place_order(
                customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 1)]
            )
            if i % 2:
                commands.pay_order(order_id=order.value.pk)
            commands.restock_product(product_id=product.pk, quantity=1)
            i += 1
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        connection.close()


def _reads_while(stop: threading.Event, name: str, probe, seen: list, errors: list) -> None:
    try:
        while not stop.is_set():
            seen.append(probe())
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.parametrize("name", ["customer_dashboard", "products_search", "orders_search"])
def test_rebuild_while_writes_continue(read_models, make_customer, make_product, name):
    customers = [make_customer(balance_cents=10_000_000) for _ in range(5)]
    products = [make_product(stock=100_000, name=f"Widget {i}") for i in range(5)]
    for customer in customers:
        commands.place_order(customer_id=customer.pk, lines=[commands.LineRequest(products[0].pk, 1)])
    project_all()
    expected_count = len(fresh_docs(name))

    def probe():
        if name == "customer_dashboard":
            return sum(1 for c in customers if queries.customer_dashboard(c.pk) is not None)
        if name == "products_search":
            return queries.search_products(queries.ProductSearch(q="widget"))["count"]
        return es.search(name, query={"match_all": {}}, size=0, track_total_hits=True)["hits"][
            "total"
        ]["value"]

    before = Rebuild.objects.filter(projector=name).count()
    stop, errors, seen = threading.Event(), [], []
    threads = [
        threading.Thread(target=_writes_while, args=(stop, customers, products, errors)),
        threading.Thread(target=_reads_while, args=(stop, name, probe, seen, errors)),
    ]
    for thread in threads:
        thread.start()
    try:
        run = rebuild.rebuild(name, batch_size=2, grace_seconds=0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    assert run.status == RebuildStatus.DONE
    assert Rebuild.objects.filter(projector=name).count() == before + 1
    # Readers always saw the whole view: never empty, never fewer documents than it had.
    assert seen and min(seen) >= (len(customers) if name == "customer_dashboard" else expected_count
                                  if name == "products_search" else len(customers))

    # The new generation serves, the old one is gone, and after the live projector has
    # caught up nothing committed during the rebuild is missing.
    project_all()
    assert view_docs(name) == fresh_docs(name)
    if projectors.get(name).store.name == "elasticsearch":
        assert es.current_index(name) == es.index_name(name, run.generation)
        assert not es.client().indices.exists(index=es.index_name(name, run.previous_generation))
    else:
        assert redis_store.generation(name) == run.generation
        assert not list(redis_store.iter_keys(name, run.previous_generation))


def test_rebuild_resumes_after_a_crash(read_models, make_customer):
    customers = [make_customer(balance_cents=1) for _ in range(7)]
    project_all()
    calls = {"n": 0}
    original = projectors.get("customer_dashboard").documents_by_key

    def crash_after_two_batches(keys):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return original(keys)

    projector = projectors.get("customer_dashboard")
    projector.documents_by_key = crash_after_two_batches
    try:
        with pytest.raises(RuntimeError):
            rebuild.rebuild("customer_dashboard", batch_size=2, grace_seconds=0)
    finally:
        del projector.documents_by_key
    crashed = Rebuild.objects.get(projector="customer_dashboard", status=RebuildStatus.COPYING)
    assert crashed.copied == 4 and crashed.cursor == str(customers[3].pk)
    assert "worker died" in crashed.error
    # The live generation kept serving throughout.
    assert redis_store.generation("customer_dashboard") == (crashed.previous_generation or 1)

    resumed = rebuild.rebuild("customer_dashboard", batch_size=2, grace_seconds=0)
    assert resumed.pk == crashed.pk
    assert resumed.status == RebuildStatus.DONE
    assert resumed.copied == 7
    assert view_docs("customer_dashboard") == fresh_docs("customer_dashboard")


def test_retention_keeps_the_rows_an_unfinished_rebuild_still_has_to_catch_up(
    read_models, settings, make_product
):
    """A rebuild stopped mid-copy and resumed after the retention period misses nothing."""
    from orders.models import OutboxMessage
    from readmodels.operations import retention

    settings.READMODELS = {**settings.READMODELS, "OUTBOX_RETENTION_DAYS": 1}
    products = [make_product(stock=5) for _ in range(4)]
    project_all()
    projector = projectors.get("products_search")
    original = projector.documents_by_key
    calls = {"n": 0}

    def crash_after_one_batch(keys):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker died")
        return original(keys)

    projector.documents_by_key = crash_after_one_batch
    try:
        with pytest.raises(RuntimeError):
            rebuild.rebuild("products_search", batch_size=2, grace_seconds=0)
    finally:
        del projector.documents_by_key
    stopped = Rebuild.objects.get(projector="products_search", status=RebuildStatus.COPYING)
    assert stopped.copied == 2

    # A product the rebuild has already copied changes; every live projector passes it.
    first = min(products, key=lambda p: p.pk)
    commands.restock_product(product_id=first.pk, quantity=7)
    project_all()
    restock_rows = set(
        OutboxMessage.objects.filter(
            aggregate_type="product", aggregate_id=str(first.pk), xid__gt=stopped.caught_up_xid
        ).values_list("position", flat=True)
    )
    assert restock_rows
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OutboxMessage._meta.db_table} SET created_at = now() - interval '2 days'"
        )

    retention.purge()
    remaining = set(OutboxMessage.objects.values_list("position", flat=True))
    assert restock_rows <= remaining

    resumed = rebuild.rebuild("products_search", batch_size=2, grace_seconds=0)
    assert resumed.pk == stopped.pk and resumed.status == RebuildStatus.DONE
    assert view_docs("products_search") == fresh_docs("products_search")
    # Finished: nothing holds those rows any more.
    retention.purge()
    assert not restock_rows & set(OutboxMessage.objects.values_list("position", flat=True))


def _live_projector_runs(name: str) -> list[runner.RunResult]:
    """Run every segment of the live projector once, on its own connection, as a worker."""
    results = []

    def run():
        try:
            projector = projectors.get(name)
            segments = config.segments(name)
            for segment in range(segments):
                results.append(runner.run_segment(projector, segment, segments))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    return results


def _pay_while_rebuilding(name: str, order, seen: dict):
    """A step hook: at the last moment before the switch, a payment commits and the
    live projector runs; right after the switch, note what a reader would see."""

    def on_step(step, run):
        if step == "caught_up" and "paid_at" not in seen:
            seen["paid_at"] = commands.pay_order(order_id=order.pk).position
            seen["live"] = _live_projector_runs(name)
        elif step == "switched" and "reached" not in seen:
            seen["reached"] = progress.state(name).covers(seen["paid_at"])
            seen["shown"] = view_docs(name)[str(order.pk)][1]["status"]
            if seen.get("crash"):
                raise RuntimeError("worker lost right after the switch")

    return on_step


def _readers_see_what_their_token_reached(name: str, order, paid_at: Position) -> bool:
    if not progress.state(name).covers(paid_at):
        return True
    return view_docs(name)[str(order.pk)][1]["status"] == "paid"


@pytest.mark.parametrize("name", ["order_summary", "orders_search"])
def test_the_switch_never_hides_a_write_the_live_projector_has_published(
    read_models, make_order, name
):
    order = make_order()
    project_all()
    seen: dict = {}

    run = rebuild.rebuild(name, grace_seconds=0, on_step=_pay_while_rebuilding(name, order, seen))

    assert run.status == RebuildStatus.DONE
    # Right after the switch: if readers were told the payment is visible, it was.
    assert not seen["reached"] or seen["shown"] == "paid", seen
    project_all()
    assert progress.state(name).covers(seen["paid_at"])
    assert view_docs(name)[str(order.pk)][1]["status"] == "paid"
    assert view_docs(name) == fresh_docs(name)


def test_a_failed_final_step_is_resumed_without_an_operator(celery_worker_thread, make_order):
    name = "order_summary"
    order = make_order()
    project_all()
    seen: dict = {"crash": True}

    with pytest.raises(RuntimeError, match="worker lost"):
        rebuild.rebuild(name, grace_seconds=0, on_step=_pay_while_rebuilding(name, order, seen))
    stopped = Rebuild.objects.get(projector=name, generation=Rebuild.objects.filter(
        projector=name).order_by("-generation").first().generation)
    assert "worker lost" in stopped.error
    assert not seen["reached"] or seen["shown"] == "paid", seen
    # Meanwhile the live view answers for everything the live checkpoints cover.
    assert _readers_see_what_their_token_reached(name, order, seen["paid_at"])

    # No one runs it again: the rebuild finishes on its own.
    wait_until(
        lambda: Rebuild.objects.get(pk=stopped.pk).status == RebuildStatus.DONE,
        timeout=120, interval=0.2, message="the rebuild was not resumed",
    )
    assert redis_store.generation(name) == stopped.generation
    project_all()
    assert view_docs(name)[str(order.pk)][1]["status"] == "paid"
    assert view_docs(name) == fresh_docs(name)


def test_a_long_live_run_makes_the_last_step_wait_a_bounded_time_then_retry(
    read_models, make_order
):
    name = "order_summary"
    order = make_order()
    project_all()
    held, release = threading.Event(), threading.Event()

    def long_live_run():
        try:
            with locks.try_lock(locks.segment_key(name, 0, config.segments(name))) as acquired:
                assert acquired
                held.set()
                release.wait(120)
        finally:
            connection.close()

    holder = threading.Thread(target=long_live_run)
    holder.start()
    try:
        assert held.wait(60)
        live_before = redis_store.generation(name)
        with pytest.raises(rebuild.LiveProjectorBusy):
            rebuild.rebuild(name, grace_seconds=0, lock_wait_seconds=0.5)
        stopped = Rebuild.objects.get(projector=name, status=RebuildStatus.CATCHING_UP)
        assert "LiveProjectorBusy" in stopped.error
        assert redis_store.generation(name) == live_before  # the old generation serves
    finally:
        release.set()
        holder.join(60)

    commands.pay_order(order_id=order.pk)
    finished = rebuild.resume(stopped.pk)
    assert finished.pk == stopped.pk and finished.status == RebuildStatus.DONE
    assert redis_store.generation(name) == stopped.generation
    project_all()
    assert view_docs(name) == fresh_docs(name)

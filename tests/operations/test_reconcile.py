"""Reconcile finds exactly what was corrupted in each view, and repairs exactly that."""

import json

import pytest

from orders import commands
from readmodels import projectors
from readmodels.models import ReconcileRun
from readmodels.operations import reconcile
from readmodels.stores import es, redis_store
from tests.support.readside import fresh_docs, project_all, view_docs
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop_with_views(read_models, make_customer, make_product, make_order):
    customers = [make_customer(balance_cents=100_000) for _ in range(3)]
    products = [make_product() for _ in range(4)]
    orders = [make_order(customer=c, lines=[(p, 1)]) for c in customers for p in products[:2]]
    commands.pay_order(order_id=orders[0].pk)
    project_all()
    return customers, products, orders


def _corrupt_redis(name: str, keys: list[str]) -> dict[str, str]:
    """Delete one document, wind one back a version, add one that should not exist."""
    client = redis_store.client()
    deleted, old = keys[0], keys[1]
    client.delete(redis_store.doc_key(name, deleted))
    client.hset(redis_store.doc_key(name, old), "v", 0)
    stray = "999999999" if name == "customer_dashboard" else "00000000-0000-0000-0000-000000000000"
    client.hset(redis_store.doc_key(name, stray), mapping={"v": 5, "d": json.dumps({})})
    return {"missing": deleted, "behind": old, "stray": stray}


def _corrupt_es(name: str, keys: list[str]) -> dict[str, str]:
    store = es.client()
    target = es.alias(name)
    deleted, old = keys[0], keys[1]
    store.delete(index=target, id=deleted)
    source = store.get(index=target, id=old)["_source"]
    # An older version of the document, as if a write had been lost.
    store.delete(index=target, id=old)
    store.index(index=target, id=old, document=source, version=1, version_type="external")
    stray = "999999999" if name == "products_search" else "00000000-0000-0000-0000-000000000000"
    stray_doc = dict(source)
    store.index(index=target, id=stray, document=stray_doc, version=7, version_type="external")
    store.indices.refresh(index=target)
    return {"missing": deleted, "behind": old, "stray": stray}


@pytest.mark.parametrize(
    "name", ["order_summary", "customer_dashboard", "orders_search", "products_search"]
)
def test_reconcile_finds_and_repairs_exactly_the_corruption(shop_with_views, name):
    projector = projectors.get(name)
    assert view_docs(name) == fresh_docs(name)
    keys = sorted(fresh_docs(name))
    corrupted = (
        _corrupt_es(name, keys) if projector.store.name == "elasticsearch" else _corrupt_redis(name, keys)
    )

    report = reconcile.reconcile(name)
    assert report.examples["missing"] == [corrupted["missing"]]
    assert report.examples["behind"] == [corrupted["behind"]]
    assert report.examples["stray"] == [corrupted["stray"]]
    assert report.counts == {"missing": 1, "behind": 1, "ahead": 0, "stray": 1}
    assert report.repaired == 0
    assert view_docs(name) != fresh_docs(name)

    repaired = reconcile.reconcile(name, repair=True)
    assert repaired.repaired == 3
    assert view_docs(name) == fresh_docs(name)
    clean = reconcile.reconcile(name)
    assert clean.differences == 0
    assert ReconcileRun.objects.filter(projector=name).count() == 3
    assert reconcile.last_result(name).missing == 0


def test_reconcile_command_exit_code_says_if_views_differ(shop_with_views):
    from django.core.management import call_command

    redis_store.client().delete(
        redis_store.doc_key("order_summary", str(shop_with_views[2][0].pk))
    )
    with pytest.raises(SystemExit) as exited:
        call_command("projections", "reconcile", "order_summary")
    assert exited.value.code == 1
    call_command("projections", "reconcile", "order_summary", "--repair")
    call_command("projections", "reconcile", "--all")  # clean: no exit


def test_a_redis_that_lost_its_data_is_healed_by_the_next_run(shop_with_views):
    """Redis restarted empty (or flushed): the projector notices and re-projects."""
    client = redis_store.client()
    for name in ("order_summary", "customer_dashboard"):
        keys = list(client.scan_iter(match=f"{redis_store.key_prefix(name)}:*"))
        client.delete(*keys)
        assert view_docs(name) == {}
    project_all()
    for name in ("order_summary", "customer_dashboard"):
        assert view_docs(name) == fresh_docs(name)
        assert reconcile.reconcile(name).differences == 0


def test_a_lost_index_is_created_again_and_refilled(shop_with_views, settings):
    # Projectors look for a lost index every 30 sweep intervals (and at once after a
    # failed write); a short interval keeps the test to the behaviour, not the period.
    settings.READMODELS = {**settings.READMODELS, "SWEEP_INTERVAL_SECONDS": 0.01}
    store = es.client()
    store.indices.delete(index=es.current_index("products_search"))

    def refilled():
        project_all()
        return es.current_index("products_search") is not None and (
            view_docs("products_search") == fresh_docs("products_search")
        )

    wait_until(refilled, timeout=60, message="the lost index was not made again and refilled")


@pytest.mark.parametrize("name", ["order_summary", "orders_search"])
def test_repair_never_moves_a_view_backwards_when_a_change_lands_mid_check(
    shop_with_views, name
):
    """A payment committed and projected between reconcile's load and its version read.

    The stored document then looks ahead of what reconcile loaded; a repair that trusted
    that load would write the older document back, and no projector would ever fix it
    (their checkpoints already cover the payment).
    """
    _, _, orders = shop_with_views
    order = orders[1]
    projector = projectors.get(name)
    real_stored_versions = projector.stored_versions
    paid = {}

    def payment_lands_first(keys):
        # The reconcile has loaded its expected documents; the shop moves on meanwhile.
        if not paid:
            paid["token"] = commands.pay_order(order_id=order.pk).token
            project_all()
        return real_stored_versions(keys)

    projector.stored_versions = payment_lands_first
    try:
        report = reconcile.reconcile(name, repair=True)
    finally:
        del projector.stored_versions
    assert paid, "the interleaving did not happen"

    order.refresh_from_db()
    assert order.status == "paid"
    assert view_docs(name)[str(order.pk)][1]["status"] == "paid"
    assert view_docs(name) == fresh_docs(name)
    # Nothing was wrong with the store: nothing is reported ahead, nothing was rewritten.
    assert report.summary()["ahead"] == 0
    assert report.repaired == 0
    assert reconcile.reconcile(name).differences == 0


@pytest.mark.parametrize("name", ["order_summary", "orders_search"])
def test_a_document_ahead_of_postgresql_is_reported_for_a_rebuild_not_rewritten(
    shop_with_views, name, capsys
):
    from django.core.management import call_command

    from readmodels.operations import rebuild

    key = str(shop_with_views[2][3].pk)
    version, body = view_docs(name)[key]
    forged = {**body, "status": "shipped"}
    if projectors.get(name).store.name == "elasticsearch":
        es.client().index(
            index=es.alias(name), id=key, document=forged, version=version + 5,
            version_type="external", refresh=True,
        )
    else:
        redis_store.client().hset(
            redis_store.doc_key(name, key), mapping={"v": version + 5, "d": json.dumps(forged)}
        )

    report = reconcile.reconcile(name, repair=True)
    assert report.counts["ahead"] == 1 and report.examples["ahead"] == [key]
    assert report.repaired == 0 and report.needs_rebuild
    assert "rebuild" in report.advice
    # Left as it was: a repair never deletes a document to write a lower version.
    assert view_docs(name)[key] == (version + 5, forged)
    with pytest.raises(SystemExit) as exited:
        call_command("projections", "reconcile", name, "--repair")
    assert exited.value.code == 1
    assert f"projections rebuild {name}" in capsys.readouterr().err

    rebuild.rebuild(name, grace_seconds=0)
    assert view_docs(name) == fresh_docs(name)
    assert reconcile.reconcile(name).differences == 0


def test_the_report_keeps_counts_and_a_few_examples(shop_with_views):
    client = redis_store.client()
    keys = sorted(fresh_docs("order_summary"))
    client.delete(*[redis_store.doc_key("order_summary", key) for key in keys])

    report = reconcile.reconcile("order_summary", batch_size=2)
    assert report.counts["missing"] == len(keys) > reconcile.EXAMPLES
    examples = report.examples["missing"]
    assert len(examples) == reconcile.EXAMPLES and set(examples) <= set(keys)
    assert reconcile.last_result("order_summary").missing == len(keys)

"""Duplicates, replays and reordering never move a view backwards (Zulip-style checks:
project incrementally, rebuild from PostgreSQL, compare)."""

import pytest

from orders import commands
from readmodels import projectors
from readmodels.models import Checkpoint
from readmodels.stores import redis_store
from tests.support.readside import fresh_docs, project_all, view_docs

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["products_search", "orders_search", "order_summary", "customer_dashboard"]


@pytest.fixture
def busy_shop(read_models, make_customer, make_product):
    customers = [make_customer(balance_cents=1_000_000) for _ in range(3)]
    products = [make_product(stock=100) for _ in range(3)]
    orders = []
    for i, customer in enumerate(customers):
        for product in products:
            orders.append(commands.place_order(
                customer_id=customer.pk, lines=[commands.LineRequest(product.pk, 1 + i)]).value)
        project_all()
    commands.pay_order(order_id=orders[0].pk)
    commands.pay_order(order_id=orders[4].pk)
    commands.ship_order(order_id=orders[4].pk)
    commands.cancel_order(order_id=orders[1].pk)
    commands.update_customer(customer_id=customers[0].pk, name="Renamed")
    commands.update_product(product_id=products[0].pk, name="Renamed product")
    commands.restock_product(product_id=products[1].pk, quantity=5)
    project_all()
    return customers, products, orders


def test_incremental_projection_equals_a_fresh_one(busy_shop):
    for name in NAMES:
        assert view_docs(name) == fresh_docs(name), name


def test_the_same_batches_delivered_again_change_nothing(busy_shop):
    before = {name: view_docs(name) for name in NAMES}
    # Every checkpoint back to the start: every batch is delivered a second time.
    Checkpoint.objects.update(xid=0, position=0)
    project_all()
    for name in NAMES:
        assert view_docs(name) == before[name] == fresh_docs(name), name


def test_an_older_document_written_after_a_newer_one_is_refused(busy_shop):
    customers, products, orders = busy_shop
    # Documents of an early state, delivered late (as by a slow, reordered batch).
    stale = {}
    customer = customers[1]
    order = orders[3]
    for name, keys in [("order_summary", [str(order.pk)]),
                       ("customer_dashboard", [str(customer.pk)]),
                       ("orders_search", [str(order.pk)]),
                       ("products_search", [str(products[2].pk)])]:
        stale[name] = projectors.get(name).documents_by_key(keys)
    commands.pay_order(order_id=order.pk)
    commands.restock_product(product_id=products[2].pk, quantity=1)
    project_all()
    newer = {name: view_docs(name) for name in NAMES}
    for name, docs in stale.items():
        projectors.get(name).write(docs)  # the late, older write
    for name in NAMES:
        assert view_docs(name) == newer[name] == fresh_docs(name), name


def test_the_redis_compare_and_set_keeps_the_higher_version(read_models):
    from readmodels.stores.es import Doc

    redis_store.write_documents("order_summary", [Doc("k", 3, {"v": 3})])
    assert redis_store.write_documents("order_summary", [Doc("k", 2, {"v": 2})]) == (0, 1)
    assert redis_store.write_documents("order_summary", [Doc("k", 3, {"v": 3})]) == (0, 1)
    assert redis_store.read_document("order_summary", "k") == (3, {"v": 3})


def test_a_full_replay_from_zero_rebuilds_identical_views(busy_shop):
    before = {name: view_docs(name) for name in NAMES}
    Checkpoint.objects.all().delete()
    project_all()
    for name in NAMES:
        assert view_docs(name) == before[name], name

"""What each command appends to the outbox: one row per aggregate it changed.

Checked per command: how many rows, for which aggregates, at which versions (one
more per change of an aggregate), with which event types and payload fields.
"""

from __future__ import annotations

import pytest
from django.db import connection

from orders import commands, errors, outbox
from orders.models import Customer, OutboxMessage, Product
from shop.web.request_ids import current_request_id

pytestmark = pytest.mark.django_db


def _mark() -> int:
    return OutboxMessage.objects.order_by("-position").values_list("position", flat=True).first() or 0


def _rows_since(mark: int) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(position__gt=mark).order_by("position"))


def _shape(rows):
    return [(r.aggregate_type, r.aggregate_id, r.aggregate_version, r.event_type) for r in rows]


def _assert_committed_points_at_last_row(result, rows):
    last = rows[-1]
    assert result.position == outbox.Position(last.xid, last.position)
    assert outbox.decode_token(result.token) == result.position


def test_register_customer(django_user_model):
    mark = _mark()
    result = commands.register_customer(email=" Ann@Example.COM ", name="Ann", password="pw")
    customer = result.value

    rows = _rows_since(mark)
    assert _shape(rows) == [("customer", str(customer.pk), 1, "CustomerRegistered")]
    row = rows[0]
    assert row.partition_key == str(customer.pk)
    assert row.payload == {"balance_cents": 0, "email": "ann@example.com", "name": "Ann"}
    assert customer.version == 1
    assert django_user_model.objects.get(pk=customer.user_id).check_password("pw")
    _assert_committed_points_at_last_row(result, rows)


def test_top_up_balance(make_customer):
    customer = make_customer()
    mark = _mark()
    first = commands.top_up_balance(customer_id=customer.pk, amount_cents=700)
    second = commands.top_up_balance(customer_id=customer.pk, amount_cents=50)

    rows = _rows_since(mark)
    assert _shape(rows) == [
        ("customer", str(customer.pk), 2, "BalanceToppedUp"),
        ("customer", str(customer.pk), 3, "BalanceToppedUp"),
    ]
    assert [r.payload for r in rows] == [
        {"balance_cents": 700, "amount_cents": 700},
        {"balance_cents": 750, "amount_cents": 50},
    ]
    assert (first.value.version, second.value.version) == (2, 3)
    assert Customer.objects.get(pk=customer.pk).version == 3
    _assert_committed_points_at_last_row(second, rows)


def test_update_customer(make_customer):
    customer = make_customer()
    mark = _mark()
    commands.update_customer(customer_id=customer.pk, name="Renamed")
    rows = _rows_since(mark)
    assert _shape(rows) == [("customer", str(customer.pk), 2, "CustomerUpdated")]
    assert rows[0].payload == {"balance_cents": 0, "name": "Renamed"}


def test_create_product():
    mark = _mark()
    result = commands.create_product(
        sku="MUG-1", name="Mug", category="kitchen", price_cents=1299, stock=7, description="Blue"
    )
    product = result.value
    rows = _rows_since(mark)
    assert _shape(rows) == [("product", str(product.pk), 1, "ProductCreated")]
    assert rows[0].partition_key == str(product.pk)
    assert rows[0].payload == {
        "sku": "MUG-1",
        "price_cents": 1299,
        "stock": 7,
        "active": True,
        "name": "Mug",
        "category": "kitchen",
    }
    _assert_committed_points_at_last_row(result, rows)


def test_update_product(make_product):
    product = make_product(price_cents=1000, name="Old")
    mark = _mark()
    result = commands.update_product(product_id=product.pk, price_cents=1500, name="Old", active=False)

    rows = _rows_since(mark)
    assert _shape(rows) == [("product", str(product.pk), 2, "ProductUpdated")]
    payload = rows[0].payload
    assert payload["changed"] == ["active", "price_cents"]  # the name did not change
    assert (payload["price_cents"], payload["active"], payload["stock"]) == (1500, False, 10)
    assert result.value.version == 2
    assert Product.objects.get(pk=product.pk).version == 2


def test_restock_product(make_product):
    product = make_product(stock=3)
    mark = _mark()
    commands.restock_product(product_id=product.pk, quantity=4)
    rows = _rows_since(mark)
    assert _shape(rows) == [("product", str(product.pk), 2, "ProductRestocked")]
    assert (rows[0].payload["stock"], rows[0].payload["quantity"]) == (7, 4)


def test_place_order_over_three_products_writes_four_rows(make_customer, make_product):
    customer = make_customer(balance_cents=10_000)
    products = [make_product(price_cents=100 * (i + 1), stock=10) for i in range(3)]
    commands.restock_product(product_id=products[1].pk, quantity=5)  # version 2 now
    mark = _mark()
    # Lines out of id order and one product twice: merged, and product rows in id order.
    lines = [
        commands.LineRequest(product_id=products[2].pk, quantity=1),
        commands.LineRequest(product_id=products[0].pk, quantity=2),
        commands.LineRequest(product_id=products[1].pk, quantity=1),
        commands.LineRequest(product_id=products[0].pk, quantity=1),
    ]
    result = commands.place_order(customer_id=customer.pk, lines=lines)
    order = result.value

    rows = _rows_since(mark)
    assert _shape(rows) == [
        ("order", str(order.pk), 1, "OrderPlaced"),
        ("product", str(products[0].pk), 2, "StockReserved"),
        ("product", str(products[1].pk), 3, "StockReserved"),
        ("product", str(products[2].pk), 2, "StockReserved"),
    ]
    placed = rows[0]
    assert placed.partition_key == str(customer.pk)
    assert placed.payload == {
        "customer_id": customer.pk,
        "status": "pending",
        "total_cents": 3 * 100 + 1 * 200 + 1 * 300,
        "lines": [
            {"product_id": products[2].pk, "quantity": 1},
            {"product_id": products[0].pk, "quantity": 3},
            {"product_id": products[1].pk, "quantity": 1},
        ],
    }
    reserved = {r.aggregate_id: r.payload for r in rows[1:]}
    assert [(reserved[str(p.pk)]["stock"], reserved[str(p.pk)]["quantity"]) for p in products] == [
        (7, 3),
        (14, 1),
        (9, 1),
    ]
    assert all(r.payload["order_id"] == str(order.pk) for r in rows[1:])
    assert all(r.partition_key == r.aggregate_id for r in rows[1:])
    _assert_committed_points_at_last_row(result, rows)


def test_pay_order_writes_the_order_and_the_customer(make_customer, make_order):
    customer = make_customer(balance_cents=5000)
    order = make_order(customer=customer)  # 1000
    mark = _mark()
    result = commands.pay_order(order_id=order.pk)

    rows = _rows_since(mark)
    assert _shape(rows) == [
        ("order", str(order.pk), 2, "OrderPaid"),
        ("customer", str(customer.pk), 3, "CustomerCharged"),
    ]
    assert rows[0].payload == {"customer_id": customer.pk, "status": "paid", "total_cents": 1000}
    assert rows[1].payload == {"balance_cents": 4000, "order_id": str(order.pk), "amount_cents": 1000}
    _assert_committed_points_at_last_row(result, rows)


def test_cancel_pending_order_writes_the_order_and_its_products(make_customer, make_product, make_order):
    customer = make_customer(balance_cents=5000)
    first, second = make_product(stock=5), make_product(stock=5)
    order = make_order(customer=customer, lines=[(second, 2), (first, 1)])
    mark = _mark()
    result = commands.cancel_order(order_id=order.pk)

    rows = _rows_since(mark)
    assert _shape(rows) == [
        ("order", str(order.pk), 2, "OrderCancelled"),
        ("product", str(first.pk), 3, "StockReleased"),
        ("product", str(second.pk), 3, "StockReleased"),
    ]
    assert rows[0].payload == {
        "customer_id": customer.pk,
        "status": "cancelled",
        "total_cents": 3000,
        "refunded": False,
    }
    assert [(r.payload["stock"], r.payload["quantity"], r.payload["order_id"]) for r in rows[1:]] == [
        (5, 1, str(order.pk)),
        (5, 2, str(order.pk)),
    ]
    _assert_committed_points_at_last_row(result, rows)


def test_cancel_paid_order_writes_the_order_the_customer_and_its_products(
    make_customer, make_product, make_order
):
    customer = make_customer(balance_cents=5000)  # version 2
    first, second = make_product(stock=5), make_product(stock=5)
    order = make_order(customer=customer, lines=[(first, 1), (second, 1)])
    commands.pay_order(order_id=order.pk)  # customer version 3
    mark = _mark()
    commands.cancel_order(order_id=order.pk)

    rows = _rows_since(mark)
    assert _shape(rows) == [
        ("order", str(order.pk), 3, "OrderCancelled"),
        ("customer", str(customer.pk), 4, "CustomerRefunded"),
        ("product", str(first.pk), 3, "StockReleased"),
        ("product", str(second.pk), 3, "StockReleased"),
    ]
    assert rows[0].payload["refunded"] is True
    assert rows[1].payload == {"balance_cents": 5000, "order_id": str(order.pk), "amount_cents": 2000}
    assert rows[1].partition_key == str(customer.pk)


def test_ship_order_writes_the_order(make_customer, make_order):
    customer = make_customer(balance_cents=5000)
    order = make_order(customer=customer)
    commands.pay_order(order_id=order.pk)
    mark = _mark()
    result = commands.ship_order(order_id=order.pk)
    rows = _rows_since(mark)
    assert _shape(rows) == [("order", str(order.pk), 3, "OrderShipped")]
    assert rows[0].payload == {"customer_id": customer.pk, "status": "shipped", "total_cents": 1000}
    assert rows[0].partition_key == str(customer.pk)
    _assert_committed_points_at_last_row(result, rows)


def test_a_rejected_command_appends_nothing(make_order):
    order = make_order()
    mark = _mark()
    with pytest.raises(errors.InvalidTransition):
        commands.ship_order(order_id=order.pk)
    assert _rows_since(mark) == []


def test_rows_carry_the_request_id():
    mark = _mark()
    token = current_request_id.set("req-1234")
    try:
        commands.create_product(sku="RID-1", name="R", category="c", price_cents=1)
    finally:
        current_request_id.reset(token)
    commands.create_product(sku="RID-2", name="R", category="c", price_cents=1)
    rows = _rows_since(mark)
    assert [(r.payload["sku"], r.request_id) for r in rows] == [("RID-1", "req-1234"), ("RID-2", "")]
    with connection.cursor() as cursor:
        columns = {
            c.name
            for c in connection.introspection.get_table_description(cursor, OutboxMessage._meta.db_table)
        }
    assert {"request_id", "xid", "position", "aggregate_version", "partition_key"} <= columns


@pytest.mark.django_db(transaction=True)
def test_each_command_writes_its_rows_under_one_xid_of_its_own(make_customer, make_product):
    customer = make_customer(balance_cents=10_000)
    products = [make_product(stock=10) for _ in range(3)]
    lines = [commands.LineRequest(product_id=p.pk, quantity=1) for p in products]

    mark = _mark()
    placed = commands.place_order(customer_id=customer.pk, lines=lines)
    paid = commands.pay_order(order_id=placed.value.pk)
    cancelled = commands.cancel_order(order_id=placed.value.pk)
    rows = _rows_since(mark)

    by_command = [rows[0:4], rows[4:6], rows[6:]]
    assert [len(group) for group in by_command] == [4, 2, 5]
    xids = []
    for group, result in zip(by_command, [placed, paid, cancelled], strict=True):
        assert {r.xid for r in group} == {result.position.xid}
        assert result.position.position == group[-1].position
        xids.append(result.position.xid)
    # Each command is its own transaction: three different, increasing xids.
    assert xids == sorted(set(xids))
    assert placed.position < paid.position < cancelled.position
    # The rows are committed: no transaction with these xids is still running.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_xact_status(%s::text::xid8)", [str(cancelled.position.xid)])
        assert cursor.fetchone()[0] == "committed"

"""Safe commands: the write model's invariants hold when many transactions race.

Every race runs real transactions on their own connections against PostgreSQL, so
the tests need committed data (transaction=True). Nothing here is mocked.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from orders import commands, errors
from orders.models import Customer, Order, OrderLine, OrderStatus, OutboxMessage, Payment
from tests.support.concurrency import race

race_db = pytest.mark.django_db(transaction=True)


def _lines(*pairs):
    return [commands.LineRequest(product_id=p.pk, quantity=q) for p, q in pairs]


def _outbox(aggregate_type: str, aggregate_id, event_type: str | None = None):
    rows = OutboxMessage.objects.filter(aggregate_type=aggregate_type, aggregate_id=str(aggregate_id))
    if event_type is not None:
        rows = rows.filter(event_type=event_type)
    return list(rows.order_by("aggregate_version"))


def _assert_only(outcomes, ok: int, error_type: type[BaseException]) -> None:
    unexpected = [o.error for o in outcomes if not o.ok and not isinstance(o.error, error_type)]
    assert not unexpected, f"unexpected errors: {unexpected!r}"
    assert sum(o.ok for o in outcomes) == ok, [o.error for o in outcomes]


@race_db
def test_no_oversell_when_twenty_orders_race_for_five_units(make_customer, make_product):
    customer = make_customer()
    product = make_product(stock=5, price_cents=100)

    outcomes = race(
        [lambda: commands.place_order(customer_id=customer.pk, lines=_lines((product, 1))) for _ in range(20)]
    )

    _assert_only(outcomes, ok=5, error_type=errors.InsufficientStock)
    product.refresh_from_db()
    assert product.stock == 0
    assert product.version == 6
    orders = Order.objects.filter(customer=customer)
    assert orders.count() == 5
    assert {o.value.value.pk for o in outcomes if o.ok} == set(orders.values_list("pk", flat=True))
    assert OrderLine.objects.filter(product=product).count() == 5

    reserved = _outbox("product", product.pk, "StockReserved")
    assert [r.aggregate_version for r in reserved] == [2, 3, 4, 5, 6]
    # Each reservation saw the stock its predecessor left: 4, 3, 2, 1, 0.
    assert [r.payload["stock"] for r in reserved] == [4, 3, 2, 1, 0]
    assert {r.payload["order_id"] for r in reserved} == {
        str(pk) for pk in orders.values_list("pk", flat=True)
    }
    assert len(_outbox("product", product.pk)) == 6  # ProductCreated + 5 reservations
    assert OutboxMessage.objects.filter(event_type="OrderPlaced").count() == 5


@race_db
def test_an_order_is_paid_exactly_once_when_payments_race(make_customer, make_order):
    customer = make_customer(balance_cents=10_000)
    order = make_order(customer=customer)  # one product at 1000
    version_before = Customer.objects.get(pk=customer.pk).version

    outcomes = race([lambda: commands.pay_order(order_id=order.pk) for _ in range(10)])

    _assert_only(outcomes, ok=1, error_type=errors.InvalidTransition)
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.version == 2
    assert list(Payment.objects.filter(order=order).values_list("kind", "amount_cents")) == [("charge", 1000)]
    customer.refresh_from_db()
    assert customer.balance_cents == 9000
    assert customer.version == version_before + 1
    assert len(_outbox("order", order.pk, "OrderPaid")) == 1
    assert len(_outbox("customer", customer.pk, "CustomerCharged")) == 1


@race_db
def test_concurrent_top_ups_are_all_applied(make_customer):
    customer = make_customer()
    amounts = list(range(1, 21))

    outcomes = race(
        [
            lambda amount=amount: commands.top_up_balance(customer_id=customer.pk, amount_cents=amount)
            for amount in amounts
        ]
    )

    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    customer.refresh_from_db()
    assert customer.balance_cents == sum(amounts) == 210
    assert customer.version == 1 + len(amounts)
    rows = _outbox("customer", customer.pk, "BalanceToppedUp")
    assert [r.aggregate_version for r in rows] == list(range(2, 22))
    # Serialised: each row's balance is its predecessor's plus its own amount.
    balance = 0
    for row in rows:
        balance += row.payload["amount_cents"]
        assert row.payload["balance_cents"] == balance
    assert sorted(r.payload["amount_cents"] for r in rows) == amounts


@race_db
def test_balance_never_goes_negative_when_payments_race(make_customer, make_product, make_order):
    customer = make_customer(balance_cents=1000)
    product = make_product(price_cents=600, stock=10)
    orders = [make_order(customer=customer, lines=[(product, 1)]) for _ in range(4)]

    outcomes = race([lambda order=order: commands.pay_order(order_id=order.pk) for order in orders])

    _assert_only(outcomes, ok=1, error_type=errors.InsufficientBalance)
    customer.refresh_from_db()
    assert customer.balance_cents == 400
    assert Payment.objects.filter(order__customer=customer).count() == 1
    statuses = sorted(Order.objects.filter(customer=customer).values_list("status", flat=True))
    assert statuses == ["paid", "pending", "pending", "pending"]
    # The losers changed nothing: still version 1 and no outbox row beyond OrderPlaced.
    for order in Order.objects.filter(customer=customer, status="pending"):
        assert order.version == 1
        assert [r.event_type for r in _outbox("order", order.pk)] == ["OrderPlaced"]


@pytest.mark.django_db
def test_shipping_a_pending_order_is_an_invalid_transition(make_order):
    order = make_order()
    outbox_before = OutboxMessage.objects.count()
    with pytest.raises(errors.InvalidTransition):
        commands.ship_order(order_id=order.pk)
    order.refresh_from_db()
    assert (order.status, order.version, order.shipped_at) == ("pending", 1, None)
    assert OutboxMessage.objects.count() == outbox_before


@pytest.mark.django_db
def test_cancelling_a_shipped_order_is_an_invalid_transition(make_customer, make_product, make_order):
    customer = make_customer(balance_cents=5000)
    product = make_product(price_cents=1000, stock=3)
    order = make_order(customer=customer, lines=[(product, 2)])
    commands.pay_order(order_id=order.pk)
    commands.ship_order(order_id=order.pk)
    outbox_before = OutboxMessage.objects.count()

    with pytest.raises(errors.InvalidTransition):
        commands.cancel_order(order_id=order.pk)
    with pytest.raises(errors.InvalidTransition):
        commands.pay_order(order_id=order.pk)
    with pytest.raises(errors.InvalidTransition):
        commands.ship_order(order_id=order.pk)

    order.refresh_from_db()
    assert (order.status, order.version) == ("shipped", 3)
    assert order.cancelled_at is None
    customer.refresh_from_db()
    product.refresh_from_db()
    assert customer.balance_cents == 3000
    assert product.stock == 1
    assert not Payment.objects.filter(order=order, kind="refund").exists()
    assert OutboxMessage.objects.count() == outbox_before


@pytest.mark.django_db
def test_cancelling_a_paid_order_refunds_and_releases_stock(make_customer, make_product, make_order):
    customer = make_customer(balance_cents=5000)
    first = make_product(price_cents=1000, stock=3)
    second = make_product(price_cents=250, stock=10)
    order = make_order(customer=customer, lines=[(first, 2), (second, 4)])
    assert order.total_cents == 3000
    commands.pay_order(order_id=order.pk)
    customer.refresh_from_db()
    assert customer.balance_cents == 2000

    commands.cancel_order(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == "cancelled"
    assert order.cancelled_at is not None and order.paid_at is not None
    customer.refresh_from_db()
    assert customer.balance_cents == 5000
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.stock, second.stock) == (3, 10)
    assert sorted(Payment.objects.filter(order=order).values_list("kind", "amount_cents")) == [
        ("charge", 3000),
        ("refund", 3000),
    ]
    # Cancelled is final: a second cancel neither refunds nor releases again.
    with pytest.raises(errors.InvalidTransition):
        commands.cancel_order(order_id=order.pk)
    with pytest.raises(errors.InvalidTransition):
        commands.pay_order(order_id=order.pk)
    customer.refresh_from_db()
    first.refresh_from_db()
    assert customer.balance_cents == 5000
    assert first.stock == 3


@pytest.mark.django_db
def test_cancelling_a_pending_order_releases_stock_without_a_refund(make_customer, make_product, make_order):
    customer = make_customer(balance_cents=5000)
    product = make_product(price_cents=1000, stock=3)
    order = make_order(customer=customer, lines=[(product, 3)])
    product.refresh_from_db()
    assert product.stock == 0

    commands.cancel_order(order_id=order.pk)

    product.refresh_from_db()
    customer.refresh_from_db()
    assert product.stock == 3
    assert customer.balance_cents == 5000
    assert not Payment.objects.filter(order=order).exists()
    with pytest.raises(errors.InvalidTransition):
        commands.ship_order(order_id=order.pk)


@race_db
def test_pay_and_cancel_racing_leave_a_consistent_order(make_customer, make_product, make_order):
    customer = make_customer(balance_cents=100_000)
    product = make_product(price_cents=1000, stock=100)
    orders = [make_order(customer=customer, lines=[(product, 1)]) for _ in range(6)]

    calls = []
    for order in orders:
        calls += [
            lambda order=order: commands.pay_order(order_id=order.pk),
            lambda order=order: commands.cancel_order(order_id=order.pk),
        ]
    outcomes = race(calls)

    unexpected = [o.error for o in outcomes if not o.ok and not isinstance(o.error, errors.InvalidTransition)]
    assert not unexpected, unexpected
    charged = 0
    for order in orders:
        order.refresh_from_db()
        # Cancel always succeeds (from pending or from paid); pay only if it came first.
        assert order.status == "cancelled"
        kinds = sorted(Payment.objects.filter(order=order).values_list("kind", flat=True))
        assert kinds in ([], ["charge", "refund"])
        charged += 1000 * (kinds == ["charge", "refund"])
    customer.refresh_from_db()
    product.refresh_from_db()
    assert customer.balance_cents == 100_000  # every charge was refunded
    assert product.stock == 100 - 6 + 6
    assert sum(o.ok for o in outcomes) == 6 + charged // 1000


@race_db
def test_multi_line_orders_in_opposite_line_order_do_not_deadlock(make_customer, make_product):
    customer = make_customer(balance_cents=10**9)
    products = [make_product(price_cents=100, stock=1000) for _ in range(3)]
    forward = [(products[0], 1), (products[1], 2), (products[2], 3)]
    backward = list(reversed(forward))
    rounds = 6

    def place_and_sometimes_cancel(lines, cancel_every_other: bool):
        placed = []
        for i in range(rounds):
            order = commands.place_order(customer_id=customer.pk, lines=_lines(*lines)).value
            if cancel_every_other and i % 2:
                commands.cancel_order(order_id=order.pk)
            else:
                placed.append(order.pk)
        return placed

    calls = []
    for i in range(12):
        lines = forward if i % 2 else backward
        calls.append(lambda lines=lines, i=i: place_and_sometimes_cancel(lines, cancel_every_other=i % 4 < 2))
    outcomes = race(calls)

    errors_seen = [o.error for o in outcomes if not o.ok]
    assert not any(isinstance(e, OperationalError) for e in errors_seen), errors_seen
    assert not errors_seen, errors_seen
    kept = sum(len(o.value) for o in outcomes)
    cancelled = 12 * rounds - kept
    assert Order.objects.filter(customer=customer, status="pending").count() == kept
    assert Order.objects.filter(customer=customer, status="cancelled").count() == cancelled
    for product, quantity in forward:
        product.refresh_from_db()
        assert product.stock == 1000 - kept * quantity
        # One version per reservation and per release, plus the creation.
        assert product.version == 1 + 12 * rounds + cancelled


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change, refusal", [
    ("stock = 1", errors.InsufficientStock),
    ("active = false", errors.ProductUnavailable),
])
def test_an_order_whose_checks_went_out_of_date_is_refused_for_what_the_locked_row_says(
    make_customer, make_product, change, refusal
):
    """place_order checks on a plain read, then reserves: whatever another session
    changed in between, the reservation checks the locked rows again, and the refusal
    says what they say. The change is committed by a second session right before the
    reservation's statement runs."""
    import psycopg
    from django.db import connection

    customer = make_customer()
    product = make_product(stock=5, price_cents=100)
    db = connection.settings_dict

    def change_before_the_reservation(execute, sql, params, many, context):
        if sql.startswith("WITH wanted"):
            with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                                 user=db["USER"], dbname=db["NAME"], autocommit=True) as other:
                other.execute(f"UPDATE orders_product SET {change} WHERE id = %s", [product.pk])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(change_before_the_reservation):
        with pytest.raises(refusal) as refused:
            commands.place_order(customer_id=customer.pk, lines=_lines((product, 2)))

    assert str(product.pk) in str(refused.value)
    product.refresh_from_db()
    assert product.version == 1  # nothing reserved
    assert not Order.objects.filter(customer=customer).exists()
    assert not OutboxMessage.objects.filter(event_type="OrderPlaced").exists()


@pytest.mark.django_db
def test_placing_an_order_sends_the_order_s_save_signals(make_customer, make_product):
    """place_order inserts with its own SQL; whoever listens to Order's save signals (an
    audit log, a search indexer such as the benchmarks' peer) still hears of the order,
    as Order.objects.create() would tell them: before the insert, then after it."""
    from django.db.models.signals import post_save, pre_save

    heard = []

    def before(sender, instance, **kwargs):
        heard.append(("pre_save", instance.pk, instance._state.adding))

    def after(sender, instance, created, **kwargs):
        heard.append(("post_save", instance.pk, created,
                      Order.objects.filter(pk=instance.pk).exists()))

    pre_save.connect(before, sender=Order, weak=False)
    post_save.connect(after, sender=Order, weak=False)
    try:
        placed = commands.place_order(customer_id=make_customer().pk,
                                      lines=_lines((make_product(), 1)))
    finally:
        pre_save.disconnect(before, sender=Order)
        post_save.disconnect(after, sender=Order)

    order = placed.value.pk
    assert heard == [("pre_save", order, True), ("post_save", order, True, True)]

"""Atomic: a command's state change and its outbox rows commit together or not at all.

Faults are injected at three places: in our own code after the rows were written
(a patched appending.appended that raises after the rows were inserted), inside PostgreSQL while the
outbox rows are inserted (a trigger that raises for one event type), and at COMMIT
(a deferred constraint trigger). Commands run as the outermost transaction here
(transaction=True), so what is checked is a real rollback, not a savepoint's.
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection

from orders import commands
from orders.models import Customer, Order, OrderLine, OutboxMessage, Payment, Product
from orders.outbox import appending
from orders.signals import outbox_committed

pytestmark = pytest.mark.django_db(transaction=True)

OUTBOX_TABLE = OutboxMessage._meta.db_table


class InjectedFault(Exception):
    pass


@pytest.fixture
def committed_signals():
    """Every outbox_committed signal sent while the test runs."""
    sent = []

    def receiver(sender, **kwargs):
        sent.append(kwargs)

    outbox_committed.connect(receiver, weak=False)
    yield sent
    outbox_committed.disconnect(receiver)


@pytest.fixture
def fail_after_outbox_insert(monkeypatch):
    """Make the outbox insert its rows for real and then raise, before the commit.

    appending.appended() is what every command calls once its rows are in (outbox.append
    does, and so does place_order, which inserts them in one statement with the order).
    """
    real_appended = appending.appended
    inserted = []

    def appended_then_fail(changes, rows):
        real_appended(changes, rows)
        # The rows are there, in this very transaction.
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE xid = pg_current_xact_id()")
            inserted.append(cursor.fetchone()[0])
        raise InjectedFault("after the outbox insert, before COMMIT")

    monkeypatch.setattr(appending, "appended", appended_then_fail)
    return inserted


@pytest.fixture
def db_trigger():
    """Install PL/pgSQL triggers that raise; every one is dropped after the test."""
    installed: list[tuple[str, str]] = []

    def install(table: str, condition: str, *, deferred: bool = False, event: str = "INSERT") -> str:
        name = f"test_fault_{len(installed)}"
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF {condition} THEN RAISE EXCEPTION 'injected fault {name}'; END IF; "
                "RETURN NEW; END $$"
            )
            if deferred:
                cursor.execute(
                    f"CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON {table} "
                    f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            else:
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
        installed.append((name, table))
        return name

    yield install
    with connection.cursor() as cursor:
        for name, table in installed:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")


def _snapshot_place(customer, products):
    return {
        "orders": Order.objects.filter(customer=customer).count(),
        "lines": OrderLine.objects.count(),
        "stock": {
            p.pk: (p.stock, p.version) for p in Product.objects.filter(pk__in=[p.pk for p in products])
        },
        "outbox": OutboxMessage.objects.count(),
    }


def _snapshot_pay(order):
    customer = Customer.objects.get(pk=order.customer_id)
    order = Order.objects.get(pk=order.pk)
    return {
        "balance": (customer.balance_cents, customer.version),
        "order": (order.status, order.version, order.paid_at),
        "payments": Payment.objects.filter(order=order).count(),
        "outbox": OutboxMessage.objects.count(),
    }


@pytest.fixture
def shop(make_customer, make_product, make_order):
    customer = make_customer(balance_cents=10_000)
    products = [make_product(price_cents=500, stock=5) for _ in range(2)]
    order = make_order(customer=customer, lines=[(products[0], 1)])
    return customer, products, order


def _place(customer, products):
    return commands.place_order(
        customer_id=customer.pk,
        lines=[commands.LineRequest(product_id=p.pk, quantity=2) for p in products],
    )


# A fault after the model write and the outbox insert, before COMMIT.


def test_place_order_failing_after_its_writes_leaves_nothing(
    shop, fail_after_outbox_insert, committed_signals
):
    customer, products, _ = shop
    before = _snapshot_place(customer, products)

    with pytest.raises(InjectedFault):
        _place(customer, products)

    assert fail_after_outbox_insert == [3]  # the order and both products had their rows
    assert _snapshot_place(customer, products) == before
    assert committed_signals == []


def test_pay_order_failing_after_its_writes_leaves_nothing(shop, fail_after_outbox_insert, committed_signals):
    _, _, order = shop
    before = _snapshot_pay(order)

    with pytest.raises(InjectedFault):
        commands.pay_order(order_id=order.pk)

    assert fail_after_outbox_insert == [2]
    assert _snapshot_pay(order) == before
    assert committed_signals == []


def test_the_commands_work_once_the_fault_is_gone(shop, committed_signals):
    """Control for the tests above: the same calls without a fault change everything."""
    customer, products, order = shop
    before_place = _snapshot_place(customer, products)
    _place(customer, products)
    assert _snapshot_place(customer, products) != before_place
    before_pay = _snapshot_pay(order)
    commands.pay_order(order_id=order.pk)
    after_pay = _snapshot_pay(order)
    assert after_pay["balance"][0] == before_pay["balance"][0] - 500
    assert after_pay["payments"] == 1
    assert after_pay["outbox"] == before_pay["outbox"] + 2
    assert len(committed_signals) == 2


# The reverse: the outbox insert itself fails inside PostgreSQL.


@pytest.mark.parametrize("event_type", ["OrderPlaced", "StockReserved"])
def test_place_order_is_rolled_back_when_the_outbox_insert_fails(
    shop, db_trigger, committed_signals, event_type
):
    customer, products, _ = shop
    db_trigger(OUTBOX_TABLE, f"NEW.event_type = '{event_type}'")
    before = _snapshot_place(customer, products)

    with pytest.raises(DatabaseError, match="injected fault"):
        _place(customer, products)

    assert _snapshot_place(customer, products) == before
    assert committed_signals == []


@pytest.mark.parametrize("event_type", ["OrderPaid", "CustomerCharged"])
def test_pay_order_is_rolled_back_when_the_outbox_insert_fails(
    shop, db_trigger, committed_signals, event_type
):
    _, _, order = shop
    db_trigger(OUTBOX_TABLE, f"NEW.event_type = '{event_type}'")
    before = _snapshot_pay(order)

    with pytest.raises(DatabaseError, match="injected fault"):
        commands.pay_order(order_id=order.pk)

    assert _snapshot_pay(order) == before
    assert committed_signals == []


def test_cancel_of_a_paid_order_is_rolled_back_when_the_outbox_insert_fails(shop, db_trigger):
    customer, products, order = shop
    commands.pay_order(order_id=order.pk)
    db_trigger(OUTBOX_TABLE, "NEW.event_type = 'StockReleased'")
    before = _snapshot_pay(order) | _snapshot_place(customer, products)

    with pytest.raises(DatabaseError, match="injected fault"):
        commands.cancel_order(order_id=order.pk)

    assert _snapshot_pay(order) | _snapshot_place(customer, products) == before
    assert not Payment.objects.filter(order=order, kind="refund").exists()


# A failure at COMMIT itself: a deferred constraint trigger on the outbox.


def test_a_failing_commit_keeps_neither_the_order_nor_its_outbox_rows(shop, db_trigger, committed_signals):
    customer, products, _ = shop
    db_trigger(OUTBOX_TABLE, "NEW.event_type = 'OrderPlaced'", deferred=True)
    before = _snapshot_place(customer, products)

    with pytest.raises(DatabaseError, match="injected fault"):
        _place(customer, products)

    assert _snapshot_place(customer, products) == before
    assert committed_signals == []
    # The connection is usable afterwards and the next command commits.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_a_failing_commit_of_a_payment_keeps_the_balance(shop, db_trigger, committed_signals):
    _, _, order = shop
    db_trigger(OUTBOX_TABLE, "NEW.event_type = 'CustomerCharged'", deferred=True)
    before = _snapshot_pay(order)

    with pytest.raises(DatabaseError, match="injected fault"):
        commands.pay_order(order_id=order.pk)

    assert _snapshot_pay(order) == before
    assert committed_signals == []


# And a model write failing inside PostgreSQL leaves no outbox row.


def test_a_failing_model_write_appends_no_outbox_row(shop, db_trigger, committed_signals):
    customer, products, order = shop
    db_trigger(OrderLine._meta.db_table, "TRUE")
    db_trigger(Payment._meta.db_table, "NEW.kind = 'charge'")
    before_place = _snapshot_place(customer, products)
    before_pay = _snapshot_pay(order)

    with pytest.raises(DatabaseError, match="injected fault"):
        _place(customer, products)
    with pytest.raises(DatabaseError, match="injected fault"):
        commands.pay_order(order_id=order.pk)

    assert _snapshot_place(customer, products) == before_place
    assert _snapshot_pay(order) == before_pay
    assert committed_signals == []

"""What the projected documents say, field by field, against the write model read through
the ORM: the projectors load state with hand-written SQL (array parameters, ids and
times formatted by PostgreSQL), so their output is checked here against an independent
computation rather than against the projectors' own loaders.
"""

from __future__ import annotations

import datetime as dt

import pytest

from orders import commands
from orders.models import Customer, Order, Payment
from tests.support.readside import es_docs, project_all, redis_docs

pytestmark = pytest.mark.django_db(transaction=True)


def iso(value):
    return value.isoformat() if value else None


@pytest.fixture
def shop_history(make_customer, make_product):
    """Two customers, orders in every status, one created on a whole second."""
    first = make_customer(balance_cents=1_000_000, name="Ada Lovelace")
    second = make_customer(balance_cents=1_000_000)
    widget = make_product(name="Blue widget", sku="W-BLUE", price_cents=1_250, stock=500)
    gadget = make_product(name="Red gadget", sku="G-RED", price_cents=799, stock=500)

    def place(customer, *lines):
        return commands.place_order(
            customer_id=customer.pk,
            lines=[commands.LineRequest(product_id=p.pk, quantity=q) for p, q in lines],
        ).value

    orders = [place(first, (widget, 1 + n % 3), (gadget, 1)) for n in range(24)]
    orders.append(place(second, (gadget, 2)))
    commands.pay_order(order_id=orders[0].pk)
    commands.pay_order(order_id=orders[1].pk)
    commands.ship_order(order_id=orders[1].pk)
    commands.cancel_order(order_id=orders[2].pk)
    commands.pay_order(order_id=orders[3].pk)
    commands.cancel_order(order_id=orders[3].pk)  # refunded
    # datetime.isoformat() leaves out a zero microsecond part; the documents must agree.
    Order.objects.filter(pk=orders[4].pk).update(created_at=dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    commands.update_customer(customer_id=first.pk, name="Ada King")
    return first, second


def test_order_summary_documents_match_the_write_model(read_models, shop_history):
    project_all()
    summaries = redis_docs("order_summary")
    assert len(summaries) == Order.objects.count() == 25
    for order in Order.objects.prefetch_related("lines"):
        version, body = summaries[str(order.pk)]
        lines = [
            {
                "product_id": line.product_id, "sku": line.product_sku, "name": line.product_name,
                "quantity": line.quantity, "unit_price_cents": line.unit_price_cents,
                "line_total_cents": line.quantity * line.unit_price_cents,
            }
            for line in order.lines.order_by("id")
        ]
        payments = [
            {"kind": p.kind, "amount_cents": p.amount_cents, "created_at": iso(p.created_at)}
            for p in Payment.objects.filter(order=order).order_by("id")
        ]
        assert version == order.version
        assert body == {
            "id": str(order.pk), "customer_id": order.customer_id,
            "user_id": order.customer.user_id, "status": order.status,
            "total_cents": order.total_cents, "item_count": sum(x["quantity"] for x in lines),
            "lines": lines, "payments": payments, "created_at": iso(order.created_at),
            "paid_at": iso(order.paid_at), "shipped_at": iso(order.shipped_at),
            "cancelled_at": iso(order.cancelled_at), "version": order.version,
        }
    refunded = summaries[str(Order.objects.filter(status="cancelled", paid_at__isnull=False).get().pk)][1]
    assert [p["kind"] for p in refunded["payments"]] == ["charge", "refund"]


def test_dashboard_documents_match_the_write_model(read_models, shop_history):
    project_all()
    dashboards = redis_docs("customer_dashboard")
    assert set(dashboards) == {str(c.pk) for c in Customer.objects.all()}
    for customer in Customer.objects.all():
        orders = list(Order.objects.filter(customer=customer).order_by("-created_at", "-pk"))
        version, body = dashboards[str(customer.pk)]
        assert version == customer.version + sum(o.version for o in orders)
        assert body == {
            "customer_id": customer.pk, "user_id": customer.user_id, "name": customer.name,
            "email": customer.email, "balance_cents": customer.balance_cents,
            "order_count": len(orders),
            "open_orders": sum(o.status in ("pending", "paid") for o in orders),
            "lifetime_spend_cents": sum(o.total_cents for o in orders if o.status in ("paid", "shipped")),
            "recent_orders": [
                {"id": str(o.pk), "status": o.status, "total_cents": o.total_cents,
                 "created_at": o.created_at.isoformat()}
                for o in orders[:20]
            ],
            "version": version,
        }
    first = Customer.objects.get(name="Ada King")
    recent = dashboards[str(first.pk)][1]["recent_orders"]
    assert len(recent) == 20 and recent[0]["created_at"] == "2031-01-02T03:04:05+00:00"


def test_orders_search_documents_follow_a_customer_rename(read_models, shop_history):
    first, _ = shop_history
    project_all()
    docs = es_docs("orders_search")
    assert len(docs) == 25
    for order in Order.objects.select_related("customer").prefetch_related("lines"):
        version, body = docs[str(order.pk)]
        lines = list(order.lines.order_by("id"))
        assert version == order.version + order.customer.profile_version
        assert body["customer_name"] == order.customer.name
        assert body["customer_email"] == order.customer.email
        assert body["status"] == order.status and body["total_cents"] == order.total_cents
        assert body["item_names"] == [line.product_name for line in lines]
        assert body["skus"] == [line.product_sku for line in lines]
        assert body["item_count"] == sum(line.quantity for line in lines)
        assert body["created_at"] == iso(order.created_at) and body["paid_at"] == iso(order.paid_at)

    # A rename alone re-projects every order of that customer (loaded by customer id).
    commands.update_customer(customer_id=first.pk, name="Ada Byron")
    project_all()
    renamed = es_docs("orders_search")
    for order in Order.objects.filter(customer=first):
        assert renamed[str(order.pk)][1]["customer_name"] == "Ada Byron"
        assert renamed[str(order.pk)][0] == docs[str(order.pk)][0] + 1

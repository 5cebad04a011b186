"""Strong reads: current state straight from PostgreSQL."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch

from orders.models import Customer, Order, OrderLine, Payment, Product
from shop.web.fixed_reads import row_by


def customer_for_user(*, user) -> Customer | None:
    if not user.is_authenticated:
        return None
    # Every command and read of a signed-in customer asks this: a fixed statement.
    return row_by(Customer, Customer._meta.get_field("user").column, user.pk)


def get_customer(*, customer_id: int) -> Customer | None:
    return Customer.objects.filter(pk=customer_id).first()


def get_product(*, product_id: int) -> Product | None:
    return Product.objects.filter(pk=product_id).first()


def get_order(*, order_id: uuid.UUID | str) -> Order | None:
    try:
        order_id = uuid.UUID(str(order_id))
    except ValueError:
        return None
    return (
        Order.objects.filter(pk=order_id)
        .prefetch_related(
            Prefetch("lines", queryset=OrderLine.objects.order_by("id")),
            Prefetch("payments", queryset=Payment.objects.order_by("id")),
        )
        .first()
    )

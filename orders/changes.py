"""What a command appends to the outbox for each kind of aggregate it changed.

One Change per aggregate, at the aggregate's new version. The partition key says which
segment of a split projector owns the row: an order's changes are its customer's.
"""

from __future__ import annotations

from orders.models import Customer, Order, Product
from orders.outbox import Change


def customer_change(customer: Customer, event_type: str, **extra) -> Change:
    return Change(
        aggregate_type="customer",
        aggregate_id=str(customer.pk),
        aggregate_version=customer.version,
        event_type=event_type,
        partition_key=str(customer.pk),
        payload={"balance_cents": customer.balance_cents, **extra},
    )


def product_change(product: Product, event_type: str, **extra) -> Change:
    return Change(
        aggregate_type="product",
        aggregate_id=str(product.pk),
        aggregate_version=product.version,
        event_type=event_type,
        partition_key=str(product.pk),
        payload={
            "sku": product.sku,
            "price_cents": product.price_cents,
            "stock": product.stock,
            "active": product.active,
            **extra,
        },
    )


def order_change(order: Order, event_type: str, **extra) -> Change:
    return Change(
        aggregate_type="order",
        aggregate_id=str(order.pk),
        aggregate_version=order.version,
        event_type=event_type,
        # An order's changes are owned by its customer: the dashboard is per customer.
        partition_key=str(order.customer_id),
        payload={
            "customer_id": order.customer_id,
            "status": order.status,
            "total_cents": order.total_cents,
            **extra,
        },
    )

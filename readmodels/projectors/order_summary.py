"""order_summary (Redis): what an order confirmation or tracking page shows."""

from __future__ import annotations

import uuid

from orders.models import Order
from readmodels.projectors.base import Projector, keys_in_order
from readmodels.projectors.order_state import iso, load_orders
from readmodels.stores import Doc
from readmodels.stores.adapters import REDIS


def build(order: dict) -> Doc:
    lines = [
        {
            "product_id": line["product_id"],
            "sku": line["product_sku"],
            "name": line["product_name"],
            "quantity": line["quantity"],
            "unit_price_cents": line["unit_price_cents"],
            "line_total_cents": line["unit_price_cents"] * line["quantity"],
        }
        for line in order["lines"]
    ]
    return Doc(
        key=str(order["id"]),
        version=order["version"],
        body={
            "id": str(order["id"]),
            "customer_id": order["customer_id"],
            "user_id": order["customer__user_id"],
            "status": order["status"],
            "total_cents": order["total_cents"],
            "item_count": sum(line["quantity"] for line in lines),
            "lines": lines,
            "payments": [
                {"kind": p["kind"], "amount_cents": p["amount_cents"],
                 "created_at": iso(p["created_at"])}
                for p in order["payments"]
            ],
            "created_at": iso(order["created_at"]),
            "paid_at": iso(order["paid_at"]),
            "shipped_at": iso(order["shipped_at"]),
            "cancelled_at": iso(order["cancelled_at"]),
            "version": order["version"],
        },
    )


def _uuids(keys) -> list[uuid.UUID]:
    ids = []
    for key in keys:
        try:
            ids.append(uuid.UUID(key))
        except ValueError:
            # A corrupt key is a poison row's problem, reported as such by the caller.
            raise ValueError(f"not an order id: {key!r}") from None
    return ids


class OrderSummaryProjector(Projector):
    name = "order_summary"
    store = REDIS
    consumes = ("order",)

    def keys_for(self, rows):
        return {row.aggregate_id for row in rows if row.aggregate_type == "order"}

    def load(self, keys):
        return [build(order) for order in load_orders(ids=_uuids(keys))]

    def all_keys(self, batch_size: int = 1000, after: str | None = None):
        return keys_in_order(Order.objects.all(), batch_size, after, uuid.UUID)

    def key_exists(self, keys):
        return order_keys_that_exist(keys)


def order_keys_that_exist(keys) -> set[str]:
    ids = []
    for key in keys:
        try:
            ids.append(uuid.UUID(key))
        except ValueError:
            continue
    return {str(i) for i in Order.objects.filter(pk__in=ids).values_list("pk", flat=True)}

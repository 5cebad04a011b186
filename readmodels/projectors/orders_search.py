"""orders_search (Elasticsearch): one denormalised document per order, with its customer.

A document is built from the order and its customer's profile (name, email), so its
version is the order's version plus the customer's profile version: each only grows,
so the sum grows whenever either changes, and the external-version gate stays
monotone. (Not the customer's whole version: a balance move does not rewrite the
customer's order documents, so it must not make them look behind.)
"""

from __future__ import annotations

import uuid
from itertools import islice

from orders.models import Order
from readmodels.projectors.base import Projector, chunks
from readmodels.projectors.order_state import iso, load_orders
from readmodels.projectors.order_summary import OrderSummaryProjector, order_keys_that_exist
from readmodels.stores import Doc
from readmodels.stores.adapters import ELASTICSEARCH

# Customer changes that show in an order's document; balance moves do not.
CUSTOMER_EVENTS = {"CustomerUpdated"}

MAPPINGS = {
    "dynamic": "strict",
    "properties": {
        "order_id": {"type": "keyword"},
        "customer_id": {"type": "long"},
        "user_id": {"type": "long"},
        "customer_name": {
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
        },
        "customer_email": {"type": "keyword"},
        "status": {"type": "keyword"},
        "total_cents": {"type": "long"},
        "item_count": {"type": "integer"},
        "item_names": {"type": "text"},
        "skus": {"type": "keyword"},
        "created_at": {"type": "date"},
        "paid_at": {"type": "date"},
        "cancelled_at": {"type": "date"},
        "shipped_at": {"type": "date"},
        "order_version": {"type": "long"},
        "customer_version": {"type": "long"},
    },
}


def build(order: dict) -> Doc:
    lines = order["lines"]
    profile_version = order["customer__profile_version"]
    return Doc(
        key=str(order["id"]),
        version=order["version"] + profile_version,
        body={
            "order_id": str(order["id"]),
            "customer_id": order["customer_id"],
            "user_id": order["customer__user_id"],
            "customer_name": order["customer__name"],
            "customer_email": order["customer__email"],
            "status": order["status"],
            "total_cents": order["total_cents"],
            "item_count": sum(line["quantity"] for line in lines),
            "item_names": [line["product_name"] for line in lines],
            "skus": [line["product_sku"] for line in lines],
            "created_at": iso(order["created_at"]),
            "paid_at": iso(order["paid_at"]),
            "cancelled_at": iso(order["cancelled_at"]),
            "shipped_at": iso(order["shipped_at"]),
            "order_version": order["version"],
            "customer_version": profile_version,
        },
    )


class OrdersSearchProjector(Projector):
    name = "orders_search"
    store = ELASTICSEARCH
    consumes = ("order", "customer")
    mappings = MAPPINGS

    def keys_for(self, rows):
        keys = {f"order:{r.aggregate_id}" for r in rows if r.aggregate_type == "order"}
        keys |= {
            f"customer:{r.aggregate_id}"
            for r in rows
            if r.aggregate_type == "customer" and r.event_type in CUSTOMER_EVENTS
        }
        return keys

    def load(self, keys):
        order_ids = [uuid.UUID(k.split(":", 1)[1]) for k in keys if k.startswith("order:")]
        customer_ids = [int(k.split(":", 1)[1]) for k in keys if k.startswith("customer:")]
        orders = load_orders(ids=order_ids, customer_ids=customer_ids, payments=False)
        return [build(order) for order in orders]

    def document_batches(self, rows, size):
        """Yield the rows' documents, at most `size` orders at a time.

        A CustomerUpdated row touches every order of that customer, which may be a
        hundred thousand: page through their ids (a server-side cursor) and load and
        yield one page at a time, so memory follows `size`, not the customer.
        """
        keys = self.keys_for(rows)
        order_ids = [uuid.UUID(k.split(":", 1)[1]) for k in keys if k.startswith("order:")]
        customer_ids = [int(k.split(":", 1)[1]) for k in keys if k.startswith("customer:")]
        for page in chunks(order_ids, size):
            yield [build(order) for order in load_orders(ids=page, payments=False)]
        if not customer_ids:
            return
        their_orders = (
            Order.objects.filter(customer_id__in=customer_ids)
            .values_list("pk", flat=True)
            .iterator(chunk_size=size)
        )
        while page := list(islice(their_orders, size)):
            yield [build(order) for order in load_orders(ids=page, payments=False)]

    def load_documents(self, order_keys: list[str]) -> list[Doc]:
        return self.load({f"order:{k}" for k in order_keys})

    def documents_by_key(self, keys):
        return self.load_documents(keys)

    def all_keys(self, batch_size: int = 1000, after: str | None = None):
        return OrderSummaryProjector().all_keys(batch_size, after)

    def key_exists(self, keys):
        return order_keys_that_exist(keys)

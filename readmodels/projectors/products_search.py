"""products_search (Elasticsearch): the catalogue, full text on name and description."""

from __future__ import annotations

from orders.models import Product
from readmodels.projectors.base import Projector, keys_in_order
from readmodels.stores import Doc
from readmodels.stores.adapters import ELASTICSEARCH

MAPPINGS = {
    "dynamic": "strict",
    "properties": {
        "product_id": {"type": "long"},
        "sku": {"type": "keyword"},
        "name": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
        "description": {"type": "text"},
        "category": {"type": "keyword"},
        "price_cents": {"type": "long"},
        "stock": {"type": "integer"},
        "in_stock": {"type": "boolean"},
        "active": {"type": "boolean"},
        "version": {"type": "long"},
        "updated_at": {"type": "date"},
    },
}


def build(product: Product) -> Doc:
    return Doc(
        key=str(product.pk),
        version=product.version,
        body={
            "product_id": product.pk,
            "sku": product.sku,
            "name": product.name,
            "description": product.description,
            "category": product.category,
            "price_cents": product.price_cents,
            "stock": product.stock,
            "in_stock": product.stock > 0,
            "active": product.active,
            "version": product.version,
            "updated_at": product.updated_at.isoformat(),
        },
    )


class ProductsSearchProjector(Projector):
    name = "products_search"
    store = ELASTICSEARCH
    consumes = ("product",)
    mappings = MAPPINGS

    def keys_for(self, rows):
        return {row.aggregate_id for row in rows if row.aggregate_type == "product"}

    def load(self, keys):
        ids = [int(k) for k in keys]
        return [build(p) for p in Product.objects.filter(pk__in=ids)]

    def all_keys(self, batch_size: int = 1000, after: str | None = None):
        return keys_in_order(Product.objects.all(), batch_size, after, int)

    def key_exists(self, keys):
        ids = [int(k) for k in keys if k.isdigit()]
        return {str(i) for i in Product.objects.filter(pk__in=ids).values_list("pk", flat=True)}

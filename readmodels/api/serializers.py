"""Output serializers of the projected reads: the documented shape of each answer.

The read models' documents name their keys after their store (`product_id`,
`order_id`); the API calls a resource's own key `id` everywhere, and these serializers
are where that happens, so OpenAPI describes exactly what is sent.
"""

from __future__ import annotations

from rest_framework import serializers


class PageLinks(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page, or null on the last.")
    previous = serializers.URLField(
        allow_null=True, help_text="The previous page, or null on the first."
    )


class ProductHitOut(serializers.Serializer):
    id = serializers.IntegerField(source="product_id")
    sku = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    category = serializers.CharField(allow_blank=True)
    price_cents = serializers.IntegerField()
    stock = serializers.IntegerField()
    in_stock = serializers.BooleanField()
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField()
    score = serializers.FloatField(allow_null=True)


class FacetOut(serializers.Serializer):
    value = serializers.CharField()
    count = serializers.IntegerField()


class ProductFacetsOut(serializers.Serializer):
    category = FacetOut(many=True)


class ProductSearchOut(PageLinks):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    results = ProductHitOut(many=True)
    facets = ProductFacetsOut()


class OrderHitOut(serializers.Serializer):
    id = serializers.UUIDField(source="order_id")
    customer_id = serializers.IntegerField()
    customer_name = serializers.CharField()
    customer_email = serializers.CharField()
    status = serializers.CharField()
    total_cents = serializers.IntegerField()
    item_count = serializers.IntegerField()
    item_names = serializers.ListField(child=serializers.CharField())
    skus = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    shipped_at = serializers.DateTimeField(allow_null=True)


class CustomerOrdersOut(PageLinks):
    count = serializers.IntegerField()
    results = OrderHitOut(many=True)
    next_search_after = serializers.CharField(
        allow_null=True,
        help_text="Opaque cursor of the next page (send it as search_after), or null.",
    )


class OrderSearchOut(PageLinks):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    results = OrderHitOut(many=True)


class StatusStatsOut(serializers.Serializer):
    status = serializers.CharField()
    count = serializers.IntegerField()
    total_cents = serializers.IntegerField()


class BucketOut(serializers.Serializer):
    start = serializers.DateTimeField()
    count = serializers.IntegerField()
    revenue_cents = serializers.IntegerField()


class OrderStatsOut(serializers.Serializer):
    # `from` is a Python keyword: declared in __init__ below.
    to = serializers.DateTimeField()
    interval = serializers.CharField()
    time_zone = serializers.CharField()
    by_status = StatusStatsOut(many=True)
    buckets = BucketOut(many=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from"] = serializers.DateTimeField()


class SummaryLineOut(serializers.Serializer):
    product_id = serializers.IntegerField()
    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price_cents = serializers.IntegerField()
    line_total_cents = serializers.IntegerField()


class SummaryPaymentOut(serializers.Serializer):
    kind = serializers.CharField()
    amount_cents = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class OrderSummaryOut(serializers.Serializer):
    id = serializers.UUIDField()
    customer_id = serializers.IntegerField()
    status = serializers.CharField()
    total_cents = serializers.IntegerField()
    item_count = serializers.IntegerField()
    lines = SummaryLineOut(many=True)
    payments = SummaryPaymentOut(many=True)
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    shipped_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField()


class RecentOrderOut(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    total_cents = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class DashboardOut(serializers.Serializer):
    customer_id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField()
    balance_cents = serializers.IntegerField()
    order_count = serializers.IntegerField()
    open_orders = serializers.IntegerField()
    lifetime_spend_cents = serializers.IntegerField()
    recent_orders = RecentOrderOut(many=True)
    version = serializers.IntegerField()

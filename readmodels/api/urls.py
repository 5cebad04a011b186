"""URLs of the projected reads (mounted under /api/).

Projected reads go through base.projected(): their token wait is async.
"""

from django.urls import path

import shop.web.url_ids  # noqa: F401  (registers <id:...>)
from readmodels.api import stream, views
from readmodels.api.base import projected

urlpatterns = [
    path("products/search", projected(views.ProductSearchView), name="product-search"),
    path(
        "customers/<id:customer_id>/orders",
        projected(views.CustomerOrdersView),
        name="customer-orders",
    ),
    path(
        "customers/<id:customer_id>/dashboard",
        projected(views.CustomerDashboardView),
        name="customer-dashboard",
    ),
    path("orders/search", projected(views.OrderSearchView), name="order-search"),
    path("orders/<uuid:order_id>/summary", projected(views.OrderSummaryView), name="order-summary"),
    path("stats/orders", projected(views.OrderStatsView), name="order-stats"),
    path("consistency/stream", stream.consistency_stream, name="consistency-stream"),
]

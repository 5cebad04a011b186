"""URLs of the projected reads (mounted under /api/)."""

from django.urls import path

from readmodels.api import stream, views

urlpatterns = [
    path("products/search", views.ProductSearchView.as_view(), name="product-search"),
    path(
        "customers/<int:customer_id>/orders",
        views.CustomerOrdersView.as_view(),
        name="customer-orders",
    ),
    path(
        "customers/<int:customer_id>/dashboard",
        views.CustomerDashboardView.as_view(),
        name="customer-dashboard",
    ),
    path("orders/search", views.OrderSearchView.as_view(), name="order-search"),
    path("orders/<uuid:order_id>/summary", views.OrderSummaryView.as_view(), name="order-summary"),
    path("stats/orders", views.OrderStatsView.as_view(), name="order-stats"),
    path("consistency/stream", stream.consistency_stream, name="consistency-stream"),
]

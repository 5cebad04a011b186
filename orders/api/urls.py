"""URLs of the write side's API (mounted under /api/)."""

from django.urls import path

import shop.web.url_ids  # noqa: F401  (registers <id:...>)
from orders.api import views

urlpatterns = [
    path("", views.ApiRootView.as_view(), name="api-root"),
    path("me", views.MeView.as_view(), name="me"),
    path("customers", views.CustomerCreateView.as_view(), name="customer-create"),
    path("customers/<id:customer_id>", views.CustomerDetailView.as_view(), name="customer-detail"),
    path("customers/<id:customer_id>/top-ups", views.TopUpView.as_view(), name="customer-top-up"),
    path("payments/webhook", views.PaymentWebhookView.as_view(), name="payment-webhook"),
    path("products", views.ProductCreateView.as_view(), name="product-create"),
    path("products/<id:product_id>", views.ProductDetailView.as_view(), name="product-detail"),
    path("products/<id:product_id>/restock", views.RestockView.as_view(), name="product-restock"),
    path("orders", views.OrderCreateView.as_view(), name="order-create"),
    path("orders/<uuid:order_id>", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/pay", views.OrderPayView.as_view(), name="order-pay"),
    path("orders/<uuid:order_id>/cancel", views.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<uuid:order_id>/ship", views.OrderShipView.as_view(), name="order-ship"),
]

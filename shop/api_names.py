"""The names people read for the API's views: the browsable API's titles and breadcrumbs.

DRF names a view after its class ("Order Create View" becomes "Order Create"); the
breadcrumbs of /api/orders/search then read "Api Root / Order Create / Order Search".
These are the resources' own names. A view not listed keeps DRF's name.
"""

from __future__ import annotations

from rest_framework.views import get_view_name

NAMES = {
    "ApiRootView": "Shop API",
    "LoginView": "API token (sign in)",
    "LogoutView": "Sign out (revoke the token)",
    "MeView": "Me",
    "CustomerCreateView": "Customers",
    "CustomerDetailView": "Customer",
    "TopUpView": "Top-ups",
    "CustomerOrdersView": "Order history",
    "CustomerDashboardView": "Dashboard",
    "PaymentWebhookView": "Payment provider callback",
    "ProductCreateView": "Products",
    "ProductDetailView": "Product",
    "RestockView": "Restock",
    "ProductSearchView": "Product search",
    "OrderCreateView": "Orders",
    "OrderDetailView": "Order",
    "OrderPayView": "Pay",
    "OrderCancelView": "Cancel",
    "OrderShipView": "Ship",
    "OrderSummaryView": "Order summary",
    "OrderSearchView": "Order search",
    "OrderStatsView": "Order statistics",
}


def view_name(view) -> str:
    """REST_FRAMEWORK's VIEW_NAME_FUNCTION."""
    return NAMES.get(type(view).__name__) or get_view_name(view)

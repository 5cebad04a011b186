"""Command endpoints and strong reads of customers, products and orders. Views stay thin."""

from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import commands, errors, payments, selectors
from orders.api import serializers as s
from orders.api.base import (
    COMMAND_HEADERS,
    IF_MATCH_HEADER,
    STRONG_READ_HEADERS,
    CommandView,
    StrongReadView,
    expected_version,
)

STRONG = "Consistency: **strong** (read from PostgreSQL, the write model)."


def _own_customer_id(view, request, customer_id: int, staff_permission: str) -> int:
    """Return customer_id if the caller may act for that customer, else 404."""
    customer = view.acting_customer(request, staff_permission)
    if customer is not None and customer.pk != customer_id:
        raise errors.NotFound("No such customer.")
    return customer_id


def _order_body(order_id) -> dict:
    return s.show_order(selectors.get_order(order_id=order_id))


class CustomerCreateView(CommandView):
    success_status = 201
    location_name, location_kwarg = "customer-detail", "customer_id"

    @extend_schema(
        request=s.CustomerIn,
        responses={201: s.CustomerOut},
        parameters=COMMAND_HEADERS,
        summary="Register a customer (staff, or a login that is not a customer yet).",
    )
    def post(self, request):
        return self.run_command(request)

    def command(self, request):
        data = self.validated(s.CustomerIn)
        if request.user.is_staff:
            self.require_staff(request, "orders.add_customer")
            result = commands.register_customer(**data)
        else:
            result = commands.register_customer(**data, user=request.user)
        return self.committed_response(result, s.show_customer(result.value))


class CustomerDetailView(StrongReadView):
    @extend_schema(responses={200: s.CustomerOut}, parameters=STRONG_READ_HEADERS, description=STRONG)
    def get(self, request, customer_id: int):
        _own_customer_id(self, request, customer_id, "orders.view_customer")
        customer = selectors.get_customer(customer_id=customer_id)
        if customer is None:
            raise errors.NotFound("No such customer.")
        return Response(s.show_customer(customer))


class TopUpNotAllowed(exceptions.PermissionDenied):
    default_detail = (
        "Crediting a balance is a staff action that needs the top-up permission; "
        "customers pay in through the payment provider."
    )
    default_code = "permission_required"


class TopUpView(CommandView):
    @extend_schema(
        request=s.TopUpIn,
        responses={200: s.CustomerOut},
        parameters=[*COMMAND_HEADERS, IF_MATCH_HEADER],
        summary="Credit a customer's balance (staff with orders.top_up_balance).",
    )
    def post(self, request, customer_id: int):
        return self.run_command(request, customer_id)

    def command(self, request, customer_id: int):
        if not (request.user.is_staff and request.user.has_perm("orders.top_up_balance")):
            raise TopUpNotAllowed()
        data = self.validated(s.TopUpIn)
        result = commands.top_up_balance(
            customer_id=_own_customer_id(self, request, customer_id, "orders.top_up_balance"),
            expected_version=expected_version(request),
            **data,
        )
        return self.committed_response(result, s.show_customer(result.value))


class PaymentWebhookView(APIView):
    """The payment provider's callback: credits a balance for a signed, fresh, new event."""

    # The signature is the only credential; no session, so no CSRF either.
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=s.PaymentEventIn,
        responses={200: s.PaymentEventOut},
        parameters=[
            OpenApiParameter(
                payments.SIGNATURE_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description=(
                    "`t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>' with the "
                    "shared secret>`. Refused when it does not match or t is more than "
                    "5 minutes away. A repeated event_id is answered 200 and credits nothing."
                ),
            )
        ],
        summary="Payment provider callback: credit a customer's balance.",
    )
    def post(self, request):
        # The raw bytes, before any parser: the signature covers exactly what was sent.
        body = request.body
        payments.verify(header=request.headers.get(payments.SIGNATURE_HEADER), body=body)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise exceptions.ParseError("The body is not JSON.") from None
        data = s.PaymentEventIn(data=document if isinstance(document, dict) else {})
        data.is_valid(raise_exception=True)
        result = commands.credit_payment(**data.validated_data)
        event_id = data.validated_data["event_id"]
        if result is None:
            return Response({"event_id": event_id, "status": "already_credited"})
        response = Response({"event_id": event_id, "status": "credited"})
        response["X-Consistency-Token"] = result.token
        return response


class ProductCreateView(CommandView):
    success_status = 201
    location_name, location_kwarg = "product-detail", "product_id"

    @extend_schema(
        request=s.ProductIn,
        responses={201: s.ProductOut},
        parameters=COMMAND_HEADERS,
        summary="Add a product to the catalogue (staff).",
    )
    def post(self, request):
        return self.run_command(request)

    def command(self, request):
        self.require_staff(request, "orders.add_product")
        data = self.validated(s.ProductIn)
        result = commands.create_product(**data)
        return self.committed_response(result, s.show_product(result.value))


class ProductDetailView(CommandView, StrongReadView):
    def get_permissions(self):
        if self.request.method == "GET":
            return [AllowAny()]
        return super().get_permissions()

    @extend_schema(responses={200: s.ProductOut}, parameters=STRONG_READ_HEADERS, description=STRONG)
    def get(self, request, product_id: int):
        product = selectors.get_product(product_id=product_id)
        # A product taken off sale is not public: to everyone but staff it does not exist.
        if product is None or (not product.active and not request.user.is_staff):
            raise errors.NotFound("No such product.")
        return Response(s.show_product(product))

    @extend_schema(
        request=s.ProductPatchIn,
        responses={200: s.ProductOut},
        parameters=[*COMMAND_HEADERS, IF_MATCH_HEADER],
        summary="Change a product's catalogue fields (staff).",
    )
    def patch(self, request, product_id: int):
        return self.run_command(request, product_id)

    def command(self, request, product_id: int):
        self.require_staff(request, "orders.change_product")
        data = self.validated(s.ProductPatchIn)
        result = commands.update_product(
            product_id=product_id,
            expected_version=expected_version(request),
            **data,
        )
        return self.committed_response(result, s.show_product(result.value))


class RestockView(CommandView):
    @extend_schema(
        request=s.RestockIn,
        responses={200: s.ProductOut},
        parameters=[*COMMAND_HEADERS, IF_MATCH_HEADER],
        summary="Add units to a product's stock (staff).",
    )
    def post(self, request, product_id: int):
        return self.run_command(request, product_id)

    def command(self, request, product_id: int):
        self.require_staff(request, "orders.change_product")
        data = self.validated(s.RestockIn)
        result = commands.restock_product(
            product_id=product_id,
            expected_version=expected_version(request),
            **data,
        )
        return self.committed_response(result, s.show_product(result.value))


class OrderCreateView(CommandView):
    success_status = 201
    location_name, location_kwarg = "order-detail", "order_id"

    @extend_schema(
        request=s.OrderIn,
        responses={201: s.OrderOut},
        parameters=COMMAND_HEADERS,
        summary="Place an order and reserve its stock.",
    )
    def post(self, request):
        return self.run_command(request)

    def command(self, request):
        data = self.validated(s.OrderIn)
        customer = self.acting_customer(request, "orders.manage_orders")
        customer_id = data.get("customer_id")
        if customer is None and customer_id is None:
            raise errors.ShopError("Staff must name the customer_id.", code="customer_required")
        if customer is not None:
            # A customer orders for themself only (the check _own_customer_id makes,
            # without looking the caller's customer up a second time).
            if customer_id is not None and customer_id != customer.pk:
                raise errors.NotFound("No such customer.")
            customer_id = customer.pk
        try:
            result = commands.place_order(
                customer_id=customer_id,
                lines=[commands.LineRequest(**line) for line in data["lines"]],
            )
        except errors.ProductUnavailable as unavailable:
            # Only staff may see a product taken off sale (ProductDetailView).
            if request.user.is_staff:
                raise
            raise unavailable.as_missing() from None
        return self.committed_response(result, s.show_order(result.value))


class OrderDetailView(StrongReadView):
    @extend_schema(responses={200: s.OrderOut}, parameters=STRONG_READ_HEADERS, description=STRONG)
    def get(self, request, order_id):
        customer = self.acting_customer(request, "orders.view_order")
        order = selectors.get_order(order_id=order_id)
        if order is None or (customer is not None and order.customer_id != customer.pk):
            raise errors.NotFound("No such order.")
        return Response(s.show_order(order))


class _OrderTransitionView(CommandView):
    staff_only = False
    staff_permission = "orders.manage_orders"
    run = None

    def command(self, request, order_id):
        if self.staff_only:
            self.require_staff(request, self.staff_permission)
        customer = self.acting_customer(request, self.staff_permission)
        result = self.run(
            order_id=order_id,
            owner_id=None if customer is None else customer.pk,
            expected_version=expected_version(request),
        )
        return self.committed_response(result, _order_body(result.value.pk))


def _transition_view(
    name: str, action, summary: str, staff_only: bool = False,
    staff_permission: str = "orders.manage_orders",
):
    class View(_OrderTransitionView):
        @extend_schema(
            request=None,
            responses={200: s.OrderOut},
            parameters=[*COMMAND_HEADERS, IF_MATCH_HEADER],
            summary=summary,
        )
        def post(self, request, order_id):
            return self.run_command(request, order_id)

    View.run = staticmethod(action)
    View.staff_only = staff_only
    View.staff_permission = staff_permission
    View.__name__ = View.__qualname__ = name
    return View


OrderPayView = _transition_view(
    "OrderPayView", commands.pay_order, "Pay a pending order from the customer's balance."
)
OrderCancelView = _transition_view(
    "OrderCancelView",
    commands.cancel_order,
    "Cancel a pending or paid order: stock is released and a payment refunded.",
)
OrderShipView = _transition_view(
    "OrderShipView",
    commands.ship_order,
    "Mark a paid order as shipped (staff with orders.ship_order).",
    staff_only=True,
    staff_permission="orders.ship_order",
)


# What GET /api/ lists: (path, methods, consistency, access, description).
RESOURCES = [
    ("/api/auth/token", ["POST"], "command", "public",
     "Exchange username and password for an expiring API token (Authorization: Token <key>)."),
    ("/api/auth/logout", ["POST"], "command", "signed-in", "Revoke the token sent."),
    ("/api/auth/password", ["POST"], "command", "signed-in",
     "Change your password; revokes all your API tokens."),
    ("/api/me", ["GET"], "strong", "signed-in", "Who you are: user id, staff or not, customer id."),
    ("/api/customers", ["POST"], "command", "signed-in", "Register a customer."),
    ("/api/customers/{customer_id}", ["GET"], "strong", "owner or staff", "A customer."),
    ("/api/customers/{customer_id}/top-ups", ["POST"], "command", "staff (top_up_balance)",
     "Credit a customer's balance."),
    ("/api/customers/{customer_id}/dashboard", ["GET"], "eventual", "owner or staff",
     "Balance, open orders, spend, latest orders."),
    ("/api/customers/{customer_id}/orders", ["GET"], "eventual", "owner or staff",
     "Order history, newest first."),
    ("/api/products", ["POST"], "command", "staff", "Add a product."),
    ("/api/products/{product_id}", ["GET", "PATCH"], "strong", "public (GET), staff (PATCH)",
     "A product."),
    ("/api/products/{product_id}/restock", ["POST"], "command", "staff", "Add stock."),
    ("/api/products/search", ["GET"], "eventual", "public", "Search the catalogue."),
    ("/api/orders", ["POST"], "command", "signed-in", "Place an order."),
    ("/api/orders/{order_id}", ["GET"], "strong", "owner or staff", "An order."),
    ("/api/orders/{order_id}/pay", ["POST"], "command", "owner or staff", "Pay an order."),
    ("/api/orders/{order_id}/cancel", ["POST"], "command", "owner or staff", "Cancel an order."),
    ("/api/orders/{order_id}/ship", ["POST"], "command", "staff (ship_order)", "Ship an order."),
    ("/api/orders/{order_id}/summary", ["GET"], "eventual", "owner or staff",
     "An order's confirmation and tracking summary."),
    ("/api/orders/search", ["GET"], "eventual", "staff (view_order)", "Find orders."),
    ("/api/stats/orders", ["GET"], "eventual", "staff (view_order)", "Order counts and revenue."),
    ("/api/consistency/stream", ["GET"], "stream", "signed-in",
     "Server-sent events: when each view includes a token."),
    ("/api/health", ["GET"], "strong", "public", "Liveness."),
]


class ApiRootView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: s.ApiRootOut}, summary="The API's resources, and where to start.")
    def get(self, request):
        return Response(
            s.ApiRootOut(
                {
                    "name": "Shop API",
                    "schema": request.build_absolute_uri("/api/schema/"),
                    "docs": request.build_absolute_uri("/api/docs/"),
                    "auth": (
                        "POST /api/auth/token with username and password, then send "
                        "`Authorization: Token <key>`. Public reads need no login."
                    ),
                    "resources": [
                        dict(zip(["path", "methods", "consistency", "access", "description"], r, strict=True))
                        for r in RESOURCES
                    ],
                }
            ).data
        )


class MeView(StrongReadView):
    @extend_schema(
        responses={200: s.MeOut}, parameters=[STRONG_READ_HEADERS[0]], description=STRONG,
        summary="The signed-in user: id, staff or not, and their customer id if any.",
    )
    def get(self, request):
        customer = selectors.customer_for_user(user=request.user)
        return Response(
            s.MeOut(
                {
                    "id": request.user.pk,
                    "username": request.user.get_username(),
                    "is_staff": request.user.is_staff,
                    "customer_id": None if customer is None else customer.pk,
                }
            ).data
        )

"""Projected endpoints: search, order history, stats, order summary and dashboard."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import zoneinfo
from datetime import timedelta

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from orders.models import OrderStatus
from readmodels import projectors, queries
from readmodels.api import serializers as out
from readmodels.api.base import ProjectedReadView
from readmodels.api.openapi import projected_read_schema
from shop.web.fields import QueryParameters
from shop.web.permissions import require_staff_permission


class NotFound(exceptions.NotFound):
    default_code = "not_found"


def _require_staff(request):
    """Staff reading across customers need the permission to see any order."""
    require_staff_permission(request, "orders.view_order")


def _sees_every_customer(request) -> bool:
    return request.user.is_staff and request.user.has_perm("orders.view_order")


def _owned(request, document: dict | None) -> dict:
    """Return the document if the caller may see it (its customer, or staff allowed to
    see any order), else 404."""
    if document is None:
        raise NotFound("Not found (or not yet visible in this view).")
    if document.get("user_id") != request.user.pk and not _sees_every_customer(request):
        raise NotFound("Not found (or not yet visible in this view).")
    return document


def _within_result_window(attrs: dict) -> dict:
    """Refuse a page Elasticsearch cannot serve (from + size past max_result_window)."""
    if attrs["page"] * attrs["page_size"] > queries.MAX_RESULT_WINDOW:
        raise serializers.ValidationError(
            {
                "page": [
                    exceptions.ErrorDetail(
                        f"page * page_size may be at most {queries.MAX_RESULT_WINDOW}; "
                        "narrow the search instead of paging this deep.",
                        code="result_window_exceeded",
                    )
                ]
            }
        )
    return attrs


def _link(request, **changes) -> str:
    """This request's URL with some query parameters changed (None removes one)."""
    query = request.query_params.copy()
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value)
    encoded = query.urlencode()
    return request.build_absolute_uri(request.path + (f"?{encoded}" if encoded else ""))


def _page_links(request, *, page: int, page_size: int, count: int) -> dict:
    last = min(count, queries.MAX_RESULT_WINDOW)
    return {
        "next": _link(request, page=page + 1) if page * page_size < last else None,
        "previous": _link(request, page=page - 1) if page > 1 else None,
    }


def encode_cursor(sort_values: list) -> str:
    """The opaque search_after cursor a client sends back for the next page."""
    return base64.urlsafe_b64encode(json.dumps(sort_values).encode()).decode().rstrip("=")


# What encode_cursor makes: base64url without padding (the decoder would skip other
# characters, so they are refused before it runs).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"


def decode_cursor(value: str) -> list:
    """The sort values of a cursor made by encode_cursor, or a ValidationError."""
    try:
        padded = value + "=" * (-len(value) % 4)
        parsed = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        parsed = None
    if (
        not isinstance(parsed, list)
        or len(parsed) != 2
        or not isinstance(parsed[0], int)
        or isinstance(parsed[0], bool)
        or not isinstance(parsed[1], str)
    ):
        raise serializers.ValidationError(
            "must be next_search_after from a previous page", code="invalid_cursor"
        )
    return parsed


class ProductSearchIn(QueryParameters):
    q = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    category = serializers.CharField(required=False, max_length=100)
    min_price = serializers.IntegerField(required=False, min_value=0, max_value=10**12)
    max_price = serializers.IntegerField(required=False, min_value=0, max_value=10**12)
    in_stock = serializers.BooleanField(required=False)
    sort = serializers.ChoiceField(choices=sorted(queries.PRODUCT_SORTS), default="relevance")
    page = serializers.IntegerField(required=False, min_value=1, max_value=500, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    def validate(self, attrs):
        return _within_result_window(attrs)


@projected_read_schema(
    parameters=[ProductSearchIn],
    responses=out.ProductSearchOut,
    summary="Search the catalogue (relevance, typo-tolerant, category facet).",
)
class ProductSearchView(ProjectedReadView):
    permission_classes = [AllowAny]
    read_model = "products_search"
    fallback = "unavailable"

    def read(self, request):
        params = ProductSearchIn(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        result = queries.search_products(queries.ProductSearch(**data))
        result.update(
            _page_links(request, page=data["page"], page_size=data["page_size"],
                        count=result["count"])
        )
        return Response(out.ProductSearchOut(result).data)


class CustomerOrdersIn(QueryParameters):
    status = serializers.ChoiceField(choices=OrderStatus.values, required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)
    search_after = serializers.CharField(
        required=False, max_length=500,
        validators=[RegexValidator(CURSOR_PATTERN, code="invalid_cursor",
                                   message="must be next_search_after from a previous page")],
        help_text="next_search_after of the previous page (400 `invalid_cursor` otherwise).",
    )

    def validate_search_after(self, value):
        return decode_cursor(value)


@projected_read_schema(
    parameters=[CustomerOrdersIn],
    responses=out.CustomerOrdersOut,
    summary="A customer's order history, newest first (search_after pagination).",
)
class CustomerOrdersView(ProjectedReadView):
    read_model = "orders_search"
    fallback = "unavailable"

    def read(self, request, customer_id: int):
        params = CustomerOrdersIn(data=request.query_params)
        params.is_valid(raise_exception=True)
        # Ownership comes from the order documents themselves (each carries its owner's
        # user id), not from another read model: the dashboard may be behind this view,
        # and a projected read runs no SQL on the write tables. A customer asking for
        # someone else's history therefore gets an empty one (200, count 0), the same
        # answer as for a customer without orders, so it tells them nothing.
        result = queries.customer_orders(
            customer_id=customer_id,
            status=params.validated_data.get("status"),
            page_size=params.validated_data["page_size"],
            search_after=params.validated_data.get("search_after"),
            user_id=None if _sees_every_customer(request) else request.user.pk,
        )
        after = result["next_search_after"]
        result["next_search_after"] = None if after is None else encode_cursor(after)
        result["next"] = (
            None if after is None else _link(request, search_after=result["next_search_after"])
        )
        # search_after pages forward only: back is the first page, when this is not it.
        result["previous"] = (
            _link(request, search_after=None) if "search_after" in request.query_params else None
        )
        return Response(out.CustomerOrdersOut(result).data)


class OrderSearchIn(QueryParameters):
    q = serializers.CharField(max_length=200)
    page = serializers.IntegerField(required=False, min_value=1, max_value=500, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)

    def validate(self, attrs):
        return _within_result_window(attrs)


@projected_read_schema(
    parameters=[OrderSearchIn],
    responses=out.OrderSearchOut,
    summary="Staff: find orders by customer name or email, sku or item name.",
)
class OrderSearchView(ProjectedReadView):
    read_model = "orders_search"
    fallback = "unavailable"

    def read(self, request):
        _require_staff(request)
        params = OrderSearchIn(data=request.query_params)
        params.is_valid(raise_exception=True)
        result = queries.search_orders(**params.validated_data)
        result.update(
            _page_links(request, page=result["page"], page_size=result["page_size"],
                        count=result["count"])
        )
        return Response(out.OrderSearchOut(result).data)


@functools.cache
def _time_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class OrderStatsIn(QueryParameters):
    # `from` is a Python keyword, so the fields are renamed in validate().
    interval = serializers.ChoiceField(choices=["hour", "day", "week", "month"], default="day")
    time_zone = serializers.CharField(required=False, max_length=64, default="UTC")

    def validate_time_zone(self, value):
        if value not in _time_zone_names():
            raise serializers.ValidationError(
                "must be an IANA time zone name, such as UTC or Europe/Berlin",
                code="unknown_time_zone",
            )
        return zoneinfo.ZoneInfo(value)

    def validate(self, attrs):
        raw = self.initial_data
        now = timezone.now()
        # A from/to without an offset is a wall-clock time in the requested zone.
        field = serializers.DateTimeField(default_timezone=attrs["time_zone"])
        try:
            start, end = raw.get("from"), raw.get("to")
            attrs["start"] = now - timedelta(days=30) if start is None else (
                field.to_internal_value(start)
            )
            attrs["end"] = now if end is None else field.to_internal_value(end)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"from/to": exc.detail}) from None
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"to": ["must be after from"]})
        span = attrs["end"] - attrs["start"]
        limits = {"hour": 24 * 31, "day": 3660, "week": 1000, "month": 1200}
        seconds = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 28 * 86400}
        if span.total_seconds() / seconds[attrs["interval"]] > limits[attrs["interval"]]:
            raise serializers.ValidationError({"interval": ["too many buckets; use a larger one"]})
        return attrs


@projected_read_schema(
    parameters=[
        OpenApiParameter("from", str, description="ISO 8601 start (default: 30 days ago)"),
        OpenApiParameter("to", str, description="ISO 8601 end, exclusive (default: now)"),
        OpenApiParameter("interval", str, enum=["hour", "day", "week", "month"]),
        OpenApiParameter(
            "time_zone", str, enum=sorted(_time_zone_names()),
            description="IANA zone the buckets follow, e.g. Europe/Berlin (default UTC)",
        ),
    ],
    responses=out.OrderStatsOut,
    summary="Staff: order count and revenue per status and per time bucket.",
)
class OrderStatsView(ProjectedReadView):
    read_model = "orders_search"
    slo_model = "order_stats"
    fallback = "unavailable"

    def read(self, request):
        _require_staff(request)
        params = OrderStatsIn(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        return Response(
            out.OrderStatsOut(
                queries.order_stats(
                    start=data["start"], end=data["end"], interval=data["interval"],
                    time_zone=data["time_zone"],
                )
            ).data
        )


@projected_read_schema(
    responses=out.OrderSummaryOut, summary="An order's confirmation and tracking summary."
)
class OrderSummaryView(ProjectedReadView):
    read_model = "order_summary"
    fallback = "strong"

    def read(self, request, order_id):
        found = queries.order_summary(str(order_id))
        return Response(out.OrderSummaryOut(_owned(request, found[1] if found else None)).data)

    def read_strong(self, request, order_id):
        docs = projectors.get("order_summary").load({str(order_id)})
        return Response(out.OrderSummaryOut(_owned(request, docs[0].body if docs else None)).data)


@projected_read_schema(
    responses=out.DashboardOut,
    summary="A customer's dashboard: balance, open orders, spend, latest orders.",
)
class CustomerDashboardView(ProjectedReadView):
    read_model = "customer_dashboard"
    fallback = "strong"

    def read(self, request, customer_id: int):
        found = queries.customer_dashboard(customer_id)
        return Response(out.DashboardOut(_owned(request, found[1] if found else None)).data)

    def read_strong(self, request, customer_id: int):
        docs = projectors.get("customer_dashboard").load({str(customer_id)})
        return Response(out.DashboardOut(_owned(request, docs[0].body if docs else None)).data)



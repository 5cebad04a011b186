"""Base views: consistency headers, ETags and idempotent command handling in one place."""

from __future__ import annotations

import logging
import re

from django.db import transaction
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import errors, idempotency, metrics, selectors, signals
from orders.commands import Committed
from orders.models import Customer
from shop.web.metrics import READS
from shop.web.permissions import require_staff_permission

CONSISTENCY_HEADER = OpenApiParameter(
    "X-Consistency",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=True,
    enum=["strong", "eventual", "strong-fallback"],
    description="How fresh this answer is. `strong`: read from the write model (PostgreSQL).",
)
ETAG_HEADER = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=True,
    description="The resource's version; send it back in If-Match to guard an update.",
)
TOKEN_HEADER = OpenApiParameter(
    "X-Consistency-Token",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=True,
    description=(
        "Opaque token of this command's commit. Send it to a projected read to see your "
        "own write there. Do not parse it."
    ),
)
# An Idempotency-Key: 1 to 255 visible ASCII characters. Only these survive HTTP intact
# (a header's surrounding spaces are dropped on the way, other bytes are read as Latin-1).
IDEMPOTENCY_KEY_PATTERN = rf"^[!-~]{{1,{idempotency.MAX_KEY_LENGTH}}}$"
# If-Match: `*`, or an ETag this API sends ("7"; W/"7" and "v7" are read the same).
IF_MATCH_PATTERN = r'^(?:\*|(?:W/)?"v?[0-9]{1,10}")$'

IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
    OpenApiParameter.HEADER,
    description=(
        "Any unique string of 1 to 255 visible ASCII characters, `!` to `~` (a UUID is "
        "best); anything else is a 400 `invalid`. Retrying "
        "with the same key and the same request replays the first response (with "
        "`Idempotent-Replayed: true`) instead of running the command again; the same key "
        "with a different request is refused with 422. Keys expire after 24 hours."
    ),
)
IF_MATCH_HEADER = OpenApiParameter(
    "If-Match",
    {"type": "string", "pattern": IF_MATCH_PATTERN},
    OpenApiParameter.HEADER,
    description=(
        "An ETag from a strong read: the update happens only at that version, else 412 "
        "`version_mismatch`. A value that is no ETag matches no version: 412 too (RFC 9110 "
        "§13.1.1), not 400."
    ),
)
STRONG_READ_HEADERS = [CONSISTENCY_HEADER, ETAG_HEADER]
COMMAND_HEADERS = [IDEMPOTENCY_KEY_HEADER, TOKEN_HEADER, ETAG_HEADER]

logger = logging.getLogger(__name__)

_ETAG = re.compile(r'(?:W/)?"v?([0-9]{1,10})"')
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(request) -> int | None:
    """Return the version an If-Match header asks for (None when there is none or `*`)."""
    value = request.headers.get("If-Match")
    if value is None:
        return None
    # Whitespace around a header's value is not part of it (RFC 9110 5.5): HTTP servers
    # drop it before the app sees the value, and so does this for any that does not.
    value = value.strip()
    if value == "*":
        return None
    match = _ETAG.fullmatch(value)
    if not match:
        raise errors.PreconditionFailed("If-Match must be an ETag from a read of this resource.")
    return int(match.group(1))


class NotACustomer(exceptions.PermissionDenied):
    default_detail = "This login is not linked to a customer."
    default_code = "not_a_customer"


def announce_answered(*, sender, user_id: int, token: str) -> None:
    """Tell the read side a user was answered with this token; never raises.

    The command has committed: whatever a receiver meets (a store refusing writes, a
    bug), the command still answers its success, so a client never retries a command
    that ran. Receivers' errors are logged.
    """
    for receiver, outcome in signals.command_answered.send_robust(
        sender=sender, user_id=user_id, token=token
    ):
        if isinstance(outcome, Exception):
            logger.warning("after the commit, %s failed: %r", getattr(receiver, "__name__", receiver),
                           outcome)


class ShopView(APIView):
    def acting_customer(self, request, staff_permission: str) -> Customer | None:
        """Return the caller's customer, or None for staff holding `staff_permission`.

        Staff act for any customer, but only in what their permissions allow.
        """
        if request.user.is_staff:
            require_staff_permission(request, staff_permission)
            return None
        customer = selectors.customer_for_user(user=request.user)
        if customer is None:
            raise NotACustomer()
        return customer

    def require_staff(self, request, permission: str) -> None:
        require_staff_permission(request, permission)


class StrongReadView(ShopView):
    """A read from PostgreSQL: says so in X-Consistency and tags the version."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method == "GET" and 200 <= response.status_code < 300:
            READS.labels("write_model", "strong").inc()
            response["X-Consistency"] = "strong"
            version = (response.data or {}).get("version") if hasattr(response, "data") else None
            if version is not None:
                response["ETag"] = etag(version)
        return response


class CommandView(ShopView):
    """A command endpoint: idempotent by Idempotency-Key, answers with the consistency token.

    Subclasses implement `command(request, *args, **kwargs) -> Response` and build
    their response with `committed_response`.
    """

    success_status = 200
    # For a 201: the URL name of the created resource's strong read, and its argument.
    location_name: str | None = None
    location_kwarg: str = "pk"

    def command(self, request, *args, **kwargs) -> Response:
        raise NotImplementedError

    def validated(self, serializer_class) -> dict:
        """The request body, validated by an input serializer (a 400 when it is not valid)."""
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def committed_response(self, result: Committed, body: dict) -> Response:
        response = Response(body, status=self.success_status)
        response["X-Consistency-Token"] = result.token
        if self.success_status == 201 and self.location_name and "id" in body:
            response["Location"] = self.request.build_absolute_uri(
                reverse(self.location_name, kwargs={self.location_kwarg: body["id"]})
            )
        if "version" in body:
            response["ETag"] = etag(body["version"])
        return response

    def run_command(self, request, *args, **kwargs) -> Response:
        name = type(self).__name__.removesuffix("View")
        try:
            response = self._run_command(request, *args, **kwargs)
        except exceptions.APIException:
            metrics.COMMANDS.labels(name, "refused").inc()
            raise
        except Exception:
            metrics.COMMANDS.labels(name, "error").inc()
            raise
        outcome = "ok" if response.status_code < 400 else "refused"
        metrics.COMMANDS.labels(name, outcome).inc()
        token = response.get("X-Consistency-Token")
        if token and response.status_code < 400 and request.user.is_authenticated:
            # Committed (the transaction is closed by now), replays included: the user's
            # next projected reads wait for this, from any device, with no token sent.
            announce_answered(sender=type(self), user_id=request.user.pk, token=token)
        return response

    def _run_command(self, request, *args, **kwargs) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return self.command(request, *args, **kwargs)
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            raise exceptions.ValidationError(
                {"Idempotency-Key": ["must be 1 to 255 visible ASCII characters (! to ~)."]},
                code="invalid",
            )
        owner = f"user:{request.user.pk}"
        request_fingerprint = idempotency.fingerprint(
            method=request.method,
            path=request.path,
            body=request.data,
            if_match=request.headers.get("If-Match"),
        )
        with transaction.atomic(durable=True):
            stored = idempotency.claim(owner=owner, key=key, request_fingerprint=request_fingerprint)
            if stored is not None:
                response = Response(stored.body, status=stored.status_code)
                for name, value in stored.headers.items():
                    response[name] = value
                response["Idempotent-Replayed"] = "true"
                return response
            try:
                # A savepoint: a refused command rolls back alone, and its answer is
                # still stored under the key so that a retry gets the same answer.
                with transaction.atomic():
                    response = self.command(request, *args, **kwargs)
            except exceptions.APIException as exc:
                response = self.handle_exception(exc)
            kept = {
                name: response[name]
                for name in ("X-Consistency-Token", "ETag", "Location")
                if response.has_header(name)
            }
            idempotency.store(
                owner=owner,
                key=key,
                response=idempotency.StoredResponse(response.status_code, response.data, kept),
            )
        return response

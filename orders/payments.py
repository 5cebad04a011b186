"""The payment provider's callback: how the shop knows a payment event is genuine.

The provider signs every callback with the shared secret (PAYMENT_WEBHOOK_SECRET):
header `X-Payment-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the HMAC taken over
`<t>.<raw body>`. A signature is accepted only over the exact bytes received and only
within the tolerance around `t`, so a captured callback cannot be replayed later;
within the tolerance, the event id makes a replay credit nothing (commands.credit_payment).
Several v1 entries may be sent, so the provider can roll its secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException

SIGNATURE_HEADER = "X-Payment-Signature"


class PaymentsNotConfigured(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Payment callbacks are not configured on this shop."
    default_code = "payments_not_configured"


class InvalidSignature(APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = f"{SIGNATURE_HEADER} is missing or does not match the body."
    default_code = "invalid_signature"


class StaleSignature(APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The callback's timestamp is outside the accepted window."
    default_code = "stale_signature"


def sign(*, body: bytes, timestamp: int, secret: str) -> str:
    """Return the signature header value for a body, as the provider makes it."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(*, header: str | None, body: bytes, now: float | None = None) -> None:
    """Raise unless `header` is the provider's valid, fresh signature of `body`."""
    secret = settings.PAYMENT_WEBHOOK_SECRET
    if not secret:
        raise PaymentsNotConfigured()
    timestamp, candidates = None, []
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature()
    expected = sign(body=body, timestamp=timestamp, secret=secret).rpartition("v1=")[2]
    # Every candidate is compared, in constant time, before deciding.
    matches = [hmac.compare_digest(expected.encode(), c.encode()) for c in candidates]
    if not any(matches):
        raise InvalidSignature()
    now = time.time() if now is None else now
    if abs(now - timestamp) > settings.SHOP["PAYMENT_WEBHOOK_TOLERANCE_SECONDS"]:
        raise StaleSignature()

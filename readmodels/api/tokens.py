"""What a projected read asks for: a token of its own, the session's, or no wait at all.

`X-Consistency-Token` (or `?consistency_token=`) names a command's commit; without one,
a signed-in user's read waits for that user's latest command (session consistency);
`X-Consistency-Token: none` or `?consistency=none` opts out. `max_wait_ms` bounds the wait.
"""

from __future__ import annotations

from rest_framework import exceptions, serializers, status

from orders.outbox import InvalidToken, TokenContent, read_token


class InvalidConsistencyToken(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "X-Consistency-Token is not a token this shop issued."
    default_code = "invalid_consistency_token"


class InvalidMaxWait(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "max_wait_ms must be a whole number of milliseconds, 0 or more."
    default_code = "invalid_max_wait"


class InvalidConsistency(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "consistency may only be `none` (answer at once, without waiting)."
    default_code = "invalid_consistency"


# The value of X-Consistency-Token (or ?consistency=) that asks for no wait at all.
OPT_OUT = "none"

# Which token governed a read (X-Consistency-Source).
SOURCE_REQUEST, SOURCE_SESSION, SOURCE_NONE = "request", "session", "none"

# An integer field, not str.isdigit(): "²" is a digit to isdigit() but no number to int().
_MAX_WAIT_FIELD = serializers.IntegerField(min_value=0, max_value=999_999_999)


def parse_max_wait_ms(raw: str | None, default: int, cap: int) -> int:
    """max_wait_ms from a query string: a whole number of ms, 0 or more, at most `cap`."""
    if raw is None or raw == "":
        return default
    try:
        value = _MAX_WAIT_FIELD.run_validation(raw)
    except serializers.ValidationError:
        raise InvalidMaxWait() from None
    return min(value, cap)


def token_requested(request) -> tuple[str, TokenContent | None]:
    """Which token the request asks its read to wait for.

    Returns (SOURCE_REQUEST, the token's content), (SOURCE_SESSION, None) (the signed-in user's
    latest command, if any) or (SOURCE_NONE, None) (the opt-out).
    """
    choice = request.GET.get("consistency")
    if choice is not None and choice.strip().lower() != OPT_OUT:
        raise InvalidConsistency()
    raw = request.headers.get("X-Consistency-Token") or request.GET.get("consistency_token")
    if choice is not None or (raw and raw.strip().lower() == OPT_OUT):
        return SOURCE_NONE, None
    if not raw:
        return SOURCE_SESSION, None
    try:
        return SOURCE_REQUEST, read_token(raw)
    except InvalidToken:
        raise InvalidConsistencyToken() from None

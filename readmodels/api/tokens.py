"""What a projected read asks for: a token of its own, the session's, or no wait at all.

`X-Consistency-Token` (or `?consistency_token=`) names a command's commit; without one,
a signed-in user's read waits for that user's latest command (session consistency);
`X-Consistency-Token: none` or `?consistency=none` opts out. `max_wait_ms` bounds the wait.
Each is exactly what the OpenAPI schema states (TOKEN_OR_OPT_OUT_SCHEMA, MAX_WAIT_SCHEMA);
anything else, an empty value included, is a 400.
"""

from __future__ import annotations

import re

from rest_framework import exceptions, status

from orders.outbox import InvalidToken, TokenContent, read_token
from orders.outbox.tokens import TOKEN_PATTERN


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

# The schemas of the parameters, as the code below reads them. ASCII digits only: "²" is
# a digit to str.isdigit(), and int() reads " 5", "+5" and "1_000"; a wait above the cap
# is not refused, it is shortened to the cap.
MAX_WAIT_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 999_999_999}
TOKEN_SCHEMA = {"type": "string", "pattern": TOKEN_PATTERN}
# The header (and ?consistency_token=) also take `none`: the opt-out.
TOKEN_OR_OPT_OUT_SCHEMA = {"type": "string", "pattern": f"^(?:{OPT_OUT}|{TOKEN_PATTERN[1:-1]})$"}
_MAX_WAIT = re.compile(r"[0-9]{1,9}")


def parse_max_wait_ms(raw: str | None, default: int, cap: int) -> int:
    """max_wait_ms from a query string: a whole number of ms, 0 or more, at most `cap`.

    Not sent: the default. Sent empty: refused, like any other value that is no number.
    """
    if raw is None:
        return default
    if not _MAX_WAIT.fullmatch(raw):
        raise InvalidMaxWait()
    return min(int(raw), cap)


def token_requested(request) -> tuple[str, TokenContent | None]:
    """Which token the request asks its read to wait for.

    Returns (SOURCE_REQUEST, the token's content), (SOURCE_SESSION, None) (the signed-in user's
    latest command, if any) or (SOURCE_NONE, None) (the opt-out).
    """
    choice = request.GET.get("consistency")
    if choice is not None and choice != OPT_OUT:
        raise InvalidConsistency()
    raw = request.headers.get("X-Consistency-Token")
    if raw is None:
        raw = request.GET.get("consistency_token")
    if choice is not None or raw == OPT_OUT:
        return SOURCE_NONE, None
    if raw is None:
        return SOURCE_SESSION, None
    try:
        return SOURCE_REQUEST, read_token(raw)
    except InvalidToken:
        raise InvalidConsistencyToken() from None

"""The OpenAPI schema's shared parts: the error responses and headers every operation (or
every one of a kind) can give, and the schema class that declares which operations a
throttle can refuse.

Each status is declared where it can happen and nowhere else: 412 on the operations that
take If-Match, 422 on those that take an Idempotency-Key, 429 on those a throttle
counts. Schemathesis' status-code check holds the API to it (tests/api_contract).
"""

from drf_spectacular import openapi
from rest_framework.permissions import AllowAny

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable."},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "For invalid input: the request fields that were wrong.",
                    "additionalProperties": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        },
                    },
                },
            },
        }
    },
}

ERRORS = {
    "400": "Invalid input (see `fields`), a bad token or a bad parameter.",
    "401": "Not logged in (or, for the payment callback, not signed).",
    "403": "Not allowed: staff only, or a permission the login does not have.",
    "404": "Not found, or not yours.",
    "405": "Method not allowed.",
    "406": "Cannot produce the requested content type.",
    "408": "The request body did not arrive in time (body_timeout); nothing was done.",
    "409": "Refused by a business rule (insufficient_stock, insufficient_balance, ...).",
    "413": "The request body is too large (request_too_large), refused before it is read.",
    "415": "Unsupported content type: send JSON.",
    "503": "The shop is busy (overloaded) or a store or the database is unavailable; "
           "retry after Retry-After.",
}
PRECONDITION_FAILED = (
    "412",
    "`version_mismatch`: If-Match is not an ETag of this resource's current version "
    "(stale, or not an ETag at all).",
)
KEY_REUSED = (
    "422",
    "`idempotency_key_reused`: this Idempotency-Key was already used with a different request.",
)
THROTTLED = (
    "429",
    "`throttled`: too many requests from this client (or, for a login, on this account); "
    "retry after Retry-After seconds.",
)


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            errors = list(ERRORS.items())
            if _has_parameter(operation, "If-Match"):
                errors.append(PRECONDITION_FAILED)
            if _is_command(operation):
                errors.append(KEY_REUSED)
            for status, description in errors:
                responses.setdefault(status, _error_response(description))
    return result


def _header(description: str, schema_type: str = "string") -> dict:
    return {"description": description, "schema": {"type": schema_type}}


REQUEST_ID = _header(
    "This request's id (the caller's own X-Request-ID when it sent a sane one); "
    "it is in the logs and on the outbox rows the request wrote."
)
LOCATION = _header("The URL of the created resource (its strong read).")
RETRY_AFTER = _header("Seconds to wait before retrying.", "integer")
READ_MODEL_DOWN = _header("On a projected read: the read model that could not answer.")
REPLAYED = _header(
    "`true` when this is the stored answer of an earlier request with the same "
    "Idempotency-Key: the command did not run again."
)


def _has_parameter(operation, name: str) -> bool:
    return any(p.get("name") == name for p in operation.get("parameters", []))


def _is_projected(operation) -> bool:
    return _has_parameter(operation, "max_wait_ms")


def _is_command(operation) -> bool:
    return _has_parameter(operation, "Idempotency-Key")


def add_common_headers(result, generator, request, public):
    """Response headers every operation (or every one of a kind) sends."""
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers.setdefault("X-Request-ID", REQUEST_ID)
                if status in ("429", "503"):
                    headers.setdefault("Retry-After", RETRY_AFTER)
                if status == "503":
                    if _is_projected(operation):
                        headers.setdefault("X-Read-Model", READ_MODEL_DOWN)
                if status.startswith("2") and _is_command(operation):
                    headers.setdefault("Idempotent-Replayed", REPLAYED)
                if status == "201":
                    headers.setdefault("Location", LOCATION)
    return result


def may_be_throttled(view, method: str) -> bool:
    """Whether one of the view's throttles can refuse a request of this method.

    DRF checks permissions before throttles, so an anonymous request reaches a throttle
    only on a view that lets anonymous requests in.
    """
    if method == "POST" and getattr(view, "counts_passwords", False):
        return True  # the login throttles, counted by authenticate() (shop.web.login_throttle)
    anonymous = any(isinstance(permission, AllowAny) for permission in view.get_permissions())
    return any(
        throttle.may_refuse(method=method, anonymous=anonymous)
        for throttle in view.get_throttles()
    )


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema of a view, with the 429 of each operation a throttle counts."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None and may_be_throttled(self.view, self.method):
            operation["responses"].setdefault(THROTTLED[0], _error_response(THROTTLED[1]))
        return operation

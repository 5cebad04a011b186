"""OpenAPI post-processing hooks: the error responses and the headers every operation can give."""

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
    "412": "If-Match does not match the current version.",
    "413": "The request body is too large (request_too_large), refused before it is read.",
    "415": "Unsupported content type: send JSON.",
    "422": "Idempotency-Key reused with a different request.",
    "503": "The shop is busy (overloaded) or a store or the database is unavailable; "
           "retry after Retry-After.",
}


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERRORS.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
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


def _is_projected(operation) -> bool:
    return any(p.get("name") == "max_wait_ms" for p in operation.get("parameters", []))


def _is_command(operation) -> bool:
    return any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []))


def add_common_headers(result, generator, request, public):
    """Response headers every operation (or every one of a kind) sends."""
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers.setdefault("X-Request-ID", REQUEST_ID)
                if status == "503":
                    headers.setdefault("Retry-After", RETRY_AFTER)
                    if _is_projected(operation):
                        headers.setdefault("X-Read-Model", READ_MODEL_DOWN)
                if status.startswith("2") and _is_command(operation):
                    headers.setdefault("Idempotent-Replayed", REPLAYED)
                if status == "201":
                    headers.setdefault("Location", LOCATION)
    return result

"""OpenAPI post-processing: every operation documents the error responses it can give."""

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
    "409": "Refused by a business rule (insufficient_stock, insufficient_balance, ...).",
    "412": "If-Match does not match the current version.",
    "413": "The request body is too large.",
    "415": "Unsupported content type: send JSON.",
    "422": "Idempotency-Key reused with a different request.",
    "503": "A store or the database is unavailable; retry after Retry-After.",
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


STREAM_PATH = "/api/consistency/stream"
STREAM_OPERATION = {
    "operationId": "consistency_stream",
    "summary": "Server-sent events: tell me when these views include my write.",
    "description": (
        "A `text/event-stream` that needs no login (it reveals only whether views have "
        "passed a token, never data). Events, each `event: <name>` and `data: <json>`:\n"
        "- `start` `{views, max_wait_ms}`\n"
        "- `caught_up` `{view, waited_ms}`, once per view as soon as it includes the token\n"
        "- `timeout` `{views, waited_ms}`: the views still behind at the deadline\n"
        "- `error` `{code, message}`: a store did not answer\n"
        "- `end` `{}`, then the stream closes.\n"
        "Bad input answers 400 JSON before any event; 503 `overloaded` with Retry-After "
        "when the process holds as many waiting readers as it allows."
    ),
    "tags": ["api"],
    "parameters": [
        {"name": "token", "in": "query", "required": True, "schema": {"type": "string"},
         "description": "An X-Consistency-Token from a command response."},
        {"name": "views", "in": "query", "required": True, "schema": {"type": "string"},
         "description": "Comma-separated read models: products_search, orders_search, "
                        "order_summary, customer_dashboard."},
        {"name": "max_wait_ms", "in": "query", "schema": {"type": "integer"},
         "description": "How long to wait, in ms (default 10000, at most 60000)."},
    ],
    "responses": {
        "200": {
            "description": "The event stream.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
}


def add_stream(result, generator, request, public):
    """The SSE endpoint is a plain async view that drf-spectacular cannot see."""
    result.setdefault("paths", {}).setdefault(STREAM_PATH, {"get": dict(STREAM_OPERATION)})
    return result

"""OpenAPI text of the projected reads and the consistency stream."""

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

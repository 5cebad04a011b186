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

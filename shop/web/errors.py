"""The one JSON error body, and the places it is sent from.

Every refusal the shop makes, wherever it is made, has the shape
{"error": {"code": "...", "message": "...", "fields": {...}}}: `code` is stable and
machine-readable, `fields` appears for invalid input only. It is sent from three kinds
of place: DRF views (shop.web.exception_handler builds its Response from error_body),
plain Django views and Django's own refusals (json_error, and the handlerNNN views
below), and ASGI middlewares that answer before Django runs (send_json_error).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import JsonResponse


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    body = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return body


def json_error(code: str, message: str, status: int, *, headers: dict | None = None) -> JsonResponse:
    """The error as a plain Django response."""
    response = JsonResponse(error_body(code, message), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


async def send_json_error(send, status: int, code: str, message: str,
                          headers: dict | None = None) -> None:
    """The error on an ASGI `send`, for a middleware that answers before Django runs."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((name.lower().encode(), str(value).encode())
                  for name, value in (headers or {}).items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Django's own refusals (shop.urls names these as handler400 ... handler500).

def refusal_of(exception) -> tuple[int, str, str]:
    """(status, code, message) of one of Django's refusals of a malformed request."""
    if isinstance(exception, RequestDataTooBig):
        return (413, "request_too_large",
                f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
    if isinstance(exception, TooManyFieldsSent):
        return (400, "too_many_fields",
                f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields.")
    if isinstance(exception, TooManyFilesSent):
        return 400, "too_many_files", "The request has too many files."
    if isinstance(exception, DisallowedHost):
        return 400, "bad_host", "The Host header names a host this shop does not serve."
    return 400, "bad_request", "The request is malformed."


def bad_request(request, exception=None):
    """Django's own 400s (SuspiciousOperation, BadRequest) as JSON with a stable code."""
    status, code, message = refusal_of(exception)
    return json_error(code, message, status)


def forbidden(request, exception=None):
    return json_error("permission_denied", "You do not have permission to do this.", 403)


def not_found(request, exception=None):
    return json_error("not_found", "Not found.", 404)


def server_error(request):
    return json_error("server_error", "Something went wrong on our side.", 500)

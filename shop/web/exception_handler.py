"""DRF's one exception handler: every error a DRF view raises, as the shop's JSON error.

The body is shop.web.errors' (`fields` for validation errors only, keyed by the request
field that was wrong); the code is the exception's `default_code` or its own.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import DataError, IntegrityError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from shop.web import database_busy
from shop.web.errors import error_body
from shop.web.metrics import record_shed

logger = logging.getLogger(__name__)


def _flatten(detail) -> tuple[str, str]:
    """Return the first (code, message) found in a DRF error detail."""
    if isinstance(detail, dict):
        for value in detail.values():
            return _flatten(value)
    if isinstance(detail, list) and detail:
        return _flatten(detail[0])
    if isinstance(detail, exceptions.ErrorDetail):
        return detail.code or "invalid", str(detail)
    return "invalid", str(detail)


def _fields(detail, prefix: str = "") -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = str(key) if not prefix else f"{prefix}.{key}"
            if key == "non_field_errors":
                name = prefix or "non_field_errors"
            out.update(_fields(value, name))
    elif isinstance(detail, list):
        if detail and all(isinstance(item, exceptions.ErrorDetail) for item in detail):
            out[prefix or "non_field_errors"] = [
                {"code": item.code or "invalid", "message": str(item)} for item in detail
            ]
        else:
            for index, item in enumerate(detail):
                if item:
                    out.update(_fields(item, f"{prefix}[{index}]"))
    elif isinstance(detail, exceptions.ErrorDetail):
        out[prefix or "non_field_errors"] = [
            {"code": detail.code or "invalid", "message": str(detail)}
        ]
    return out


def error_response(code: str, message: str, http_status: int, fields=None, headers=None):
    return Response(error_body(code, message, fields), status=http_status, headers=headers)


def exception_handler(exc, context):
    headers = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        code, message = _flatten(exc.detail)
        fields = _fields(exc.detail)
        return error_response("invalid", message, status.HTTP_400_BAD_REQUEST, fields=fields)

    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            # Rounded up: "0" would invite an immediate retry that is refused again.
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
        code, message = _flatten(exc.detail)
        if isinstance(exc.detail, exceptions.ErrorDetail) and exc.detail.code:
            code = exc.detail.code
        return error_response(code, message, exc.status_code, headers=headers)

    # Last line of defence: a constraint the commands did not foresee still refuses the
    # write (the transaction rolled back), and the client learns it was a conflict.
    if isinstance(exc, IntegrityError | DataError):
        logger.warning("database refused a write: %s", exc)
        return error_response(
            "constraint_violation",
            "The change would break a rule of the shop and was not made.",
            status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, OperationalError) and database_busy.is_database_busy(exc):
        # The pool had no free connection within its timeout: the database is up but
        # every connection of this process is in use; the request did nothing.
        logger.warning("no database connection within the pool timeout: %s", exc)
        request = context.get("request")
        record_shed(request.method if request is not None else "GET", database_busy.CODE)
        return error_response(
            database_busy.CODE,
            database_busy.MESSAGE,
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(settings.WEB_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, OperationalError):
        logger.warning("database unavailable: %s", exc)
        return error_response(
            "database_unavailable",
            "The database is not reachable right now; nothing was changed. Retry later.",
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    return None

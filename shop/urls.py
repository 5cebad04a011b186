"""Top-level URLs: the API, its schema and docs, the admin."""

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from shop import health
from shop.auth import LoginView, LogoutView
from shop.metrics_view import metrics


def _error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def bad_request(request, exception=None):
    """Django's own 400s (SuspiciousOperation, BadRequest) as JSON with a stable code."""
    if isinstance(exception, RequestDataTooBig):
        return _error(
            "request_too_large",
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            413,
        )
    if isinstance(exception, DisallowedHost):
        return _error("bad_host", "The Host header names a host this shop does not serve.", 400)
    return _error("bad_request", "The request is malformed.", 400)


def forbidden(request, exception=None):
    return _error("permission_denied", "You do not have permission to do this.", 403)


def not_found(request, exception=None):
    return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)


def server_error(request):
    return JsonResponse(
        {"error": {"code": "server_error", "message": "Something went wrong on our side."}},
        status=500,
    )


handler400 = bad_request
handler403 = forbidden
handler404 = not_found
handler500 = server_error

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("api/health", health.live, name="health"),
    path("api/health/ready", health.ready, name="health-ready"),
    path("api/auth/token", LoginView.as_view(), name="auth-token"),
    path("api/auth/logout", LogoutView.as_view(), name="auth-logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("readmodels.api.urls")),
    path("api/", include("orders.api.urls")),
]

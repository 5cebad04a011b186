"""Top-level URLs: a welcome page, the API, its schema and docs, the admin, the storefront."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from shop import error_pages, health
from shop.metrics_view import metrics
from shop.storefront.views import welcome
from shop.web import errors
from shop.web.auth import LoginView, LogoutView, PasswordChangeView
from shop.web.login_throttle import admin_password_change

handler400 = errors.bad_request
# The admin answers its refusals with admin pages; everything else with JSON.
handler403 = error_pages.forbidden
handler404 = error_pages.not_found
handler500 = errors.server_error

urlpatterns = [
    path("", welcome, name="welcome"),
    # Before the admin's own: its current password counted on the login throttles.
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("api/health", health.live, name="health"),
    path("api/health/ready", health.ready, name="health-ready"),
    path("api/auth/token", LoginView.as_view(), name="auth-token"),
    path("api/auth/logout", LogoutView.as_view(), name="auth-logout"),
    path("api/auth/password", PasswordChangeView.as_view(), name="auth-password"),
    # The browsable API's "Log in" and "Log out" (a session, as the admin's login gives).
    path("api/session/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("readmodels.api.urls")),
    path("api/", include("orders.api.urls")),
    # Last under /api/: a path no route takes is a JSON 404, also with DEBUG on.
    re_path(r"^api/(?P<rest>.*)$", error_pages.api_not_found),
    path("shop/", include("shop.storefront.urls")),
]

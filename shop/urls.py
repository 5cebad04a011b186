"""Top-level URLs: the API, its schema and docs, the admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from shop import health
from shop.metrics_view import metrics
from shop.web import errors
from shop.web.auth import LoginView, LogoutView

handler400 = errors.bad_request
handler403 = errors.forbidden
handler404 = errors.not_found
handler500 = errors.server_error

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
    path("shop/", include("shop.storefront.urls")),
]

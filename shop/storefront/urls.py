"""URLs of the storefront (mounted under /shop/)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from shop.storefront import views

app_name = "storefront"

urlpatterns = [
    path("", views.storefront, name="home"),
    path("add-funds", views.add_funds, name="add-funds"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="storefront/login.html",
            extra_context={"demo_login": views.DEMO_LOGIN},
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="storefront:login"), name="logout"),
]

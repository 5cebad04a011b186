"""The shared web layer as a Django app: only so its signal receivers are connected in
every process (web, workers, management commands), not only where a middleware loads."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "shop.web"
    label = "shop_web"
    verbose_name = "Shop web layer"

    def ready(self):
        from shop.web import password_changes

        password_changes.connect()

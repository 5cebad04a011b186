"""Wiring of the shop: settings, URLs, the Celery app, the WSGI/ASGI entry points, health,
the metrics view and the local stack. The only package that imports both apps.

`shop.web` below it is not wiring: it is the shared web layer both apps stand on.
"""

from shop.celery import app as celery_app

__all__ = ["celery_app"]

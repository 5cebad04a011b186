"""Wiring of the shop: settings, URLs, the Celery app and the WSGI/ASGI entry points."""

from shop.celery import app as celery_app

__all__ = ["celery_app"]

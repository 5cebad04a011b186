"""ASGI entry point (uvicorn shop.asgi:application): every view, and the streams."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
application = get_asgi_application()

if settings.DEBUG:
    # Local runs serve the admin's static files; deployments put a web server in front.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

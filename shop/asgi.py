"""ASGI entry point (uvicorn shop.asgi:application): every view, and the streams.

Web processes use a bounded database connection pool (DATABASE_POOL, on here unless
the environment says otherwise) and admit a bounded number of requests at once
(shop.admission). See README, "Connection budget" and "Load shedding".
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
os.environ.setdefault("DATABASE_POOL", "true")
os.environ.setdefault("DATABASE_APPLICATION_NAME", "shop-web")

from django.conf import settings  # noqa: E402  (after the environment defaults above)
from django.core.asgi import get_asgi_application  # noqa: E402

from shop.admission import Admission  # noqa: E402

application = get_asgi_application()

if settings.DEBUG:
    # Local runs serve the admin's static files; deployments put a web server in front.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

application = Admission(application)

"""ASGI entry point (uvicorn shop.asgi:application): every view, and the streams.

Web processes use a bounded database connection pool (DATABASE_POOL, on here unless
the environment says otherwise) and admit a bounded number of requests at once
(shop.web.admission). See README, "Connection budget" and "Load shedding".
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
os.environ.setdefault("DATABASE_POOL", "true")
os.environ.setdefault("DATABASE_APPLICATION_NAME", "shop-web")

import django  # noqa: E402  (after the environment defaults above)
from django.conf import settings  # noqa: E402

django.setup(set_prefix=False)

from shop.web.asgi_handler import OneHopASGIHandler  # noqa: E402

application = OneHopASGIHandler()

# After Django's set-up: these import models.
from readmodels.api.early_waits import EarlyTokenWaits  # noqa: E402
from shop.web.admission import Admission  # noqa: E402
from shop.web.asgi_safety import JsonSafetyNet  # noqa: E402

if settings.DEBUG:
    # Local runs serve the admin's static files; deployments put a web server in front.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

# Admission first: a request over the limit is refused before anything else; a token
# read waits next, before Django gives the request a thread. Around both, whatever they
# raise answers as JSON (they have no Django handler around them).
application = JsonSafetyNet(Admission(EarlyTokenWaits(application)))

"""ASGI entry point (uvicorn shop.asgi:application): every view, and the streams.

Web processes use a bounded database connection pool (DATABASE_POOL, on here unless
the environment says otherwise) and admit a bounded number of requests at once
(shop.web.admission), each body received whole within bounds first
(shop.web.request_bodies). See README, "Connection budget", "Load shedding" and
"Security".
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
from shop.web.request_bodies import BodyReception  # noqa: E402

if settings.DEBUG:
    # Local runs serve the admin's static files; deployments put a web server in front.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

# A body is received whole first (bounded in size, time and number), so a slow sender
# holds no admission place; admission next: a request over the limit is refused before
# anything else; a token read waits next, before Django gives the request a thread.
# Around all three, whatever they raise answers as JSON (no Django handler is there).
application = JsonSafetyNet(BodyReception(Admission(EarlyTokenWaits(application))))

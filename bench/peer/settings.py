"""The shop's settings plus the peer: django-elasticsearch-dsl with its Celery signal
processor, indexing orders on every model save (its documented set-up)."""

import os

from shop.settings import *  # noqa: F403
from shop.settings import ELASTICSEARCH_URL, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_elasticsearch_dsl", "peer.apps.PeerConfig"]
ELASTICSEARCH_DSL = {"default": {"hosts": ELASTICSEARCH_URL}}
ELASTICSEARCH_DSL_SIGNAL_PROCESSOR = "django_elasticsearch_dsl.signals.CelerySignalProcessor"

if os.environ.get("PEER_ALONE") == "true":
    # The peer measured on its own (bench/knee.py): our projectors' tasks go to a queue
    # no worker reads, so the worker and the ES server are the peer's alone.
    CELERY_TASK_ROUTES = {"readmodels.tasks.*": {"queue": "bench-projectors-stopped"}}

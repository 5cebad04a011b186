"""The shop's settings plus the peer: django-elasticsearch-dsl with its Celery signal
processor, indexing orders on every model save (its documented set-up).

PEER_PROCESSOR picks how the peer sends its tasks: "shipped" (the library's processor
as it ships: inside the saving transaction) or "on_commit" (after the commit, the way
many projects configure it: bench/peer/processors.py)."""

import os

from shop.settings import *  # noqa: F403
from shop.settings import ELASTICSEARCH_URL, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_elasticsearch_dsl", "peer.apps.PeerConfig"]
ELASTICSEARCH_DSL = {"default": {"hosts": ELASTICSEARCH_URL}}
PEER_PROCESSORS = {
    "shipped": "django_elasticsearch_dsl.signals.CelerySignalProcessor",
    "on_commit": "peer.processors.OnCommitCelerySignalProcessor",
}
ELASTICSEARCH_DSL_SIGNAL_PROCESSOR = PEER_PROCESSORS[os.environ.get("PEER_PROCESSOR", "shipped")]

if os.environ.get("PEER_ALONE") == "true":
    # The peer measured on its own (bench/knee.py): our projectors' tasks go to a queue
    # no worker reads, so the worker and the ES server are the peer's alone.
    CELERY_TASK_ROUTES = {"readmodels.tasks.*": {"queue": "bench-projectors-stopped"}}

"""The shop's settings plus the peer: django-elasticsearch-dsl with its Celery signal
processor, indexing orders on every model save (its documented set-up)."""

from shop.settings import *  # noqa: F403
from shop.settings import ELASTICSEARCH_URL, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_elasticsearch_dsl", "peer.apps.PeerConfig"]
ELASTICSEARCH_DSL = {"default": {"hosts": ELASTICSEARCH_URL}}
ELASTICSEARCH_DSL_SIGNAL_PROCESSOR = "django_elasticsearch_dsl.signals.CelerySignalProcessor"

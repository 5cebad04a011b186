from django.apps import AppConfig


class PeerConfig(AppConfig):
    """Bench-only: the peer's documents (django-elasticsearch-dsl finds documents.py)."""

    name = "peer"
    label = "peer"

"""App config of the read side."""

from django.apps import AppConfig


class ReadmodelsConfig(AppConfig):
    name = "readmodels"
    verbose_name = "Read models"

    def ready(self) -> None:
        from readmodels import signals  # noqa: F401  (connects the receivers)

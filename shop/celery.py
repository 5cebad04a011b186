"""The Celery app: broker and task settings come from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def drop_unusable_database_connections(**kwargs) -> None:
    """What Django does at each request's start, at each task's: a connection that broke
    (PostgreSQL restarted) or outlived CONN_MAX_AGE is closed, so the task opens a new one."""
    from django.db import close_old_connections

    close_old_connections()

"""The Celery app: broker and task settings come from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import beat_init, task_prerun, worker_ready

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


@worker_ready.connect
def serve_worker_metrics(**kwargs) -> None:
    """With WORKER_METRICS_PORT set, the worker's main process serves its pool's metrics
    (projection histograms, from this container's PROMETHEUS_MULTIPROC_DIR) on that port.
    No token: the port is for the private network only and is never published (compose
    does not map it); the web's /metrics, which is public, needs METRICS_TOKEN."""
    port = os.environ.get("WORKER_METRICS_PORT")
    if not port:
        return
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(int(port), registry=registry)


@beat_init.connect
def sample_lag_in_beat(**kwargs) -> None:
    """Beat's own process samples the projectors' lag for the admin's chart: a task would
    run on the workers it measures, and a stalled worker would silence it."""
    from readmodels.operations import lag_samples

    lag_samples.sample_in_this_process()

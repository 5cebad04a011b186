"""/metrics: projection lag, outbox, commands and reads, measured from PostgreSQL at scrape time."""

from __future__ import annotations

import re

import pytest

from orders.models import OutboxMessage
from readmodels import projectors
from tests.support.operating import (
    metric_sample,
)
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


def test_metrics_exposes_projection_outbox_command_and_read_metrics(
    read_models, client, staff_client, settings
):
    settings.METRICS_TOKEN = "scraper-token"
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer scraper-token"
    before = client.get("/metrics").content.decode()
    created = staff_client.post(
        "/api/products",
        {"sku": "MET-1", "name": "Meter", "description": "Counts", "category": "tools",
         "price_cents": 990, "stock": 2},
        format="json",
    )
    assert created.status_code == 201, created.content
    read = staff_client.get(f"/api/products/{created.data['id']}")
    assert read.status_code == 200, read.content
    project_all()

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in (
        "shop_projection_lag_seconds",
        "shop_projection_rows_behind",
        "shop_projection_commit_to_visible_seconds",
        "shop_outbox_rows",
        "shop_commands_total",
        "shop_reads_total",
    ):
        assert re.search(rf"^{name}(_bucket|_count|_sum)?[{{ ]", text, re.M), name
    commands = {"command": "ProductCreate", "outcome": "ok"}
    assert metric_sample(text, "shop_commands_total", **commands) == (
        metric_sample(before, "shop_commands_total", **commands) or 0
    ) + 1
    reads = {"read_model": "write_model", "consistency": "strong"}
    assert metric_sample(text, "shop_reads_total", **reads) == (
        metric_sample(before, "shop_reads_total", **reads) or 0
    ) + 1
    assert metric_sample(text, "shop_outbox_rows") == OutboxMessage.objects.count()
    for name in projectors.PROJECTORS:
        assert metric_sample(text, "shop_projection_lag_seconds", read_model=name) == 0
        assert metric_sample(text, "shop_projection_rows_behind", read_model=name) == 0
    assert metric_sample(
        text, "shop_projection_commit_to_visible_seconds_count", read_model="products_search"
    ) >= 1

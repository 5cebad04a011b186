"""Operating the read side: status and its SLO, dead letters, outbox retention, health,
metrics and the projections admin, all on the real servers."""

from __future__ import annotations

import io
import json
import logging
import re
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from orders.models import Customer, OutboxMessage
from orders.outbox import Position
from readmodels import config, projectors, queries
from readmodels.models import DeadLetter, DeadLetterStatus, LagSample, ReconcileRun
from readmodels.operations import retention
from readmodels.pipeline import checkpoints, failures, runner
from tests.readside import newest_committed, project_all, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


# --- helpers -------------------------------------------------------------------------


def _projections(*args) -> tuple[int, str]:
    """Run `manage.py projections ...`; return (exit code, stdout)."""
    out = io.StringIO()
    try:
        call_command("projections", *args, stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def _status_lines(output: str) -> dict[str, list[str]]:
    """The table rows of `projections status`, by read model."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        first = line.split(" ", 1)[0]
        if first in projectors.PROJECTORS:
            rows.setdefault(first, []).append(line)
    return rows


def _age_outbox(interval: str, positions: list[int] | None = None) -> None:
    with connection.cursor() as cursor:
        if positions is None:
            cursor.execute(
                f"UPDATE {OutboxMessage._meta.db_table} SET created_at = now() - interval %s",
                [interval],
            )
        else:
            cursor.execute(
                f"UPDATE {OutboxMessage._meta.db_table} SET created_at = now() - interval %s "
                "WHERE position = ANY(%s)",
                [interval, positions],
            )


def _readmodels_settings(settings, **changes) -> None:
    conf = dict(settings.READMODELS)
    conf.update(changes)
    settings.READMODELS = conf


def _run(name: str) -> None:
    """Run every segment of one projector until caught up (a failing row may stop it)."""
    segments = config.segments(name)
    for segment in range(segments):
        try:
            runner.run_segment(projectors.get(name), segment, segments, ignore_backoff=True)
        except failures.RetryLater:
            pass


def _covers(name: str, target: Position) -> bool:
    segments = config.segments(name)
    return all(
        Position(c.xid, c.position).covers(target)
        for c in (checkpoints.checkpoint_for(name, s, segments) for s in range(segments))
    )


def _catch_up(names=None) -> None:
    """Run these projectors (all by default) until they cover every row committed so far.

    Like project_all, but a failing row only stops a run, to be tried again (and set
    aside once it has used up its attempts). A write transaction anywhere in the
    cluster holds the horizon back, hence the loop.
    """
    names = list(names or projectors.PROJECTORS)
    target = newest_committed()

    def covered():
        for name in names:
            _run(name)
        return target is None or all(_covers(name, target) for name in names)

    wait_until(covered, timeout=30, message=f"{names} did not reach {target}")


def _poison_row() -> OutboxMessage:
    return OutboxMessage.objects.create(
        aggregate_type="order",
        aggregate_id="not-a-uuid",
        aggregate_version=1,
        event_type="OrderPlaced",
        partition_key="1",
        payload={},
    )


def _run_until_dead(position: int) -> DeadLetter:
    """Project past a poison row: every projector of orders sets it aside in the end."""
    _catch_up()
    return DeadLetter.objects.get(
        projector="order_summary", outbox_position=position, status=DeadLetterStatus.DEAD
    )


def _outbox_rows(aggregate_type: str, aggregate_id) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(
            aggregate_type=aggregate_type, aggregate_id=str(aggregate_id)
        ).order_by("xid", "position")
    )


def _dead_letter_for(order, status=DeadLetterStatus.DEAD) -> DeadLetter:
    """A dead letter as a projector would have left it, for an order that exists."""
    row = _outbox_rows("order", order.pk)[-1]
    return DeadLetter.objects.create(
        projector="order_summary",
        outbox_position=row.position,
        outbox_xid=row.xid,
        aggregate_type="order",
        aggregate_id=str(order.pk),
        partition_key=row.partition_key,
        event_type=row.event_type,
        error="RuntimeError: the store refused it",
        attempts=5,
        status=status,
    )


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sample(text: str, name: str, **labels) -> float | None:
    total = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total = (total or 0.0) + sample.value
    return total


@pytest.fixture
def admin_client_():
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


# --- projections status ----------------------------------------------------------------


def test_status_is_ok_when_every_projector_has_caught_up(read_models, make_order):
    make_order()
    project_all()

    code, output = _projections("status")

    assert code == 0, output
    rows = _status_lines(output)
    assert set(rows) == set(projectors.PROJECTORS)
    for name, lines in rows.items():
        assert len(lines) == config.segments(name)
        assert all(" ok " in line for line in lines), lines
    assert "breach" not in output


def test_status_exits_1_and_warns_when_a_view_is_past_its_slo(
    read_models, make_order, make_product, caplog
):
    make_order()
    project_all()
    make_product()  # a product row only products_search consumes, never projected
    _age_outbox("10 seconds")

    with caplog.at_level(logging.WARNING, logger="readmodels.slo"):
        code, output = _projections("status")

    assert code == 1, output
    rows = _status_lines(output)
    assert set(rows) == set(projectors.PROJECTORS)
    breached = {name for name, lines in rows.items() if any(" breach " in line for line in lines)}
    assert breached == {"products_search"}
    for name in set(projectors.PROJECTORS) - breached:
        assert all(" ok " in line for line in rows[name]), rows[name]
    warnings = [
        r for r in caplog.records if r.name == "readmodels.slo" and r.levelno == logging.WARNING
    ]
    assert any("products_search" in r.getMessage() for r in warnings), warnings
    assert all("breached" in r.getMessage() for r in warnings)

    code, output = _projections("status", "--json")
    assert code == 1
    by_model: dict[str, list[dict]] = {}
    for entry in json.loads(output):
        by_model.setdefault(entry["read_model"], []).append(entry)
    assert set(by_model) == set(projectors.PROJECTORS)
    behind = by_model["products_search"]
    assert sum(e["rows_behind"] for e in behind) == 1
    assert max(e["lag_seconds"] for e in behind) >= 9.0
    assert any(e["state"] == "breach" for e in behind)
    for name in ("order_summary", "customer_dashboard", "orders_search"):
        for entry in by_model[name]:
            assert (entry["rows_behind"], entry["lag_seconds"], entry["state"]) == (0, 0.0, "ok")

    project_all()
    assert _projections("status")[0] == 0


# --- dead letters ----------------------------------------------------------------------


def test_a_poison_row_becomes_a_dead_letter_that_can_be_retried_and_discarded(
    read_models, settings, make_order
):
    _readmodels_settings(settings, POISON_MAX_ATTEMPTS=2)
    order = make_order()
    poison = _poison_row()
    after = make_order()

    letter = _run_until_dead(poison.position)
    assert letter.attempts == 2
    assert letter.aggregate_id == "not-a-uuid"
    assert "not an order id" in letter.error
    # The segment moved on: the orders on either side of the poison row are visible.
    project_all()
    assert queries.order_summary(str(order.pk)) is not None
    assert queries.order_summary(str(after.pk)) is not None
    status_json = json.loads(_projections("status", "--json")[1])
    assert {e["dead_letters"] for e in status_json if e["read_model"] == "order_summary"} == {1}

    # Every projector of orders that fails on the row has set it aside too.
    others = DeadLetter.objects.filter(outbox_position=poison.position).exclude(pk=letter.pk)
    assert {d.status for d in others} <= {DeadLetterStatus.DEAD}

    code, listed = _projections("deadletters")
    assert code == 0
    assert f"#{letter.pk} order_summary outbox {poison.position} order:not-a-uuid attempts 2" in listed
    assert len(listed.strip().splitlines()) == 1 + others.count()

    _, retried = _projections("deadletters", "--retry")
    lines = retried.strip().splitlines()
    assert len(lines) == 1 + others.count()
    assert all(line.endswith("retried: failed again") for line in lines), lines
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DEAD
    assert letter.attempts == 3
    assert "not an order id" in letter.error

    _, filtered = _projections("deadletters", "--projector", "products_search")
    assert filtered.strip() == "no dead letters"

    _, discarded = _projections("deadletters", "--discard", "--id", str(letter.pk))
    [line] = discarded.strip().splitlines()
    assert line.startswith(f"#{letter.pk} order_summary ") and line.endswith("discarded")
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DISCARDED
    assert _projections("deadletters", "--projector", "order_summary")[1].strip() == "no dead letters"
    _projections("deadletters", "--discard")
    assert _projections("deadletters")[1].strip() == "no dead letters"
    # Discarded rows are skipped on a replay as well: projection carries on.
    project_all()


def test_retrying_a_dead_letter_whose_cause_is_gone_resolves_it(read_models, make_order):
    order = make_order()
    letter = _dead_letter_for(order)
    assert queries.order_summary(str(order.pk)) is None

    code, output = _projections("deadletters", "--retry")

    assert code == 0
    assert f"#{letter.pk} order_summary" in output and "retried: ok" in output
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.RESOLVED
    version, doc = queries.order_summary(str(order.pk))
    order.refresh_from_db()
    assert version == order.version
    assert doc["id"] == str(order.pk)
    assert _projections("deadletters")[1].strip() == "no dead letters"


# --- outbox retention ------------------------------------------------------------------


def test_purge_deletes_only_old_rows_every_projector_has_passed(
    read_models, settings, make_product
):
    _readmodels_settings(settings, OUTBOX_RETENTION_DAYS=1)
    old, young, dead_ref, retrying_ref, resolved_ref = (make_product() for _ in range(5))
    rows = {
        name: [r.position for r in _outbox_rows("product", p.pk)]
        for name, p in [
            ("old", old), ("young", young), ("dead_ref", dead_ref),
            ("retrying_ref", retrying_ref), ("resolved_ref", resolved_ref),
        ]
    }
    for name, letter_status in [
        ("dead_ref", DeadLetterStatus.DEAD),
        ("retrying_ref", DeadLetterStatus.RETRYING),
        ("resolved_ref", DeadLetterStatus.RESOLVED),
    ]:
        row = OutboxMessage.objects.get(position=rows[name][0])
        DeadLetter.objects.create(
            projector="products_search", outbox_position=row.position, outbox_xid=row.xid,
            aggregate_type="product", aggregate_id=row.aggregate_id,
            partition_key=row.partition_key, event_type=row.event_type, error="x",
            status=letter_status,
        )
    project_all()
    # A row one projector has not passed yet: every other projector runs past it.
    unpassed = make_product()
    rows["unpassed"] = [r.position for r in _outbox_rows("product", unpassed.pk)]
    _catch_up(name for name in projectors.PROJECTORS if name != "order_summary")
    assert not _covers("order_summary", newest_committed())
    _age_outbox(
        "2 days",
        [p for name, positions in rows.items() if name != "young" for p in positions],
    )

    deleted = retention.purge()

    remaining = set(OutboxMessage.objects.values_list("position", flat=True))
    gone = {name for name, positions in rows.items() if not set(positions) & remaining}
    assert gone == {"old", "resolved_ref"}
    assert deleted == len(rows["old"]) + len(rows["resolved_ref"])
    for name in ("young", "dead_ref", "retrying_ref", "unpassed"):
        assert set(rows[name]) <= remaining, name

    # Once the last projector passes it, the old row goes too.
    _catch_up(["order_summary"])
    assert retention.purge() == len(rows["unpassed"])
    assert not set(rows["unpassed"]) & set(OutboxMessage.objects.values_list("position", flat=True))


def test_purge_deletes_nothing_while_a_projector_has_no_checkpoint(
    read_models, settings, make_product
):
    _readmodels_settings(settings, OUTBOX_RETENTION_DAYS=1)
    for _ in range(3):
        make_product()
    _age_outbox("2 days")
    total = OutboxMessage.objects.count()
    assert total >= 3

    assert retention.purge() == 0  # no projector has ever run
    _run("products_search")
    assert retention.safe_horizon() is None
    assert retention.purge() == 0  # the others have not
    assert OutboxMessage.objects.count() == total

    project_all()
    assert retention.purge() == total
    assert OutboxMessage.objects.count() == 0


# --- health ----------------------------------------------------------------------------


def test_liveness_and_readiness(read_models, client):
    live = client.get("/api/health")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}

    ready = client.get("/api/health/ready")
    assert ready.status_code == 200, ready.content
    body = ready.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"postgres", "redis", "elasticsearch", "broker"}
    assert {c["status"] for c in body["checks"].values()} == {"ok"}


def test_readiness_says_which_dependency_is_down(read_models, client, settings):
    settings.ELASTICSEARCH_URL = f"http://127.0.0.1:{_closed_port()}"

    ready = client.get("/api/health/ready")

    # Reads built on Elasticsearch degrade by design: degraded, not unready.
    assert ready.status_code == 200, ready.content
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["degraded"] == ["elasticsearch"]
    assert body["checks"]["elasticsearch"]["status"] == "down"
    # Public: which dependency, never the internal error text.
    assert "error" not in body["checks"]["elasticsearch"]
    for name in ("postgres", "redis", "broker"):
        assert body["checks"][name]["status"] == "ok", body
    # Liveness does not depend on the stores.
    assert client.get("/api/health").status_code == 200


# --- metrics ---------------------------------------------------------------------------


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
    assert _sample(text, "shop_commands_total", **commands) == (
        _sample(before, "shop_commands_total", **commands) or 0
    ) + 1
    reads = {"read_model": "write_model", "consistency": "strong"}
    assert _sample(text, "shop_reads_total", **reads) == (
        _sample(before, "shop_reads_total", **reads) or 0
    ) + 1
    assert _sample(text, "shop_outbox_rows") == OutboxMessage.objects.count()
    for name in projectors.PROJECTORS:
        assert _sample(text, "shop_projection_lag_seconds", read_model=name) == 0
        assert _sample(text, "shop_projection_rows_behind", read_model=name) == 0
    assert _sample(
        text, "shop_projection_commit_to_visible_seconds_count", read_model="products_search"
    ) >= 1


# --- the projections admin -------------------------------------------------------------


def test_projections_admin_page_shows_every_segment_and_the_lag_chart(
    read_models, admin_client_, make_order
):
    make_order()
    project_all()
    page = admin_client_.get("/admin/readmodels/checkpoint/")
    assert page.status_code == 200
    html = page.content.decode()
    models_on_page = re.findall(r'data-read-model="([^"]+)"', html)
    assert sorted(models_on_page) == sorted(
        name for name in projectors.PROJECTORS for _ in range(config.segments(name))
    )
    assert '<svg id="lag-chart"' in html
    assert "<polyline" not in html

    from readmodels.tasks import record_lag

    record_lag()
    assert LagSample.objects.count() == len(models_on_page)
    html = admin_client_.get("/admin/readmodels/checkpoint/").content.decode()
    chart = html.split('<svg id="lag-chart"', 1)[1].split("</svg>", 1)[0]
    assert len(re.findall(r"<polyline ", chart)) == len(projectors.PROJECTORS)
    for name in projectors.PROJECTORS:
        assert f"<title>{name}: " in chart  # the series, with its latest lag


def test_admin_retry_dead_letters_button_resolves_a_retryable_letter(
    read_models, admin_client_, make_order
):
    order = make_order()
    letter = _dead_letter_for(order)

    response = admin_client_.post(
        reverse("admin:readmodels_retry_dead_letters", args=["order_summary"])
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:readmodels_checkpoint_changelist")
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.RESOLVED
    assert queries.order_summary(str(order.pk)) is not None
    # A GET changes nothing.
    other = _dead_letter_for(make_order())
    admin_client_.get(reverse("admin:readmodels_retry_dead_letters", args=["order_summary"]))
    other.refresh_from_db()
    assert other.status == DeadLetterStatus.DEAD


def test_dead_letter_admin_lists_and_retries_and_discards(
    read_models, admin_client_, settings, make_order
):
    _readmodels_settings(settings, POISON_MAX_ATTEMPTS=2)
    poison = _run_until_dead(_poison_row().position)
    order = make_order()
    retryable = _dead_letter_for(order)

    listing = admin_client_.get("/admin/readmodels/deadletter/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "order:not-a-uuid" in html and f"order:{order.pk}" in html

    def action(name, letter):
        return admin_client_.post(
            "/admin/readmodels/deadletter/",
            {"action": name, "_selected_action": [str(letter.pk)], "index": "0"},
        )

    assert action("retry", retryable).status_code == 302
    retryable.refresh_from_db()
    assert retryable.status == DeadLetterStatus.RESOLVED
    assert queries.order_summary(str(order.pk)) is not None

    assert action("retry", poison).status_code == 302
    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == (DeadLetterStatus.DEAD, 3)

    assert action("discard", poison).status_code == 302
    poison.refresh_from_db()
    assert poison.status == DeadLetterStatus.DISCARDED

    detail = admin_client_.get(f"/admin/readmodels/deadletter/{poison.pk}/change/")
    assert detail.status_code == 200


def test_admin_reconcile_asks_first_then_runs_on_a_worker_not_in_the_request(
    read_models, admin_client_, make_order
):
    from shop.celery import app
    from tests.processes import celery_worker_process

    make_order()
    project_all()
    app.control.purge()  # operations queued by earlier tests' requests
    url = reverse("admin:readmodels_reconcile", args=["order_summary"])

    # The button opens a confirmation page; a GET changes nothing.
    page = admin_client_.get(url)
    assert page.status_code == 200
    assert 'id="confirm-operation"' in page.content.decode()
    assert not ReconcileRun.objects.exists()

    response = admin_client_.post(url)
    assert response.status_code == 302
    # Queued, not run: no worker is up yet, so nothing has been reconciled.
    assert not ReconcileRun.objects.exists()

    with celery_worker_process("reconciler"):
        wait_until(ReconcileRun.objects.exists, timeout=120,
                   message="the queued reconcile never ran on the worker")
    run = ReconcileRun.objects.get()
    assert (run.projector, run.repair, run.checked, run.missing) == ("order_summary", False, 1, 0)
    page = admin_client_.get("/admin/readmodels/checkpoint/").content.decode()
    assert "checked 1, missing 0" in page


def test_admin_rebuild_asks_first_then_runs_on_a_worker(read_models, admin_client_, make_order):
    from readmodels.models import Rebuild, RebuildStatus
    from shop.celery import app
    from tests.processes import celery_worker_process

    make_order()
    app.control.purge()
    url = reverse("admin:readmodels_rebuild", args=["order_summary"])
    page = admin_client_.get(url)
    assert page.status_code == 200 and 'id="confirm-operation"' in page.content.decode()
    assert not Rebuild.objects.exists()
    assert admin_client_.post(url).status_code == 302
    assert not Rebuild.objects.exists()  # a worker does it, not the request
    with celery_worker_process("rebuilder"):
        wait_until(lambda: Rebuild.objects.filter(status=RebuildStatus.DONE).exists(),
                   timeout=120, message="the queued rebuild never finished on the worker")


def test_admin_operations_on_an_unknown_read_model_are_404(admin_client_):
    for name in ("admin:readmodels_rebuild", "admin:readmodels_reconcile"):
        assert admin_client_.get(reverse(name, args=["nope"])).status_code == 404
        assert admin_client_.post(reverse(name, args=["nope"])).status_code == 404


def test_shopper_is_not_staff_and_cannot_open_the_projections_admin(read_models, make_customer):
    customer = make_customer()
    client = Client()
    client.force_login(Customer.objects.get(pk=customer.pk).user)
    response = client.get("/admin/readmodels/checkpoint/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]

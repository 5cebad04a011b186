"""The projections admin: every segment and the lag chart; rebuild, reconcile and dead
letters, asked first and run on a worker."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from orders.models import Customer
from readmodels import config, projectors, queries
from readmodels.models import DeadLetterStatus, LagSample, ReconcileRun
from readmodels.operations import lag_samples
from tests.support.operating import (
    change_readmodels_settings,
    dead_letter_for,
    poison_row,
    run_until_dead,
)
from tests.support.readside import project_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


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
    # No sample yet: each series is the one point measured as the page was drawn, and
    # the hour before shows as a time without samples, not as a line at zero.
    chart = html.split('<svg id="lag-chart"', 1)[1].split("</svg>", 1)[0]
    assert len(re.findall(r"<polyline ", chart)) == len(projectors.PROJECTORS)
    assert len(re.findall(r'<rect class="gap"', chart)) == 1

    lag_samples.record()
    assert LagSample.objects.count() == len(models_on_page)
    html = admin_client_.get("/admin/readmodels/checkpoint/").content.decode()
    chart = html.split('<svg id="lag-chart"', 1)[1].split("</svg>", 1)[0]
    assert len(re.findall(r"<polyline ", chart)) == len(projectors.PROJECTORS)
    for name in projectors.PROJECTORS:
        assert f"<title>{name}: peak 0 s, now 0 s</title>" in chart


def test_admin_retry_dead_letters_button_resolves_a_retryable_letter(
    read_models, admin_client_, make_order
):
    order = make_order()
    letter = dead_letter_for(order)

    response = admin_client_.post(
        reverse("admin:readmodels_retry_dead_letters", args=["order_summary"])
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:readmodels_checkpoint_changelist")
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.RESOLVED
    assert queries.order_summary(str(order.pk)) is not None
    # A GET changes nothing.
    other = dead_letter_for(make_order())
    admin_client_.get(reverse("admin:readmodels_retry_dead_letters", args=["order_summary"]))
    other.refresh_from_db()
    assert other.status == DeadLetterStatus.DEAD


def test_dead_letter_admin_lists_and_retries_and_discards(
    read_models, admin_client_, settings, make_order
):
    change_readmodels_settings(settings, POISON_MAX_ATTEMPTS=2)
    poison = run_until_dead(poison_row().position)
    order = make_order()
    retryable = dead_letter_for(order)

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
    from tests.support.processes import celery_worker_process

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
    from tests.support.processes import celery_worker_process

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

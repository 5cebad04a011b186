"""The lag chart shows a stalled worker.

Beat samples lag in its own process, measured against PostgreSQL, so a worker that is
alive but does nothing (SIGSTOP of its whole process group: connected, holding its
queue, projecting nothing) cannot silence the chart that should show it. When lag was
sampled by a task, the samples stopped with the worker and the chart stayed at zero.
"""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from selenium.webdriver.common.by import By

from readmodels.models import LagSample
from readmodels.operations import status
from tests.support.browser import chromium, screenshot, sign_in_to_admin, wait_for
from tests.support.processes import celery_beat_process, celery_worker_process
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

SLO_SECONDS = 2.0
LEGEND = re.compile(r"now ([\d.]+) s, peak ([\d.]+) s")


def caught_up() -> bool:
    return all(r.rows_behind == 0 for r in status.segment_statuses())


def legend(browser, series: str) -> tuple[float, float]:
    """(now, peak) of a series, as its legend says."""
    text = browser.find_element(By.CSS_SELECTOR, f".series-legend[data-series={series}]").text
    now, peak = LEGEND.search(text).groups()
    return float(now), float(peak)


def open_projections(browser, url: str) -> None:
    browser.get(f"{url}/admin/readmodels/checkpoint/")
    wait_for(browser, "#lag-chart")
    box = browser.find_element(By.ID, "auto-refresh")
    if box.is_selected():
        box.click()  # held still: the test reloads it when it wants to


def test_the_chart_shows_the_lag_of_a_stalled_worker_while_it_is_stalled(
    live_server, read_models, make_order
):
    get_user_model().objects.create_superuser("ops", "ops@example.com", "ops-password")
    with (
        celery_worker_process("stalled") as worker,
        celery_beat_process(READMODELS_LAG_SAMPLE_SECONDS="1") as beat,
        chromium() as browser,
    ):
        make_order()
        wait_until(caught_up, timeout=60, message="the worker did not project the first order")
        sign_in_to_admin(browser, live_server.url, "ops", "ops-password",
                         next_path="/admin/readmodels/checkpoint/", css="#lag-chart")

        worker.stall()
        try:
            stalled_at = time.time()
            make_order()  # committed; nothing projects it while the worker is stopped
            since = timezone.now()
            wait_until(
                lambda: LagSample.objects.filter(
                    projector="order_summary", at__gt=since, lag_seconds__gt=SLO_SECONDS + 1
                ).exists(),
                timeout=60, process=beat,
                message="beat took no sample of the stalled worker's lag",
            )
            open_projections(browser, live_server.url)
            now, peak = legend(browser, "order_summary")
            assert now > SLO_SECONDS + 1 and peak >= now - 0.5, (now, peak)
            row = browser.find_element(By.CSS_SELECTOR, "#projections tr[data-read-model=order_summary]")
            assert row.find_element(By.CSS_SELECTOR, "td.state").text == "breach"
            screenshot(browser, "projections-worker-stalled.png")
            stalled_for = time.time() - stalled_at
        finally:
            worker.resume()

        # Caught up again: the chart keeps the stall in its history, and says 0 now.
        wait_until(caught_up, timeout=120, message="the worker did not catch up after SIGCONT")
        resumed = timezone.now()
        wait_until(
            lambda: LagSample.objects.filter(projector="order_summary", at__gt=resumed,
                                             lag_seconds=0).exists(),
            timeout=60, process=beat, message="no sample after the worker caught up",
        )
        open_projections(browser, live_server.url)
        now, peak = legend(browser, "order_summary")
        assert now == 0 and peak > SLO_SECONDS + 1, (now, peak, stalled_for)
        screenshot(browser, "projections-after-stall.png")

"""The projections dashboard in a real headless browser (Debian's chromium via Selenium)."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from selenium.webdriver.common.by import By

from orders.models import OutboxMessage
from readmodels import projectors
from readmodels.models import DeadLetter, DeadLetterStatus, LagSample, Rebuild, RebuildStatus
from readmodels.operations import lag_samples
from tests.support.browser import (
    ARTIFACTS,
    chromium,
    sign_in_to_admin,
    submit_and_wait_for,
    wait_for,
)
from tests.support.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


def test_projections_page_shows_lag_and_retry_moves_a_dead_letter_back(
    live_server, browser, read_models, make_customer, make_order
):
    get_user_model().objects.create_superuser("ops", "ops@example.com", "ops-password")
    order = make_order(customer=make_customer(balance_cents=10_000))
    project_all()
    # A dead letter for a real order whose summary went missing: retrying re-projects it.
    row = OutboxMessage.objects.filter(aggregate_type="order", aggregate_id=str(order.pk)).first()
    letter = DeadLetter.objects.create(
        projector="order_summary", outbox_position=row.position, outbox_xid=row.xid,
        aggregate_type="order", aggregate_id=str(order.pk), partition_key=row.partition_key,
        event_type=row.event_type, error="RuntimeError: example", attempts=5,
        status=DeadLetterStatus.DEAD,
    )
    # Half an hour of history, a sample every 10 s as beat takes them: every view at
    # zero, and one that fell behind past its SLO for a while (what an operator must
    # spot). Then beat was down for five minutes: no samples, which must show as a gap.
    now = timezone.now()
    LagSample.objects.bulk_create(
        LagSample(projector=name, at=now - timedelta(seconds=seconds_ago), lag_seconds=lag,
                  rows_behind=40 if lag else 0)
        for seconds_ago in range(30 * 60, 5 * 60, -10)
        for name in projectors.PROJECTORS
        for lag in [3.5 if name == "orders_search" and 600 <= seconds_ago <= 840 else 0.0]
    )
    lag_samples.record()
    # A rebuild under way: 1,200 of 3,000 documents copied in its first 4 s.
    rebuild = Rebuild.objects.create(
        projector="products_search", generation=2, status=RebuildStatus.COPYING, start_xid=0,
        start_position=0, caught_up_xid=0, caught_up_position=0, total=3_000, copied=1_200,
    )
    Rebuild.objects.filter(pk=rebuild.pk).update(started_at=timezone.now() - timedelta(seconds=4))

    sign_in_to_admin(browser, live_server.url, "ops", "ops-password",
                     next_path="/admin/readmodels/checkpoint/", css="#projections tbody tr")

    # The page reloads itself; held still here (the choice lasts for the tab) so that
    # elements found below are not replaced under the test.
    auto_refresh = browser.find_element(By.ID, "auto-refresh")
    assert auto_refresh.is_selected()
    auto_refresh.click()

    rows = browser.find_elements(By.CSS_SELECTOR, "#projections tbody tr")
    shown = {r.get_attribute("data-read-model"): r for r in rows}
    assert set(shown) == {"products_search", "orders_search", "order_summary", "customer_dashboard"}
    for row_element in rows:
        lag = row_element.find_element(By.CSS_SELECTOR, "td.lag").text
        assert float(lag) >= 0
        assert row_element.find_element(By.CSS_SELECTOR, "td.state").text in ("ok", "failing", "breach")
        # Where a projector is, in words: caught up, or how many rows behind.
        assert row_element.find_element(By.CSS_SELECTOR, "td.progress").text == "caught up"
    assert shown["order_summary"].find_element(By.CSS_SELECTOR, "td.dead").text == "1"
    chart = browser.find_element(By.ID, "lag-chart")
    series = chart.find_elements(By.CSS_SELECTOR, "polyline.series")
    assert {s.get_attribute("data-series") for s in series} == set(shown)
    # Where series lie together at zero, each is drawn narrower than the one before,
    # so every colour still shows (a series may be drawn in several runs: one width each).
    widths = list(dict.fromkeys(float(s.get_attribute("stroke-width")) for s in series))
    assert widths == sorted(widths, reverse=True) and len(widths) == len(shown)
    # Five minutes without samples are a gap: each series breaks there, and a band says so.
    runs = [s for s in series if s.get_attribute("data-series") == "orders_search"]
    assert len(runs) == 2, [r.get_attribute("points")[:80] for r in runs]
    gap = chart.find_element(By.CSS_SELECTOR, "rect.gap")
    assert "no samples" in gap.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    # No time tick runs into "now (UTC)" at the right edge.
    right = float(chart.find_elements(By.CSS_SELECTOR, "line.axis")[1].get_attribute("x2"))
    assert all(float(t.get_attribute("x")) <= right - 60
               for t in chart.find_elements(By.CSS_SELECTOR, "text.x-tick"))
    y_ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "text.y-tick")]
    assert y_ticks[0] == "0 s" and len(y_ticks) >= 3
    assert y_ticks[-1] in ("4 s", "5 s")  # room above the 3.5 s peak
    assert chart.find_elements(By.CSS_SELECTOR, "text.x-tick")
    assert "SLO 2 s" in chart.find_element(By.CSS_SELECTOR, "text.slo-label").text
    assert chart.find_elements(By.CSS_SELECTOR, "line.slo")

    # The rebuild as a bar, with its rate and the time it still needs.
    progress = browser.find_element(By.CSS_SELECTOR, ".rebuild-progress[data-status=copying]")
    assert progress.find_element(By.TAG_NAME, "progress").get_attribute("value") == "40"
    numbers = progress.find_element(By.CSS_SELECTOR, ".rebuild-numbers").text
    assert "1200 of 3000 documents (40%)" in numbers
    assert re.search(r", \d+ documents/s, about [\d.]+ s left", numbers), numbers

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "projections-dashboard.png"))

    # Only a read model with dead letters offers to retry them.
    buttons = browser.find_elements(By.CSS_SELECTOR, "button.retry-dead-letters")
    forms = [b.find_element(By.XPATH, "./..") for b in buttons]
    assert [f.get_attribute("action").rstrip("/").rsplit("/", 1)[-1] for f in forms] == ["order_summary"]
    assert buttons[0].text == "Retry 1 dead letter"
    target = forms[0]
    messages = submit_and_wait_for(browser, target.find_element(By.CSS_SELECTOR, "button"), "ul.messagelist")

    assert "1 resolved" in messages.text
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.RESOLVED
    dead_cell = browser.find_element(
        By.CSS_SELECTOR, "#projections tr[data-read-model=order_summary] td.dead"
    )
    assert dead_cell.text == "0"


def test_an_order_reads_as_money_and_names_and_a_forged_save_gets_an_admin_page(
    live_server, browser, shipped_order
):
    order = shipped_order
    get_user_model().objects.create_superuser("boss", "boss@example.com", "boss-password")
    sign_in_to_admin(browser, live_server.url, "boss", "boss-password",
                     next_path="/admin/orders/order/", css="#result_list")
    row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr")
    short = str(order.pk).split("-")[0]
    assert row.find_element(By.CSS_SELECTOR, "th a").text == short
    assert "$37.62" in row.text and "2 × Blue Teapot" in row.text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-orders.png"))

    submit_and_wait_for(browser, row.find_element(By.CSS_SELECTOR, "th a"), "#content-main")
    page = browser.find_element(By.ID, "content-main").text
    assert "$37.62" in page and "$18.81" in page and "Charge of $37.62" in page
    assert "OrderLine object" not in page and "cents" not in page.lower()
    assert not browser.find_elements(By.CSS_SELECTOR, "input[name=_save], input[name=_continue]")
    browser.save_screenshot(str(ARTIFACTS / "admin-order.png"))

    # What a Save button used to send: now refused with an admin page, not JSON.
    browser.execute_script(
        "const form = document.createElement('form'); form.method = 'post';"
        "form.action = location.pathname;"
        "const token = document.cookie.match(/csrftoken=([^;]+)/)[1];"
        "form.innerHTML = `<input name=csrfmiddlewaretoken value=${token}><input name=_save value=Save>`;"
        "document.body.append(form); form.submit();"
    )
    refused = wait_for(browser, "#refused")
    assert "Back to the admin" in refused.text
    assert '"error"' not in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "admin-order-refused.png"))


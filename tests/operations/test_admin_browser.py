"""The projections dashboard in a real headless browser (Debian's chromium via Selenium)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from selenium.webdriver.common.by import By

from orders.models import OutboxMessage
from readmodels import projectors, tasks
from readmodels.models import DeadLetter, DeadLetterStatus, LagSample
from tests.support.browser import ARTIFACTS, chromium, submit_and_wait_for
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
    # Half an hour of history: every view at zero, and one that fell behind past its
    # SLO for a while (what an operator must spot).
    now = timezone.now()
    for minutes_ago in range(30, 0, -1):
        for name in projectors.PROJECTORS:
            lag = 3.5 if name == "orders_search" and 10 <= minutes_ago <= 14 else 0.0
            LagSample.objects.create(
                projector=name, at=now - timedelta(minutes=minutes_ago), lag_seconds=lag,
                rows_behind=40 if lag else 0,
            )
    tasks.record_lag()

    browser.get(f"{live_server.url}/admin/login/?next=/admin/readmodels/checkpoint/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("ops-password")
    submit_and_wait_for(
        browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"), "#projections tbody tr"
    )

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
    # so every colour still shows.
    widths = [float(s.get_attribute("stroke-width")) for s in series]
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == len(widths)
    y_ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, "text.y-tick")]
    assert y_ticks[0] == "0 s" and len(y_ticks) >= 3
    assert y_ticks[-1] in ("4 s", "5 s")  # room above the 3.5 s peak
    assert chart.find_elements(By.CSS_SELECTOR, "text.x-tick")
    assert "SLO 2 s" in chart.find_element(By.CSS_SELECTOR, "text.slo-label").text
    assert chart.find_elements(By.CSS_SELECTOR, "line.slo")

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "projections-dashboard.png"))

    buttons = browser.find_elements(By.CSS_SELECTOR, "button.retry-dead-letters")
    forms = [b.find_element(By.XPATH, "./..") for b in buttons]
    target = next(f for f in forms if "/retry-dead-letters/order_summary/" in f.get_attribute("action"))
    messages = submit_and_wait_for(browser, target.find_element(By.CSS_SELECTOR, "button"), "ul.messagelist")

    assert "1 resolved" in messages.text
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.RESOLVED
    dead_cell = browser.find_element(
        By.CSS_SELECTOR, "#projections tr[data-read-model=order_summary] td.dead"
    )
    assert dead_cell.text == "0"

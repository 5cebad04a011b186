"""The projections dashboard in a real headless browser (Debian's chromium via Selenium)."""

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By

from orders.models import OutboxMessage
from readmodels import tasks
from readmodels.models import DeadLetter, DeadLetterStatus
from tests.browser import ARTIFACTS, chromium, submit_and_wait_for
from tests.readside import project_all

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
    tasks.record_lag()

    browser.get(f"{live_server.url}/admin/login/?next=/admin/readmodels/checkpoint/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("ops-password")
    submit_and_wait_for(
        browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"), "#projections tbody tr"
    )

    rows = browser.find_elements(By.CSS_SELECTOR, "#projections tbody tr")
    shown = {r.get_attribute("data-read-model"): r for r in rows}
    assert set(shown) == {"products_search", "orders_search", "order_summary", "customer_dashboard"}
    for row_element in rows:
        lag = row_element.find_element(By.CSS_SELECTOR, "td.lag").text
        assert float(lag) >= 0
        assert row_element.find_element(By.CSS_SELECTOR, "td.state").text in ("ok", "failing", "breach")
    assert shown["order_summary"].find_element(By.CSS_SELECTOR, "td.dead").text == "1"
    assert browser.find_elements(By.CSS_SELECTOR, "#lag-chart polyline")

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

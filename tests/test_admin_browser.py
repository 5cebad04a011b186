"""The projections dashboard in a real headless browser (Debian's chromium via Selenium)."""

import shutil
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as page_has
from selenium.webdriver.support.ui import WebDriverWait

from orders.models import OutboxMessage
from readmodels import tasks
from readmodels.models import DeadLetter, DeadLetterStatus
from tests.readside import project_all

pytestmark = pytest.mark.django_db(transaction=True)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PAGE_DEADLINE_S = 30


def submit_and_wait_for(browser, button, css):
    """Click a submit button and wait until the page it leads to shows `css`.

    A click returns before the browser has navigated, so reading the page right after
    it can see the old page (or none): wait for the old page to go stale, then for the
    new one to hold the element.
    """
    old_page = browser.find_element(By.TAG_NAME, "html")
    button.click()
    wait = WebDriverWait(browser, PAGE_DEADLINE_S)
    wait.until(page_has.staleness_of(old_page))
    return wait.until(page_has.presence_of_element_located((By.CSS_SELECTOR, css)))


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "make test installs Debian's chromium and chromium-driver"
    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


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

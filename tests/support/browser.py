"""A real headless Chromium (Debian's chromium and chromedriver) for browser tests."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as page_has
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import ROOT

ARTIFACTS = ROOT / "test-artifacts"
PAGE_DEADLINE_S = 30


@contextmanager
def chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert binary and driver_path, "make test installs Debian's chromium and chromium-driver"
    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


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
    return wait_for(browser, css)


def sign_in_to_admin(browser, base_url: str, username: str, password: str, *, next_path: str,
                     css: str):
    """Sign in on the admin's login page, landing on `next_path`; wait for `css` there."""
    browser.get(f"{base_url}/admin/login/?next={next_path}")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    return submit_and_wait_for(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"), css)


def wait_for(browser, css, deadline_s: float = PAGE_DEADLINE_S):
    """Wait until the page holds an element matching `css`; return it.

    On a timeout the failure carries the browser's console, where a page's script
    errors show.
    """
    try:
        return WebDriverWait(browser, deadline_s).until(
            page_has.presence_of_element_located((By.CSS_SELECTOR, css))
        )
    except TimeoutException as exc:
        raise AssertionError(f"no {css!r} within {deadline_s} s; {console(browser)}") from exc


def console(browser) -> str:
    lines = [f"{e['level']} {e['message']}" for e in browser.get_log("browser")]
    return "browser console:\n" + "\n".join(lines) + f"\npage: {browser.page_source[:3000]}"


def screenshot(browser, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    browser.save_screenshot(str(path))
    return path

"""A real headless Chromium (Debian's package, driven through chromedriver) on the live API."""

import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from conftest import ROOT, wait_for
from test_api_live import live_api  # noqa: F401  (the live server fixture)

pytestmark = pytest.mark.integration

SCREENSHOTS = ROOT / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed: .ci/run installs them (apt-get)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1600", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def stylesheet_rule_counts(driver):
    """CSS rules per loaded stylesheet: 0 or an error would mean an asset did not load."""
    return driver.execute_script("return Array.from(document.styleSheets, sheet => sheet.cssRules.length);")


def test_a_browser_sees_the_browsable_api_with_filters_and_follows_the_next_link(live_api, browser):  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{live_api.url}/user-logs?userId=user-1")

    assert "Activity Log" in browser.title
    content = browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert '"count": 23' in content and '"userId": "user-1"' in content and '"page": 1' in content
    assert browser.find_element(By.CSS_SELECTOR, "form input[name='userId']").get_attribute("value") == "user-1"
    assert browser.find_elements(By.CSS_SELECTOR, "form select[name='action']")
    # The bundled CSS and JavaScript came from the app itself, with DEBUG off.
    assert len(stylesheet_rule_counts(browser)) >= 2 and all(stylesheet_rule_counts(browser))
    assert browser.execute_script("return typeof window.jQuery") == "function"
    browser.save_screenshot(str(SCREENSHOTS / "user-logs-page-1.png"))

    browser.find_element(By.CSS_SELECTOR, "ul.pagination a[aria-label='Next']").click()

    wait_for(lambda: "page=2" in browser.current_url, timeout=10, message="the next page to load")
    content = browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert '"page": 2' in content and '"userId": "user-1"' in content and '"user-2"' not in content
    browser.save_screenshot(str(SCREENSHOTS / "user-logs-page-2.png"))


def test_swagger_ui_loads_with_the_apps_own_assets(live_api, browser):  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{live_api.url}/api/docs/")

    title = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"), timeout=20,
                     message="Swagger UI to render the schema")
    assert "Activity log API" in title[0].text
    assert browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/user-logs/']")
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name);")
    assert resources and all(url.startswith(live_api.url) for url in resources), resources
    browser.save_screenshot(str(SCREENSHOTS / "swagger-ui.png"))

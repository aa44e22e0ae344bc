"""A real headless Chromium (Debian's package, driven through chromedriver) on the live API."""

import shutil
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from conftest import ROOT, wait_for
from selenium import webdriver
from selenium.webdriver.common.by import By
from test_api_live import live_api  # noqa: F401  (the live server fixture)

pytestmark = pytest.mark.integration

SCREENSHOTS = ROOT / "artifacts" / "browser"
PASSWORD = "a local password for the browser tests"
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


@pytest.fixture(scope="module")
def accounts(auth_database):
    """Passwords for the all-users account `support` and for `user-1`, who may read only its own logs."""
    auth_database.token("support", all_users=True)
    auth_database.token("user-1")
    for username in ("support", "user-1"):
        auth_database.set_password(username, PASSWORD)
    return ("support", "user-1")


def log_in(browser, live_api, username, *, next_path):  # noqa: F811
    """DRF's login page, filled in and submitted as a person would; waits for the page it leads to."""
    browser.get(f"{live_api.url}/api-auth/login/?next={urllib.parse.quote(next_path)}")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form input[type='submit'], form button[type='submit']").click()
    wait_for(lambda: "/api-auth/login" not in browser.current_url, timeout=10, message="the login to go through")


def stylesheet_rule_counts(driver):
    """CSS rules per loaded stylesheet: 0 or an error would mean an asset did not load."""
    return driver.execute_script("return Array.from(document.styleSheets, sheet => sheet.cssRules.length);")


def test_a_browser_sees_the_browsable_api_with_filters_and_follows_the_next_link(live_api, browser, accounts):  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(browser, live_api, "support", next_path="/user-logs?userId=user-1")

    assert "Activity Log" in browser.title
    content = browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert '"count": 23' in content and '"userId": "user-1"' in content and '"page": 1' in content
    assert browser.find_element(By.CSS_SELECTOR, "form input[name='userId']").get_attribute("value") == "user-1"
    assert browser.find_elements(By.CSS_SELECTOR, "form select[name='action']")
    # The bundled CSS and JavaScript came from the app itself, with DEBUG off.
    assert len(stylesheet_rule_counts(browser)) >= 2 and all(stylesheet_rule_counts(browser))
    assert browser.execute_script("return typeof window.jQuery") == "function"
    browser.save_screenshot(str(SCREENSHOTS / "user-logs-page-1.png"))

    browser.find_element(By.CSS_SELECTOR, "ul.pagination li:nth-child(3) a").click()  # the page number 2

    wait_for(lambda: "page=2" in browser.current_url, timeout=10, message="page 2 to load")
    content = browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert '"page": 2' in content and '"userId": "user-1"' in content and '"user-2"' not in content
    browser.save_screenshot(str(SCREENSHOTS / "user-logs-page-2.png"))

    # `next` continues by keyset (docs/decisions/0015-keyset-pages.md): the logs after page 2's last one.
    browser.find_element(By.CSS_SELECTOR, "ul.pagination a[aria-label='Next']").click()

    wait_for(lambda: "after=" in browser.current_url, timeout=10, message="the keyset page to load")
    content = browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert '"limit": 10' in content and '"userId": "user-1"' in content and '"count"' not in content
    assert browser.find_elements(By.CSS_SELECTOR, "ul.pager a[rel='prev']")
    assert browser.find_elements(By.CSS_SELECTOR, "form input[name='after']")
    browser.save_screenshot(str(SCREENSHOTS / "user-logs-keyset.png"))


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


def test_a_person_logs_in_sees_only_their_own_filtered_logs_and_logs_out(live_api, browser, accounts):  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{live_api.url}/user-logs")
    assert '"detail"' in browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert "401" in browser.find_element(By.CSS_SELECTOR, ".response-info").text

    log_in(browser, live_api, "user-1", next_path="/user-logs?action=send")

    assert browser.current_url.endswith("/user-logs?action=send")
    content = browser.find_element(By.CSS_SELECTOR, ".response-info").text
    assert '"count": 8' in content and '"user-2"' not in content and '"action": "receive"' not in content
    assert "user-1" in browser.find_element(By.CSS_SELECTOR, ".navbar").text
    browser.save_screenshot(str(SCREENSHOTS / "user-logs-logged-in.png"))

    browser.get(f"{live_api.url}/user-logs?userId=user-2")
    assert "403" in browser.find_element(By.CSS_SELECTOR, ".response-info").text

    browser.find_element(By.CSS_SELECTOR, ".navbar .dropdown-toggle").click()
    browser.find_element(By.LINK_TEXT, "Log out").click()
    # DRF's logout returns to the page it was on, which now answers 401 to the signed-out browser.
    wait_for(lambda: "HTTP 401" in browser.find_element(By.CSS_SELECTOR, ".response-info").text, timeout=10,
             message="the logout to go through")
    assert "user-1" not in browser.find_element(By.CSS_SELECTOR, ".navbar").text


def test_swagger_ui_authorizes_with_a_token_and_its_try_it_out_gets_logs(live_api, browser, live_auth_header):  # noqa: F811
    browser.get(f"{live_api.url}/api/docs/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .btn.authorize"), timeout=20,
             message="Swagger UI's Authorize button")
    browser.find_element(By.CSS_SELECTOR, ".swagger-ui .btn.authorize").click()
    schemes = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".dialog-ux .auth-container"), timeout=10,
                       message="the authorization dialog")
    [token_scheme] = [scheme for scheme in schemes if "tokenAuth" in scheme.text]
    token_scheme.find_element(By.CSS_SELECTOR, "input[type='text']").send_keys(live_auth_header["Authorization"])
    token_scheme.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".dialog-ux .btn-done").click()

    browser.find_element(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/user-logs/']").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock.is-open .try-out__btn"), timeout=10,
             message="the operation to open")[0].click()
    browser.find_element(By.CSS_SELECTOR, ".opblock.is-open input[placeholder='userId']").send_keys("user-2")
    browser.find_element(By.CSS_SELECTOR, ".opblock.is-open .execute").click()

    status = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock.is-open .live-responses-table tr.response .response-col_status"),
                      timeout=20, message="the response of Execute")[0]
    assert status.text.strip().startswith("200")
    body = browser.find_element(By.CSS_SELECTOR, ".opblock.is-open .live-responses-table .microlight").text
    assert '"count": 22' in body and '"userId": "user-2"' in body
    browser.save_screenshot(str(SCREENSHOTS / "swagger-ui-authorized.png"))

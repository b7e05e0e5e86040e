"""The headless Chromium every browser test drives (Debian's `chromium` and
`chromium-driver`, through selenium)."""

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


@pytest.fixture(scope="module")
def driver():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail(
            "needs Debian's chromium and chromium-driver: "
            "sudo apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver named explicitly: selenium must not download one.
    # Its own session: signals chromedriver sends its process group on exit
    # stopped pytest in a background job here.
    service = Service(chromedriver, popen_kw={"start_new_session": True})
    browser = webdriver.Chrome(options=options, service=service)
    yield browser
    browser.quit()

"""The documentation site in a real browser: an API page and the rendered
notebooks show their code highlighted and their images loaded.

Reads the site `make docs` built into site/ (`make test-browser` builds it
first), served on 127.0.0.1, and saves a screenshot of each page into
browser-screenshots/ for a person to look at.
"""

import functools
import http.server
import threading
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "site"
SCREENSHOTS = ROOT / "browser-screenshots"
WIDTH, HEIGHT = 1280, 900
# Full-page screenshots stop there (the API page is several screens long).
MAX_HEIGHT = 6000


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").exists():
        pytest.fail("no site/index.html: build the site first with `make docs`")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(SITE)
    )
    # The request log would go to stderr, interleaved with pytest's output.
    handler.func.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _open(driver, url):
    driver.set_window_size(WIDTH, HEIGHT)
    driver.get(url)
    # Images below the fold load too before the checks.
    driver.execute_script(
        "return Promise.all([...document.images].map((image) => image.decode()"
        ".catch(() => null)))"
    )


def _screenshots(driver, name):
    """The first screen, the screen of the page's first image, and the page
    as long as it is (up to MAX_HEIGHT)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    images = driver.find_elements(By.CSS_SELECTOR, "article img")
    if images:
        driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center'})", images[0]
        )
        # The header's title fades to the page's title when scrolled: wait for
        # the fade, or the screenshot shows both titles over each other.
        time.sleep(0.5)
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-image.png"))
        driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(height, MAX_HEIGHT))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}-full.png"))
    driver.set_window_size(WIDTH, HEIGHT)


def _severe_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _highlighted_code(driver):
    """The code blocks of the page's content whose text Pygments split into
    tokens (a span per name, operator, ...)."""
    blocks = driver.find_elements(By.CSS_SELECTOR, "article .highlight pre code")
    return [b for b in blocks if b.find_elements(By.CSS_SELECTOR, "span.n, span.nn")]


def _images(driver):
    """`(src, naturalWidth)` of each image in the page's content."""
    return driver.execute_script(
        "return [...document.querySelectorAll('article img')]"
        ".map((image) => [image.getAttribute('src'), image.naturalWidth])"
    )


def test_api_page_of_multi_head_attention(driver, site_url):
    _open(driver, f"{site_url}/api/multi_head_attention.html")
    # Taken first, so that a failing check can be looked at.
    _screenshots(driver, "api-multi-head-attention")
    assert "Multi-head attention" in driver.title
    heading = driver.find_element(By.ID, "keras_attention.MultiHeadAttention")
    assert heading.text.startswith("keras_attention.MultiHeadAttention")
    # The signature and the docstring's example, highlighted.
    signature = driver.find_element(By.CSS_SELECTOR, ".doc-signature")
    assert "num_heads" in signature.text
    assert len(_highlighted_code(driver)) >= 2
    assert any(">>> " in b.text for b in _highlighted_code(driver))
    # Args as a list of parameters, each name with its description.
    parameters = [
        item.find_element(By.TAG_NAME, "code").text
        for item in driver.find_elements(By.CSS_SELECTOR, ".doc-section-item")
    ]
    assert parameters[:3] == ["num_heads", "key_dim", "value_dim"]
    assert "bias_constraint" in parameters
    # The page is in the navigation, under the attention layers.
    active = driver.find_element(By.CSS_SELECTOR, "a.md-nav__link--active")
    assert active.get_attribute("href").endswith("api/multi_head_attention.html")
    assert _severe_errors(driver) == []


# Guide-like pages: prose, code and figures. The guides are written apart
# from the site; their case runs once docs/guides/ has them.
PAGES = {
    "walkthrough": ("notebooks/walkthrough.md", 5),
    "translation": ("notebooks/translation.md", 3),
    "position-encodings": ("guides/position-encodings.md", 0),
}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_guide_like_page_shows_code_and_images(driver, site_url, name):
    source, min_images = PAGES[name]
    if source.startswith("guides/") and not (ROOT / "docs" / source).exists():
        pytest.skip(f"docs/{source} is not in this checkout")
    _open(driver, f"{site_url}/{Path(source).with_suffix('.html').as_posix()}")
    _screenshots(driver, name)
    assert driver.find_elements(By.CSS_SELECTOR, "article h1")
    assert _highlighted_code(driver)
    images = _images(driver)
    assert len(images) >= min_images
    assert [src for src, width in images if width == 0] == []
    assert _severe_errors(driver) == []

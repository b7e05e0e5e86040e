"""`attention_html`'s page in a real browser: headless Chromium (Debian's
`chromium` and `chromium-driver`) driven by selenium.

Not part of `make test`: pytest does not recurse into tests/browser
(`norecursedirs`, pyproject.toml). Run it with `make test-browser`, which
installs selenium into its own venv and checks for the two programs first.
"""

import re

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from keras_attention import attention_html

# Two heads over three tokens: head 0 looks at the next token, head 1 at
# the first; the third token's row of head 0 is flat.
WEIGHTS = np.array(
    [
        [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
        [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.8, 0.1, 0.1]],
    ]
)
TOKENS = ["我", "<爱>", "学习"]


def _shade(driver, head, key):
    """The alpha of a key token's background: the weight, 0 clear, 1 full
    colour (Chromium writes `rgb(...)` for alpha 1, `rgba(...)` otherwise)."""
    element = driver.find_element(
        By.CSS_SELECTOR, f'.key[data-head="{head}"][data-key="{key}"]'
    )
    colour = element.value_of_css_property("background-color")
    values = [float(v) for v in re.findall(r"[\d.]+", colour)]
    assert values[:3] == [31, 119, 180], colour
    return values[3] if len(values) == 4 else 1.0


def test_page_loads_cleanly_and_hover_highlights_the_attended_tokens(driver, tmp_path):
    path = tmp_path / "heads.html"
    attention_html(WEIGHTS, TOKENS, title="two heads", path=path)
    driver.get(path.as_uri())
    assert driver.title == "two heads"
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    # Escaped tokens show as text; heads side by side (one row).
    keys = driver.find_elements(By.CSS_SELECTOR, '.key[data-head="0"]')
    assert [k.text for k in keys] == TOKENS
    heads = driver.find_elements(By.CSS_SELECTOR, ".head")
    assert len(heads) == 2 and heads[0].location["y"] == heads[1].location["y"]
    assert heads[0].location["x"] < heads[1].location["x"]
    assert _shade(driver, 0, 1) == 0

    queries = driver.find_elements(By.CSS_SELECTOR, '.query[data-query="0"]')
    ActionChains(driver).move_to_element(queries[0]).perform()
    # Token 0: head 0 attends to token 1, head 1 to token 0, shaded by the
    # weight itself.
    assert _shade(driver, 0, 1) == pytest.approx(0.8, abs=1e-3)
    assert _shade(driver, 1, 0) == pytest.approx(0.8, abs=1e-3)
    assert _shade(driver, 0, 0) == pytest.approx(0.1, abs=1e-3)
    assert "active" in queries[0].get_attribute("class")

    other = driver.find_element(By.CSS_SELECTOR, '.query[data-query="1"]')
    ActionChains(driver).move_to_element(other).perform()
    assert _shade(driver, 0, 2) == pytest.approx(0.8, abs=1e-3)
    assert _shade(driver, 0, 1) == pytest.approx(0.1, abs=1e-3)
    assert "active" not in queries[0].get_attribute("class")
    # A flat row looks pale, not as dark as a peaked one.
    flat = driver.find_element(By.CSS_SELECTOR, '.query[data-query="2"]')
    ActionChains(driver).move_to_element(flat).perform()
    assert max(_shade(driver, 0, j) for j in range(3)) == pytest.approx(0.4, abs=1e-3)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

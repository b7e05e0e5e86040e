import json
import re

import numpy as np
import pytest

from keras_attention import attention_html
from tests.layer_test_case import assert_raises_with

TOKENS = ["<b>", "a&b", '"q"', "</script>"]
WEIGHTS = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 4))  # 3 heads


def _data(page):
    (text,) = re.findall(
        r'<script type="application/json" id="attention-data">(.*?)</script>',
        page,
        re.S,
    )
    return json.loads(text)


def test_page_is_self_contained_and_written_to_path(tmp_path):
    path = tmp_path / "heads.html"
    page = attention_html(WEIGHTS, TOKENS, title="toy <model>", path=path)
    assert path.read_text(encoding="utf-8") == page
    assert page.startswith("<!DOCTYPE html>")
    # Nothing fetched at view time: no URL, no external script, style or image.
    assert not re.search(r"https?:|//[\w.]+/", page)
    assert not re.search(r"<(script|img|iframe)[^>]*\bsrc=", page)
    assert "<link" not in page and "@import" not in page
    # Exactly the two inline scripts (the data, the code), and one style.
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert page.count("<style>") == 1


def test_tokens_are_escaped():
    page = attention_html(WEIGHTS, TOKENS, title="toy <model>")
    assert "<b>" not in page and "a&b" not in page
    assert "&lt;b&gt;" in page and "a&amp;b" in page and "&quot;q&quot;" in page
    assert "&lt;/script&gt;" in page and "<h1>toy &lt;model&gt;</h1>" in page
    # One span per token per head, query and key side.
    assert page.count('class="token query"') == 3 * 4
    assert page.count('class="token key"') == 3 * 4


def test_weights_are_embedded_with_their_shape():
    data = _data(attention_html(WEIGHTS, TOKENS))
    np.testing.assert_allclose(data["weights"], WEIGHTS, atol=1e-6)
    # One map; cross-attention with its own key tokens.
    cross = np.full((2, 3), 1 / 3)
    page = attention_html(cross, ["x", "y"], key_tokens=["a", "b", "c"])
    assert np.shape(_data(page)["weights"]) == (1, 2, 3)
    assert page.count('class="token key"') == 3


BAD_INPUTS = [
    pytest.param(
        lambda: attention_html(np.ones(4), TOKENS),
        ValueError,
        "attention_html: `weights` must have shape (q_len, k_len) or (num_heads, q_len, k_len). Received: weights.shape=(4,)",
        id="weights-rank-1",
    ),
    pytest.param(
        lambda: attention_html(np.full((2, 2), np.nan), ["a", "b"]),
        ValueError,
        "attention_html: `weights` must be finite. Received: 4 NaN or infinite values",
        id="weights-nan",
    ),
    pytest.param(
        lambda: attention_html(WEIGHTS, TOKENS[:3]),
        ValueError,
        "attention_html: `tokens` must have one token per row of `weights` (4). Received: 3 tokens",
        id="too-few-tokens",
    ),
    pytest.param(
        lambda: attention_html(np.ones((2, 3)), ["a", "b"]),
        ValueError,
        "attention_html: `key_tokens` must have one token per column of `weights` (3). Received: 2 tokens",
        id="self-attention-tokens-for-cross-weights",
    ),
    pytest.param(
        lambda: attention_html(np.ones((2, 2)), "ab"),
        TypeError,
        "attention_html: `tokens` must be a sequence of tokens, not one string. Received: tokens='ab'",
        id="tokens-one-string",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)

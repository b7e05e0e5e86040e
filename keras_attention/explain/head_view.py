"""An interactive head view of attention weights, as one self-contained HTML
file: no PyTorch, no matplotlib, no network when it is viewed.

The page shows one panel per head, side by side, each with the query tokens
on the left and the key tokens on the right. Hovering a query token (in any
panel) shades, in every panel, the keys it attends to by their weight: a
weight of 1 is full colour, 0 clear, so a flat row looks pale and a peaked
one dark; the weight is in the tooltip.
The CSS and the JavaScript are inline; the weights are embedded as JSON.
"""

import html
import json
import pathlib

import numpy as np

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
h1 { font-size: 1.2em; }
.heads { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.head { border: 1px solid #ccc; border-radius: 4px; padding: 0.5em; }
.head h2 { font-size: 1em; margin: 0 0 0.4em; text-align: center; }
.columns { display: flex; gap: 1.5em; }
.column { display: flex; flex-direction: column; gap: 2px; }
.token { padding: 1px 6px; border-radius: 3px; white-space: pre;
         background-color: rgba(31, 119, 180, 0); }
.query { cursor: pointer; }
.query.active { outline: 2px solid #d62728; }
.note { color: #666; font-size: 0.9em; }
"""

# The data is read from the page, not interpolated into the script.
_SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("attention-data").textContent);
  var queries = document.querySelectorAll(".query");
  var keys = document.querySelectorAll(".key");
  function clear() {
    keys.forEach(function (key) {
      key.style.backgroundColor = "rgba(31, 119, 180, 0)";
      key.removeAttribute("title");
    });
    queries.forEach(function (query) { query.classList.remove("active"); });
  }
  function show(row) {
    clear();
    document.querySelectorAll('.query[data-query="' + row + '"]').forEach(
      function (query) { query.classList.add("active"); });
    keys.forEach(function (key) {
      var weight = data.weights[+key.dataset.head][row][+key.dataset.key];
      var alpha = Math.min(Math.max(weight, 0), 1);
      key.style.backgroundColor = "rgba(31, 119, 180, " + alpha.toFixed(3) + ")";
      key.title = "weight " + weight.toFixed(4);
    });
  }
  queries.forEach(function (query) {
    query.addEventListener("mouseenter", function () {
      show(+query.dataset.query);
    });
  });
  document.querySelector(".heads").addEventListener("mouseleave", clear);
})();
"""


def attention_html(weights, tokens, key_tokens=None, *, title=None, path=None):
    """An interactive head view of attention weights, as a self-contained
    HTML page.

    One panel per head, side by side: query tokens on the left, key tokens
    on the right. Hovering a query token shades, in every panel, the keys it
    attends to, by the weight itself (clear at 0, full colour at 1, so a
    flat row looks pale and a peaked one dark; the weight in the tooltip).
    Everything is inline (CSS, JavaScript, the weights as JSON): the file
    opens offline, in any browser. Tokens are HTML-escaped, so any text is
    shown as it is.

    Args:
        weights: `(q_len, k_len)` for one map or `(num_heads, q_len, k_len)`,
            e.g. one example of `attention_weights`:
            `attention_weights(model, x)[layer][example]`. Finite numbers.
        tokens: the query tokens, one per row (strings, or anything `str`
            takes).
        key_tokens: the key tokens, one per column; by default `tokens`
            (self-attention). Give them for cross-attention.
        title: optional heading of the page.
        path: optional file to write the page to (UTF-8).

    Returns:
        The page, a `str`.

    Raises:
        TypeError: `tokens` or `key_tokens` is a single string, not a
            sequence of tokens.
        ValueError: `weights` of another rank or holding NaN or infinity,
            or token counts that do not match the weights.
    """
    owner = "attention_html"
    weights = np.asarray(weights, dtype="float64")
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(
            f"{owner}: `weights` must have shape (q_len, k_len) or "
            f"(num_heads, q_len, k_len). Received: weights.shape={weights.shape}"
        )
    if not np.isfinite(weights).all():
        raise ValueError(
            f"{owner}: `weights` must be finite. Received: "
            f"{int((~np.isfinite(weights)).sum())} NaN or infinite values"
        )
    key_tokens = tokens if key_tokens is None else key_tokens
    heads, q_len, k_len = weights.shape
    for argument, labels, size in (
        ("tokens", tokens, q_len),
        ("key_tokens", key_tokens, k_len),
    ):
        if isinstance(labels, str | bytes):
            raise TypeError(
                f"{owner}: `{argument}` must be a sequence of tokens, not one "
                f"string. Received: {argument}={labels!r}"
            )
        if len(labels) != size:
            raise ValueError(
                f"{owner}: `{argument}` must have one token per "
                f"{'row' if argument == 'tokens' else 'column'} of `weights` "
                f"({size}). Received: {len(labels)} tokens"
            )
    page = _page(weights, [str(t) for t in tokens], [str(t) for t in key_tokens], title)
    if path is not None:
        pathlib.Path(path).write_text(page, encoding="utf-8")
    return page


def _page(weights, queries, keys, title):
    heads = len(weights)
    data = json.dumps({"weights": np.round(weights, 6).tolist()})
    # JSON inside <script>: "<", ">" and "&" as escapes, so no "</script>".
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    panels = []
    for head in range(heads):
        query_spans = "".join(
            f'<span class="token query" data-query="{i}">{html.escape(t)}</span>'
            for i, t in enumerate(queries)
        )
        key_spans = "".join(
            f'<span class="token key" data-head="{head}" data-key="{j}">'
            f"{html.escape(t)}</span>"
            for j, t in enumerate(keys)
        )
        name = f"head {head}" if heads > 1 else "attention"
        panels.append(
            f'<div class="head"><h2>{name}</h2><div class="columns">'
            f'<div class="column">{query_spans}</div>'
            f'<div class="column">{key_spans}</div></div></div>'
        )
    heading = html.escape(str(title)) if title else "Attention head view"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{heading}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{heading}</h1>\n"
        '<p class="note">Hover a query token (left) to shade the keys it '
        "attends to (right), in every head: the shade is the weight, clear "
        "at 0, full colour at 1.</p>\n"
        f'<div class="heads">{"".join(panels)}</div>\n'
        f'<script type="application/json" id="attention-data">{data}</script>\n'
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )

"""Attention patterns in NumPy, transcribed from the definitions in the
docstring of `scaled_dot_product_attention` (segment ids, prefix, chunks,
global tokens, sinks, windows, soft-capping), not from the package's code:
the reference the full path and every tiled kernel are compared with.

Everything here is plain loops and float64 arithmetic on small arrays.
"""

import numpy as np


def first_of_runs(ids, n):
    """Boolean `(batch, length)`: whether a position is among the first `n`
    of its run of equal ids (a plain loop)."""
    ids = np.asarray(ids)
    result = np.zeros(ids.shape, bool)
    for b, row in enumerate(ids):
        count = 0
        for t, value in enumerate(row):
            count = count + 1 if t > 0 and value == row[t - 1] else 1
            result[b, t] = count <= n
    return result


def allowed(
    batch,
    q_len,
    k_len,
    *,
    first=0,
    causal=False,
    window=None,
    chunk_size=None,
    prefix=None,
    query_ids=None,
    key_ids=None,
    global_tokens=None,
    sink_tokens=None,
    mask=None,
):
    """Boolean `(batch, q_len, k_len)`: the pairs that may attend.

    `window` is `(left, right)`; `prefix` an int or `(batch,)`; ids
    `(batch, length)`; `global_tokens` an int or a pair of boolean `(batch,
    length)` arrays; `sink_tokens` an int; `mask` broadcastable to the
    result.
    """
    result = np.zeros((batch, q_len, k_len), bool)
    if query_ids is None:
        query_ids = np.zeros((batch, q_len), int)
        key_ids = np.zeros((batch, k_len), int)
        runs_q = np.broadcast_to(np.arange(q_len) + first, (batch, q_len))
        runs_k = np.broadcast_to(np.arange(k_len), (batch, k_len))
    if isinstance(global_tokens, int):
        if "runs_q" in locals():
            q_global, k_global = runs_q < global_tokens, runs_k < global_tokens
        else:
            q_global = first_of_runs(query_ids, global_tokens)
            k_global = first_of_runs(key_ids, global_tokens)
    elif global_tokens is not None:
        q_global, k_global = (
            np.broadcast_to(x, (batch, x.shape[-1])) for x in global_tokens
        )
    else:
        q_global = np.zeros((batch, q_len), bool)
        k_global = np.zeros((batch, k_len), bool)
    if sink_tokens is None:
        sink = np.zeros((batch, k_len), bool)
    elif "runs_k" in locals():
        sink = runs_k < sink_tokens
    else:
        sink = first_of_runs(key_ids, sink_tokens)
    prefix = np.broadcast_to(0 if prefix is None else prefix, (batch,))
    for b in range(batch):
        for a in range(q_len):
            i = first + a
            for j in range(k_len):
                see_back = j <= i or j < prefix[b]
                structure = (
                    (not causal or see_back)
                    and (window is None or i - window[0] <= j <= i + window[1])
                    and (chunk_size is None or i // chunk_size == j // chunk_size)
                )
                extra = (
                    q_global[b, a]
                    or k_global[b, j]
                    or (sink[b, j] and (not causal or see_back))
                )
                same = query_ids[b, a] == key_ids[b, j]
                result[b, a, j] = same and (structure or extra)
    if mask is not None:
        result = np.logical_and(result, mask)
    return result


def attention(
    q, k, v, allowed, *, scale=None, softcap=None, slopes=None, sinks=None, first=0
):
    """Context and weights of `(batch, heads, len, depth)` float arrays in
    float64, `allowed` `(batch, q_len, k_len)` (or broadcastable to the
    logits); a query with no key gets zeros."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    heads = q.shape[1]
    if k.shape[1] != heads:  # grouped-query heads: repeat the keys per group
        k, v = (np.repeat(x, heads // x.shape[1], axis=1) for x in (k, v))
    logits = np.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if softcap is not None:
        logits = softcap * np.tanh(logits / softcap)
    if slopes is not None:
        i = np.arange(q.shape[2])[:, None] + first
        j = np.arange(k.shape[2])[None, :]
        logits = logits - np.asarray(slopes, np.float64)[:, None, None] * abs(i - j)
    allowed = np.broadcast_to(
        allowed[:, None] if allowed.ndim == 3 else allowed, logits.shape
    )
    logits = np.where(allowed, logits, -np.inf)
    top = logits.max(-1, keepdims=True)
    if sinks is not None:
        column = np.broadcast_to(
            np.asarray(sinks, np.float64)[:, None, None], top.shape
        )
        top = np.maximum(top, column)
    top = np.where(np.isfinite(top), top, 0.0)
    exp = np.exp(logits - top)
    total = exp.sum(-1, keepdims=True)
    if sinks is not None:
        total = total + np.exp(column - top)
    weights = np.where(
        allowed.any(-1, keepdims=True), exp / np.where(total > 0, total, 1), 0.0
    )
    return np.einsum("bhqk,bhkd->bhqd", weights, v), weights


def reference_allowed(batch, q_len, k_len, options, first=0, mask=None):
    """`allowed` for the keyword arguments of `scaled_dot_product_attention`
    (`options`, as `patterns` draws them)."""
    window = options.get("sliding_window")
    if isinstance(window, int):
        window = (window - 1, window - 1)
    segments = options.get("segment_ids")
    if segments is not None and not isinstance(segments, tuple):
        segments = (segments, segments)
    query_ids, key_ids = (
        (None, None)
        if segments is None
        else (np.broadcast_to(x, (batch, x.shape[-1])) for x in segments)
    )
    global_tokens = options.get("global_tokens")
    if global_tokens is not None and not isinstance(global_tokens, int):
        if not isinstance(global_tokens, tuple):
            global_tokens = (global_tokens, global_tokens)
    return allowed(
        batch,
        q_len,
        k_len,
        first=first,
        causal=options.get("causal", False),
        window=window,
        chunk_size=options.get("chunk_size"),
        prefix=options.get("prefix_length"),
        query_ids=query_ids,
        key_ids=key_ids,
        global_tokens=global_tokens,
        sink_tokens=options.get("sink_tokens"),
        mask=mask,
    )


def patterns(draw, batch, length, monotone=True):
    """Keyword arguments of `scaled_dot_product_attention` for a random
    pattern of self-attention over rows of `length` (a hypothesis `draw`):
    any combination of the options, None ones left out. With `monotone`,
    segment ids never decrease along a row (packed documents)."""
    from hypothesis import strategies as st

    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    options = {"causal": draw(st.booleans())}
    kind = draw(st.sampled_from([None, "int", "pair"]))
    if kind == "int":
        options["sliding_window"] = draw(st.integers(1, length))
    elif kind == "pair":
        options["sliding_window"] = (draw(st.integers(0, 4)), draw(st.integers(0, 4)))
    if draw(st.booleans()):
        options["chunk_size"] = draw(st.integers(1, length))
    if options["causal"] and draw(st.booleans()):
        options["prefix_length"] = (
            draw(st.integers(0, length))
            if draw(st.booleans())
            else rng.integers(0, length + 1, size=batch).astype("int32")
        )
    if draw(st.booleans()):
        if monotone:
            ids = np.cumsum(rng.random((batch, length)) < 0.3, axis=-1)
        else:
            ids = rng.integers(0, 3, size=(batch, length))
        options["segment_ids"] = ids.astype("int32")
    kind = draw(st.sampled_from([None, "int", "tensor"]))
    if kind == "int":
        options["global_tokens"] = draw(st.integers(1, 2))
    elif kind == "tensor":
        options["global_tokens"] = rng.random((batch, length)) < 0.15
    if draw(st.booleans()):
        options["sink_tokens"] = draw(st.integers(1, 2))
    return options

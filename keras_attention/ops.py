"""Scaled dot-product attention: the one place the formula lives.

    weights = softmax(query · keyᵀ · scale + bias, over the keys a query may see)
    context = weights · value

Every layer of this package calls `scaled_dot_product_attention`; nothing
else computes attention. The maths is written with `keras.ops`, so it runs on
every Keras backend.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_attention import _attention_pattern as pattern
from keras_attention import _backend
from keras_attention import _checks as checks

_NAME = "scaled_dot_product_attention"


def scaled_dot_product_attention(
    query,
    key,
    value,
    mask=None,
    *,
    bias=None,
    alibi_slopes=None,
    scale=None,
    causal=False,
    sliding_window=None,
    chunk_size=None,
    prefix_length=None,
    segment_ids=None,
    global_tokens=None,
    sink_tokens=None,
    sink_logits=None,
    softcap=None,
    alignment="top_left",
    query_start=None,
    dropout=0.0,
    seed=None,
    training=False,
    return_weights=False,
    tile_size=None,
    layout="BNTH",
):
    """Scaled dot-product attention (Vaswani et al., 2017).

    Computes `softmax(query @ keyᵀ * scale + bias) @ value`, where the softmax
    runs over the keys each query may attend to. The tensors are laid out
    `(batch, heads, length, depth)` (`layout="BNTH"`, the default; any number
    of leading axes), with the heads before the length, as
    `keras.layers.MultiHeadAttention` computes them; `keras.ops.
    dot_product_attention` and `jax.nn.dot_product_attention` take `(batch,
    length, heads, depth)` instead: pass `layout="BTNH"` for those. The
    argument order is `(query, key, value)`, like `keras.ops.
    dot_product_attention`; the layers of this package take `(query, value,
    key)`, like Keras' attention layers.

    Args:
        query: float tensor `(..., q_len, depth)`. Any number of leading batch
            dimensions, including none: a `(3, 10)` query is 3 positions of
            depth 10.
        key: float tensor `(..., k_len, depth)`; `q_len` may differ from
            `k_len`. With rank >= 3, axis -3 is the heads axis: `key` and
            `value` may have fewer heads than `query` when their number
            divides the query's (grouped-query attention, multi-query with
            one): query head `h` then attends with key and value head
            `h // (query heads / key heads)`, as with keys and values
            repeated per group, and they are never copied.
        value: float tensor `(..., k_len, value_depth)`.
        mask: optional boolean or integer tensor broadcastable to
            `(..., q_len, k_len)`. Non-zero (`True`) means the query may attend
            to the key, zero (`False`) means it may not: Keras' convention. A
            floating-point mask is rejected, because additive masks (`0` to
            keep, `-inf` to drop) and multiplicative ones (`1` to keep) are
            easy to confuse; pass an additive mask as `bias` instead.
        bias: optional float tensor broadcastable to `(..., q_len, k_len)`,
            added to the scaled logits before the softmax.
        alibi_slopes: optional float tensor: ALiBi (Press et al.), the bias
            `-slope · |i - j|` added to the scaled logits of query `i` and
            key `j`, with positions aligned like `causal` (from 0 at the top
            left). Shape `(heads,)`, one slope per entry of axis -3 of the
            logits `(..., heads, q_len, k_len)` (see `alibi_slopes`), or any
            shape broadcastable to the logits whose last two axes are 1.
            With `causal=True` every pair that attends has `j <= i`, so this
            is the paper's `-slope · (i - j)`. The bias is computed inside
            the attention in float32 (float64 for float64 inputs), tile by
            tile on the tiled path, so it never exists as a `(q_len, k_len)`
            tensor there; the slopes are constants (no gradient flows to
            them).
        scale: optional positive Python number multiplying the logits.
            Defaults to `1 / sqrt(depth)`, computed in floating point.
        causal: if `True`, query `i` may only attend to keys `j <= i`. When
            `q_len != k_len` this is aligned at the top left, like
            `keras.ops.dot_product_attention(..., is_causal=True)`: query `i`
            sees keys `0..i`. Combines with `mask` (both must allow a pair).
        sliding_window: optional positive int `w`: query `i` may only attend
            to keys `j` with `|i - j| < w`, a band of `w - 1` positions on
            either side, like `keras.layers.MultiHeadAttention(sliding_window=w)`.
            Combines with `causal` (then keys `i - w < j <= i`) and `mask`.
            Or a pair `(left, right)` of ints >= 0: keys `i - left <= j <=
            i + right` (`w` is `(w - 1, w - 1)`; Mistral's causal window of
            4096 keys is `(4095, 0)`).
        chunk_size: optional positive int `c`: query `i` may only attend to
            keys of its own chunk, `j // c == i // c` (Llama 4's chunked
            attention, with `causal`).
        prefix_length: with `causal=True`, an int or an integer `(batch,)`
            tensor `p`: the first `p` positions of a row attend to each
            other both ways, the rest causally (prefix-LM: PaliGemma, T5-
            style decoders); every query sees keys `j < p`.
        segment_ids: optional integer tensor `(batch, length)` (or
            `(length,)` for every row) of self-attention, or a pair
            `(query_segment_ids, key_segment_ids)`: a query attends only to
            keys with its own id, as when several documents are packed in
            one row; with `causal`, each document is causal within itself.
            The tiles skip what no document reaches exactly when the ids of
            a row never decrease (as `pack_sequences` makes them).
        global_tokens: optional int `n`, the first `n` positions of each
            segment (of each row without `segment_ids`; counted from where
            a run of equal ids starts; with `segment_ids`, the queries must
            start at key position 0), or a boolean `(batch, length)`
            tensor of self-attention (or a pair for queries and keys):
            global positions attend to every key of their segment and every
            query of their segment attends to them, whatever `causal`,
            `sliding_window`, `chunk_size` and `prefix_length` say; `mask`
            and `segment_ids` still apply (Longformer, BigBird).
        sink_tokens: optional int `n`: the first `n` keys of each segment
            (counted as for `global_tokens`) stay visible to every query of
            their segment past `sliding_window` and `chunk_size`; with
            `causal`, still only keys `j <= i` (StreamingLLM's attention
            sinks).
        sink_logits: optional float tensor `(heads,)`, one logit per head
            (axis -3 of the logits) that joins the denominator of every
            softmax and takes no value: the weights of a row sum to less
            than 1 (GPT-OSS's learned sinks). Differentiable.
        softcap: optional positive number `c`: the scaled logits become
            `c · tanh(logits / c)` before ALiBi and `bias` are added
            (Gemma 2's `attn_logit_softcapping`).
        alignment: where the queries sit among the keys when `q_len !=
            k_len`, for `causal`, `sliding_window` and the ALiBi distances
            (and for which weights dropout drops). `"top_left"` (the
            default, like Keras): query `i` is at position `i`.
            `"bottom_right"` (FlashAttention's convention): query `i` is at
            position `k_len - q_len + i`, so the last query is at the last
            key, as when new queries attend to a cache of earlier keys: with
            `causal`, query `i` sees keys
            `j <= k_len - q_len + i`.
        query_start: optional position of query 0 among the keys (keys are
            at positions `0 .. k_len - 1`): query `i` sits at `query_start +
            i` for `causal`, `sliding_window`, the ALiBi distances and
            dropout, as when `q_len` new queries attend to a cache whose
            first `query_start` positions hold earlier keys. An int, an
            integer scalar tensor (known only at run time, as a decoding
            step's position: one compilation serves every value), or an
            integer `(batch,)` tensor, a position per entry of axis 0 (that
            one runs the full computation). `None` (the default) follows
            `alignment`; anything else needs `alignment="top_left"`.
        dropout: rate in `[0, 1)` at which attention weights are dropped
            (and the rest rescaled by `1 / (1 - dropout)`) when `training`.
        seed: an int or a `keras.random.SeedGenerator` for the dropout. An int
            gives the same dropout pattern on every call, a generator the
            next pattern of its sequence; None a random one.
        training: Python bool (or None, read as `False`, as Keras passes it to
            a layer called outside `fit`); dropout applies only when `True`.
        return_weights: if `True`, also return the attention weights.
        tile_size: None, 0 or a positive int. `None` (the default)
            chooses: on TensorFlow, JAX and PyTorch (there after its fused
            kernel, see "Long sequences"), a call whose logits would
            hold `batch · q_len · k_len >= 2**22` numbers (every sequence of
            2048 or more) runs in tiles of up to 512 positions (see "Long
            sequences" below), and so does a call whose length is unknown
            when it is traced (`None`, TensorFlow), with its tile sizes
            computed at run time. On TensorFlow outside XLA (eagerly, or in
            `tf.function` without `jit_compile`), without `causal` or
            `sliding_window` (whose tiles skip work), TensorFlow's own full
            computation is the faster, and the tiles start from `2**28`
            logits instead (from a length of 5793 with 8 heads), and the
            full computation's gradient there is written by hand
            (FlashAttention-2's formula on the whole matrix: faster than
            TensorFlow's autodiff of it from a few hundred positions on,
            even below, benchmarks/RESULTS.md). `0` always runs the full
            computation, differentiated by the backend's autodiff: the tile
            loops do not convert to TensorFlow Lite builtin ops, so a model
            meant for TensorFlow Lite sets `tile_size=0`. A positive
            int runs every call in tiles of `tile_size` queries by
            `tile_size` keys.
        layout: `"BNTH"` (the default): `query`, `key`, `value` and the
            context are `(..., heads, length, depth)`, as above. `"BTNH"`:
            they are `(batch, length, heads, depth)`, rank 4, as
            `keras.ops.dot_product_attention` takes them (B batch, T length,
            N heads, H depth, its letters). The `mask`, `bias` and the
            weights keep `(batch, heads, q_len, k_len)` in both, as in
            Keras; shapes in error messages are given in `"BNTH"`.

    Returns:
        `context` of shape `(..., q_len, value_depth)` in the promoted dtype
        of `query`, `key` and `value` (as `keras.ops.dot_product_attention`),
        or `(context, weights)` when `return_weights=True`, where `weights`
        has shape `(..., q_len, k_len)` and holds the softmax probabilities
        before dropout. A query that may attend to no key at all gets a zero
        context vector and all-zero weights (never NaN, never an average).

    Precision: `query` and `key` are cast to float32 (float64 inputs stay
    float64), scaled and multiplied in that dtype, and the softmax and the
    weighted sum of `value` run in it too, so float16 and bfloat16 inputs
    cannot overflow in the logits. The results are cast back to the promoted
    input dtype. Symbolic inputs (`keras.Input`, lengths unknown included)
    give symbolic outputs of the right shape.

    Dropout: whether the weight of query `i` for key `j` is dropped depends
    only on the seed, the batch entry, `i` and `j` (a counter-based hash in
    int32 arithmetic), so a given int seed, or a generator made with a given
    seed and used as many times before, drops the same weights on every path
    and every backend.

    Long sequences: on the TensorFlow, JAX and PyTorch backends the
    attention may run in tiles (see `tile_size`), in memory linear in the
    sequence length, with the same result up to float rounding, the same
    masks and the same dropout. On PyTorch, with `tile_size=None`,
    `torch.nn.functional.scaled_dot_product_attention` runs instead wherever
    its result is ours (no dropout, ALiBi or sliding window); its CPU kernel
    is linear in memory too. The full `(q_len, k_len)` computation runs
    whatever `tile_size` says when the weights are asked for
    (`return_weights=True`), with a `bias`, with a `(batch,)`
    `query_start`, for float64 inputs, and on other backends. Second
    derivatives through the tiles are not supported. How the tiles work:
    `keras_attention/_backend/__init__.py`; when they pay off and what they
    save: docs/guides/long-sequences.md.

    Example:

    >>> q = keras.random.normal((3, 10))
    >>> context = keras_attention.scaled_dot_product_attention(q, q, q)
    >>> tuple(context.shape)
    (3, 10)
    """
    heads_second = _check_layout(layout, query, key, value)
    if heads_second:
        query, key, value = (ops.swapaxes(x, 1, 2) for x in (query, key, value))
    query_shape, key_shape, value_shape = _check_inputs(query, key, value)
    _check_mask(mask, "mask", query_shape, key_shape)
    _check_bias(bias, query_shape, key_shape)
    _check_alibi(alibi_slopes, query_shape, key_shape)
    _check_query_start(query_start, alignment, query_shape)
    options = _check_options(
        scale,
        causal,
        sliding_window,
        alignment,
        dropout,
        seed,
        tile_size,
        training,
        return_weights,
    )
    options["spec"] = pattern.Pattern(
        causal=options.pop("causal"),
        window=options.pop("sliding_window"),
        chunk_size=checks.positive_int(
            chunk_size, "chunk_size", _NAME, allow_none=True
        ),
        softcap=_check_softcap(softcap),
    )
    rows = _check_rows(
        options["spec"],
        query_shape,
        key_shape,
        segment_ids=segment_ids,
        prefix_length=prefix_length,
        global_tokens=global_tokens,
        sink_tokens=sink_tokens,
    )
    _check_sink_logits(sink_logits, query_shape)
    tensors = (
        query,
        key,
        value,
        mask,
        bias,
        alibi_slopes,
        query_start,
        sink_logits,
        rows,
    )
    if any(keras.utils.is_keras_tensor(x) for x in keras.tree.flatten(tensors)):
        # A Functional model's symbolic inputs: record one operation.
        result = _SymbolicAttention(options)(*tensors)
    else:
        result = _attention(*tensors, **options)
    if not heads_second:
        return result
    if return_weights:
        return ops.swapaxes(result[0], 1, 2), result[1]
    return ops.swapaxes(result, 1, 2)


LAYOUTS = ("BNTH", "BTNH")


def _check_layout(layout, query, key, value):
    """Whether `layout` is Keras' `"BTNH"` (then `query`, `key` and `value`
    must have rank 4); raises for anything but the two layouts."""
    if not (isinstance(layout, str) and layout in LAYOUTS):
        raise ValueError(
            f'{_NAME}: `layout` must be one of {LAYOUTS}: "BNTH" for '
            '(batch, heads, length, depth), "BTNH" for (batch, length, '
            f"heads, depth) as keras.ops.dot_product_attention. Received: "
            f"layout={layout!r}"
        )
    if layout == "BNTH":
        return False
    for argument, x in (("query", query), ("key", key), ("value", value)):
        shape = checks.floating(x, argument, _NAME)
        if len(shape) != 4:
            raise ValueError(
                f'{_NAME}: with layout="BTNH", `{argument}` must have rank '
                f"4, (batch, length, heads, depth). Received: {argument}."
                f"shape={shape}"
            )
    return True


def _attention(
    query,
    key,
    value,
    mask,
    bias,
    alibi_slopes,
    query_start,
    sink_logits,
    rows,
    *,
    scale,
    spec,
    alignment,
    dropout,
    seed,
    training,
    return_weights,
    tile_size,
):
    """`scaled_dot_product_attention` on checked arguments."""
    # Like `keras.ops.dot_product_attention`: the result has the promoted
    # dtype of the inputs; the computation runs in float32 or wider.
    out_dtype = _promoted(query, key, value)
    dtype = "float64" if out_dtype == "float64" else "float32"
    if scale is None:
        depth = query.shape[-1]
        if depth is None:
            scale = ops.rsqrt(ops.cast(ops.shape(query)[-1], dtype))
        else:
            scale = 1.0 / math.sqrt(depth)
    query = ops.cast(query, dtype) * scale
    key = ops.cast(key, dtype)
    value = ops.cast(value, dtype)
    mask = pattern.boolean(mask)
    slopes = _alibi_layout(alibi_slopes, dtype)  # (..., heads, 1, 1)
    sinks = _alibi_layout(sink_logits, dtype, constant=False)  # the same layout
    first = _query_start(query_start, alignment, query, key)
    data = _rows(rows, query, key, first)
    groups = _groups(query, key)
    grouped = not (isinstance(groups, int) and groups == 1)
    if grouped:
        # Grouped-query attention: the query heads of a group share a key and
        # value head. The query is grouped, (..., kv_heads, groups, len,
        # depth), the key and value get an axis of size 1: they are never
        # copied per group. The flat batch index of (kv_head, group) is the
        # query head's, so dropout drops what it would with repeated keys.
        query, mask, bias, slopes, sinks = (
            _split_heads(x, groups) for x in (query, mask, bias, slopes, sinks)
        )
        data = pattern.Rows(*(_split_heads(x, groups) for x in data))
        key, value = ops.expand_dims(key, -3), ops.expand_dims(value, -3)
    rate = dropout if training else 0.0
    options = {
        "slopes": slopes,
        "sinks": sinks,
        "spec": spec,
        "data": data,
        "query_start": first,
        "dropout": rate,
        "seed": pattern.dropout_seed(seed) if rate > 0 else None,
    }
    # A position per batch entry: the full computation, rows by entry.
    per_entry = len(getattr(options["query_start"], "shape", ())) == 1

    # The one place that chooses the backend's code: its fused or tiled
    # kernel, if it has one (see `keras_attention/_backend/__init__.py`).
    kernels = _backend.current()
    if (
        kernels.attention is None
        or return_weights
        or bias is not None
        or dtype != "float32"
        or per_entry
    ):
        context, weights, _ = _full(query, key, value, mask, bias, **options)
    else:
        context = _full_or_tiled(kernels, query, key, value, mask, tile_size, options)
        weights = None
    if grouped:
        context, weights = (_merge_heads(x) for x in (context, weights))
    context = ops.cast(context, out_dtype)
    if return_weights:
        return context, ops.cast(weights, out_dtype)
    return context


def _promoted(*tensors):
    """The promoted float dtype, as `keras.ops.dot_product_attention` gives
    it: the common dtype, else float64 if any, else float32 (float16 with
    bfloat16 included). Not `keras.backend.result_type`, which gives float32
    for float64 on PyTorch."""
    names = {keras.backend.standardize_dtype(x.dtype) for x in tensors}
    if len(names) == 1:
        return names.pop()
    return "float64" if "float64" in names else "float32"


def _groups(query, key):
    """How many query heads share a key head (axis -3): an int when both
    counts are known when traced, else an int32 scalar computed at run time
    (as after a replica's `all_gather` in a `tf.function`), checked there
    to divide the query's where the backend checks (`assert_that`)."""
    if len(query.shape) < 3:
        return 1
    if None not in (query.shape[-3], key.shape[-3]):
        return query.shape[-3] // key.shape[-3]
    query_heads, key_heads = ops.shape(query)[-3], ops.shape(key)[-3]
    return _backend.current().assert_that(
        lambda: (ops.equal(query_heads % key_heads, 0), [query_heads, key_heads]),
        f"{_NAME}: the number of `key` heads (axis -3) must divide the "
        "number of `query` heads (grouped-query attention). Received: query "
        "heads={}, key heads={}",
        query_heads // key_heads,
    )


def _split_heads(x, groups):
    """`(..., heads, a, b)` -> `(..., heads // groups, groups, a, b)`; an axis
    of size 1 (or a tensor of rank < 3, or None) broadcasts as it is."""
    if x is None or len(x.shape) < 3:
        return x
    if x.shape[-3] == 1:
        return ops.expand_dims(x, -3)
    shape = ops.shape(x)
    return ops.reshape(x, (*shape[:-3], -1, groups, *shape[-2:]))


def _merge_heads(x):
    """The inverse of `_split_heads`."""
    if x is None:
        return None
    shape = ops.shape(x)
    return ops.reshape(x, (*shape[:-4], -1, *shape[-2:]))


class _SymbolicAttention(keras.Operation):
    """`scaled_dot_product_attention` as one operation of a symbolic graph
    (a Functional model): its output shape is known without running it."""

    def __init__(self, options):
        super().__init__(name=_NAME)
        self.options = options

    def call(self, *tensors):
        return _attention(*tensors, **self.options)

    def compute_output_spec(self, query, key, value, *unused):
        dtype = _promoted(query, key, value)
        context = keras.KerasTensor(
            tuple(query.shape[:-1]) + tuple(value.shape[-1:]), dtype=dtype
        )
        if not self.options["return_weights"]:
            return context
        weights = keras.KerasTensor(
            tuple(query.shape[:-1]) + tuple(key.shape[-2:-1]), dtype=dtype
        )
        return context, weights


# `tile_size=None` runs the attention in tiles from this many logits per call
# (batch entries · q_len · k_len; 16 MiB in float32): every sequence of 2048
# or more, and shorter ones in large batches, so that memory stays linear.
# A backend may move it where its own full computation is faster than the
# tiles (`tiled_from_logits` of its module: TensorFlow outside XLA). Speed on
# either side, per backend: benchmarks/RESULTS.md ("Full or tiled").
TILED_FROM_LOGITS = 1 << 22
# With `tile_size=None`, a (tile, tile) block of logits for all the batch
# entries holds at most this many floats (8 MiB): big enough for fast matmuls,
# small enough for the CPU caches and for malloc to reuse the memory.
_TILE_FLOATS = 1 << 21


def _full_or_tiled(kernels, query, key, value, mask, tile_size, options):
    """The context from the backend module `kernels`: fused, in tiles or the
    full computation, as `tile_size` and the static shapes say.

    With `tile_size=None`, the backend's `fused` kernel runs first where it
    has one and its result is ours (PyTorch's
    `scaled_dot_product_attention`). `tile_size=0` is the full computation
    as `_full` writes it (autodiff's gradient); `tile_size=None` below the
    threshold is the same forward, through the backend's `full` kernel where
    it has one (`_full_context`).
    With `tile_size=None`, a call whose lengths are known when it is traced
    runs in tiles from the backend's `tiled_from_logits(TILED_FROM_LOGITS,
    ...)` logits; one whose lengths are unknown (`None`, as
    when `fit` retraces a model built on `keras.Input((None, dim))` for a
    second length) runs in tiles whose size is computed at run time, since
    the length may be long. The choice is made at trace time: a run-time
    `cond` between the two paths does not work under XLA (the gradient of
    the branch not taken is compiled with zero-sized stand-ins for its
    intermediates). The tile loops do not convert to TensorFlow Lite builtin
    ops, so a model meant for TensorFlow Lite sets `tile_size=0`. Unknown
    batch dimensions count as 1.
    """
    if tile_size is None and kernels.fused is not None:
        context = kernels.fused(query, key, value, mask, **options)
        if context is not None:
            return context
    if tile_size == 0:
        return _full(query, key, value, mask, None, **options)[0]
    lengths = (query.shape[-2], key.shape[-2])
    batch = math.prod(n for n in query.shape[:-2] if n is not None)
    if (
        tile_size is None
        and None not in lengths
        and batch * lengths[0] * lengths[1]
        < kernels.tiled_from_logits(
            TILED_FROM_LOGITS,
            every_tile=options["spec"].every_tile
            and options["data"].query_segment is None,
        )
    ):
        return _full_context(kernels, query, key, value, mask, options)
    if tile_size is None:
        # The largest power of two (up to 512) whose tiles fit _TILE_FLOATS,
        # then as many equal tiles of at most that size as each length needs.
        largest = 32
        while largest < 512 and batch * (2 * largest) ** 2 <= _TILE_FLOATS:
            largest *= 2
        window = options["spec"].window
        if window is not None:
            # Tiles about as wide as the band waste less of each tile.
            largest = min(largest, max(64, 1 << max(window).bit_length()))
        dynamic = ops.shape(query)[-2], ops.shape(key)[-2]
        tiles = tuple(_even_tiles(n, largest) for n in dynamic)
    else:
        tiles = (tile_size, tile_size)
    return kernels.attention(query, key, value, mask, tiles=tiles, **options)


def _full_context(kernels, query, key, value, mask, options):
    """`_full`'s context, through the backend's `full` kernel where it has
    one now (TensorFlow outside XLA: the same forward, a hand-written
    backward), else as `_full` computes it."""

    def forward(query, key, value):
        return _full(query, key, value, mask, None, **options)

    # The backend's hand-written gradient knows neither the soft-cap's
    # derivative nor the sinks' gradient: autodiff differentiates those.
    plain = options["spec"].softcap is None and options["sinks"] is None
    if kernels.full is not None and plain:
        context = kernels.full(forward, query, key, value, dropout=options["dropout"])
        if context is not None:
            return context
    return forward(query, key, value)[0]


def _even_tiles(length, largest):
    """The size of the fewest equal tiles of at most `largest` that cover
    `length` (a Python int, or a scalar tensor when only known at run time),
    rounded up to a multiple of `_TILE_STEP` (or `largest`, if smaller).

    The kernel pads a length that is not a whole number of tiles, and
    compiles once per number and size of tiles, not per such length: the
    rounding lets nearby lengths share a compilation, for at most
    `_TILE_STEP - 1` padded positions per tile. (A length that is whole
    tiles runs unpadded, compiled for that length.)
    """
    step = min(_TILE_STEP, largest)
    count = (length + largest - 1) // largest
    count = max(count, 1) if isinstance(length, int) else ops.maximum(count, 1)
    tile = (length + count - 1) // count
    return (tile + step - 1) // step * step


_TILE_STEP = 64


def _full(
    query,
    key,
    value,
    mask,
    bias,
    *,
    slopes,
    sinks,
    spec,
    data,
    query_start,
    dropout,
    seed,
):
    """The whole `(..., q_len, k_len)` computation: `(context, weights,
    keep)`, `weights` before dropout, `keep` dropout's pattern (None without
    dropout)."""
    logits = _grouped_matmul("...qd,...kd->...qk", query, key)
    q_len, k_len = ops.shape(query)[-2], ops.shape(key)[-2]
    first = query_start  # the first query's position: () or (batch,)
    if len(getattr(first, "shape", ())) == 1:
        # (batch, 1, ..., 1, 1): a position per entry of the logits' axis 0.
        first = ops.reshape(first, (-1,) + (1,) * (len(logits.shape) - 1))
    rows = ops.expand_dims(ops.arange(q_len, dtype="int32"), -1) + first  # (q, 1)
    cols = ops.expand_dims(ops.arange(k_len, dtype="int32"), 0)  # (1, k_len)
    logits, _ = pattern.scores(logits, spec.softcap, slopes, rows, cols)
    allowed = pattern.allowed(mask, spec, rows, cols, data)
    if bias is not None:
        logits = logits + ops.cast(bias, logits.dtype)
        # A bias of -inf drops the pair, like the mask.
        allowed = pattern.combine(allowed, ops.greater(logits, float("-inf")))
    # Causal queries at positions >= 0 see key 0, window and chunk queries at
    # positions 0 .. k_len - 1 themselves: a query that may see no key needs
    # a mask, a bias, segment ids, or positions outside those.
    start = query_start if isinstance(query_start, int) else None
    positional = spec.window is not None or spec.chunk_size is not None
    may_see_nothing = (
        mask is not None
        or bias is not None
        or data.query_segment is not None
        or (spec.causal and (start is None or start < 0))
        or (
            positional
            and (
                start is None
                or start < 0
                or not _at_most(
                    None if query.shape[-2] is None else start + query.shape[-2],
                    key.shape[-2],
                )
            )
        )
    )
    weights = _masked_softmax(logits, allowed, may_see_nothing, sinks)

    attended, keep = weights, None
    if dropout > 0:
        batch = pattern.batch_index(ops.shape(query)[:-2])
        keep = pattern.dropout_keep(seed, batch, rows, cols, dropout)
        attended = ops.where(keep, weights * (1.0 / (1.0 - dropout)), 0.0)
    # (..., q_len, value_depth)
    context = _grouped_matmul("...qk,...kv->...qv", attended, value)
    return context, weights, keep


def _grouped_matmul(equation, a, b):
    """`einsum(equation, a, b)` where `b` may be shared by a group of `a`'s
    heads (`a` `(..., groups, rows, n)`, `b` `(..., 1, n, m)` or transposed,
    see `_split_heads`): the group is folded into the rows, so neither the
    product nor its gradient holds a copy of `b` per group."""
    groups = a.shape[-3] if len(a.shape) > 3 else 1
    if groups == 1 or b.shape[-3] != 1:
        return ops.einsum(equation, a, b)
    shape = ops.shape(a)
    folded = ops.reshape(a, (*shape[:-3], -1, shape[-1]))  # (..., groups·rows, n)
    product = ops.einsum(equation, folded, ops.squeeze(b, -3))
    return ops.reshape(product, (*shape[:-1], -1))


def _alibi_layout(slopes, dtype, constant=True):
    """ALiBi slopes (or sink logits, not `constant`) as a `(..., 1, 1)`
    tensor of `dtype`, or None."""
    if slopes is None:
        return None
    slopes = ops.cast(slopes, dtype)
    if constant:
        slopes = ops.stop_gradient(slopes)
    if len(slopes.shape) == 1:
        slopes = ops.reshape(slopes, (-1, 1, 1))  # (heads, 1, 1)
    return slopes


def alibi_slopes(num_heads: int):
    """ALiBi's slopes, one per head (Press et al., "Train Short, Test Long").

    For `n` heads, `n` a power of two, the geometric sequence that starts at
    `2^(-8/n)` with that same ratio: `2^(-8/n), 2^(-16/n), ..., 2^(-8)`. For
    other `n`, the paper's rule: the slopes of the largest power of two
    `p < n`, then every other slope of `2p`, the first `n - p` of them.

    Args:
        num_heads: positive int.

    Returns:
        A float32 NumPy array `(num_heads,)`, for
        `scaled_dot_product_attention(..., alibi_slopes=...)`.

    Example:

    >>> keras_attention.alibi_slopes(4).tolist()
    [0.25, 0.0625, 0.015625, 0.00390625]
    >>> q = keras.random.normal((2, 4, 10, 8))  # (batch, heads, len, depth)
    >>> context = keras_attention.scaled_dot_product_attention(
    ...     q, q, q, causal=True, alibi_slopes=keras_attention.alibi_slopes(4))
    >>> tuple(context.shape)
    (2, 4, 10, 8)
    """
    num_heads = checks.positive_int(num_heads, "num_heads", "alibi_slopes")

    def geometric(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    power = 1 << (num_heads.bit_length() - 1)  # the largest power of 2 <= n
    slopes = geometric(power) + geometric(2 * power)[0::2][: num_heads - power]
    return np.array(slopes, "float32")


def _at_most(a, b):
    return a is not None and b is not None and a <= b


def _masked_softmax(logits, allowed, may_see_nothing, sinks=None):
    """Softmax over the last axis that gives exact zeros where not allowed.

    A row with no allowed entry gets all-zero weights instead of NaN. Masked
    logits become the lowest float32, not -inf, so that `ops.softmax` (one
    fused kernel) never sees a row of -inf; exp(lowest - max) is exactly 0.
    `sinks` (`(..., 1, 1)`, or None) is one more logit per row, in the
    denominator only: its weight is dropped after the softmax.
    """
    if allowed is not None:
        logits = ops.where(allowed, logits, _LOWEST)
    if sinks is not None:
        column = ops.zeros_like(logits[..., :1]) + sinks
        weights = ops.softmax(ops.concatenate([logits, column], -1), axis=-1)
        weights = weights[..., :-1]
    elif logits.shape[-1] == 1:
        # One key: its weight is 1 (NaN stays NaN). Keras' softmax would warn
        # that a softmax over one entry is constant, on every first decoding
        # step; Keras' own attention layer does not.
        weights = ops.exp(logits - logits)
    else:
        weights = ops.softmax(logits, axis=-1)
    if allowed is None:
        return weights
    if may_see_nothing:
        weights = ops.where(ops.any(allowed, axis=-1, keepdims=True), weights, 0.0)
    return weights


_LOWEST = -3.4028234663852886e38  # the lowest finite float32


# Argument checks. Each raises as soon as the offending value is known:
# static shapes at call or trace time, Python values always.


def _check_inputs(query, key, value):
    shapes = {}
    for argument, x in (("query", query), ("key", key), ("value", value)):
        shape = checks.floating(x, argument, _NAME)
        if len(shape) < 2:
            raise ValueError(
                f"{_NAME}: `{argument}` must have rank >= 2, "
                f"(..., seq_len, depth). Received: {argument}.shape={shape}"
            )
        shapes[argument] = shape
    query_shape, key_shape, value_shape = (
        shapes["query"],
        shapes["key"],
        shapes["value"],
    )
    if not len(query_shape) == len(key_shape) == len(value_shape):
        raise ValueError(
            f"{_NAME}: `query`, `key` and `value` must have the same rank. "
            f"Received: query.shape={query_shape}, key.shape={key_shape}, "
            f"value.shape={value_shape}"
        )
    if not _same(query_shape[-1], key_shape[-1]):
        raise ValueError(
            f"{_NAME}: the last dimension of `query` and `key` must be "
            f"equal. Received: query.shape={query_shape}, "
            f"key.shape={key_shape}"
        )
    if not _same(key_shape[-2], value_shape[-2]):
        raise ValueError(
            f"{_NAME}: `key` and `value` must have the same sequence length "
            f"(axis -2). Received: key.shape={key_shape}, "
            f"value.shape={value_shape}"
        )
    heads = [shape[-3] if len(shape) > 2 else 1 for shape in shapes.values()]
    if not (_same(heads[1], heads[2]) and _divides(heads[1], heads[0])):
        raise ValueError(
            f"{_NAME}: `key` and `value` must have the same number of heads "
            "(axis -3), and it must divide the query's (grouped-query "
            f"attention). Received: query.shape={query_shape}, "
            f"key.shape={key_shape}, value.shape={value_shape}"
        )
    for a, b, c in zip(query_shape[:-3], key_shape[:-3], value_shape[:-3], strict=True):
        if not (_same(a, b) and _same(b, c) and _same(a, c)):
            raise ValueError(
                f"{_NAME}: the batch dimensions of `query`, `key` and "
                f"`value` must be equal. Received: query.shape={query_shape}, "
                f"key.shape={key_shape}, value.shape={value_shape}"
            )
    return query_shape, key_shape, value_shape


def _same(a, b):
    return a is None or b is None or a == b


def _divides(a, b):
    return a is None or b is None or b % a == 0


def _check_broadcastable(shape, argument, query_shape, key_shape):
    target = query_shape[:-1] + (key_shape[-2],)
    if len(shape) > len(target) or any(
        not (m is None or t is None or m == 1 or m == t)
        for m, t in zip(reversed(shape), reversed(target), strict=False)
    ):
        raise ValueError(
            f"{_NAME}: `{argument}` must be broadcastable to the logits' "
            f"shape (..., q_len, k_len)={target}. "
            f"Received: {argument}.shape={shape}"
        )


def _check_mask(mask, argument, query_shape, key_shape):
    if mask is None:
        return
    shape = checks.tensor(mask, argument, _NAME)
    dtype = keras.backend.standardize_dtype(mask.dtype)
    if "float" in dtype:
        raise TypeError(
            f"{_NAME}: `{argument}` must be boolean or integer, non-zero "
            "where a query may attend to a key and zero where it may not "
            "(Keras' convention). For an additive mask (0 to keep, -inf to "
            f"drop) use `bias`. Received: {argument} with dtype {dtype}"
        )
    _check_broadcastable(shape, argument, query_shape, key_shape)


def _check_bias(bias, query_shape, key_shape):
    if bias is None:
        return
    shape = checks.floating(bias, "bias", _NAME)
    _check_broadcastable(shape, "bias", query_shape, key_shape)


ALIGNMENTS = ("top_left", "bottom_right")


def _query_start(query_start, alignment, query, key):
    """The position of query 0 among the keys: a Python int where it is
    known when traced, else an int32 tensor `()` or `(batch,)`."""
    if query_start is not None:
        if checks.is_integer(query_start):
            return int(query_start)
        return ops.cast(query_start, "int32")
    if alignment == "top_left":
        return 0
    q_len, k_len = query.shape[-2], key.shape[-2]
    if None in (q_len, k_len):
        return ops.shape(key)[-2] - ops.shape(query)[-2]
    return k_len - q_len


def _check_query_start(query_start, alignment, query_shape):
    if query_start is None:
        return
    if alignment != "top_left":
        raise ValueError(
            f"{_NAME}: `query_start` places the queries itself: pass it with "
            f"alignment='top_left' (the default). Received: query_start="
            f"{query_start!r}, alignment={alignment!r}"
        )
    if checks.is_integer(query_start):
        return
    shape = checks.tensor(query_start, "query_start", _NAME)
    dtype = keras.backend.standardize_dtype(query_start.dtype)
    batched = len(query_shape) > 2
    if "int" not in dtype or not (
        shape == () or (batched and len(shape) == 1 and _same(shape[0], query_shape[0]))
    ):
        shapes = (
            f"() or (batch,)=({query_shape[0]},), query's axis 0" if batched else "()"
        )
        raise ValueError(
            f"{_NAME}: `query_start` must be an int or an integer tensor of "
            f"shape {shapes}. Received: query_start with shape {shape} and "
            f"dtype {dtype}"
        )


def check_alignment(alignment, owner):
    if alignment not in ALIGNMENTS:
        raise ValueError(
            f"{owner}: `alignment` must be one of {ALIGNMENTS}. "
            f"Received: alignment={alignment!r}"
        )
    return alignment


def _check_alibi(slopes, query_shape, key_shape):
    if slopes is None:
        return
    shape = checks.floating(slopes, "alibi_slopes", _NAME)
    logits = query_shape[:-1] + (key_shape[-2],)
    if len(shape) == 1:
        heads = logits[-3] if len(logits) >= 3 else 1
        if len(logits) >= 3 and (heads is None or shape[0] in (None, 1, heads)):
            return
        raise ValueError(
            f"{_NAME}: `alibi_slopes` of shape (heads,) needs logits "
            f"(..., heads, q_len, k_len) with {shape[0]} heads on axis -3. "
            f"Received: alibi_slopes.shape={shape} for logits of shape {logits}"
        )
    if len(shape) >= 2 and shape[-2:] == (1, 1):
        try:
            _check_broadcastable(shape, "alibi_slopes", query_shape, key_shape)
            return
        except ValueError:
            pass
    raise ValueError(
        f"{_NAME}: `alibi_slopes` must have shape (heads,) or broadcast to the "
        f"logits' shape (..., q_len, k_len)={logits} with size 1 on its last "
        f"two axes. Received: alibi_slopes.shape={shape}"
    )


def _check_options(
    scale,
    causal,
    sliding_window,
    alignment,
    dropout,
    seed,
    tile_size,
    training,
    return_weights,
):
    """The options, checked, as Python values (NumPy scalars converted)."""
    return {
        "alignment": check_alignment(alignment, _NAME),
        "scale": checks.scale(scale, _NAME),
        "causal": checks.boolean(causal, "causal", _NAME),
        "training": checks.boolean(training, "training", _NAME, allow_none=True),
        "return_weights": checks.boolean(return_weights, "return_weights", _NAME),
        "sliding_window": checks.window(sliding_window, "sliding_window", _NAME),
        "tile_size": checks.tile_size(tile_size, _NAME),
        "dropout": checks.dropout(dropout, _NAME),
        "seed": checks.seed(seed, _NAME),
    }


def _check_softcap(softcap):
    if softcap is None:
        return None
    return float(checks.positive_number(softcap, "softcap", _NAME))


def _check_sink_logits(sink_logits, query_shape):
    if sink_logits is None:
        return
    shape = checks.floating(sink_logits, "sink_logits", _NAME)
    heads = query_shape[-3] if len(query_shape) >= 3 else None
    if len(query_shape) < 3 or len(shape) != 1 or not _same(shape[0], heads):
        raise ValueError(
            f"{_NAME}: `sink_logits` must have shape (heads,), one logit per "
            f"query head (axis -3 of query {query_shape}). Received: "
            f"sink_logits.shape={shape}"
        )


def _check_rows(
    spec,
    query_shape,
    key_shape,
    *,
    segment_ids,
    prefix_length,
    global_tokens,
    sink_tokens,
):
    """The per-row options, checked: a dict of `segment_ids` (None or the
    pair of query and key ids), `prefix_length` (None, an int or a tensor),
    `global_tokens` (None, an int or the pair of boolean tensors) and
    `sink_tokens` (None or an int)."""
    q_len, k_len = query_shape[-2], key_shape[-2]
    segments = _pair(segment_ids, "segment_ids", q_len, k_len)
    for argument, ids, length in zip(
        ("query segment_ids", "key segment_ids"),
        segments or (),
        (q_len, k_len),
        strict=False,
    ):
        _check_row_tensor(ids, argument, "integer", query_shape, length)
    if prefix_length is not None:
        if not spec.causal:
            raise ValueError(
                f"{_NAME}: `prefix_length` makes the first positions of a "
                "causal row bidirectional: pass it with causal=True. "
                f"Received: prefix_length={prefix_length!r}, causal=False"
            )
        _check_prefix(prefix_length, query_shape, k_len)
    if checks.is_integer(global_tokens) or global_tokens is None:
        global_tokens = checks.count(global_tokens, "global_tokens", _NAME)
    else:
        global_tokens = _pair(global_tokens, "global_tokens", q_len, k_len)
        for argument, flags, length in zip(
            ("query global_tokens", "key global_tokens"),
            global_tokens,
            (q_len, k_len),
            strict=True,
        ):
            _check_row_tensor(flags, argument, "boolean", query_shape, length)
    return {
        "segment_ids": segments,
        "prefix_length": prefix_length,
        "global_tokens": global_tokens,
        "sink_tokens": checks.count(sink_tokens, "sink_tokens", _NAME),
    }


def _pair(value, argument, q_len, k_len):
    """A per-position option of self-attention (one tensor for queries and
    keys) or a pair `(for queries, for keys)`, as the pair (or None)."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{_NAME}: `{argument}` must be a tensor (self-attention) or a "
                f"pair (for the queries, for the keys). Received: {len(value)} "
                "items"
            )
        return tuple(value)
    if not _same(q_len, k_len):
        raise ValueError(
            f"{_NAME}: one `{argument}` tensor serves self-attention, where "
            f"q_len == k_len; with q_len={q_len} and k_len={k_len}, pass a "
            f"pair ({argument} of the queries, of the keys)"
        )
    return value, value


def _check_row_tensor(x, argument, kind, query_shape, length):
    """A per-position tensor: `(length,)` or `(batch, length)`, batch being
    axis 0 of the query (of rank >= 3), of `kind` "integer" or "boolean"."""
    shape = checks.tensor(x, argument, _NAME)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if ("int" not in dtype) if kind == "integer" else (dtype != "bool"):
        article = "an" if kind == "integer" else "a"
        raise TypeError(
            f"{_NAME}: `{argument}` must be {article} {kind} tensor. Received: "
            f"{argument} with dtype {dtype}"
        )
    batch = query_shape[0] if len(query_shape) >= 3 else None
    if not (
        (len(shape) == 1 and _same(shape[0], length))
        or (
            len(shape) == 2
            and len(query_shape) >= 3
            and _same(shape[0], batch)
            and _same(shape[1], length)
        )
    ):
        expected = f"(length,)=({length},)"
        if len(query_shape) >= 3:
            expected += f" or (batch, length)=({batch}, {length})"
        raise ValueError(
            f"{_NAME}: `{argument}` must have shape {expected}, batch being "
            f"axis 0 of the query. Received: {argument}.shape={shape}"
        )


def _check_prefix(prefix_length, query_shape, k_len):
    expected = "an int in [0, k_len] or an integer tensor of shape () or (batch,)"
    if checks.is_integer(prefix_length):
        if prefix_length < 0 or (k_len is not None and prefix_length > k_len):
            raise ValueError(
                f"{_NAME}: `prefix_length` must be {expected}, at most the "
                f"row's length k_len={k_len}. Received: prefix_length="
                f"{prefix_length}"
            )
        return
    shape = checks.tensor(prefix_length, "prefix_length", _NAME)
    dtype = keras.backend.standardize_dtype(prefix_length.dtype)
    batch = query_shape[0] if len(query_shape) >= 3 else None
    if "int" not in dtype or not (
        shape == ()
        or (len(shape) == 1 and batch is not None and _same(shape[0], batch))
    ):
        raise ValueError(
            f"{_NAME}: `prefix_length` must be {expected}. Received: "
            f"prefix_length with shape {shape} and dtype {dtype}"
        )
    value = _backend.current().static_value(prefix_length)
    if value is not None and (
        (value < 0).any() or (k_len is not None and (value > k_len).any())
    ):
        raise ValueError(
            f"{_NAME}: `prefix_length` must be {expected}, each at most the "
            f"row's length k_len={k_len}. Received: prefix_length="
            f"{value.tolist()}"
        )


def _rows(rows, query, key, first):
    """The per-row options (`_check_rows`' dict) as a `pattern.Rows`, laid
    out against the logits `(batch, ..., q_len, k_len)`."""
    rank = len(query.shape)
    q_len, k_len = ops.shape(query)[-2], ops.shape(key)[-2]
    q_positions = ops.arange(q_len, dtype="int32")
    if len(getattr(first, "shape", ())) == 1:  # a position per batch entry
        q_positions = ops.expand_dims(first, -1) + q_positions
    else:
        q_positions = q_positions + first
    k_positions = ops.arange(k_len, dtype="int32")
    q_ids = k_ids = None
    if rows["segment_ids"] is not None:
        q_ids, k_ids = (ops.cast(x, "int32") for x in rows["segment_ids"])
    q_global = k_global = k_sink = None
    if isinstance(rows["global_tokens"], int) and rows["segment_ids"] is not None:
        if not (isinstance(first, int) and first == 0):
            # The query's runs are counted in the query's own ids: from
            # where its rows sit among the keys, they could start anywhere.
            raise ValueError(
                f"{_NAME}: an int `global_tokens` with `segment_ids` counts "
                "the first positions of each run of the query's ids, which "
                "needs the queries to start at key position 0; with queries "
                "placed further on, pass `global_tokens` as a pair of "
                "boolean tensors (for the queries, for the keys). Received: "
                f"global_tokens={rows['global_tokens']}, a query_start other "
                "than 0"
            )
    if isinstance(rows["global_tokens"], int):
        q_global = _first_of_runs(q_ids, q_positions, rows["global_tokens"])
        k_global = _first_of_runs(k_ids, k_positions, rows["global_tokens"])
    elif rows["global_tokens"] is not None:
        q_global, k_global = (pattern.boolean(x) for x in rows["global_tokens"])
    if rows["sink_tokens"] is not None:
        k_sink = _first_of_runs(k_ids, k_positions, rows["sink_tokens"])
    prefix = rows["prefix_length"]
    if prefix is not None:
        prefix = ops.convert_to_tensor(prefix, "int32")
        if len(prefix.shape) == 1:
            prefix = ops.reshape(prefix, (-1,) + (1,) * (rank - 1))
    return pattern.Rows(
        query_segment=_along(q_ids, rank, -2),
        key_segment=_along(k_ids, rank, -1),
        query_global=_along(q_global, rank, -2),
        key_global=_along(k_global, rank, -1),
        key_sink=_along(k_sink, rank, -1),
        prefix=prefix,
    )


def _along(x, rank, axis):
    """A per-position tensor `(length,)` or `(batch, length)` laid along
    `axis` (-2 for queries, -1 for keys) of logits of `rank`: `(batch, 1,
    ..., length, 1)`, `(length, 1)`, ..."""
    if x is None:
        return None
    batched = len(x.shape) == 2
    x = ops.expand_dims(x, -1) if axis == -2 else ops.expand_dims(x, -2)
    if batched:
        for _ in range(rank - 3):
            x = ops.expand_dims(x, 1)
    return x


def _first_of_runs(ids, positions, n):
    """Boolean: whether each position is among the first `n` of its run of
    equal `ids` (`(..., length)`), or, without ids, whether its absolute
    position (`positions`, `(length,)`) is below `n`."""
    if ids is None:
        return ops.less(positions, n)
    # same[t]: ids[t] == ids[t - 1]. A position is past the first n of its
    # run where `same` holds at t, t - 1, ..., t - n + 1: that AND over a
    # window of n, built from windows of 1, 2, 4, ... (log n steps).
    same = ops.concatenate(
        [ops.zeros_like(ids[..., :1], "bool"), ops.equal(ids[..., 1:], ids[..., :-1])],
        -1,
    )
    deep, deep_width = None, 0
    power, power_width = same, 1
    remaining = n
    while True:
        if remaining & 1:
            part = _shifted(power, deep_width)
            deep = part if deep is None else ops.logical_and(deep, part)
            deep_width += power_width
        remaining >>= 1
        if not remaining:
            return ops.logical_not(deep)
        power = ops.logical_and(power, _shifted(power, power_width))
        power_width *= 2


def _shifted(x, k):
    """`x[..., t - k]` at `t`, False for `t < k`."""
    if k == 0:
        return x
    return ops.concatenate([ops.zeros_like(x[..., :k]), x[..., :-k]], -1)

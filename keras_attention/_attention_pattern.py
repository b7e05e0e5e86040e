"""Which (query, key) pairs attend, which of them dropout drops, the scores
of each pair (soft-capping, the ALiBi bias), and which tiles hold a pair
that attends.

The full path (`ops.py`) and the tiled kernels of every backend
(`_backend/_tf_tiled.py`, `_jax_tiled.py`, `_torch_tiled.py`) ask these
questions, the full path once for the whole `(q_len, k_len)` matrix and a
kernel once per tile. Positions are absolute (query `i` sits at key position
`query_start + i`), so a tile gets the same answers as the matching block of
the whole matrix, and the paths cannot drift apart. The layers use the same
two mask helpers (`boolean`, `combine`) to merge their padding masks.

A pattern has a static part (`Pattern`: causal, a window, chunks, the
soft-cap) and a per-row part (`Rows`: segment ids, global positions, sink
keys, a prefix length), which `ops.py` builds from the user's options.
Which tiles a kernel visits (`tile_map`, `visit_order`) is computed once per
call from a few numbers per tile, written once here for the three kernels
with `keras.ops`.
"""

from typing import Any, NamedTuple

import keras
from keras import ops

# Two odd 32-bit constants and the finalizer of Chris Wellons' "lowbias32"
# integer hash, written with wrapping int32 arithmetic: the bits equal the
# uint32 original on every backend (the shifts are masked to be logical).
_GOLDEN = 0x9E3779B9 - (1 << 32)
_MIX_1 = 0x7FEB352D
_MIX_2 = 0x846CA68B - (1 << 32)
_BITS = 24  # the uniform integer compared with the dropout rate


def boolean(mask):
    """A boolean or integer mask as a boolean tensor of the backend
    (non-zero means True); None as None. A boolean tensor is returned as is,
    never copied."""
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    if keras.backend.standardize_dtype(mask.dtype) == "bool":
        return mask
    return ops.not_equal(mask, 0)


def combine(*masks):
    """The logical AND of boolean masks that broadcast together, ignoring
    None; None when all are None."""
    result = None
    for mask in masks:
        if mask is not None:
            result = mask if result is None else ops.logical_and(result, mask)
    return result


class Pattern(NamedTuple):
    """The static part of an attention pattern (hashable: one trace, one
    compilation per value). Built by `ops.py` from the user's options.

    Fields:
        causal: query `i` may only see keys `j <= i` (or `j <` the prefix).
        window: None or `(left, right)`: keys `i - left <= j <= i + right`.
        chunk_size: None or `c`: keys `j` with `j // c == i // c`.
        softcap: None or `c`: scores `c · tanh(logits / c)` (see `scores`).
    """

    causal: bool = False
    window: tuple | None = None
    chunk_size: int | None = None
    softcap: float | None = None

    @property
    def every_tile(self):
        """Whether every tile holds a pair, from the static fields alone."""
        return not self.causal and self.window is None and self.chunk_size is None


class Rows(NamedTuple):
    """The per-row part of a pattern: tensors or None, each laid out to
    broadcast against the logits `(batch, ..., q_len, k_len)`: a query's
    value `(batch, 1, ..., q_len, 1)`, a key's `(batch, 1, ..., 1, k_len)`,
    a row's `(batch, 1, ..., 1, 1)`. A kernel slices them tile by tile as it
    slices a mask (an axis of size 1 stays of size 1).

    Fields:
        query_segment, key_segment: int32 segment ids; a pair attends only
            within one segment.
        query_global, key_global: bool, the global positions: they see, and
            are seen by, every position of their segment.
        key_sink: bool, the sink keys: seen by every query of their segment
            past any window or chunk (still causal).
        prefix: int32 `(batch, 1, ..., 1)`: with `causal`, keys `j < prefix`
            are seen by every query (bidirectional inside the prefix).
    """

    query_segment: Any = None
    key_segment: Any = None
    query_global: Any = None
    key_global: Any = None
    key_sink: Any = None
    prefix: Any = None

    @property
    def empty(self):
        return all(x is None for x in self)


NO_ROWS = Rows()


def allowed(mask, spec, rows, cols, data=NO_ROWS):
    """Boolean `(..., rows, cols)` of the pairs that may attend, or None.

    Args:
        mask: None or a boolean tensor broadcastable to the result.
        spec: a `Pattern`.
        rows: int32 `(rows, 1)`, the absolute query positions.
        cols: int32 `(1, cols)`, the absolute key positions.
        data: a `Rows` of tensors (or tiles of them) broadcastable to the
            result.

    The definition, for query `i` and key `j`:

        structure = (j <= i or j < prefix, if causal)
                    and i - left <= j <= i + right (a window)
                    and i // c == j // c (chunks of c)
        extra     = i is global or j is global or (j is a sink and
                    (j <= i or j < prefix, if causal))
        allowed   = mask and same segment and (structure or extra)

    Everything is elementwise in `(row, col)`, so `rows` `(1, rows)` with
    `cols` `(cols, 1)` and transposed tiles give the transposed answer (the
    tiled backward pass works on transposed tiles). The same holds for
    `dropout_keep` and `alibi_bias`.
    """
    causal = None
    if spec.causal:
        causal = ops.less_equal(cols, rows)
        if data.prefix is not None:
            causal = ops.logical_or(causal, ops.less(cols, data.prefix))
    window = None
    if spec.window is not None:
        left, right = spec.window
        window = ops.logical_and(
            ops.greater_equal(cols, rows - left), ops.less_equal(cols, rows + right)
        )
    chunk = None
    if spec.chunk_size is not None:
        chunk = ops.equal(
            ops.floor_divide(rows, spec.chunk_size),
            ops.floor_divide(cols, spec.chunk_size),
        )
    structure = combine(causal, window, chunk)
    sink = data.key_sink
    if sink is not None and causal is not None:
        sink = ops.logical_and(sink, causal)
    extra = either(data.query_global, data.key_global, sink)
    if structure is not None and extra is not None:
        structure = ops.logical_or(structure, extra)
    segment = None
    if data.query_segment is not None:
        segment = ops.equal(data.query_segment, data.key_segment)
    return combine(mask, segment, structure)


def either(*masks):
    """The logical OR of boolean masks that broadcast together, ignoring
    None; None when all are None."""
    result = None
    for mask in masks:
        if mask is not None:
            result = mask if result is None else ops.logical_or(result, mask)
    return result


def scores(logits, softcap, slopes, rows, cols):
    """The scores of scaled logits `q · kᵀ · scale`: soft-capped to
    `softcap · tanh(logits / softcap)` (Gemma 2), then ALiBi's bias added
    (`alibi_bias`). Returns `(scores, slope)`, `slope` the derivative of the
    cap, `1 - tanh²` (None without a cap), for a backward pass written by
    hand."""
    slope = None
    if softcap is not None:
        capped = ops.tanh(logits / softcap)
        slope = 1.0 - capped * capped
        logits = capped * softcap
    if slopes is not None:
        logits = logits + alibi_bias(slopes, rows, cols)
    return logits, slope


# Positions beyond any row, for the empty intervals of `tile_map`.
_FAR = 1 << 30


def tile_map(spec, data, *, q_tile, k_tile, q_len, k_len, query_start):
    """Boolean `(query tiles, key tiles)`: whether tile `(i, j)` may hold a
    pair that attends for some batch entry; a kernel visits exactly these.

    The queries of tile `i` are `i · q_tile .. min((i + 1) · q_tile, q_len)
    - 1`, at key positions `query_start` further on; the keys of tile `j`
    are `j · k_tile ..`, the last tile cut at `k_len`. Sizes are Python ints
    or int32 scalar tensors.

    It is computed from a few numbers per tile, never per pair: the tile's
    first and last positions, and per batch entry the lowest and highest
    segment id of its positions, of its global positions and of its sink
    keys, and its first sink key. For positions alone (`causal`, windows,
    chunks, a prefix) it is exact: a tile is visited if and only if it holds
    a pair that attends. With segment ids it is exact when the ids of a row
    never decrease (as `pack_sequences` makes them); otherwise it may visit
    tiles that hold none, never skip one that does. The user's `mask` is
    not consulted (a tile it empties is still visited).
    """
    q_count = (q_len + q_tile - 1) // q_tile
    k_count = (k_len + k_tile - 1) // k_tile
    i = ops.expand_dims(ops.arange(q_count, dtype="int32"), -1)  # (Q, 1)
    j = ops.expand_dims(ops.arange(k_count, dtype="int32"), 0)  # (1, K)
    first_row = i * q_tile + query_start
    last_row = ops.minimum(i * q_tile + q_tile, q_len) - 1 + query_start
    first_col = j * k_tile
    last_col = ops.minimum(j * k_tile + k_tile, k_len) - 1
    box = (first_row, last_row, first_col, last_col)
    # The window as a band of diagonals `j - i` in [low, high].
    low, high = -_FAR, _FAR
    if spec.window is not None:
        low, high = -spec.window[0], spec.window[1]
    visit = _reaches(box, low, min(high, 0) if spec.causal else high, spec.chunk_size)
    if spec.causal and data.prefix is not None:
        # Keys before the prefix's end lose the causal bound.
        prefix = ops.reshape(data.prefix, (-1, 1, 1))  # (B, 1, 1)
        in_prefix = (first_row, last_row, first_col, ops.minimum(last_col, prefix - 1))
        visit = ops.logical_or(visit, _reaches(in_prefix, low, high, spec.chunk_size))
    segments = data.query_segment is not None
    flags = (data.query_global, data.key_global, data.key_sink)
    if segments or any(x is not None for x in flags):
        query_ids = _tile_ids(data.query_segment, None, q_tile, q_count, q_len, -2)
        key_ids = _tile_ids(data.key_segment, None, k_tile, k_count, k_len, -1)
    if segments:
        visit = ops.logical_and(visit, _overlap(query_ids, key_ids))
    if data.query_global is not None:
        ids = _tile_ids(
            data.query_segment, data.query_global, q_tile, q_count, q_len, -2
        )
        visit = ops.logical_or(visit, _overlap(ids, key_ids))
    if data.key_global is not None:
        ids = _tile_ids(data.key_segment, data.key_global, k_tile, k_count, k_len, -1)
        visit = ops.logical_or(visit, _overlap(query_ids, ids))
    if data.key_sink is not None:
        ids = _tile_ids(data.key_segment, data.key_sink, k_tile, k_count, k_len, -1)
        sinks = _overlap(query_ids, ids)
        if spec.causal:
            # The tile's first sink key must be at or before its last query.
            first_sink = _tile_first(data.key_sink, k_tile, k_count, k_len)
            seen = ops.less_equal(first_sink, last_row)
            if data.prefix is not None:
                seen = ops.logical_or(seen, ops.less(first_sink, prefix))
            sinks = ops.logical_and(sinks, seen)
        visit = ops.logical_or(visit, sinks)
    if len(visit.shape) == 3:
        visit = ops.any(visit, axis=0)
    return visit


def _reaches(box, low, high, chunk_size):
    """Whether a box of positions (rows `[r0, r1]`, cols `[c0, c1]`, each
    broadcastable) holds a pair with `low <= j - i <= high` (and, with
    chunks, `i // c == j // c`)."""
    r0, r1, c0, c1 = box
    if chunk_size is None:
        return _band(r0, r1, c0, c1, low, high)
    c = chunk_size
    # The chunks that both the rows and the columns reach: [first, last].
    first = ops.maximum(ops.floor_divide(r0, c), ops.floor_divide(c0, c))
    last = ops.minimum(ops.floor_divide(r1, c), ops.floor_divide(c1, c))
    result = None
    for chunk in (first, last):  # the only chunks that may be cut short
        start = chunk * c
        part = _band(
            ops.maximum(r0, start),
            ops.minimum(r1, start + c - 1),
            ops.maximum(c0, start),
            ops.minimum(c1, start + c - 1),
            low,
            high,
        )
        result = part if result is None else ops.logical_or(result, part)
    # A chunk strictly between them is whole on both sides.
    if low <= c - 1 and high >= 1 - c:
        result = ops.logical_or(result, ops.greater_equal(last - first, 2))
    return ops.logical_and(ops.less_equal(first, last), result)


def _band(r0, r1, c0, c1, low, high):
    """Whether rows `[r0, r1]` and cols `[c0, c1]` (non-empty when `r0 <=
    r1` and `c0 <= c1`) hold a pair with `low <= j - i <= high`: over a box,
    `j - i` takes every value from `c0 - r1` to `c1 - r0`."""
    return combine(
        ops.less_equal(r0, r1),
        ops.less_equal(c0, c1),
        ops.less_equal(c0 - r1, high),
        ops.greater_equal(c1 - r0, low),
    )


def _flat(x, axis):
    """A `Rows` tensor `(batch, 1, ..., length, 1)` (`axis` -2) or `(batch,
    1, ..., 1, length)` (`axis` -1) as `(batch, length)` (batch 1 for a
    tensor without a batch axis)."""
    return ops.reshape(x, (-1, ops.shape(x)[axis]))


def _tiles(x, tile, count, length, fill):
    """`(batch, length)` -> `(batch, count, tile)`, padded with `fill`."""
    x = x[:, :length]
    x = ops.pad(x, [(0, 0), (0, count * tile - length)], constant_values=fill)
    return ops.reshape(x, (ops.shape(x)[0], count, tile))


def _tile_ids(ids, flags, tile, count, length, axis):
    """`(lowest, highest)` segment id of each tile's positions (those where
    `flags`, if given), each `(batch, count)`; `(_FAR, -_FAR)` for none.
    Without ids, every position has id 0."""
    if ids is None:
        shape = (1, length) if flags is None else ops.shape(_flat(flags, axis))
        ids = ops.zeros(shape, "int32")
    else:
        ids = _flat(ids, axis)
    valid = ops.ones(ops.shape(ids), "bool") if flags is None else _flat(flags, axis)
    ids = _tiles(ids, tile, count, length, 0)
    valid = _tiles(valid, tile, count, length, False)
    lowest = ops.min(ops.where(valid, ids, _FAR), axis=-1)
    highest = ops.max(ops.where(valid, ids, -_FAR), axis=-1)
    return lowest, highest


def _overlap(query_ids, key_ids):
    """`(batch, Q, K)`: whether a query tile's and a key tile's id intervals
    meet (both non-empty)."""
    q_low, q_high = (ops.expand_dims(x, -1) for x in query_ids)
    k_low, k_high = (ops.expand_dims(x, -2) for x in key_ids)
    return ops.logical_and(ops.less_equal(q_low, k_high), ops.less_equal(k_low, q_high))


def _tile_first(flags, tile, count, length):
    """`(batch, 1, count)`: the position of each tile's first flagged key,
    `_FAR` for none."""
    flags = _tiles(_flat(flags, -1), tile, count, length, False)
    positions = ops.reshape(ops.arange(count * tile, dtype="int32"), (1, count, tile))
    first = ops.min(ops.where(flags, positions, _FAR), axis=-1)
    return ops.expand_dims(first, 1)


def visit_order(visit):
    """`(order, count)` of a boolean `(n, m)` tile map: row `a` visits the
    columns `order[a, :count[a]]`, in increasing order. A kernel loops over
    them (the transpose of the map gives the backward pass's loops)."""
    m = ops.shape(visit)[-1]
    columns = ops.expand_dims(ops.arange(m, dtype="int32"), 0)
    order = ops.argsort(ops.where(visit, columns, columns + m), axis=-1)
    count = ops.sum(ops.cast(visit, "int32"), axis=-1)
    return ops.cast(order, "int32"), count


def alibi_bias(slopes, rows, cols):
    """ALiBi's bias `-slope · |i - j|` (Press et al., 2022): `(..., rows, cols)`.

    Args:
        slopes: float `(..., 1, 1)`, one slope per head (and batch entry),
            in the dtype of the logits.
        rows: int32 `(rows, 1)`, the absolute query positions.
        cols: int32 `(1, cols)`, the absolute key positions.

    Elementwise in `(row, col)` and symmetric, so transposed tiles work as
    in `allowed`. With causal attention every pair that attends has
    `j <= i`, where this is the paper's `-slope · (i - j)`.
    """
    return -slopes * ops.cast(ops.abs(rows - cols), slopes.dtype)


def dropout_seed(seed):
    """The hash's seed, an int32 scalar tensor, from an int, a
    `SeedGenerator` or None.

    An int gives the same value on every call, a generator the next value of
    its own sequence, both by wrapping int32 arithmetic (the `_mix` hash),
    never through a backend's random stream: a seed drops the same weights
    on every backend. An int is read modulo 2**64. A generator's state is
    `[seed, draws so far]` on every backend; `next()` returns it and
    advances it, as `keras.random` functions do. None draws a seed from
    Keras' global generator (random, so backend-specific).
    """
    if seed is None:
        return keras.random.randint((), 0, 2**31 - 1, dtype="int32")
    if isinstance(seed, keras.random.SeedGenerator):
        state = ops.cast(seed.next(), "int32")
        return _mix(ops.bitwise_xor(_mix(state[0]), state[1]))
    seed %= 1 << 64
    high, low = (_int32(x) for x in (seed >> 32, seed & 0xFFFFFFFF))
    return _mix(ops.bitwise_xor(_mix(high), low))


def _int32(value):
    """A Python int in [0, 2**32) as the int32 scalar tensor with its bits."""
    if value >= 1 << 31:
        value -= 1 << 32
    return ops.convert_to_tensor(value, dtype="int32")


def batch_index(leading_shape):
    """int32 `(*leading_shape, 1, 1)`: the flat index of each batch entry."""
    count = 1
    for size in leading_shape:
        count = count * size
    return ops.reshape(ops.arange(count, dtype="int32"), (*leading_shape, 1, 1))


def dropout_keep(seed, batch, rows, cols, rate):
    """Boolean `(..., rows, cols)`: True where dropout keeps a weight.

    A counter-based hash of `(seed, batch entry, query, key)`: the decision
    for one pair does not depend on which other pairs are computed with it,
    so a tile of the matrix gets the same pattern as the whole matrix.

    Args:
        seed: int32 scalar tensor (see `dropout_seed`).
        batch: int32 `(..., 1, 1)` (see `batch_index`).
        rows: int32 `(rows, 1)`, the absolute query positions.
        cols: int32 `(1, cols)`, the absolute key positions.
        rate: Python float in `(0, 1)`, the probability of dropping.
    """
    row_key = counter_hash(seed, batch, rows)  # (..., rows, 1)
    bits = _mix(ops.bitwise_xor(row_key, cols * _GOLDEN))  # (..., rows, cols)
    uniform = ops.bitwise_and(bits, (1 << _BITS) - 1)
    return ops.greater_equal(uniform, round(rate * (1 << _BITS)))


def counter_hash(seed, first, second):
    """int32: a hash of `(seed, first, second)`, int32 tensors that broadcast
    together, in wrapping int32 arithmetic (the same bits on every backend).
    Dropout's key of (batch entry, query) and `generate`'s draw of (row,
    step)."""
    return _mix(_mix(seed + _mix(first)) + second)


def _mix(x):
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 16), 0xFFFF))
    x = x * _MIX_1
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 15), 0x1FFFF))
    x = x * _MIX_2
    return ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 16), 0xFFFF))

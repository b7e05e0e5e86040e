"""Which (query, key) pairs attend, which of them dropout drops, the ALiBi
bias of each pair, and which tiles hold a pair that attends.

The full path (`ops.py`) and the tiled kernels of every backend
(`_backend/_tf_tiled.py`, `_jax_tiled.py`, `_torch_tiled.py`) ask these
questions, the full path once for the whole `(q_len, k_len)` matrix and a
kernel once per tile. Positions are absolute (query `i` sits at key position
`query_start + i`), so a tile gets the same answers as the matching block of
the whole matrix, and the paths cannot drift apart. The layers use the same
two mask helpers (`boolean`, `combine`) to merge their padding masks.

Which tiles a kernel visits (`key_tiles`, `query_tiles`) is plain integer
arithmetic on the tile index, written once here for the three kernels: each
passes the `minimum`, `maximum` and `where` of the numbers it has (TensorFlow
tensors, JAX tracers, Python ints) as an `IntOps`.
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


def allowed(mask, causal, sliding_window, rows, cols):
    """Boolean `(..., rows, cols)` of the pairs that may attend, or None.

    Args:
        mask: None or a boolean tensor broadcastable to the result.
        causal: whether query `i` may only see keys `j <= i`.
        sliding_window: None or a positive int `w`: query `i` may only see
            keys `j` with `|i - j| < w`.
        rows: int32 `(rows, 1)`, the absolute query positions.
        cols: int32 `(1, cols)`, the absolute key positions.

    Everything is elementwise in `(row, col)`, so `rows` `(1, rows)` with
    `cols` `(cols, 1)` and a transposed mask give the transposed answer
    (the tiled backward pass works on transposed tiles). The same holds for
    `dropout_keep`.
    """
    window = None
    sides = window_sides(sliding_window)
    if sides is not None:
        left, right = sides
        window = ops.logical_and(
            ops.greater_equal(cols, rows - left), ops.less_equal(cols, rows + right)
        )
    return combine(mask, ops.less_equal(cols, rows) if causal else None, window)


def window_sides(sliding_window):
    """`(left, right)`: a sliding window `w` lets query `i` see keys
    `i - left <= j <= i + right`, `w - 1` positions on either side (`|i - j|
    < w`); None for no window."""
    if sliding_window is None:
        return None
    return sliding_window - 1, sliding_window - 1


class IntOps(NamedTuple):
    """The integer operations of one kind of number, for `key_tiles` and
    `query_tiles`: TensorFlow's (`tf.minimum`, ...), JAX's, or `PYTHON`."""

    minimum: Any
    maximum: Any
    where: Any


PYTHON = IntOps(min, max, lambda condition, a, b: a if condition else b)


def key_tiles(
    i, *, q_tile, k_tile, q_len, k_len, query_start, causal, sliding_window, xp
):
    """Key tiles `[lo, hi)` that query tile `i` may see.

    The queries of tile `i` are `i · q_tile .. min((i + 1) · q_tile, q_len)
    - 1`, at key positions `query_start` further on; a key tile `j` holds keys
    `j · k_tile ..`, the last one cut at `k_len`. A tile outside `[lo, hi)`
    holds no pair that `causal` or `sliding_window` lets attend; inside it,
    `allowed` decides pair by pair. An empty range has `hi == lo`. All sizes
    are numbers of `xp` (an `IntOps`) or Python ints.
    """
    first_row = i * q_tile + query_start
    last_row = xp.minimum(i * q_tile + q_tile, q_len) - 1 + query_start
    lo_key, hi_key = 0, k_len  # the keys that may be seen: [lo_key, hi_key)
    if causal:
        hi_key = xp.minimum(hi_key, last_row + 1)
    sides = window_sides(sliding_window)
    if sides is not None:
        left, right = sides
        lo_key = xp.maximum(first_row - left, 0)
        hi_key = xp.minimum(hi_key, last_row + right + 1)
    return _tile_range(lo_key, hi_key, k_tile, k_len, causal or sides is not None, xp)


def query_tiles(
    j, *, q_tile, k_tile, q_len, k_len, query_start, causal, sliding_window, xp
):
    """Query tiles `[lo, hi)` that may see key tile `j`: the transpose of
    `key_tiles`, for the backward passes (arguments as there)."""
    # The keys of tile j, as the query indices that sit at their positions.
    first_col = j * k_tile - query_start
    last_col = xp.minimum(j * k_tile + k_tile, k_len) - 1 - query_start
    lo_query, hi_query = 0, q_len
    if causal:
        lo_query = xp.maximum(first_col, 0)
    sides = window_sides(sliding_window)
    if sides is not None:
        left, right = sides
        lo_query = xp.maximum(lo_query, first_col - right)
        hi_query = xp.minimum(hi_query, last_col + left + 1)
    return _tile_range(
        lo_query, hi_query, q_tile, q_len, causal or sides is not None, xp
    )


def _tile_range(lo, hi, tile, length, bounded, xp):
    """The tiles of `tile` positions that overlap positions `[lo, hi)` of
    `[0, length)`; `lo == hi` (at most the tile count) when none does."""
    count = (length + tile - 1) // tile
    if not bounded:
        return 0, count
    first = xp.minimum(lo // tile, count)
    end = (xp.maximum(hi, 0) + tile - 1) // tile
    return first, xp.where(hi > lo, end, first)


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

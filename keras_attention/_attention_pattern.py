"""Which (query, key) pairs attend, which of them dropout drops, and the
ALiBi bias of each pair.

Both the full path (`ops.py`) and the tiled TensorFlow kernel
(`_backend/tensorflow.py`) ask these three questions, the full path once for
the whole `(q_len, k_len)` matrix and the kernel once per tile. Positions are
absolute, so a tile gets the same answers as the matching block of the whole
matrix, and the two paths cannot drift apart. The layers use the same
two mask helpers (`boolean`, `combine`) to merge their padding masks.
"""

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
    return combine(
        mask,
        ops.less_equal(cols, rows) if causal else None,
        None
        if sliding_window is None
        else ops.less(ops.abs(rows - cols), sliding_window),
    )


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
    row_key = _mix(_mix(seed + _mix(batch)) + rows)  # (..., rows, 1)
    bits = _mix(ops.bitwise_xor(row_key, cols * _GOLDEN))  # (..., rows, cols)
    uniform = ops.bitwise_and(bits, (1 << _BITS) - 1)
    return ops.greater_equal(uniform, round(rate * (1 << _BITS)))


def _mix(x):
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 16), 0xFFFF))
    x = x * _MIX_1
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 15), 0x1FFFF))
    x = x * _MIX_2
    return ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 16), 0xFFFF))

"""`keras_attention/_attention_pattern.py`: which (query, key) pairs attend,
which of them dropout keeps, the ALiBi bias of each pair, which tiles hold a
pair that attends, and the two mask helpers of the layers.

Each function is compared with a NumPy transcription of the definition in
its docstring, on absolute positions (`query_start` further on for the
queries), and on transposed tiles where the docstring promises it. The
paths that use these answers are tested against each other in `ops_test.py`
and `tests/backend/`.
"""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention import _attention_pattern as pattern
from tests.layer_test_case import RNG, to_numpy


def positions(query_start, q_len, k_len):
    """int32 `(q_len, 1)` query positions and `(1, k_len)` key positions."""
    rows = np.arange(q_len, dtype="int32")[:, None] + query_start
    cols = np.arange(k_len, dtype="int32")[None, :]
    return rows, cols


def numpy_allowed(mask, causal, sliding_window, rows, cols):
    """The docstring's definition: `mask`, and `j <= i` when causal, and
    `|i - j| < w` with a window `w`; None when nothing restricts."""
    parts = [mask]
    if causal:
        parts.append(cols <= rows)
    if sliding_window is not None:
        parts.append(np.abs(rows - cols) < sliding_window)
    parts = [part for part in parts if part is not None]
    return np.logical_and.reduce(np.broadcast_arrays(*parts)) if parts else None


# Dropout's hash, transcribed in NumPy uint32 arithmetic from its definition
# (Chris Wellons' lowbias32 finalizer, the golden-ratio constant for the
# key), not from the package's code: every backend is checked against it.
# Every constant is a uint64 too: NumPy 1 turns uint64 with a Python int into
# float64.
U64 = np.uint64
MASK32 = U64(0xFFFFFFFF)


def numpy_mix(x):
    x = np.asarray(x, U64) & MASK32
    x ^= x >> U64(16)
    x = (x * U64(0x7FEB352D)) & MASK32
    x ^= x >> U64(15)
    x = (x * U64(0x846CA68B)) & MASK32
    return x ^ (x >> U64(16))


def numpy_seed(seed_words):
    """The hash's seed from two 32-bit words: an int seed's high and low
    words, or a `SeedGenerator`'s state `[seed, draws so far]`."""
    high, low = seed_words
    return numpy_mix(numpy_mix(high) ^ U64(low))


def numpy_keep(seed_words, shape, rate):
    """The dropout keep-pattern `(batch, q_len, k_len)`: for batch entry `b`,
    query `i` and key `j`, `row_key = mix(mix(seed + mix(b)) + i)`, `bits =
    mix(row_key ^ j · 0x9E3779B9)`, kept where the low 24 bits are at least
    `rate · 2**24`."""
    seed = numpy_seed(seed_words)
    batch, q_len, k_len = shape
    entries = np.arange(batch, dtype=U64)[:, None, None]
    rows = np.arange(q_len, dtype=U64)[:, None]
    cols = np.arange(k_len, dtype=U64)[None, :]
    row_key = numpy_mix(numpy_mix(seed + numpy_mix(entries)) + rows)
    bits = numpy_mix(row_key ^ ((cols * U64(0x9E3779B9)) & MASK32))
    return (bits & U64(0xFFFFFF)) >= U64(round(rate * (1 << 24)))


def as_uint32(x):
    """An int32 tensor's bits as NumPy uint64 values in [0, 2**32)."""
    return to_numpy(x).astype("int64").astype(U64) & MASK32


# boolean, combine ----------------------------------------------------------------


def test_boolean_reads_non_zero_as_true_and_keeps_booleans():
    assert pattern.boolean(None) is None
    integers = np.array([[0, 3, -1], [2, 0, 0]], "int32")
    result = pattern.boolean(integers)
    assert keras.backend.standardize_dtype(result.dtype) == "bool"
    np.testing.assert_array_equal(to_numpy(result), integers != 0)
    booleans = RNG.random((2, 3)) > 0.5
    result = pattern.boolean(booleans)
    assert keras.backend.standardize_dtype(result.dtype) == "bool"
    np.testing.assert_array_equal(to_numpy(result), booleans)


def test_combine_is_the_logical_and_of_broadcast_masks_ignoring_none():
    assert pattern.combine() is None
    assert pattern.combine(None, None) is None
    a = RNG.random((2, 1, 4)) > 0.3
    b = RNG.random((3, 1)) > 0.3
    c = RNG.random((1, 4)) > 0.3
    only = ops.convert_to_tensor(a)
    assert pattern.combine(None, only, None) is only
    result = pattern.combine(*(ops.convert_to_tensor(m) for m in (a, b, c)), None)
    np.testing.assert_array_equal(to_numpy(result), a & b & c)


# allowed, window_sides ---------------------------------------------------------


def test_window_sides_are_w_minus_one_on_either_side():
    assert pattern.window_sides(None) is None
    assert pattern.window_sides(1) == (0, 0)
    assert pattern.window_sides(4) == (3, 3)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("window", [None, 1, 3])
@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("query_start", [0, 4, -3])
def test_allowed_equals_its_definition(causal, window, with_mask, query_start):
    rows, cols = positions(query_start, 5, 9)
    mask = RNG.random((2, 5, 9)) > 0.3 if with_mask else None
    got = pattern.allowed(
        None if mask is None else ops.convert_to_tensor(mask),
        causal,
        window,
        ops.convert_to_tensor(rows),
        ops.convert_to_tensor(cols),
    )
    expected = numpy_allowed(mask, causal, window, rows, cols)
    if expected is None:
        assert got is None
        return
    np.testing.assert_array_equal(
        np.broadcast_to(to_numpy(got), expected.shape), expected
    )
    # Transposed positions and mask give the transposed answer.
    transposed = pattern.allowed(
        None if mask is None else ops.convert_to_tensor(np.swapaxes(mask, -1, -2)),
        causal,
        window,
        ops.convert_to_tensor(rows.T),
        ops.convert_to_tensor(cols.T),
    )
    np.testing.assert_array_equal(
        np.broadcast_to(to_numpy(transposed), np.swapaxes(expected, -1, -2).shape),
        np.swapaxes(expected, -1, -2),
    )


# alibi_bias ----------------------------------------------------------------------


@pytest.mark.parametrize("query_start", [0, 6])
def test_alibi_bias_is_minus_slope_times_the_distance(query_start):
    rows, cols = positions(query_start, 4, 7)
    slopes = np.array([0.5, 0.25, 0.0625], "float32")[:, None, None]  # (heads, 1, 1)
    got = to_numpy(
        pattern.alibi_bias(
            ops.convert_to_tensor(slopes),
            ops.convert_to_tensor(rows),
            ops.convert_to_tensor(cols),
        )
    )
    expected = -slopes * np.abs(rows - cols)
    assert got.shape == (3, 4, 7) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    transposed = pattern.alibi_bias(
        ops.convert_to_tensor(slopes),
        ops.convert_to_tensor(rows.T),
        ops.convert_to_tensor(cols.T),
    )
    np.testing.assert_array_equal(to_numpy(transposed), np.swapaxes(expected, 1, 2))


def test_alibi_bias_is_computed_in_the_slopes_dtype():
    rows, cols = positions(1000, 2, 3)
    slopes = ops.convert_to_tensor(np.array([[[0.5]]], "float16"))
    got = pattern.alibi_bias(
        slopes, ops.convert_to_tensor(rows), ops.convert_to_tensor(cols)
    )
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    np.testing.assert_array_equal(
        to_numpy(got), (-0.5 * np.abs(rows - cols)).astype("float16")[None]
    )


# dropout_seed, batch_index, dropout_keep -----------------------------------------


@pytest.mark.parametrize(
    "seed,words",
    [(0, (0, 0)), (7, (0, 7)), (2**40 + 3, (256, 3)), (-1, (2**32 - 1,) * 2)],
    ids=["zero", "seven", "above-32-bits", "minus-one"],
)
def test_an_int_seed_hashes_its_64_bits(seed, words):
    got = pattern.dropout_seed(seed)
    assert keras.backend.standardize_dtype(got.dtype) == "int32"
    assert tuple(got.shape) == ()
    assert as_uint32(got) == numpy_seed(words)
    assert as_uint32(pattern.dropout_seed(seed)) == as_uint32(got)  # every call


def test_a_seed_generator_hashes_its_state_and_advances():
    generator = keras.random.SeedGenerator(7)
    for draw in range(3):
        assert as_uint32(pattern.dropout_seed(generator)) == numpy_seed((7, draw))


def test_batch_index_numbers_the_entries_in_order():
    got = pattern.batch_index((2, 3))
    assert tuple(got.shape) == (2, 3, 1, 1)
    assert keras.backend.standardize_dtype(got.dtype) == "int32"
    np.testing.assert_array_equal(to_numpy(got)[..., 0, 0], np.arange(6).reshape(2, 3))
    assert tuple(pattern.batch_index(()).shape) == (1, 1)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed,words", [(7, (0, 7)), (2**40 + 3, (256, 3))])
def test_dropout_keep_equals_the_hash(seed, words, rate):
    rows, cols = positions(0, 9, 11)
    keep = pattern.dropout_keep(
        pattern.dropout_seed(seed),
        pattern.batch_index((3,)),
        ops.convert_to_tensor(rows),
        ops.convert_to_tensor(cols),
        rate,
    )
    assert keras.backend.standardize_dtype(keep.dtype) == "bool"
    np.testing.assert_array_equal(to_numpy(keep), numpy_keep(words, (3, 9, 11), rate))


def test_dropout_keep_of_a_tile_is_that_block_of_the_whole():
    # Absolute positions: a block of rows and columns, and its transpose,
    # get the pattern of the matching block of the whole matrix.
    seed, batch = pattern.dropout_seed(5), pattern.batch_index((2,))
    whole = numpy_keep((0, 5), (2, 20, 17), 0.3)
    rows, cols = positions(8, 4, 6)
    cols = cols + 10
    block = pattern.dropout_keep(
        seed, batch, ops.convert_to_tensor(rows), ops.convert_to_tensor(cols), 0.3
    )
    np.testing.assert_array_equal(to_numpy(block), whole[:, 8:12, 10:16])
    transposed = pattern.dropout_keep(
        seed, batch, ops.convert_to_tensor(rows.T), ops.convert_to_tensor(cols.T), 0.3
    )
    np.testing.assert_array_equal(
        to_numpy(transposed), np.swapaxes(whole[:, 8:12, 10:16], 1, 2)
    )


# key_tiles, query_tiles ----------------------------------------------------------

TILE_CASES = [
    (q_len, k_len, q_tile, k_tile, query_start, causal, window)
    for q_len, k_len in [(7, 7), (5, 13), (13, 5), (1, 9)]
    for q_tile, k_tile in [(2, 3), (4, 4)]
    for query_start in sorted({0, k_len - q_len, 3})
    for causal in (False, True)
    for window in (None, 1, 3)
]


def tiles_holding_a_pair(allowed, q_tile, k_tile):
    """`{(query tile, key tile)}` of the tiles that hold an attending pair."""
    return {
        (i // q_tile, j // k_tile) for i, j in zip(*np.nonzero(allowed), strict=True)
    }


def test_key_and_query_tiles_are_exactly_those_that_hold_an_attending_pair():
    for case in TILE_CASES:
        q_len, k_len, q_tile, k_tile, query_start, causal, window = case
        rows, cols = positions(query_start, q_len, k_len)
        allowed = numpy_allowed(None, causal, window, rows, cols)
        if allowed is None:
            allowed = np.ones((q_len, k_len), bool)
        holding = tiles_holding_a_pair(allowed, q_tile, k_tile)
        q_count, k_count = -(-q_len // q_tile), -(-k_len // k_tile)
        options = dict(
            q_tile=q_tile,
            k_tile=k_tile,
            q_len=q_len,
            k_len=k_len,
            query_start=query_start,
            causal=causal,
            sliding_window=window,
            xp=pattern.PYTHON,
        )
        for i in range(q_count):
            lo, hi = pattern.key_tiles(i, **options)
            assert 0 <= lo <= hi <= k_count, (case, i, lo, hi)
            assert set(range(lo, hi)) == {j for a, j in holding if a == i}, (case, i)
        for j in range(k_count):
            lo, hi = pattern.query_tiles(j, **options)
            assert 0 <= lo <= hi <= q_count, (case, j, lo, hi)
            assert set(range(lo, hi)) == {i for i, b in holding if b == j}, (case, j)


def test_tile_ranges_take_any_kind_of_integer():
    # The same arithmetic on NumPy integers (as on a backend's tensors) gives
    # the same ranges as on Python ints.
    numpy = pattern.IntOps(np.minimum, np.maximum, np.where)
    for case, i in itertools.product(TILE_CASES[::7], range(3)):
        q_len, k_len, q_tile, k_tile, query_start, causal, window = case
        options = dict(
            q_tile=q_tile,
            k_tile=k_tile,
            q_len=q_len,
            k_len=k_len,
            query_start=query_start,
            causal=causal,
            sliding_window=window,
        )
        for tiles in (pattern.key_tiles, pattern.query_tiles):
            expected = tiles(i, xp=pattern.PYTHON, **options)
            got = tiles(np.int32(i), xp=numpy, **options)
            assert tuple(int(x) for x in got) == expected, (case, i, tiles.__name__)

"""`keras_attention/_attention_pattern.py`: which (query, key) pairs attend,
which of them dropout keeps, the ALiBi bias of each pair, which tiles hold a
pair that attends, and the two mask helpers of the layers.

Each function is compared with a NumPy transcription of the definition in
its docstring, on absolute positions (`query_start` further on for the
queries), and on transposed tiles where the docstring promises it. The
paths that use these answers are tested against each other in `ops_test.py`
and `tests/backend/`.
"""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_attention import _attention_pattern as pattern
from tests import pattern_reference as reference
from tests.layer_test_case import RNG, to_numpy
from tests.properties import FEW

# Random patterns are cheap here (no attention runs): more examples.
FEW_MANY = settings(FEW, max_examples=20)
# Eager keras.ops on small arrays of many shapes: fast on TensorFlow, slow on
# JAX (a compilation per operation and shape); the kernels' tests run this
# code on every backend.
neutral = pytest.mark.backend_neutral


def positions(query_start, q_len, k_len):
    """int32 `(q_len, 1)` query positions and `(1, k_len)` key positions."""
    rows = np.arange(q_len, dtype="int32")[:, None] + query_start
    cols = np.arange(k_len, dtype="int32")[None, :]
    return rows, cols


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


# allowed --------------------------------------------------------------------------

LENGTHS = [(7, 7), (5, 13), (13, 5)]  # a few shapes: JAX compiles per shape


def spec_and_rows(options, batch, q_len, k_len, first):
    """The `Pattern` and a `Rows` of logits `(batch, q_len, k_len)` for
    options as `pattern_reference.patterns` draws them (self-attention
    options applied to queries and keys alike), the flags computed by the
    reference, not by the package."""
    window = options.get("sliding_window")
    if isinstance(window, int):
        window = (window - 1, window - 1)
    spec = pattern.Pattern(
        causal=options.get("causal", False),
        window=window,
        chunk_size=options.get("chunk_size"),
    )
    ids = options.get("segment_ids")
    q_ids = k_ids = None
    if ids is not None:
        q_ids, k_ids = ids[:, :q_len], ids[:, :k_len]

    def flags(n, ids, positions):
        if ids is None:
            return np.broadcast_to(positions < n, (batch, len(positions)))
        return reference.first_of_runs(ids, n)

    q_positions, k_positions = np.arange(q_len) + first, np.arange(k_len)
    q_global = k_global = k_sink = None
    glob = options.get("global_tokens")
    if isinstance(glob, int):
        q_global, k_global = (
            flags(glob, q_ids, q_positions),
            flags(glob, k_ids, k_positions),
        )
    elif glob is not None:
        q_global, k_global = glob[:, :q_len], glob[:, :k_len]
    if options.get("sink_tokens"):
        k_sink = flags(options["sink_tokens"], k_ids, k_positions)
    prefix = options.get("prefix_length")
    if prefix is not None:
        prefix = np.reshape(np.asarray(prefix, "int32"), (-1, 1, 1))

    def tensor(x, axis):
        if x is None:
            return None
        return ops.convert_to_tensor(np.expand_dims(x, axis))

    rows = pattern.Rows(
        query_segment=tensor(q_ids, -1),
        key_segment=tensor(k_ids, -2),
        query_global=tensor(q_global, -1),
        key_global=tensor(k_global, -2),
        key_sink=tensor(k_sink, -2),
        prefix=None if prefix is None else ops.convert_to_tensor(prefix),
    )
    return spec, rows


def cut(options, q_len, k_len):
    """Self-attention options of rows of 13 cut to queries of `q_len` and
    keys of `k_len` (the queries are the first positions): the reference
    takes the same cut."""
    cut = dict(options)
    for name in ("segment_ids", "global_tokens"):
        if isinstance(cut.get(name), np.ndarray):
            cut[name] = (cut[name][:, :q_len], cut[name][:, :k_len])
    if isinstance(cut.get("prefix_length"), (int, np.integer)):
        cut["prefix_length"] = min(cut["prefix_length"], k_len)
    elif cut.get("prefix_length") is not None:
        cut["prefix_length"] = np.minimum(cut["prefix_length"], k_len)
    return cut


@neutral
@FEW_MANY
@given(st.data(), st.sampled_from(LENGTHS), st.sampled_from([0, 3, -2]))
def test_allowed_equals_the_definition(data, lengths, first):
    q_len, k_len = lengths
    options = data.draw(st.composite(reference.patterns)(2, 13))
    spec, rows = spec_and_rows(options, 2, q_len, k_len, first)
    positions_ = positions(first, q_len, k_len)
    mask = RNG.random((2, q_len, k_len)) > 0.2
    got = pattern.allowed(
        ops.convert_to_tensor(mask),
        spec,
        *(ops.convert_to_tensor(x) for x in positions_),
        rows,
    )
    expected = reference.reference_allowed(
        2, q_len, k_len, cut(options, q_len, k_len), first=first, mask=mask
    )
    np.testing.assert_array_equal(
        np.broadcast_to(to_numpy(got), expected.shape), expected
    )
    # Transposed positions, mask and rows give the transposed answer.
    transposed_rows = pattern.Rows(
        *(None if x is None else ops.swapaxes(x, -1, -2) for x in rows)
    )
    transposed = pattern.allowed(
        ops.convert_to_tensor(np.swapaxes(mask, -1, -2)),
        spec,
        *(ops.convert_to_tensor(x.T) for x in positions_),
        transposed_rows,
    )
    np.testing.assert_array_equal(
        np.broadcast_to(
            to_numpy(transposed), expected.shape[:1] + expected.shape[:0:-1]
        ),
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


def tiles_holding_a_pair(allowed, q_tile, k_tile):
    """`{(query tile, key tile)}` of the tiles that hold an attending pair
    for some batch entry of `allowed` `(batch, q_len, k_len)`."""
    return {
        (i // q_tile, j // k_tile) for _, i, j in zip(*np.nonzero(allowed), strict=True)
    }


def visited(spec, rows, **sizes):
    visit = to_numpy(pattern.tile_map(spec, rows, **sizes))
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(visit), strict=True)}


POSITIONAL = ("causal", "sliding_window", "chunk_size", "prefix_length")


@neutral
@FEW_MANY
@given(
    st.data(),
    st.sampled_from(LENGTHS),
    st.sampled_from([0, 3, -2]),
    st.sampled_from([(2, 3), (4, 4), (3, 1)]),
)
def test_tile_map_visits_exactly_the_tiles_that_hold_a_pair_for_positions(
    data, lengths, first, tiles
):
    # Causal, windows, chunks and a prefix, alone and combined: exact.
    q_len, k_len = lengths
    options = data.draw(st.composite(reference.patterns)(2, 13))
    options = {name: value for name, value in options.items() if name in POSITIONAL}
    check_tile_map(options, q_len, k_len, first, tiles, exact=True)


@neutral
@FEW_MANY
@given(
    st.data(),
    st.sampled_from([(2, 3), (4, 4), (3, 1)]),
    st.sampled_from(["segment_ids", "global_tokens", "sink_tokens"]),
)
def test_tile_map_is_exact_for_packed_documents(data, tiles, name):
    # Segment ids that never decrease (packed documents), causal or not,
    # with global tokens or sinks: exact.
    options = data.draw(st.composite(reference.patterns)(2, 13))
    options = {
        key: value
        for key, value in options.items()
        if key in ("causal", "segment_ids", name)
    }
    check_tile_map(options, 13, 13, 0, tiles, exact=True)


@neutral
@FEW_MANY
@given(
    st.data(),
    st.sampled_from(LENGTHS),
    st.sampled_from([0, 3]),
    st.sampled_from([(2, 3), (4, 4)]),
    st.booleans(),
)
def test_tile_map_never_skips_a_tile_that_holds_a_pair(
    data, lengths, first, tiles, monotone
):
    # Any combination, segment ids in any order: a superset.
    options = data.draw(st.composite(reference.patterns)(2, 13, monotone=monotone))
    check_tile_map(options, *lengths, first, tiles, exact=False)


def check_tile_map(options, q_len, k_len, first, tiles, exact):
    spec, rows = spec_and_rows(options, 2, q_len, k_len, first)
    expected = reference.reference_allowed(
        2, q_len, k_len, cut(options, q_len, k_len), first=first
    )
    sizes = dict(q_tile=tiles[0], k_tile=tiles[1], q_len=q_len, k_len=k_len)
    got = visited(spec, rows, query_start=first, **sizes)
    holding = tiles_holding_a_pair(expected, *tiles)
    if exact:
        assert got == holding, options
    else:
        assert got >= holding, options


def test_tile_map_takes_lengths_known_only_at_run_time():
    # The same map from int32 scalar tensors (TensorFlow's unknown lengths).
    spec = pattern.Pattern(causal=True, window=(3, 0))
    sizes = dict(q_tile=4, k_tile=3, q_len=13, k_len=11, query_start=2)
    tensors = {name: ops.convert_to_tensor(n, "int32") for name, n in sizes.items()}
    np.testing.assert_array_equal(
        to_numpy(pattern.tile_map(spec, pattern.NO_ROWS, **tensors)),
        to_numpy(pattern.tile_map(spec, pattern.NO_ROWS, **sizes)),
    )


def test_visit_order_lists_each_rows_columns_in_order():
    visit = RNG.random((5, 7)) > 0.5
    order, count = (
        to_numpy(x) for x in pattern.visit_order(ops.convert_to_tensor(visit))
    )
    for row, n, listed in zip(visit, count, order, strict=True):
        assert listed[:n].tolist() == np.nonzero(row)[0].tolist()

"""`scaled_dot_product_attention`'s patterns: segment ids, a prefix, chunks,
global tokens, sinks (tokens and learned logits), window pairs and
soft-capping, on the full path and in tiles, on the backend Keras runs.

Everything is compared with `tests/pattern_reference.py`, a NumPy
transcription of the definitions: outputs within 1e-5, and gradients
within 1e-4 of the reference's own, taken by central differences in
float64. Which tiles are visited is tested in `attention_pattern_test.py`.
"""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from keras_attention import scaled_dot_product_attention
from tests import pattern_reference as reference
from tests.gradients import value_and_gradient
from tests.layer_test_case import RNG, assert_raises_with, to_numpy
from tests.properties import VERY_FEW

BATCH, HEADS, KV_HEADS, LENGTH, DEPTH = 2, 4, 2, 13, 4
# The tiled path with tiles that do not divide the length (the last one
# cut), and the full path.
PATHS = {"full": 0, "tiles": 4}


def inputs(seed, kv_heads=KV_HEADS):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(BATCH, HEADS, LENGTH, DEPTH)).astype("float32")
    k, v = (
        rng.normal(size=(BATCH, kv_heads, LENGTH, DEPTH)).astype("float32")
        for _ in range(2)
    )
    return q, k, v


def scored(options, draw):
    """Adds ALiBi, soft-capping and learned sinks to `options` at random;
    returns them as `(sdpa options, reference options)`."""
    extra, scores = {}, {}
    if draw(st.booleans()):
        extra["softcap"] = scores["softcap"] = draw(st.sampled_from([0.5, 2.0]))
    if draw(st.booleans()):
        slopes = np.array([0.5, 0.25, 0.125, 0.0625], "float32")
        extra["alibi_slopes"], scores["slopes"] = slopes, slopes
    if draw(st.booleans()):
        sinks = np.array([0.3, -1.0, 2.0, 0.0], "float32")
        extra["sink_logits"], scores["sinks"] = sinks, sinks
    return {**options, **extra}, scores


def numpy_loss(q, k, v, allowed, weights, scores, sinks=None):
    if sinks is not None:
        scores = {**scores, "sinks": sinks}
    context, _ = reference.attention(q, k, v, allowed, **scores)
    return float(np.sum(context * weights))


def numerical_gradients(f, arrays, eps=1e-6):
    """Central differences of `f(*arrays)` in float64."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    grads = []
    for index, a in enumerate(arrays):
        grad = np.zeros_like(a)
        for position in np.ndindex(a.shape):
            up, down = [x.copy() for x in arrays], [x.copy() for x in arrays]
            up[index][position] += eps
            down[index][position] -= eps
            grad[position] = (f(*up) - f(*down)) / (2 * eps)
        grads.append(grad)
    return grads


@VERY_FEW
@given(st.data(), st.integers(0, 2**31 - 1))
def test_every_pattern_equals_the_definition_with_its_gradients(data, seed):
    options = data.draw(st.composite(reference.patterns)(BATCH, LENGTH))
    options, scores = scored(options, data.draw)
    q, k, v = inputs(seed)
    allowed = reference.reference_allowed(BATCH, LENGTH, LENGTH, options)
    out_weights = np.random.default_rng(seed + 1).normal(size=q.shape)
    expected, _ = reference.attention(q, k, v, allowed, **scores)
    sinks = options.pop("sink_logits", None)
    arrays = (q, k, v) if sinks is None else (q, k, v, sinks)

    def reference_loss(q, k, v, sinks=None):
        return numpy_loss(q, k, v, allowed, out_weights, scores, sinks)

    expected_grads = numerical_gradients(reference_loss, arrays)
    for path, tile_size in PATHS.items():

        def loss(q, k, v, sinks=None, tile_size=tile_size):
            context = scaled_dot_product_attention(
                q, k, v, sink_logits=sinks, tile_size=tile_size, **options
            )
            return ops.sum(context * ops.cast(out_weights, "float32"))

        got = scaled_dot_product_attention(
            q, k, v, sink_logits=sinks, tile_size=tile_size, **options
        )
        np.testing.assert_allclose(to_numpy(got), expected, atol=1e-5, err_msg=path)
        _, grads = value_and_gradient(loss, *arrays)
        for name, got_grad, want in zip("qkvs", grads, expected_grads, strict=False):
            np.testing.assert_allclose(
                got_grad, want, atol=1e-4, err_msg=f"{path}: d{name}"
            )


@VERY_FEW
@given(st.data(), st.integers(0, 2**31 - 1))
def test_dropout_drops_the_same_weights_in_tiles_and_in_full(data, seed):
    options = data.draw(st.composite(reference.patterns)(BATCH, LENGTH))
    q, k, v = inputs(seed)
    results = [
        to_numpy(
            scaled_dot_product_attention(
                q, k, v, dropout=0.3, seed=7, training=True, tile_size=t, **options
            )
        )
        for t in PATHS.values()
    ]
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)


@VERY_FEW
@given(st.integers(0, 2**31 - 1), st.integers(1, 12))
def test_nothing_leaks_across_packed_documents(seed, split):
    # Two documents in one row: changing the second changes nothing of the
    # first, with or without causal attention, in tiles and in full.
    q, k, v = inputs(seed)
    ids = (np.arange(LENGTH) >= split).astype("int32")
    changed = [x.copy() for x in (q, k, v)]
    for x in changed:
        x[..., split:, :] += 3.0
    for causal in (False, True):
        for tile_size in PATHS.values():
            before, after = (
                to_numpy(
                    scaled_dot_product_attention(
                        *tensors, segment_ids=ids, causal=causal, tile_size=tile_size
                    )
                )
                for tensors in ((q, k, v), changed)
            )
            np.testing.assert_allclose(before[..., :split, :], after[..., :split, :])


def test_packed_causal_rows_equal_the_documents_run_alone():
    q, k, v = inputs(3)
    ids = np.repeat([1, 2, 3], [5, 1, 7]).astype("int32")
    packed = to_numpy(
        scaled_dot_product_attention(q, k, v, segment_ids=ids, causal=True, tile_size=4)
    )
    for start, stop in ((0, 5), (5, 6), (6, 13)):
        alone = scaled_dot_product_attention(
            *(x[..., start:stop, :] for x in (q, k, v)), causal=True
        )
        np.testing.assert_allclose(
            packed[..., start:stop, :], to_numpy(alone), atol=1e-5
        )


def test_cross_attention_takes_a_pair_of_segment_ids_and_global_flags():
    q, k, v = inputs(4)
    q = q[..., :5, :]
    q_ids = np.array([[0, 0, 1, 1, 2], [0, 1, 1, 1, 1]], "int32")
    k_ids = np.repeat([[0, 1, 2], [0, 1, 2]], [4, 4, 5], axis=1).astype("int32")
    q_global = np.zeros((BATCH, 5), bool)
    k_global = np.zeros((BATCH, LENGTH), bool)
    q_global[0, 1] = k_global[1, 12] = True
    options = dict(segment_ids=(q_ids, k_ids), global_tokens=(q_global, k_global))
    allowed = reference.reference_allowed(BATCH, 5, LENGTH, options)
    expected, _ = reference.attention(q, k, v, allowed)
    for tile_size in PATHS.values():
        got = scaled_dot_product_attention(q, k, v, tile_size=tile_size, **options)
        np.testing.assert_allclose(to_numpy(got), expected, atol=1e-5)


def test_weights_with_sinks_sum_to_less_than_one_and_equal_the_definition():
    q, k, v = inputs(5)
    sinks = np.array([0.3, -1.0, 2.0, 0.0], "float32")
    _, weights = scaled_dot_product_attention(
        q, k, v, causal=True, sink_logits=sinks, return_weights=True
    )
    allowed = reference.reference_allowed(BATCH, LENGTH, LENGTH, {"causal": True})
    _, expected = reference.attention(q, k, v, allowed, sinks=sinks)
    np.testing.assert_allclose(to_numpy(weights), expected, atol=1e-6)
    assert (to_numpy(weights).sum(-1) < 1).all()


def test_a_query_with_no_key_gets_zeros_with_sinks_too():
    # Query 0 of the second row is in a segment of its own, with a mask that
    # takes its only key away.
    q, k, v = inputs(6)
    ids = np.zeros((BATCH, LENGTH), "int32")
    ids[1, 0] = 9
    mask = np.ones((BATCH, 1, LENGTH, LENGTH), bool)
    mask[1, :, 0, 0] = False
    for tile_size in PATHS.values():
        for sinks in (None, np.zeros(HEADS, "float32")):
            got = to_numpy(
                scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    mask,
                    segment_ids=ids,
                    sink_logits=sinks,
                    tile_size=tile_size,
                )
            )
            np.testing.assert_array_equal(got[1, :, 0], 0.0)


def test_soft_capping_caps_the_logits_before_the_bias():
    q, k, v = inputs(7, kv_heads=HEADS)
    q = q * 10.0
    bias = RNG.normal(size=(BATCH, HEADS, LENGTH, LENGTH)).astype("float32")
    _, weights = scaled_dot_product_attention(
        q, k, v, bias=bias, softcap=1.5, return_weights=True
    )
    logits = np.einsum("bhqd,bhkd->bhqk", q, k) / 2.0
    logits = 1.5 * np.tanh(logits / 1.5) + bias
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(to_numpy(weights), expected, atol=1e-6)


@pytest.mark.parametrize("dtype, tolerance", [("float16", 5e-3), ("bfloat16", 3e-2)])
def test_half_precision_inputs_stay_within_a_stated_tolerance(dtype, tolerance):
    # The attention runs in float32 whatever the inputs: the difference from
    # the float32 reference is the inputs' and the output's rounding.
    q, k, v = inputs(8)
    options = dict(
        causal=True,
        sliding_window=(3, 0),
        segment_ids=np.repeat([0, 1], [6, 7]),
        sink_tokens=1,
        softcap=2.0,
    )
    allowed = reference.reference_allowed(BATCH, LENGTH, LENGTH, options)
    rounded = [to_numpy(ops.cast(ops.cast(x, dtype), "float32")) for x in (q, k, v)]
    expected, _ = reference.attention(*rounded, allowed, softcap=2.0)
    for tile_size in PATHS.values():
        got = scaled_dot_product_attention(
            *(ops.cast(x, dtype) for x in (q, k, v)), tile_size=tile_size, **options
        )
        assert keras.backend.standardize_dtype(got.dtype) == dtype
        np.testing.assert_allclose(
            to_numpy(ops.cast(got, "float32")), expected, atol=tolerance
        )


def test_symbolic_inputs_take_segment_ids():
    query = keras.Input((HEADS, None, DEPTH), batch_size=BATCH)
    ids = keras.Input((None,), batch_size=BATCH, dtype="int32")
    context = scaled_dot_product_attention(
        query, query, query, segment_ids=ids, causal=True
    )
    assert tuple(context.shape) == (BATCH, HEADS, None, DEPTH)
    model = keras.Model([query, ids], context)
    q, _, _ = inputs(9)
    segments = np.repeat([[0, 1]], [6, 7], axis=1).repeat(BATCH, 0).astype("int32")
    expected = scaled_dot_product_attention(q, q, q, segment_ids=segments, causal=True)
    np.testing.assert_allclose(
        to_numpy(model([q, segments])), to_numpy(expected), atol=1e-6
    )


Q = np.zeros((BATCH, HEADS, LENGTH, DEPTH), "float32")
IDS = np.zeros((BATCH, LENGTH), "int32")
SDPA = "scaled_dot_product_attention: "


def attend(**options):
    return lambda: scaled_dot_product_attention(Q, Q, Q, **options)


BAD_INPUTS = [
    pytest.param(
        attend(**dict(segment_ids=np.zeros((2, 5), "int32"))),
        ValueError,
        SDPA
        + "`query segment_ids` must have shape (length,)=(13,) or (batch, length)=(2, 13), batch being axis 0 of the query. Received: query segment_ids.shape=(2, 5)",
        id="segment-ids-length",
    ),
    pytest.param(
        attend(**dict(segment_ids=IDS.astype("float32"))),
        TypeError,
        SDPA
        + "`query segment_ids` must be an integer tensor. Received: query segment_ids with dtype float32",
        id="segment-ids-float",
    ),
    pytest.param(
        attend(**dict(segment_ids=(IDS, IDS, IDS))),
        ValueError,
        SDPA
        + "`segment_ids` must be a tensor (self-attention) or a pair (for the queries, for the keys). Received: 3 items",
        id="segment-ids-three",
    ),
    pytest.param(
        attend(**dict(prefix_length=3)),
        ValueError,
        SDPA
        + "`prefix_length` makes the first positions of a causal row bidirectional: pass it with causal=True. Received: prefix_length=3, causal=False",
        id="prefix-without-causal",
    ),
    pytest.param(
        attend(**dict(prefix_length=14, causal=True)),
        ValueError,
        SDPA
        + "`prefix_length` must be an int in [0, k_len] or an integer tensor of shape () or (batch,), at most the row's length k_len=13. Received: prefix_length=14",
        id="prefix-past-the-row",
    ),
    pytest.param(
        attend(**dict(prefix_length=-1, causal=True)),
        ValueError,
        SDPA
        + "`prefix_length` must be an int in [0, k_len] or an integer tensor of shape () or (batch,), at most the row's length k_len=13. Received: prefix_length=-1",
        id="prefix-negative",
    ),
    pytest.param(
        attend(**dict(prefix_length=np.array([3, 99]), causal=True)),
        ValueError,
        SDPA
        + "`prefix_length` must be an int in [0, k_len] or an integer tensor of shape () or (batch,), each at most the row's length k_len=13. Received: prefix_length=[3, 99]",
        id="prefix-tensor-past-the-row",
    ),
    pytest.param(
        attend(**dict(prefix_length=np.array([3, 4, 5], "int32"), causal=True)),
        ValueError,
        SDPA
        + "`prefix_length` must be an int in [0, k_len] or an integer tensor of shape () or (batch,). Received: prefix_length with shape (3,) and dtype int32",
        id="prefix-tensor-shape",
    ),
    pytest.param(
        attend(**dict(chunk_size=0)),
        ValueError,
        SDPA
        + "`chunk_size` must be None or a positive integer. Received: chunk_size=0",
        id="chunk-zero",
    ),
    pytest.param(
        attend(**dict(sliding_window=(2, -1))),
        ValueError,
        SDPA
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=(2, -1)",
        id="window-pair-negative",
    ),
    pytest.param(
        attend(**dict(sliding_window=(1, 2, 3))),
        ValueError,
        SDPA
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=(1, 2, 3)",
        id="window-three",
    ),
    pytest.param(
        attend(**dict(softcap=0.0)),
        ValueError,
        SDPA + "`softcap` must be a positive finite number. Received: softcap=0.0",
        id="softcap-zero",
    ),
    pytest.param(
        attend(**dict(sink_logits=np.zeros(3, "float32"))),
        ValueError,
        SDPA
        + "`sink_logits` must have shape (heads,), one logit per query head (axis -3 of query (2, 4, 13, 4)). Received: sink_logits.shape=(3,)",
        id="sink-logits-length",
    ),
    pytest.param(
        attend(**dict(sink_logits=np.zeros(4, "int32"))),
        TypeError,
        SDPA
        + "`sink_logits` must be a floating-point tensor. Received: sink_logits with dtype int32",
        id="sink-logits-int",
    ),
    pytest.param(
        attend(**dict(global_tokens=-1)),
        ValueError,
        SDPA
        + "`global_tokens` must be None or an integer >= 0. Received: global_tokens=-1",
        id="global-tokens-negative",
    ),
    pytest.param(
        attend(**dict(global_tokens=IDS)),
        TypeError,
        SDPA
        + "`query global_tokens` must be a boolean tensor. Received: query global_tokens with dtype int32",
        id="global-tokens-int-tensor",
    ),
    pytest.param(
        attend(**dict(sink_tokens=1.5)),
        ValueError,
        SDPA
        + "`sink_tokens` must be None or an integer >= 0. Received: sink_tokens=1.5",
        id="sink-tokens-fraction",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(Q[:, :, :5], Q, Q, segment_ids=IDS),
        ValueError,
        SDPA + "one `segment_ids` tensor serves self-attention, where q_len == "
        "k_len; with q_len=5 and k_len=13, pass a pair (segment_ids of the "
        "queries, of the keys)",
        id="segment-ids-one-for-cross-attention",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            Q[:, :, 8:],
            Q,
            Q,
            segment_ids=(IDS[:, 8:], IDS),
            global_tokens=1,
            alignment="bottom_right",
        ),
        ValueError,
        SDPA + "an int `global_tokens` with `segment_ids` counts the first "
        "positions of each run of the query's ids, which needs the queries to "
        "start at key position 0; with queries placed further on, pass "
        "`global_tokens` as a pair of boolean tensors (for the queries, for the "
        "keys). Received: global_tokens=1, a query_start other than 0",
        id="global-tokens-int-with-placed-queries",
    ),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)

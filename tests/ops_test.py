import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention import scaled_dot_product_attention
from tests.gradients import value_and_gradient
from tests.layer_test_case import RNG, assert_raises_with, normal, symbolic, to_numpy


def numpy_attention(q, k, v, allowed=None, scale=None):
    """Independent reference: zero rows where nothing is allowed."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = np.einsum("...qd,...kd->...qk", q.astype(np.float64), k) * scale
    if allowed is not None:
        logits = np.where(allowed, logits, -np.inf)
    peak = np.max(logits, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)
    e = np.exp(logits - peak)
    total = e.sum(-1, keepdims=True)
    w = e / np.where(total > 0, total, 1)
    return w @ v, w


def test_hand_computed_weights():
    # Logits [1, 0]: weights [e, 1] / (1 + e).
    q = np.array([[1.0, 0.0]], "float32")
    k = np.array([[1.0, 0.0], [0.0, 0.0]], "float32")
    v = np.array([[1.0], [0.0]], "float32")
    context, weights = scaled_dot_product_attention(
        q, k, v, scale=1.0, return_weights=True
    )
    e = math.e
    np.testing.assert_allclose(
        to_numpy(weights), [[e / (1 + e), 1 / (1 + e)]], rtol=1e-6
    )
    np.testing.assert_allclose(to_numpy(context), [[e / (1 + e)]], rtol=1e-6)


def test_default_scale_is_inverse_sqrt_depth():
    q, k = normal(4, 9), normal(5, 9)
    v = normal(5, 3)
    a = scaled_dot_product_attention(q, k, v)
    b = scaled_dot_product_attention(q, k, v, scale=1 / 3)
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-6)


def test_tutorial_example_unbatched():
    # The tutorial's [3, 10] tensors, without its float mask.
    q, k, v = normal(3, 10), normal(3, 10), normal(3, 10)
    context = scaled_dot_product_attention(q, k, v)
    expected, _ = numpy_attention(q, k, v)
    assert tuple(context.shape) == (3, 10)
    np.testing.assert_allclose(to_numpy(context), expected, atol=1e-5)


@pytest.mark.parametrize("leading", [(), (2,), (2, 3)])
def test_any_leading_batch_dims_and_unequal_lengths(leading):
    q, k, v = normal(*leading, 4, 8), normal(*leading, 6, 8), normal(*leading, 6, 5)
    allowed = RNG.random((*leading, 4, 6)) > 0.3
    context, weights = scaled_dot_product_attention(
        q, k, v, allowed, return_weights=True
    )
    expected, expected_weights = numpy_attention(q, k, v, allowed)
    np.testing.assert_allclose(to_numpy(context), expected, atol=1e-5)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, atol=1e-6)


def test_integer_mask_nonzero_means_attend():
    q, k, v = normal(2, 3, 4), normal(2, 5, 4), normal(2, 5, 4)
    allowed = RNG.random((2, 3, 5)) > 0.5
    allowed[..., 0] = True
    as_bool = scaled_dot_product_attention(q, k, v, allowed)
    as_int = scaled_dot_product_attention(q, k, v, allowed.astype("int32") * 7)
    np.testing.assert_allclose(to_numpy(as_bool), to_numpy(as_int))


@pytest.mark.parametrize("q_len,k_len", [(5, 5), (3, 7), (7, 3)])
def test_parity_with_keras_dot_product_attention(q_len, k_len):
    # keras.ops takes (batch, seq, heads, dim); ours (batch, heads, seq, dim).
    q, k, v = normal(2, q_len, 3, 8), normal(2, k_len, 3, 8), normal(2, k_len, 3, 8)
    allowed = RNG.random((2, 3, q_len, k_len)) > 0.3
    allowed[..., 0] = True  # no fully masked rows: the references differ there
    for causal in (False, True):
        reference = ops.dot_product_attention(q, k, v, mask=allowed, is_causal=causal)
        ours = scaled_dot_product_attention(
            *(np.swapaxes(x, 1, 2) for x in (q, k, v)), allowed, causal=causal
        )
        np.testing.assert_allclose(
            np.swapaxes(to_numpy(ours), 1, 2), to_numpy(reference), atol=1e-5
        )


def test_causal_with_unequal_lengths_is_top_left_aligned():
    q, k, v = normal(3, 4), normal(6, 4), normal(6, 2)
    _, weights = scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)
    weights = to_numpy(weights)
    for i in range(3):
        assert np.all(weights[i, i + 1 :] == 0)
        assert np.all(weights[i, : i + 1] > 0)


def test_causal_combines_with_mask():
    q = normal(4, 4)
    mask = np.ones((4, 4), bool)
    mask[:, 0] = False
    _, weights = scaled_dot_product_attention(
        q, q, q, mask, causal=True, return_weights=True
    )
    expected = np.tril(np.ones((4, 4), bool)) & mask
    np.testing.assert_array_equal(to_numpy(weights) > 0, expected)


def test_fully_masked_row_gives_zero_context_and_weights():
    q, k, v = normal(2, 3, 4), normal(2, 5, 4), normal(2, 5, 4)
    allowed = np.ones((2, 3, 5), bool)
    allowed[0, 1] = False
    context, weights = scaled_dot_product_attention(
        q, k, v, allowed, return_weights=True
    )
    context, weights = to_numpy(context), to_numpy(weights)
    assert np.all(context[0, 1] == 0) and np.all(weights[0, 1] == 0)
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights.sum(-1)[1], 1, rtol=1e-6)


def test_bias_of_minus_infinity_acts_like_a_mask():
    q, k, v = normal(3, 4), normal(5, 4), normal(5, 2)
    allowed = RNG.random((3, 5)) > 0.4
    allowed[2] = False
    bias = np.where(allowed, 0.0, -np.inf).astype("float32")
    a = scaled_dot_product_attention(q, k, v, allowed)
    b = scaled_dot_product_attention(q, k, v, bias=bias)
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)


def test_float16_near_its_maximum_does_not_overflow():
    # Each product is ~6e4 * 6e4: infinite in float16, fine in float32.
    q = np.full((2, 4), 6e4, "float16")
    v = normal(2, 3, dtype="float16")
    context, weights = scaled_dot_product_attention(q, q, v, return_weights=True)
    assert keras.backend.standardize_dtype(context.dtype) == "float16"
    assert np.all(np.isfinite(to_numpy(context)))
    np.testing.assert_allclose(to_numpy(weights).astype("float32"), 0.5)


def test_dropout_only_in_training_and_reproducible_with_a_seed():
    q = normal(2, 6, 4)
    plain = to_numpy(scaled_dot_product_attention(q, q, q))
    off = scaled_dot_product_attention(q, q, q, dropout=0.5, seed=3)
    np.testing.assert_allclose(to_numpy(off), plain)
    a = to_numpy(
        scaled_dot_product_attention(q, q, q, dropout=0.5, seed=3, training=True)
    )
    b = to_numpy(
        scaled_dot_product_attention(q, q, q, dropout=0.5, seed=3, training=True)
    )
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain)
    generator = keras.random.SeedGenerator(3)
    c = scaled_dot_product_attention(
        q, q, q, dropout=0.5, seed=generator, training=True
    )
    d = scaled_dot_product_attention(
        q, q, q, dropout=0.5, seed=generator, training=True
    )
    assert not np.allclose(to_numpy(c), to_numpy(d))  # the generator advances


@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_is_a_symmetric_band(causal):
    # Query i sees keys j with |i - j| < w, like Keras' MHA; q_len > k_len
    # leaves the last queries with no key at all.
    q, k, v = normal(2, 9, 4), normal(2, 6, 4), normal(2, 6, 3)
    rows, cols = np.arange(9)[:, None], np.arange(6)[None, :]
    allowed = np.abs(rows - cols) < 3
    if causal:
        allowed &= cols <= rows
    context, weights = scaled_dot_product_attention(
        q, k, v, causal=causal, sliding_window=3, return_weights=True
    )
    expected, expected_weights = numpy_attention(q, k, v, allowed)
    np.testing.assert_allclose(to_numpy(context), expected, atol=1e-5)
    np.testing.assert_allclose(to_numpy(weights), expected_weights, atol=1e-6)
    assert np.all(to_numpy(context)[:, 8] == 0)


def test_dropout_keeps_each_weight_independently_with_probability_one_minus_rate():
    # Equal logits and an identity value: the context is the dropped weights.
    length, rate = 64, 0.3
    q = np.zeros((2, length, 4), "float32")
    v = np.eye(length, dtype="float32")[None].repeat(2, 0)
    context = to_numpy(
        scaled_dot_product_attention(q, q, v, dropout=rate, seed=4, training=True)
    )
    scaled = context * length * (1 - rate)
    np.testing.assert_allclose(scaled[scaled > 0.5], 1, rtol=1e-5)
    kept = scaled > 0.5
    assert abs(kept.mean() - (1 - rate)) < 0.02  # 8192 draws: 5 sigma
    assert not np.array_equal(kept[0], kept[1])  # batch entries differ
    assert not np.array_equal(kept[0, 0], kept[0, 1])  # rows differ
    assert not np.array_equal(kept[0, :, 0], kept[0, :, 1])  # columns differ


def numpy_keep(seed_words, shape, rate):
    """The dropout keep-pattern `(batch, q_len, k_len)`, transcribed in
    NumPy uint32 arithmetic from the hash's definition (lowbias32), not from
    the package's code: every backend is checked against it."""

    # Every constant a uint64 too: NumPy 1 turns uint64 with a Python int
    # into float64.
    u64 = np.uint64
    mask32 = u64(0xFFFFFFFF)

    def mix(x):
        x = np.asarray(x, u64) & mask32
        x ^= x >> u64(16)
        x = (x * u64(0x7FEB352D)) & mask32
        x ^= x >> u64(15)
        x = (x * u64(0x846CA68B)) & mask32
        return x ^ (x >> u64(16))

    high, low = seed_words
    seed = mix(mix(high) ^ u64(low))
    batch, q_len, k_len = shape
    entries = np.arange(batch, dtype=u64)[:, None, None]
    rows = np.arange(q_len, dtype=u64)[:, None]
    cols = np.arange(k_len, dtype=u64)[None, :]
    row_key = mix(mix(seed + mix(entries)) + rows)
    bits = mix(row_key ^ ((cols * u64(0x9E3779B9)) & mask32))
    return (bits & u64(0xFFFFFF)) >= u64(round(rate * (1 << 24)))


def numpy_dropped_attention(q, keep, rate):
    logits = q @ np.swapaxes(q, -1, -2) / math.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.where(keep, weights / (1 - rate), 0) @ q


def test_a_seed_drops_the_same_weights_on_every_backend():
    # The example of issue 12: before, TensorFlow and JAX differed by 5.6.
    q = np.random.default_rng(12).normal(size=(2, 40, 16)).astype("float32")

    def dropped(seed):
        return to_numpy(
            scaled_dot_product_attention(q, q, q, dropout=0.5, seed=seed, training=True)
        )

    # An int seed: its 64 bits, high word and low word.
    for seed, words in [(7, (0, 7)), (2**40 + 3, (256, 3)), (-1, (2**32 - 1,) * 2)]:
        keep = numpy_keep(words, (2, 40, 40), 0.5)
        expected = numpy_dropped_attention(q.astype("float64"), keep, 0.5)
        np.testing.assert_allclose(dropped(seed), expected, rtol=1e-4, atol=1e-5)
    # A generator: its state, [seed, draws so far], is the same everywhere.
    generator = keras.random.SeedGenerator(7)
    for draw in range(2):
        keep = numpy_keep((7, draw), (2, 40, 40), 0.5)
        expected = numpy_dropped_attention(q.astype("float64"), keep, 0.5)
        np.testing.assert_allclose(dropped(generator), expected, rtol=1e-4, atol=1e-5)


def test_tile_size_gives_the_same_result_on_every_backend():
    # Tiles of 4 against the default path (the full computation at this
    # length; PyTorch's fused kernel there).
    q, k, v = normal(2, 13, 4), normal(2, 11, 4), normal(2, 11, 3)
    a = scaled_dot_product_attention(q, k, v, causal=True, tile_size=4)
    b = scaled_dot_product_attention(q, k, v, causal=True)
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5)


def test_weights_are_returned_before_dropout():
    q = normal(5, 4)
    _, weights = scaled_dot_product_attention(
        q, q, q, dropout=0.5, seed=1, training=True, return_weights=True
    )
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1, rtol=1e-6)


def test_gradients_are_finite_for_fully_masked_rows():
    q = normal(2, 3, 4)
    allowed = np.ones((2, 3, 3), bool)
    allowed[:, 0] = False

    def loss(q):
        return ops.sum(scaled_dot_product_attention(q, q, q, allowed) ** 2)

    value, (grad,) = value_and_gradient(loss, q)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert np.any(grad != 0)


def attend(*args, query_shape=(3, 4), **kwargs):
    """The function on `normal` query, key and value of `query_shape`, with
    `args` after them."""
    q, k, v = (normal(*query_shape) for _ in range(3))
    return scaled_dot_product_attention(q, k, v, *args, **kwargs)


F = "scaled_dot_product_attention: "
FLOAT_MASK = (
    F
    + "`mask` must be boolean or integer, non-zero where a query may attend to a key and zero where it may not (Keras' convention). For an additive mask (0 to keep, -inf to drop) use `bias`. Received: mask with dtype float32"
)

BAD_INPUTS = [
    pytest.param(
        lambda: scaled_dot_product_attention(normal(4), normal(4), normal(4)),
        ValueError,
        F
        + "`query` must have rank >= 2, (..., seq_len, depth). Received: query.shape=(4,)",
        id="rank",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            normal(2, 3, 4), normal(3, 4), normal(3, 4)
        ),
        ValueError,
        F
        + "`query`, `key` and `value` must have the same rank. Received: query.shape=(2, 3, 4), key.shape=(3, 4), value.shape=(3, 4)",
        id="rank-mismatch",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(normal(3, 4), normal(3, 5), normal(3, 4)),
        ValueError,
        F
        + "the last dimension of `query` and `key` must be equal. Received: query.shape=(3, 4), key.shape=(3, 5)",
        id="depth-mismatch",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            symbolic(None, 3, 4), symbolic(None, 5, 6), symbolic(None, 5, 4)
        ),
        ValueError,
        F
        + "the last dimension of `query` and `key` must be equal. Received: query.shape=(None, 3, 4), key.shape=(None, 5, 6)",
        id="depth-mismatch-symbolic",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(normal(3, 4), normal(3, 4), normal(2, 4)),
        ValueError,
        F
        + "`key` and `value` must have the same sequence length (axis -2). Received: key.shape=(3, 4), value.shape=(2, 4)",
        id="key-value-length",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(normal(3, 4), normal(5, 4), normal(6, 4)),
        ValueError,
        F
        + "`key` and `value` must have the same sequence length (axis -2). Received: key.shape=(5, 4), value.shape=(6, 4)",
        id="key-value-length-longer-value",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            normal(2, 1, 3, 4), normal(3, 1, 3, 4), normal(3, 1, 3, 4)
        ),
        ValueError,
        F
        + "the batch dimensions of `query`, `key` and `value` must be equal. Received: query.shape=(2, 1, 3, 4), key.shape=(3, 1, 3, 4), value.shape=(3, 1, 3, 4)",
        id="batch",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            normal(3, 4), normal(5, 4), normal(5, 4), np.ones((3, 4), bool)
        ),
        ValueError,
        F
        + "`mask` must be broadcastable to the logits' shape (..., q_len, k_len)=(3, 5). Received: mask.shape=(3, 4)",
        id="mask-shape",
    ),
    pytest.param(
        lambda: attend(np.zeros((3, 3), "float32"), query_shape=(3, 10)),
        TypeError,
        FLOAT_MASK,
        id="float-mask",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            symbolic(2, 3, 4),
            symbolic(2, 3, 4),
            symbolic(2, 3, 4),
            symbolic(2, 3, 3, dtype="float32"),
        ),
        TypeError,
        FLOAT_MASK,
        id="float-mask-symbolic",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            normal(3, 4), normal(5, 4), normal(5, 4), bias=normal(2, 3, 5)
        ),
        ValueError,
        F
        + "`bias` must be broadcastable to the logits' shape (..., q_len, k_len)=(3, 5). Received: bias.shape=(2, 3, 5)",
        id="bias-shape",
    ),
    pytest.param(
        lambda: attend(bias=np.zeros((3, 3), bool)),
        TypeError,
        F + "`bias` must be a floating-point tensor. Received: bias with dtype bool",
        id="bool-bias",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            np.ones((3, 4), "int32"), normal(3, 4), normal(3, 4)
        ),
        TypeError,
        F + "`query` must be a floating-point tensor. Received: query with dtype int32",
        id="int-query",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention([[1.0]], normal(3, 4), normal(3, 4)),
        TypeError,
        F + "`query` must be a tensor or array. Received: query of type list",
        id="list-query",
    ),
    pytest.param(
        lambda: attend(scale=0.0),
        ValueError,
        F + "`scale` must be None or a positive finite number. Received: scale=0.0",
        id="scale-zero",
    ),
    pytest.param(
        lambda: attend(scale=-1),
        ValueError,
        F + "`scale` must be None or a positive finite number. Received: scale=-1",
        id="scale-negative",
    ),
    pytest.param(
        lambda: attend(scale="1"),
        TypeError,
        F
        + "`scale` must be None or a positive finite number. Received: scale='1' of type str",
        id="scale-type",
    ),
    pytest.param(
        lambda: attend(dropout=1.0),
        ValueError,
        F + "`dropout` must be a number in [0, 1). Received: dropout=1.0",
        id="dropout-one",
    ),
    pytest.param(
        lambda: attend(dropout=-0.1),
        ValueError,
        F + "`dropout` must be a number in [0, 1). Received: dropout=-0.1",
        id="dropout-negative",
    ),
    pytest.param(
        lambda: attend(training="yes"),
        TypeError,
        F + "`training` must be a bool (or None). Received: training='yes'",
        id="training-type",
    ),
    pytest.param(
        lambda: attend(causal="yes"),
        TypeError,
        F + "`causal` must be a bool. Received: causal='yes'",
        id="causal-type",
    ),
    pytest.param(
        lambda: attend(sliding_window=0),
        ValueError,
        F
        + "`sliding_window` must be None or a positive integer. Received: sliding_window=0",
        id="sliding-window-zero",
    ),
    pytest.param(
        lambda: attend(sliding_window=2.5),
        ValueError,
        F
        + "`sliding_window` must be None or a positive integer. Received: sliding_window=2.5",
        id="sliding-window-float",
    ),
    pytest.param(
        lambda: attend(sliding_window=True),
        TypeError,
        F
        + "`sliding_window` must be None or a positive integer. Received: sliding_window=True of type bool",
        id="sliding-window-bool",
    ),
    pytest.param(
        lambda: attend(tile_size=-8),
        ValueError,
        F
        + "`tile_size` must be None, 0 (the full computation) or a positive integer. Received: tile_size=-8",
        id="tile-size-negative",
    ),
    pytest.param(
        lambda: attend(tile_size="64"),
        TypeError,
        F
        + "`tile_size` must be None, 0 (the full computation) or a positive integer. Received: tile_size='64' of type str",
        id="tile-size-type",
    ),
    pytest.param(
        lambda: attend(seed="1"),
        TypeError,
        F
        + "`seed` must be None, an int or a keras.random.SeedGenerator. Received: seed='1'",
        id="seed-type",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"causal": True}, id="causal"),
        pytest.param({"causal": True, "sliding_window": 3}, id="causal_window"),
        pytest.param({"sliding_window": 2}, id="window"),
        pytest.param(
            {"causal": True, "dropout": 0.5, "seed": 9, "training": True}, id="dropout"
        ),
        pytest.param(
            {"causal": True, "alibi_slopes": np.array([0.5, 0.25, 0.125], "float32")},
            id="alibi",
        ),
    ],
)
def test_bottom_right_queries_equal_the_last_rows_of_the_whole_sequence(options):
    # New queries attending to every key so far (a decoding step) get exactly
    # the rows the whole sequence gives them, dropout included.
    x = RNG.normal(size=(2, 3, 9, 4)).astype("float32")
    whole = scaled_dot_product_attention(x, x, x, **options)
    last = scaled_dot_product_attention(
        x[..., 6:, :], x, x, alignment="bottom_right", **options
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(last),
        keras.ops.convert_to_numpy(whole)[..., 6:, :],
        atol=1e-6,
    )


def test_bottom_right_causal_pattern_matches_numpy():
    q, k = RNG.normal(size=(1, 3, 4)), RNG.normal(size=(1, 5, 4))
    _, weights = scaled_dot_product_attention(
        q.astype("float32"),
        k.astype("float32"),
        k.astype("float32"),
        causal=True,
        alignment="bottom_right",
        return_weights=True,
    )
    allowed = np.arange(5)[None, :] <= np.arange(3)[:, None] + 2
    logits = np.where(allowed, q[0] @ k[0].T / 2.0, -np.inf)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(weights)[0], expected, atol=1e-6
    )
    # More queries than keys: the first queries sit before key 0, see nothing.
    context = scaled_dot_product_attention(
        k.astype("float32"),
        q.astype("float32"),
        q.astype("float32"),
        causal=True,
        alignment="bottom_right",
    )
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(context)[0, :2], 0.0)
    assert np.all(keras.ops.convert_to_numpy(context)[0, 2:] != 0.0)

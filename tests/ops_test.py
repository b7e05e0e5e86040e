"""`keras_attention/ops.py`: `scaled_dot_product_attention` (masks, causal
and sliding-window patterns, dropout, grouped-query heads, numerics,
gradients) and `alibi_slopes`, against NumPy transcriptions and Keras' own
`dot_product_attention`. The tiled kernels against the full path are in
`tests/backend/`."""

import math

import keras
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from keras import ops

import keras_attention
from keras_attention import alibi_slopes, scaled_dot_product_attention
from tests.attention_pattern_test import numpy_keep
from tests.gradients import value_and_gradient
from tests.layer_test_case import (
    HAS_FLOAT64,
    RNG,
    assert_raises_with,
    normal,
    symbolic,
    to_numpy,
)
from tests.properties import (
    FEW,
    causal_cases,
    change_after,
    check_distribution,
    leading_dims,
    permutations,
    q_k_lengths,
    random_mask,
    rng_normal,
    seeds,
)


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
        # The same tensors in Keras' layout, said so.
        in_keras_layout = scaled_dot_product_attention(
            q, k, v, allowed, causal=causal, layout="BTNH"
        )
        np.testing.assert_allclose(
            to_numpy(in_keras_layout), to_numpy(reference), atol=1e-5
        )


def test_keras_layout_with_grouped_keys_and_weights():
    # (batch, length, heads, depth) with 2 key/value heads for 4 query heads;
    # the weights keep (batch, heads, q_len, k_len), as Keras' mask does.
    q, k, v = normal(2, 5, 4, 8), normal(2, 6, 2, 8), normal(2, 6, 2, 3)
    context, weights = scaled_dot_product_attention(
        q, k, v, causal=True, layout="BTNH", return_weights=True
    )
    expected, expected_weights = scaled_dot_product_attention(
        *(np.swapaxes(x, 1, 2) for x in (q, k, v)), causal=True, return_weights=True
    )
    np.testing.assert_allclose(
        to_numpy(context), np.swapaxes(to_numpy(expected), 1, 2), atol=1e-6
    )
    np.testing.assert_allclose(to_numpy(weights), to_numpy(expected_weights))
    assert tuple(weights.shape) == (2, 4, 5, 6)


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


def numpy_dropped_attention(q, keep, rate):
    logits = q @ np.swapaxes(q, -1, -2) / math.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.where(keep, weights / (1 - rate), 0) @ q


def test_a_seed_drops_the_same_weights_on_every_backend():
    # Dropout drawn from each backend's own random stream once made the
    # same seed drop different weights on TensorFlow and JAX (outputs up to
    # 5.6 apart on this example): the pattern is a hash of the seed instead.
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
        lambda: attend(layout="bthd"),
        ValueError,
        F
        + "`layout` must be one of ('BNTH', 'BTNH'): \"BNTH\" for (batch, heads, length, depth), \"BTNH\" for (batch, length, heads, depth) as keras.ops.dot_product_attention. Received: layout='bthd'",
        id="layout",
    ),
    pytest.param(
        lambda: attend(layout="BTNH", query_shape=(2, 3, 4)),
        ValueError,
        F
        + 'with layout="BTNH", `query` must have rank 4, (batch, length, heads, depth). Received: query.shape=(2, 3, 4)',
        id="layout-rank",
    ),
    pytest.param(
        lambda: attend(query_start=2, alignment="bottom_right"),
        ValueError,
        F
        + "`query_start` places the queries itself: pass it with alignment='top_left' (the default). Received: query_start=2, alignment='bottom_right'",
        id="query_start-with-bottom-right",
    ),
    pytest.param(
        lambda: attend(query_start=np.zeros((2, 2), "int32"), query_shape=(2, 3, 4)),
        ValueError,
        F
        + "`query_start` must be an int or an integer tensor of shape () or (batch,)=(2,), query's axis 0. Received: query_start with shape (2, 2) and dtype int32",
        id="query_start-shape",
    ),
    pytest.param(
        lambda: attend(query_start=np.float32(1.5)),
        ValueError,
        F
        + "`query_start` must be an int or an integer tensor of shape (). Received: query_start with shape () and dtype float32",
        id="query_start-dtype",
    ),
    pytest.param(
        lambda: attend(query_start="3"),
        TypeError,
        F
        + "`query_start` must be a tensor or array. Received: query_start of type str",
        id="query_start-type",
    ),
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
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=0",
        id="sliding-window-zero",
    ),
    pytest.param(
        lambda: attend(sliding_window=2.5),
        ValueError,
        F
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=2.5",
        id="sliding-window-float",
    ),
    pytest.param(
        lambda: attend(sliding_window=True),
        TypeError,
        F
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=True of type bool",
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
    # Grouped-query attention.
    pytest.param(
        lambda: scaled_dot_product_attention(
            normal(1, 4, 3, 2), normal(1, 3, 3, 2), normal(1, 3, 3, 2)
        ),
        ValueError,
        "scaled_dot_product_attention: `key` and `value` must have the same "
        "number of heads (axis -3), and it must divide the query's "
        "(grouped-query attention). Received: query.shape=(1, 4, 3, 2), "
        "key.shape=(1, 3, 3, 2), value.shape=(1, 3, 3, 2)",
        id="function-kv-heads-not-dividing",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            normal(1, 4, 3, 2), normal(1, 2, 3, 2), normal(1, 1, 3, 2)
        ),
        ValueError,
        "scaled_dot_product_attention: `key` and `value` must have the same "
        "number of heads (axis -3), and it must divide the query's "
        "(grouped-query attention). Received: query.shape=(1, 4, 3, 2), "
        "key.shape=(1, 2, 3, 2), value.shape=(1, 1, 3, 2)",
        id="function-key-value-heads-differ",
    ),
    # ALiBi: `alibi_slopes` and the function's `alibi_slopes=`.
    pytest.param(
        lambda: alibi_slopes(0),
        ValueError,
        "alibi_slopes: `num_heads` must be a positive integer. Received: num_heads=0",
        id="no heads",
    ),
    pytest.param(
        lambda: alibi_slopes("8"),
        TypeError,
        "alibi_slopes: `num_heads` must be a positive integer. Received: num_heads='8' of type str",
        id="heads as a string",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=alibi_slopes(4)
        ),
        ValueError,
        F
        + "`alibi_slopes` of shape (heads,) needs logits (..., heads, q_len, k_len) with 4 heads on axis -3. Received: alibi_slopes.shape=(4,) for logits of shape (2, 3, 5, 5)",
        id="slopes for another number of heads",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(5, 4),) * 3, alibi_slopes=alibi_slopes(2)
        ),
        ValueError,
        F
        + "`alibi_slopes` of shape (heads,) needs logits (..., heads, q_len, k_len) with 2 heads on axis -3. Received: alibi_slopes.shape=(2,) for logits of shape (5, 5)",
        id="slopes without a heads axis",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=normal(3, 5)
        ),
        ValueError,
        F
        + "`alibi_slopes` must have shape (heads,) or broadcast to the logits' shape (..., q_len, k_len)=(2, 3, 5, 5) with size 1 on its last two axes. Received: alibi_slopes.shape=(3, 5)",
        id="slopes that vary along the keys",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=np.ones(3, "int32")
        ),
        TypeError,
        F
        + "`alibi_slopes` must be a floating-point tensor. Received: alibi_slopes with dtype int32",
        id="integer slopes",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=[0.5, 0.25, 0.125]
        ),
        TypeError,
        F
        + "`alibi_slopes` must be a tensor or array. Received: alibi_slopes of type list",
        id="slopes as a list",
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


# Grouped-query and multi-query attention ---------------------------------------
#
# The oracle: the same attention with the keys and values repeated per group
# (what `keras.layers.GroupQueryAttention` computes).

GROUPED_OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"causal": True}, id="causal"),
    pytest.param({"sliding_window": 3, "causal": True}, id="window"),
    pytest.param({"mask": RNG.random((2, 1, 7, 9)) < 0.7}, id="shared_mask"),
    pytest.param({"mask": RNG.random((2, 8, 7, 9)) < 0.7}, id="per_head_mask"),
    pytest.param({"dropout": 0.4, "seed": 3, "training": True}, id="dropout"),
    pytest.param(
        {"alibi_slopes": keras_attention.alibi_slopes(8), "causal": True}, id="alibi"
    ),
]


@pytest.mark.parametrize("options", GROUPED_OPTIONS)
@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_keys_equal_keys_repeated_per_group(kv_heads, options):
    query = normal(2, 8, 7, 4)
    key, value = normal(2, kv_heads, 9, 4), normal(2, kv_heads, 9, 3)
    groups = 8 // kv_heads
    repeated = [np.repeat(x, groups, axis=1) for x in (key, value)]
    context, weights = scaled_dot_product_attention(
        query, key, value, return_weights=True, **options
    )
    expected, expected_weights = scaled_dot_product_attention(
        query, *repeated, return_weights=True, **options
    )
    np.testing.assert_allclose(to_numpy(context), to_numpy(expected), atol=1e-6)
    np.testing.assert_allclose(to_numpy(weights), to_numpy(expected_weights), atol=1e-6)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("tile_size", [0, 16], ids=["full", "tiled"])
def test_grouped_keys_with_a_head_count_unknown_when_traced(tile_size):
    # As after a replica's `all_gather`: the key/value head axis is None in
    # the `tf.function`'s signature, so the query heads are grouped at run
    # time, and a count that does not divide the query's is refused there.
    import tensorflow as tf

    query = normal(2, 8, 64, 4)
    key, value = normal(2, 2, 64, 4), normal(2, 2, 64, 3)
    repeated = [np.repeat(x, 4, axis=1) for x in (key, value)]
    expected = scaled_dot_product_attention(query, *repeated, causal=True)
    attend = tf.function(
        lambda q, k, v: scaled_dot_product_attention(
            q, k, v, causal=True, tile_size=tile_size
        ),
        input_signature=[
            tf.TensorSpec([2, 8, 64, 4]),
            tf.TensorSpec([2, None, 64, 4]),
            tf.TensorSpec([2, None, 64, 3]),
        ],
    )
    np.testing.assert_allclose(
        to_numpy(attend(query, key, value)), to_numpy(expected), atol=1e-6
    )
    assert_raises_with(
        lambda: attend(query, normal(2, 3, 64, 4), normal(2, 3, 64, 3)),
        tf.errors.InvalidArgumentError,
        "[scaled_dot_product_attention: the number of `key` heads (axis -3) "
        "must divide the number of `query` heads (grouped-query attention). "
        "Received: query heads] [8] [key heads] [3]",
    )


# ALiBi ----------------------------------------------------------------------------
#
# `alibi_slopes` and `scaled_dot_product_attention(alibi_slopes=...)`; the
# tiled path against the full one, ALiBi included, is in
# `tests/backend/tf_tiled_test.py` (each case there compiles its own XLA
# kernels, so ALiBi rides on its cases instead of adding some).


def paper_slopes(n):
    """Press et al.'s rule, written from the paper: for a power of two n, the
    geometric sequence starting at 2^(-8/n) with ratio 2^(-8/n); otherwise
    the slopes of the closest smaller power of two, then every other slope
    of the next power of two."""
    if math.log2(n).is_integer():
        return [2 ** (-8 / n * (i + 1)) for i in range(n)]
    p = 2 ** math.floor(math.log2(n))
    return paper_slopes(p) + paper_slopes(2 * p)[0::2][: n - p]


def alibi_reference(q, k, v, slopes, causal=False):
    """softmax(q kᵀ / sqrt(d) - slope · |i - j|) v in float64, slopes along
    axis -3."""
    q, k, v = (np.asarray(x, "float64") for x in (q, k, v))
    logits = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    i = np.arange(q.shape[-2])[:, None]
    j = np.arange(k.shape[-2])[None, :]
    logits = logits - np.asarray(slopes, "float64")[:, None, None] * np.abs(i - j)
    if causal:
        logits = np.where(j <= i, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ v


def test_slopes_follow_the_paper():
    np.testing.assert_array_equal(alibi_slopes(8), [2.0**-i for i in range(1, 9)])
    np.testing.assert_array_equal(alibi_slopes(1), [2.0**-8])
    # 6 heads: the 4 slopes of 4 heads, then slopes 1 and 3 of 8 heads.
    np.testing.assert_array_equal(
        alibi_slopes(6), [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    )
    for n in (2, 3, 5, 12, 16, 20, 40):
        np.testing.assert_allclose(alibi_slopes(n), paper_slopes(n), rtol=1e-7)
    assert alibi_slopes(12).dtype == np.float32


@pytest.mark.parametrize(
    "q_len,k_len,causal", [(9, 9, False), (9, 9, True), (5, 11, True), (11, 5, False)]
)
def test_full_path_equals_the_formula(q_len, k_len, causal):
    slopes = alibi_slopes(3)
    q, k, v = normal(2, 3, q_len, 4), normal(2, 3, k_len, 4), normal(2, 3, k_len, 5)
    got = scaled_dot_product_attention(q, k, v, causal=causal, alibi_slopes=slopes)
    np.testing.assert_allclose(
        to_numpy(got), alibi_reference(q, k, v, slopes, causal), atol=1e-5
    )


def test_with_causal_it_is_the_papers_minus_slope_times_i_minus_j():
    # Press et al. add -slope · (i - j) to the causal logits; a bias of
    # slope · j (BLOOM's, a constant per row away) gives the same weights.
    slopes = alibi_slopes(4)
    q, k, v = normal(2, 4, 12, 8), normal(2, 4, 12, 8), normal(2, 4, 12, 3)
    j = np.arange(12, dtype="float32")
    bloom = slopes[:, None, None] * j  # (heads, 1, k_len)
    expected = scaled_dot_product_attention(q, k, v, causal=True, bias=bloom)
    got = scaled_dot_product_attention(q, k, v, causal=True, alibi_slopes=slopes)
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-5)


def test_slopes_per_batch_entry_and_unbatched_inputs():
    q, k, v = normal(2, 3, 7, 4), normal(2, 3, 7, 4), normal(2, 3, 7, 4)
    per_entry = RNG.uniform(0.1, 1.0, size=(2, 3, 1, 1)).astype("float32")
    got = to_numpy(scaled_dot_product_attention(q, k, v, alibi_slopes=per_entry))
    for b in range(2):
        np.testing.assert_allclose(
            got[b], alibi_reference(q[b], k[b], v[b], per_entry[b, :, 0, 0]), atol=1e-5
        )
    slope = np.array([[0.3]], "float32")  # (1, 1): unbatched (len, depth)
    got = scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0], alibi_slopes=slope)
    np.testing.assert_allclose(
        to_numpy(got),
        alibi_reference(q[:1, 0], k[:1, 0], v[:1, 0], [0.3])[0],
        atol=1e-5,
    )


def test_bfloat16_inputs_get_the_bias_in_float32():
    # A bias near 500 computed in bfloat16 is rounded in steps of 2 to 4:
    # as keras-hub's AlibiBias does, with the key positions' form of it.
    length = 1100
    q, k, v = (keras.ops.cast(normal(1, 1, length, 8), "bfloat16") for _ in range(3))
    slopes = np.array([0.5], "float32")
    exact = scaled_dot_product_attention(
        *(keras.ops.cast(x, "float32") for x in (q, k, v)),
        causal=True,
        alibi_slopes=slopes,
    )
    got = scaled_dot_product_attention(q, k, v, causal=True, alibi_slopes=slopes)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    error = np.abs(to_numpy(keras.ops.cast(got, "float32")) - to_numpy(exact)).max()
    assert error < 2e-2  # bfloat16 rounding of the output
    rounded = keras.ops.cast(0.5 * (np.arange(length) - length + 1.0), "bfloat16")
    hub = scaled_dot_product_attention(q, k, v, causal=True, bias=rounded)
    hub_error = np.abs(to_numpy(keras.ops.cast(hub, "float32")) - to_numpy(exact))
    assert hub_error.max() > 0.3


# As a drop-in for keras.ops.dot_product_attention -----------------------------


def test_function_runs_on_symbolic_inputs_of_unknown_length():
    inputs = keras.Input((None, 16))
    outputs = keras_attention.scaled_dot_product_attention(
        inputs, inputs, inputs, causal=True
    )
    assert tuple(outputs.shape) == (None, None, 16)
    model = keras.Model(inputs, outputs)
    x = normal(2, 5, 16)
    expected = keras_attention.scaled_dot_product_attention(x, x, x, causal=True)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), to_numpy(expected), atol=1e-6
    )


def test_function_takes_training_none_and_promotes_dtypes_like_keras():
    q = normal(1, 3, 2, 4)
    half = keras_attention.scaled_dot_product_attention(
        q.astype("float16"), q, q, training=None
    )
    # What keras.ops.dot_product_attention gives in Keras 3.15 (Keras 3.9
    # refuses mixed dtypes).
    assert keras.backend.standardize_dtype(half.dtype) == "float32"
    if HAS_FLOAT64:
        double = q.astype("float64")
        result = keras_attention.scaled_dot_product_attention(double, double, double)
        assert keras.backend.standardize_dtype(result.dtype) == "float64"


# Properties over random shapes, masks and seeds (hypothesis) --------------------


@FEW
@given(order=permutations(), leading=leading_dims, seed=seeds)
def test_function_is_permutation_equivariant(order, leading, seed):
    rng = np.random.default_rng(seed)
    length = len(order)
    x = rng_normal(rng, *leading, length, 4)
    allowed = random_mask(rng, (*leading, length, length))
    context, weights = scaled_dot_product_attention(
        x, x, x, allowed, return_weights=True
    )
    xp = x[..., order, :]
    permuted, permuted_weights = scaled_dot_product_attention(
        xp, xp, xp, allowed[..., order, :][..., order], return_weights=True
    )
    np.testing.assert_allclose(
        to_numpy(permuted), to_numpy(context)[..., order, :], atol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(permuted_weights),
        to_numpy(weights)[..., order, :][..., order],
        atol=1e-6,
    )


@FEW
@given(leading=leading_dims, sizes=q_k_lengths, causal=st.booleans(), seed=seeds)
def test_function_weights_are_a_distribution_over_allowed_keys(
    leading, sizes, causal, seed
):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    q, k, v = (
        rng_normal(rng, *leading, q_len, 4),
        rng_normal(rng, *leading, k_len, 4),
        rng_normal(rng, *leading, k_len, 3),
    )
    mask = random_mask(rng, (*leading, q_len, k_len))
    _, weights = scaled_dot_product_attention(
        q, k, v, mask, causal=causal, return_weights=True
    )
    allowed = mask & (np.tril(np.ones((q_len, k_len), bool)) if causal else True)
    check_distribution(to_numpy(weights), allowed)


@FEW
@given(
    case=causal_cases(),
    leading=leading_dims,
    dropout=st.sampled_from([0.0, 0.5]),
    return_weights=st.booleans(),
)
def test_function_causal_output_ignores_the_future(
    case, leading, dropout, return_weights
):
    length, t, seed = case
    rng = np.random.default_rng(seed)
    x = rng_normal(rng, *leading, length, 4)
    changed = change_after(rng, x, t)

    def attend(x):
        result = scaled_dot_product_attention(
            x,
            x,
            x,
            causal=True,
            dropout=dropout,
            seed=seed,
            training=True,
            return_weights=return_weights,
        )
        return [to_numpy(r) for r in (result if return_weights else [result])]

    for before, after in zip(attend(x), attend(changed), strict=True):
        np.testing.assert_allclose(
            after[..., : t + 1, :], before[..., : t + 1, :], atol=1e-6
        )
    if return_weights:
        weights = attend(x)[1]
        assert np.all(weights[..., np.triu(np.ones((length, length), bool), 1)] == 0)


@FEW
@given(
    logit=st.sampled_from([1.0, 1e2, 1e3, 1e4]),
    sign=st.sampled_from([1.0, -1.0]),
    sizes=q_k_lengths,
    causal=st.booleans(),
    seed=seeds,
)
def test_float32_logits_up_to_1e4_stay_finite(logit, sign, sizes, causal, seed):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    q, k, v = (
        rng_normal(rng, 2, q_len, 4),
        rng_normal(rng, 2, k_len, 4),
        rng_normal(rng, 2, k_len, 3),
    )
    q *= sign * logit / np.abs(np.einsum("bqd,bkd->bqk", q, k)).max()  # largest |logit|
    mask = random_mask(rng, (2, q_len, k_len))

    def loss(q, k, v):
        context, weights = scaled_dot_product_attention(
            q, k, v, mask, scale=1.0, causal=causal, return_weights=True
        )
        return ops.sum(context**2) + ops.sum(weights * weights)

    value, grads = value_and_gradient(loss, q, k, v)
    context, weights = scaled_dot_product_attention(
        q, k, v, mask, scale=1.0, causal=causal, return_weights=True
    )
    assert np.isfinite(value)
    for array in (to_numpy(context), to_numpy(weights), *grads):
        assert np.all(np.isfinite(array))
    allowed = mask & (np.tril(np.ones((q_len, k_len), bool)) if causal else True)
    check_distribution(to_numpy(weights), allowed)


@FEW
@given(sizes=q_k_lengths, seed=seeds)
def test_float16_inputs_near_their_maximum_stay_finite(sizes, seed):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    big = np.finfo("float16").max  # 65504: any product of two overflows float16

    def near_max(*shape):
        magnitude = rng.uniform(0.5, 1.0, size=shape) * big
        return (magnitude * rng.choice([-1.0, 1.0], size=shape)).astype("float16")

    q, k, v = near_max(2, q_len, 4), near_max(2, k_len, 4), near_max(2, k_len, 3)
    context, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert keras.backend.standardize_dtype(context.dtype) == "float16"
    context, weights = to_numpy(context), to_numpy(weights).astype("float32")
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-2)


@FEW
@given(exponent=st.integers(0, 19), sizes=q_k_lengths, seed=seeds)
def test_bfloat16_inputs_stay_finite_while_float32_logits_are(exponent, sizes, seed):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    scale = 10.0**exponent

    def large(*shape):
        return ops.cast(rng_normal(rng, *shape) * scale, "bfloat16")

    q, k, v = large(2, q_len, 4), large(2, k_len, 4), large(2, k_len, 3)
    q32, k32 = (to_numpy(ops.cast(x, "float32")).astype("float64") for x in (q, k))
    # Every float32 product and sum in `q · k / sqrt(4)` is finite.
    terms = np.abs(q32[:, :, None, :] * k32[:, None, :, :]) / 2
    assume(terms.sum(-1).max() < np.finfo("float32").max / 4)
    context, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert keras.backend.standardize_dtype(context.dtype) == "bfloat16"
    context = to_numpy(ops.cast(context, "float32"))
    weights = to_numpy(ops.cast(weights, "float32"))
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights.sum(-1), 1, atol=2e-2)


@FEW
@given(leading=leading_dims, sizes=q_k_lengths, causal=st.booleans(), seed=seeds)
def test_function_gradients_are_finite_with_fully_masked_rows(
    leading, sizes, causal, seed
):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    q, k, v = (
        rng_normal(rng, *leading, q_len, 4),
        rng_normal(rng, *leading, k_len, 4),
        rng_normal(rng, *leading, k_len, 3),
    )
    mask = random_mask(rng, (*leading, q_len, k_len))
    probe = rng_normal(rng, *leading, q_len, k_len)

    def loss(q, k, v):
        context, weights = scaled_dot_product_attention(
            q, k, v, mask, causal=causal, return_weights=True
        )
        # `ops.multiply`, not `*`: PyTorch leaves `tensor * ndarray` to NumPy,
        # which cannot convert a tensor that requires grad.
        return ops.sum(context**2) + ops.sum(ops.multiply(weights, probe))

    value, grads = value_and_gradient(loss, q, k, v)
    assert np.isfinite(value)
    for grad in grads:
        assert np.all(np.isfinite(grad))


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="on JAX the default path at these lengths is the full path's autodiff",
)
@FEW
@given(
    sizes=q_k_lengths,
    kv_heads=st.sampled_from([1, 2]),
    causal=st.booleans(),
    window=st.sampled_from([None, 2]),
    alibi=st.booleans(),
    dropout=st.sampled_from([0.0, 0.5]),
    seed=seeds,
)
def test_default_path_gradients_equal_the_full_paths_autodiff(
    sizes, kv_heads, causal, window, alibi, dropout, seed
):
    # The default path (on TensorFlow outside XLA: the full computation with
    # a hand-written gradient; on PyTorch its fused kernel where it applies)
    # against the backend's autodiff of the full path (`return_weights`),
    # with masks that empty a row, grouped heads, ALiBi and dropout.
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    q, k, v = (
        rng_normal(rng, 2, 2, q_len, 4),
        rng_normal(rng, 2, kv_heads, k_len, 4),
        rng_normal(rng, 2, kv_heads, k_len, 3),
    )
    probe = rng_normal(rng, 2, 2, q_len, 3)
    options = dict(
        mask=random_mask(rng, (2, 1, q_len, k_len)),
        causal=causal,
        sliding_window=window,
        alibi_slopes=alibi_slopes(2) if alibi else None,
        dropout=dropout,
        seed=seed % 1000,
        training=True,
    )

    def loss(default):
        def loss(q, k, v):
            if default:
                context = scaled_dot_product_attention(q, k, v, **options)
            else:
                context, _ = scaled_dot_product_attention(
                    q, k, v, return_weights=True, **options
                )
            return ops.sum(ops.multiply(context, probe))

        return loss

    value, grads = value_and_gradient(loss(True), q, k, v)
    expected_value, expected_grads = value_and_gradient(loss(False), q, k, v)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(grad, expected, atol=1e-5)


def numpy_placed(q, k, v, first, causal=False, window=None, slopes=None):
    """Attention with query `i` at key position `first + i`: the pairs and
    ALiBi distances of the definitions, in NumPy."""
    rows = np.arange(q.shape[-2])[:, None] + first
    cols = np.arange(k.shape[-2])[None, :]
    allowed = np.ones((q.shape[-2], k.shape[-2]), bool)
    if causal:
        allowed &= cols <= rows
    if window is not None:
        allowed &= np.abs(rows - cols) < window
    if slopes is None:
        return numpy_attention(q, k, v, allowed)[0]
    scale = 1 / math.sqrt(q.shape[-1])
    bias = -slopes[:, None, None] * np.abs(rows - cols)
    logits = np.einsum("...qd,...kd->...qk", q.astype(np.float64), k) * scale + bias
    logits = np.where(allowed, logits, -np.inf)
    peak = np.max(logits, axis=-1, keepdims=True)
    e = np.exp(logits - np.where(np.isfinite(peak), peak, 0))
    total = e.sum(-1, keepdims=True)
    return (e / np.where(total > 0, total, 1)) @ v


@pytest.mark.parametrize("first", [0, 9, 30, -4], ids=lambda n: f"start{n}")
@pytest.mark.parametrize(
    "pattern",
    [dict(causal=True), dict(sliding_window=5), dict(causal=True, sliding_window=7)],
    ids=["causal", "window", "causal-window"],
)
def test_query_start_places_the_queries_among_the_keys(first, pattern):
    # Full path, tiles, and the position known only at run time (a tensor),
    # against the definition; queries before every key (start -4) see none.
    q, k, v = normal(2, 3, 13, 4), normal(2, 3, 37, 4), normal(2, 3, 37, 4)
    slopes = keras_attention.alibi_slopes(3)
    expected = numpy_placed(
        q,
        k,
        v,
        first,
        pattern.get("causal", False),
        pattern.get("sliding_window"),
        slopes,
    )
    for query_start in (first, ops.convert_to_tensor(first, "int32")):
        for tile_size in (0, 8):
            got = scaled_dot_product_attention(
                q,
                k,
                v,
                alibi_slopes=slopes,
                query_start=query_start,
                tile_size=tile_size,
                **pattern,
            )
            np.testing.assert_allclose(to_numpy(got), expected, atol=1e-5)


def test_query_start_equals_bottom_right_alignment_and_one_per_row():
    q, k = normal(2, 5, 4), normal(2, 9, 4)
    bottom_right = scaled_dot_product_attention(
        q, k, k, causal=True, alignment="bottom_right"
    )
    placed = scaled_dot_product_attention(q, k, k, causal=True, query_start=4)
    np.testing.assert_allclose(to_numpy(placed), to_numpy(bottom_right), atol=1e-6)
    # A position per batch entry: each row as if alone.
    per_row = scaled_dot_product_attention(
        q, k, k, causal=True, query_start=np.array([1, 4], "int32")
    )
    for row, first in enumerate([1, 4]):
        np.testing.assert_allclose(
            to_numpy(per_row)[row],
            numpy_placed(q[row], k[row], k[row], first, causal=True),
            atol=1e-5,
        )

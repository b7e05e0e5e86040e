"""ALiBi: `alibi_slopes`, `scaled_dot_product_attention(alibi_slopes=...)`
and `MultiHeadAttention(alibi=True)`. The tiled path against the full one,
ALiBi included, is in `tiled_attention_test.py` (each case there compiles
its own XLA kernels, so ALiBi rides on its cases instead of adding some)."""

import math

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import (
    MultiHeadAttention,
    alibi_slopes,
    scaled_dot_product_attention,
)

RNG = np.random.default_rng(5)


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def paper_slopes(n):
    """Press et al.'s rule, written from the paper: for a power of two n, the
    geometric sequence starting at 2^(-8/n) with ratio 2^(-8/n); otherwise
    the slopes of the closest smaller power of two, then every other slope
    of the next power of two."""
    if math.log2(n).is_integer():
        return [2 ** (-8 / n * (i + 1)) for i in range(n)]
    p = 2 ** math.floor(math.log2(n))
    return paper_slopes(p) + paper_slopes(2 * p)[0::2][: n - p]


def reference(q, k, v, slopes, causal=False):
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
        to_numpy(got), reference(q, k, v, slopes, causal), atol=1e-5
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
            got[b], reference(q[b], k[b], v[b], per_entry[b, :, 0, 0]), atol=1e-5
        )
    slope = np.array([[0.3]], "float32")  # (1, 1): unbatched (len, depth)
    got = scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0], alibi_slopes=slope)
    np.testing.assert_allclose(
        to_numpy(got), reference(q[:1, 0], k[:1, 0], v[:1, 0], [0.3])[0], atol=1e-5
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


def mha_reference(layer, x, causal):
    """The layer's attention with ALiBi, in NumPy from its kernels."""
    heads, key_dim = layer.num_heads, layer.key_dim

    def project(dense, x):
        kernel, bias = (to_numpy(w) for w in dense.weights)
        return np.einsum("btd,dhk->bhtk", x, kernel) + bias[None, :, None, :]

    q, k, v = (
        project(d, x) for d in (layer.query_dense, layer.key_dense, layer.value_dense)
    )
    context = reference(q, k, v, alibi_slopes(heads), causal)  # (batch, heads, t, k)
    kernel, bias = (to_numpy(w) for w in layer.output_dense.weights)
    assert kernel.shape[:2] == (heads, key_dim)
    return np.einsum("bhtk,hkd->btd", context, kernel) + bias


def test_multi_head_attention_with_alibi_equals_numpy():
    causal = True  # the function's tests cover both
    x = normal(2, 9, 12)
    layer = MultiHeadAttention(
        num_heads=3,
        key_dim=4,
        causal=causal,
        alibi=True,
        bias_initializer="random_normal",
    )
    got = to_numpy(layer(x))
    np.testing.assert_allclose(got, mha_reference(layer, x, causal), atol=1e-5)
    without = MultiHeadAttention(num_heads=3, key_dim=4, causal=causal)
    without(x)
    without.set_weights(layer.get_weights())
    assert not np.allclose(to_numpy(without(x)), got, atol=1e-3)


BAD_INPUTS = [
    pytest.param(
        lambda: alibi_slopes(0),
        ValueError,
        r"alibi_slopes: `num_heads` must be a positive integer\. Received: num_heads=0",
        id="no heads",
    ),
    pytest.param(
        lambda: alibi_slopes("8"),
        TypeError,
        r"alibi_slopes: `num_heads` must be a positive integer\. Received: num_heads='8' of type str",
        id="heads as a string",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=alibi_slopes(4)
        ),
        ValueError,
        r"scaled_dot_product_attention: `alibi_slopes` of shape \(heads,\) needs logits \(\.\.\., heads, q_len, k_len\) with 4 heads on axis -3\. Received: alibi_slopes\.shape=\(4,\) for logits of shape \(2, 3, 5, 5\)",
        id="slopes for another number of heads",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(5, 4),) * 3, alibi_slopes=alibi_slopes(2)
        ),
        ValueError,
        r"scaled_dot_product_attention: `alibi_slopes` of shape \(heads,\) needs logits \(\.\.\., heads, q_len, k_len\) with 2 heads on axis -3\. Received: alibi_slopes\.shape=\(2,\) for logits of shape \(5, 5\)",
        id="slopes without a heads axis",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=normal(3, 5)
        ),
        ValueError,
        r"scaled_dot_product_attention: `alibi_slopes` must have shape \(heads,\) or broadcast to the logits' shape \(\.\.\., q_len, k_len\)=\(2, 3, 5, 5\) with size 1 on its last two axes\. Received: alibi_slopes\.shape=\(3, 5\)",
        id="slopes that vary along the keys",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=np.ones(3, "int32")
        ),
        TypeError,
        r"scaled_dot_product_attention: `alibi_slopes` must be a floating-point tensor\. Received: alibi_slopes with dtype int32",
        id="integer slopes",
    ),
    pytest.param(
        lambda: scaled_dot_product_attention(
            *(normal(2, 3, 5, 4),) * 3, alibi_slopes=[0.5, 0.25, 0.125]
        ),
        TypeError,
        r"scaled_dot_product_attention: `alibi_slopes` must be a tensor or array\. Received: alibi_slopes of type list",
        id="slopes as a list",
    ),
    pytest.param(
        lambda: MultiHeadAttention(num_heads=2, key_dim=4, alibi="yes"),
        TypeError,
        r"MultiHeadAttention: `alibi` must be a bool\. Received: alibi='yes'",
        id="layer alibi not a bool",
    ),
    pytest.param(
        lambda: MultiHeadAttention(num_heads=2, key_dim=4, alibi=True)(
            normal(2, 3, 4, 8)
        ),
        ValueError,
        r"MultiHeadAttention: `alibi` needs inputs of rank 3, \(batch, seq_len, dim\)\. Received: query\.shape=\(2, 3, 4, 8\)",
        id="layer alibi on rank 4",
    ),
    pytest.param(
        lambda: keras_attention.TransformerBlock(
            num_heads=2, intermediate_dim=8, alibi=2
        ),
        TypeError,
        r"TransformerBlock: `alibi` must be a bool\. Received: alibi=2",
        id="block alibi not a bool",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message) as caught:
        call()
    assert type(caught.value) is error  # not a subclass, not a backend error

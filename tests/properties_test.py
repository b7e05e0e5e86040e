"""Properties over random shapes, masks and seeds (hypothesis).

Few examples each, drawn from a fixed seed (`derandomize=True`), so a run is
reproducible. Shapes come from small pools shared by the tests, because JAX
compiles every operation once per shape: a handful of shapes keeps the file
fast there. The arrays come from NumPy generators seeded by the drawn `seed`.
"""

import functools

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from keras import ops

from keras_attention import (
    LearnedPositionEmbedding,
    MultiHeadAttention,
    ScaledDotProductAttention,
    SinusoidalPositionEncoding,
    TransformerBlock,
    alibi_slopes,
    build_toy_model,
    scaled_dot_product_attention,
)
from tests.gradients import value_and_gradient

FEW = settings(max_examples=6, deadline=None, derandomize=True, database=None)
VERY_FEW = settings(max_examples=3, deadline=None, derandomize=True, database=None)
WIDTH = 8  # the layers' width: one set of weight shapes, compiled once on JAX

seeds = st.integers(0, 2**31 - 1)
leading_dims = st.sampled_from([(), (2, 1)])  # no batch dimension, or two
lengths = st.sampled_from([3, 4])  # self-attention sequence lengths
q_k_lengths = st.sampled_from([(3, 3), (1, 4), (4, 2)])  # cross-attention


def to_numpy(x):
    return ops.convert_to_numpy(x)


def normal(rng, *shape):
    return rng.normal(size=shape).astype("float32")


@st.composite
def permutations(draw, identity=True):
    """A permutation of a drawn length (never the identity if not allowed)."""
    order = draw(st.permutations(range(draw(lengths))))
    if not identity and order == sorted(order):
        order = order[::-1]
    return np.array(order)


def random_mask(rng, shape, fully_masked_row=True):
    """Boolean mask over `(..., q_len, k_len)` with some rows fully masked."""
    allowed = rng.random(shape) > 0.4
    if fully_masked_row:
        allowed[..., rng.integers(shape[-2]), :] = False
    return allowed


# Permutation equivariance ---------------------------------------------------


@FEW
@given(order=permutations(), leading=leading_dims, seed=seeds)
def test_function_is_permutation_equivariant(order, leading, seed):
    rng = np.random.default_rng(seed)
    length = len(order)
    x = normal(rng, *leading, length, 4)
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


@functools.cache
def _attention_layers():
    """One of each attention layer, built for `WIDTH` (no dropout)."""
    keras.utils.set_random_seed(0)
    return {
        "ScaledDotProductAttention": ScaledDotProductAttention(),
        "MultiHeadAttention": MultiHeadAttention(num_heads=2, key_dim=4),
        "TransformerBlock": TransformerBlock(num_heads=2, intermediate_dim=16),
    }


@FEW
@given(order=permutations(), seed=seeds)
def test_layers_are_permutation_equivariant_with_padding(order, seed):
    rng = np.random.default_rng(seed)
    length = len(order)
    x = normal(rng, 2, length, WIDTH)
    padding = rng.random((2, length)) > 0.3
    for name, layer in _attention_layers().items():
        out = to_numpy(layer(x, mask=padding))
        permuted = to_numpy(layer(x[:, order], mask=padding[:, order]))
        np.testing.assert_allclose(permuted, out[:, order], atol=1e-5, err_msg=name)


@functools.cache
def _toy_model(encoding):
    keras.utils.set_random_seed(0)
    return build_toy_model(
        vocab_size=10,
        max_length=6,
        d_model=8,
        num_heads=2,
        num_layers=1,
        encoding=encoding,
    )


@VERY_FEW
@given(order=permutations(), seed=seeds)
def test_toy_model_without_encoding_is_permutation_equivariant(order, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 10, size=(2, len(order)))  # 0 is padding
    model = _toy_model(None)
    out = to_numpy(model(tokens))
    np.testing.assert_allclose(
        to_numpy(model(tokens[:, order])), out[:, order], atol=1e-5
    )


@VERY_FEW
@given(order=permutations(identity=False), seed=seeds)
def test_position_information_breaks_permutation_equivariance(order, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, 2, len(order), WIDTH)
    tokens = rng.integers(1, 10, size=(2, len(order)))
    for encoding in (SinusoidalPositionEncoding(), LearnedPositionEmbedding(6)):
        for attention in _attention_layers().values():
            model = keras.Sequential([encoding, attention])
            out = to_numpy(model(x))
            permuted = to_numpy(model(x[:, order]))
            assert np.abs(permuted - out[:, order]).max() > 1e-3, (encoding, attention)
    for encoding in ("sinusoidal", "learned"):
        model = _toy_model(encoding)
        out = to_numpy(model(tokens))
        permuted = to_numpy(model(tokens[:, order]))
        assert np.abs(permuted - out[:, order]).max() > 1e-3, encoding


# Attention weights ------------------------------------------------------------


@FEW
@given(leading=leading_dims, sizes=q_k_lengths, causal=st.booleans(), seed=seeds)
def test_function_weights_are_a_distribution_over_allowed_keys(
    leading, sizes, causal, seed
):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    q, k, v = (
        normal(rng, *leading, q_len, 4),
        normal(rng, *leading, k_len, 4),
        normal(rng, *leading, k_len, 3),
    )
    mask = random_mask(rng, (*leading, q_len, k_len))
    _, weights = scaled_dot_product_attention(
        q, k, v, mask, causal=causal, return_weights=True
    )
    allowed = mask & (np.tril(np.ones((q_len, k_len), bool)) if causal else True)
    _check_distribution(to_numpy(weights), allowed)


@FEW
@given(sizes=q_k_lengths, seed=seeds)
def test_layer_weights_honour_every_mask(sizes, seed):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    query, value = normal(rng, 2, q_len, WIDTH), normal(rng, 2, k_len, WIDTH)
    attention_mask = random_mask(rng, (2, q_len, k_len))
    query_mask = rng.random((2, q_len)) > 0.3
    value_mask = rng.random((2, k_len)) > 0.3
    allowed = attention_mask & query_mask[:, :, None] & value_mask[:, None, :]
    layers = _attention_layers()
    for layer in (layers["ScaledDotProductAttention"], layers["MultiHeadAttention"]):
        _, weights = layer(
            query,
            value,
            attention_mask=attention_mask,
            query_mask=query_mask,
            value_mask=value_mask,
            return_attention_scores=True,
        )
        weights = to_numpy(weights)
        if weights.ndim == 4:  # (batch, heads, q_len, k_len)
            _check_distribution(weights, allowed[:, None])
        else:
            _check_distribution(weights, allowed)


def _check_distribution(weights, allowed):
    allowed = np.broadcast_to(allowed, weights.shape)
    assert np.all(weights >= 0)
    assert np.all(weights[~allowed] == 0)  # exactly zero, not merely small
    np.testing.assert_allclose(
        weights.sum(-1), allowed.any(-1).astype("float32"), atol=1e-5
    )


# Causality --------------------------------------------------------------------


@st.composite
def causal_cases(draw):
    """A sequence length, the last position `t` kept, and a seed."""
    length = draw(lengths)
    t = draw(st.integers(0, length - 2))
    return length, t, draw(seeds)


def _change_after(rng, x, t):
    changed = x.copy()
    changed[..., t + 1 :, :] = normal(rng, *changed[..., t + 1 :, :].shape) * 10
    return changed


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
    x = normal(rng, *leading, length, 4)
    changed = _change_after(rng, x, t)

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


def _two_causal_layers(kind, causal, seed):
    """Two layers with the same weights and the same dropout seed.

    Each called once, right after `keras.utils.set_random_seed(seed)`, they
    drop the same entries.
    """
    if kind == "TransformerBlock":
        # No `seed` argument: the same global seed gives the same generators.
        # On PyTorch an unseeded `keras.layers.Dropout` (the residual dropout)
        # draws from torch's global generator instead, hence the global seed
        # reset before each call.
        pair = []
        for _ in range(2):
            keras.utils.set_random_seed(seed)
            layer = TransformerBlock(
                num_heads=2, intermediate_dim=16, dropout=0.5, causal=causal
            )
            layer.build((None, None, WIDTH))
            pair.append(layer)
    else:
        cls = {
            "ScaledDotProductAttention": ScaledDotProductAttention,
            "MultiHeadAttention": MultiHeadAttention,
        }[kind]
        extra = {"num_heads": 2, "key_dim": 4} if kind == "MultiHeadAttention" else {}
        pair = [cls(dropout=0.5, seed=seed, causal=causal, **extra) for _ in range(2)]
        for layer in pair:
            layer.build((None, None, WIDTH))
    pair[1].set_weights(pair[0].get_weights())
    return pair


@FEW
@given(
    case=causal_cases(),
    kind=st.sampled_from(
        ["ScaledDotProductAttention", "MultiHeadAttention", "TransformerBlock"]
    ),
    by_constructor=st.booleans(),
    return_scores=st.booleans(),
)
def test_layer_causal_output_ignores_the_future_with_dropout(
    case, kind, by_constructor, return_scores
):
    # Keras' MultiHeadAttention once dropped the causal mask exactly when
    # dropout was on or the scores were asked for (keras-team/keras#23038).
    length, t, seed = case
    rng = np.random.default_rng(seed)
    x = normal(rng, 2, length, WIDTH)
    changed = _change_after(rng, x, t)
    if kind == "TransformerBlock":
        by_constructor = True  # a block takes `causal` only in its constructor
    first, second = _two_causal_layers(kind, by_constructor, seed % 1000)
    kwargs = {"training": True, "return_attention_scores": return_scores}
    if not by_constructor:
        kwargs["use_causal_mask"] = True
    keras.utils.set_random_seed(seed % 1000)
    before = first(x, **kwargs)
    keras.utils.set_random_seed(seed % 1000)
    after = second(changed, **kwargs)
    if return_scores:
        (before, scores), (after, _) = before, after
        future = np.triu(np.ones((length, length), bool), 1)
        assert np.all(to_numpy(scores)[..., future] == 0)
    before, after = to_numpy(before), to_numpy(after)
    np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-5)
    # The dropout was on: the output differs from an evaluation-mode call.
    kwargs.update(training=False, return_attention_scores=False)
    assert not np.allclose(before, to_numpy(first(x, **kwargs)))


# Numerics ---------------------------------------------------------------------


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
        normal(rng, 2, q_len, 4),
        normal(rng, 2, k_len, 4),
        normal(rng, 2, k_len, 3),
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
    _check_distribution(to_numpy(weights), allowed)


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
        return ops.cast(normal(rng, *shape) * scale, "bfloat16")

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


# Gradients ----------------------------------------------------------------------


@FEW
@given(leading=leading_dims, sizes=q_k_lengths, causal=st.booleans(), seed=seeds)
def test_function_gradients_are_finite_with_fully_masked_rows(
    leading, sizes, causal, seed
):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    q, k, v = (
        normal(rng, *leading, q_len, 4),
        normal(rng, *leading, k_len, 4),
        normal(rng, *leading, k_len, 3),
    )
    mask = random_mask(rng, (*leading, q_len, k_len))
    probe = normal(rng, *leading, q_len, k_len)

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
        normal(rng, 2, 2, q_len, 4),
        normal(rng, 2, kv_heads, k_len, 4),
        normal(rng, 2, kv_heads, k_len, 3),
    )
    probe = normal(rng, 2, 2, q_len, 3)
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


@VERY_FEW
@given(length=lengths, seed=seeds)
def test_layer_gradients_are_finite_with_fully_masked_rows(length, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, 2, length, WIDTH)
    mask = random_mask(rng, (2, length, length))
    layer = _attention_layers()["MultiHeadAttention"]

    def loss(x):
        return ops.sum(layer(x, attention_mask=mask) ** 2)

    value, (grad,) = value_and_gradient(loss, x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.fixture(autouse=True, scope="module")
def _forget_cached_layers():
    yield
    _attention_layers.cache_clear()
    _toy_model.cache_clear()


# The key/value cache ----------------------------------------------------------

segmentations = st.sampled_from([(2, 2, 4), (3, 5), (1, 1, 1, 5)])
chunkings = st.sampled_from([(3, 1, 4), (5, 3)])  # across segment boundaries


@VERY_FEW
@given(sizes=segmentations, chunks=chunkings, per_row=st.booleans(), seed=seeds)
def test_cached_steps_equal_the_full_pass_through_any_segments(
    sizes, chunks, per_row, seed
):
    # A cache of 8 positions cut into segments, written by calls of any
    # lengths (across segment boundaries too): every call's output equals
    # the full causal pass, and the segments end up holding the keys.
    rng = np.random.default_rng(seed)
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, num_key_value_heads=1, causal=True, seed=seed
    )
    x = normal(rng, 2, 8, WIDTH)
    whole = to_numpy(layer(x))
    cache = tuple(
        tuple(ops.zeros((2, 1, n, 4)) for n in sizes) for _ in ("key", "value")
    )
    start = 0
    for length in chunks:
        index = np.full((2,), start, "int32") if per_row else start
        out, cache = layer(x[:, start : start + length], cache=cache, cache_index=index)
        np.testing.assert_allclose(
            to_numpy(out), whole[:, start : start + length], atol=1e-5
        )
        start += length
    assert [tuple(part.shape) for part in cache[0]] == [(2, 1, n, 4) for n in sizes]
    keys = np.concatenate([to_numpy(part) for part in cache[0]], axis=2)
    expected = to_numpy(layer.key_dense(x)).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(keys, expected, atol=1e-6)

import keras
import numpy as np
import pytest

from keras_attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    attention_weights,
    build_toy_model,
    make_reversal_data,
)


def test_one_array_per_block_in_model_order_and_model_unchanged():
    model = build_toy_model(12, 8, d_model=16, num_heads=2, num_layers=3, dropout=0.3)
    tokens, _ = make_reversal_data(4, 8, 12, min_length=3, seed=2)
    before = model.predict(tokens, verbose=0)
    weights_before = [w.copy() for w in model.get_weights()]
    found = attention_weights(model, tokens)
    assert len(found) == 3
    real = tokens != 0
    for weights in found:
        assert isinstance(weights, np.ndarray)
        assert weights.shape == (4, 2, 8, 8)
        # The padding mask was carried: no weight on padded keys ...
        assert np.all(np.moveaxis(weights, 3, 1)[~real] == 0)
        # ... real queries sum to 1 (training=False: no dropout), padded to 0.
        sums = np.moveaxis(weights.sum(-1), 2, 1)  # (batch, q_len, heads)
        np.testing.assert_allclose(sums[real], 1, rtol=1e-5)
        np.testing.assert_allclose(sums[~real], 0)
    np.testing.assert_array_equal(model.predict(tokens, verbose=0), before)
    for a, b in zip(model.get_weights(), weights_before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_are_those_the_layer_computes():
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(10, 8, mask_zero=True))
    model.add(MultiHeadAttention(num_heads=2, key_dim=4))
    model.add(ScaledDotProductAttention(causal=True))
    tokens = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    first, second = attention_weights(model, tokens)
    embedded = model.layers[0](tokens)
    mask = model.layers[0].compute_mask(tokens)
    hidden, expected = model.layers[1](
        embedded, mask=mask, return_attention_scores=True
    )
    np.testing.assert_allclose(first, keras.ops.convert_to_numpy(expected), rtol=1e-6)
    _, expected = model.layers[2](hidden, mask=mask, return_attention_scores=True)
    assert second.shape == (2, 4, 4)
    np.testing.assert_allclose(second, keras.ops.convert_to_numpy(expected), rtol=1e-6)


def test_other_models_get_a_clear_error():
    inputs = keras.Input((4, 8))
    functional = keras.Model(inputs, MultiHeadAttention(2, 4)(inputs))
    with pytest.raises(
        TypeError,
        match=r"attention_weights: `model` must be a keras\.Sequential whose attention "
        r"layers are keras_attention's .* Received: model of type Functional",
    ):
        attention_weights(functional, np.zeros((1, 4, 8)))
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(
        ValueError,
        match=r"attention_weights: `model` has no keras_attention attention layer "
        r"\(MultiHeadAttention, ScaledDotProductAttention or TransformerBlock\)\. "
        r"Received: layers \['Dense'\]",
    ):
        attention_weights(plain, np.zeros((1, 4)))

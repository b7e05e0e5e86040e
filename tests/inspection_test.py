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
from tests.layer_test_case import assert_raises_with, normal


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


def functional_model():
    inputs = keras.Input((4, 8))
    return keras.Model(inputs, MultiHeadAttention(2, 4)(inputs))


NO_ATTENTION = "attention_weights: `model` has no keras_attention attention layer (MultiHeadAttention, ScaledDotProductAttention or TransformerBlock). Received: layers "

BAD_INPUTS = [
    pytest.param(
        lambda: attention_weights(functional_model(), np.zeros((1, 4, 8))),
        TypeError,
        "attention_weights: `model` must be a keras.Sequential whose attention layers are keras_attention's MultiHeadAttention, ScaledDotProductAttention or TransformerBlock. Received: model of type Functional",
        id="functional-model",
    ),
    pytest.param(
        lambda: attention_weights(
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
            np.zeros((1, 4)),
        ),
        ValueError,
        NO_ATTENTION + "['Dense']",
        id="no-attention-layer",
    ),
    pytest.param(
        lambda: attention_weights(
            keras.Sequential([keras.Input((3,))]), np.ones((2, 3, 4), "int32")
        ),
        ValueError,
        NO_ATTENTION + "[]",
        id="no-layer",
    ),
    pytest.param(
        lambda: attention_weights(
            keras.Sequential([keras.Input((None, 8)), ScaledDotProductAttention()]),
            normal(2, 3),
        ),
        ValueError,
        "attention_weights: `inputs` must have the model's input shape (None, None, 8). Received: inputs.shape=(2, 3)",
        id="inputs-rank",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)

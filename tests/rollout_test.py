import math

import keras
import numpy as np
import pytest

from keras_attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    TransformerBlock,
    attention_rollout,
    attention_weights,
)
from tests.layer_test_case import assert_raises_with


def _mixed_model():
    """A TransformerBlock (residual 0.5) then a bare attention layer (0)."""
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(10, 8, mask_zero=True))
    model.add(TransformerBlock(2, 16))
    model.add(MultiHeadAttention(2, 4))
    return model


TOKENS = np.array([[1, 2, 3, 0], [4, 5, 6, 7]])


def test_one_layer_by_hand():
    # x = I: the logits are I / sqrt(2), so each query puts e^a / (1 + e^a)
    # on itself, a = 1 / sqrt(2); with residual 0.5, half of it more.
    model = keras.Sequential([keras.Input((2, 2)), ScaledDotProductAttention()])
    x = np.eye(2, dtype="float32")[None]
    own = math.exp(2**-0.5) / (1 + math.exp(2**-0.5))
    expected = np.array([[own, 1 - own], [1 - own, own]])
    np.testing.assert_allclose(attention_rollout(model, x)[0], expected, rtol=1e-5)
    np.testing.assert_allclose(
        attention_rollout(model, x, residual=0.5)[0],
        0.5 * np.eye(2) + 0.5 * expected,
        rtol=1e-5,
    )


def test_product_of_the_layer_maps_residual_aware_and_mask_aware():
    model = _mixed_model()
    block, bare = (w.mean(axis=1) for w in attention_weights(model, TOKENS))
    real = TOKENS != 0
    identity = real[:, :, None] * np.eye(4)  # no identity at padding
    expected = bare @ (0.5 * identity + 0.5 * block)
    rollout = attention_rollout(model, TOKENS)
    assert rollout.shape == (2, 4, 4)
    np.testing.assert_allclose(rollout, expected, rtol=1e-5, atol=1e-7)
    # Real rows sum to 1; padded positions get 0, as rows and as columns.
    np.testing.assert_allclose(rollout.sum(-1)[real], 1, rtol=1e-5)
    np.testing.assert_array_equal(rollout[0, 3], 0)
    np.testing.assert_array_equal(rollout[0, :, 3], 0)
    # Overridden residual, and per head.
    plain = attention_rollout(model, TOKENS, residual=0.0)
    np.testing.assert_allclose(plain, bare @ block, rtol=1e-5, atol=1e-7)
    heads = [w for w in attention_weights(model, TOKENS)]
    per_head = attention_rollout(model, TOKENS, head_fusion="none")
    assert per_head.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(
        per_head,
        heads[1] @ (0.5 * identity[:, None] + 0.5 * heads[0]),
        rtol=1e-5,
        atol=1e-7,
    )


def _cross_model():
    query, value = keras.Input((2, 4)), keras.Input((3, 4))
    return keras.Model(
        [query, value], MultiHeadAttention(2, 2, name="cross")(query, value)
    )


BAD_INPUTS = [
    pytest.param(
        lambda: attention_rollout(_mixed_model(), TOKENS, residual=1.5),
        ValueError,
        "attention_rollout: `residual` must be None or a number in [0, 1]. Received: residual=1.5",
        id="residual-above-one",
    ),
    pytest.param(
        lambda: attention_rollout(_mixed_model(), TOKENS, head_fusion="max"),
        ValueError,
        "attention_rollout: `head_fusion` must be one of ('mean', 'none'). Received: head_fusion='max'",
        id="unknown-head-fusion",
    ),
    pytest.param(
        lambda: attention_rollout(
            _cross_model(), [np.ones((1, 2, 4)), np.ones((1, 3, 4))]
        ),
        ValueError,
        "attention_rollout: every attention call must be self-attention over one sequence, weights (batch, heads, seq_len, seq_len). Received: cross with weights.shape=(1, 2, 2, 3)",
        id="cross-attention",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)

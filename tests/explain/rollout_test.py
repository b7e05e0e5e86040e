import math

import keras
import numpy as np
import pytest

from keras_attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    TransformerBlock,
    attention_flow,
    attention_rollout,
    attention_weights,
)
from keras_attention.explain.rollout import _max_flows
from tests.layer_test_case import assert_raises_with, normal


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


def test_flow_of_a_graph_small_enough_to_solve_by_hand():
    # Two positions, two layers; first[i, j] is the edge from i after layer 1
    # to j before it. Output 0 reaches input 0 through both middle nodes
    # (min(.5, 1) + min(.5, .5) = 1) and input 1 only through middle node 1
    # (.5); output 1 goes through middle node 1 only: .5 to each input.
    first = np.array([[1.0, 0.0], [0.5, 0.5]])
    second = np.array([[0.5, 0.5], [0.0, 1.0]])
    flow = _max_flows(np.stack([first, second]))
    np.testing.assert_allclose(flow, [[1.0, 0.5], [0.5, 0.5]], atol=1e-5)
    # Where rollout multiplies along paths: [[.75, .25], [.5, .5]].
    np.testing.assert_allclose(second @ first, [[0.75, 0.25], [0.5, 0.5]])
    # A shared bottleneck: two paths through one edge of capacity .3.
    chain = np.zeros((3, 3, 3))
    chain[0] = [[0.3, 0, 0], [0, 1, 0], [0, 0, 1]]  # middle 0 -> input 0: .3
    chain[1] = [[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0]]
    chain[2] = [[0, 0, 0], [0, 0, 0], [0.5, 0, 0.5]]  # output 2 -> 0 and 2
    # Output 2 -> 0 -> 0 -> input 0 and 2 -> 2 -> 0 -> input 0: both through
    # the .3 edge: .3, not the sum of their bottlenecks (.6).
    np.testing.assert_allclose(_max_flows(chain)[2, 0], 0.3, atol=1e-5)


def test_flow_of_one_layer_is_its_map():
    model = keras.Sequential([keras.Input((2, 2)), ScaledDotProductAttention()])
    x = np.eye(2, dtype="float32")[None]
    for residual in (None, 0.5):
        np.testing.assert_allclose(
            attention_flow(model, x, residual=residual),
            attention_rollout(model, x, residual=residual),
            atol=1e-5,
        )


def test_flow_through_two_calls_is_the_sum_of_path_bottlenecks():
    # Two attention calls: the paths i -> k -> j share only their ends, so
    # the maximum flow is sum_k min(second[i, k], first[k, j]) exactly.
    model = _mixed_model()
    block, bare = (w.mean(axis=1) for w in attention_weights(model, TOKENS))
    real = TOKENS != 0
    first = 0.5 * real[:, :, None] * np.eye(4) + 0.5 * block
    expected = np.minimum(bare[:, :, :, None], first[:, None, :, :]).sum(axis=2)
    raw = attention_flow(model, TOKENS, normalize=False)
    assert raw.shape == (2, 4, 4)
    np.testing.assert_allclose(raw, expected, atol=1e-5)
    # Bounded: each flow at most 1 (a row's capacity); padded positions 0.
    assert raw.min() >= 0 and raw.max() <= 1 + 1e-5
    np.testing.assert_array_equal(raw[0, 3], 0)
    np.testing.assert_array_equal(raw[0, :, 3], 0)
    flow = attention_flow(model, TOKENS)
    np.testing.assert_allclose(flow.sum(-1)[real], 1, rtol=1e-5)
    np.testing.assert_allclose(
        flow, raw / raw.sum(-1, keepdims=True).clip(1e-30), atol=1e-6
    )
    per_head = attention_flow(model, TOKENS, head_fusion="none", residual=0.0)
    heads = attention_weights(model, TOKENS)
    expected = np.minimum(heads[1][..., None], heads[0][:, :, None]).sum(axis=3)
    expected /= expected.sum(-1, keepdims=True).clip(1e-30)
    assert per_head.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(per_head, expected, atol=1e-5)


def _cross_model():
    query, value = keras.Input((2, 4)), keras.Input((3, 4))
    return keras.Model(
        [query, value], MultiHeadAttention(2, 2, name="cross")(query, value)
    )


def _encoder_decoder_model():
    # A source of 2 and a target of 3 positions: the two self-attention
    # calls differ in length, and the cross-attention comes last.
    source, target = keras.Input((2, 4)), keras.Input((3, 4))
    encoded = MultiHeadAttention(2, 2, name="encoder")(source)
    decoded = MultiHeadAttention(2, 2, name="decoder")(target)
    return keras.Model(
        [source, target], MultiHeadAttention(2, 2, name="cross")(decoded, encoded)
    )


def _square_cross_model():
    # Query and value of the same length: square weights, over another sequence.
    query, value = keras.Input((3, 4)), keras.Input((3, 4))
    return keras.Model(
        [query, value], MultiHeadAttention(2, 2, name="cross")(query, value)
    )


SQUARE_CROSS_INPUTS = [np.ones((1, 3, 4)), np.arange(12.0).reshape(1, 3, 4)]


def test_attention_given_its_query_as_value_is_self_attention():
    # `layer(x, x)`: the same tensor as query and value, so self-attention.
    x = keras.Input((3, 4))
    model = keras.Model(x, MultiHeadAttention(2, 2)(x, x))
    inputs = normal(2, 3, 4)
    (weights,) = attention_weights(model, inputs)
    np.testing.assert_allclose(
        attention_rollout(model, inputs), weights.mean(axis=1), rtol=1e-6
    )


CROSS = "every attention call must be self-attention over one sequence. Received: cross called with a `value` or `key` other than its `query` (cross-attention)"

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
        "attention_rollout: " + CROSS,
        id="cross-attention",
    ),
    pytest.param(
        lambda: attention_rollout(
            _encoder_decoder_model(), [np.ones((1, 2, 4)), np.ones((1, 3, 4))]
        ),
        ValueError,
        "attention_rollout: " + CROSS,
        id="encoder-decoder-of-different-lengths",
    ),
    pytest.param(
        lambda: attention_rollout(_square_cross_model(), SQUARE_CROSS_INPUTS),
        ValueError,
        "attention_rollout: every attention call must be self-attention over one sequence. Received: cross called with a `value` or `key` other than its `query` (cross-attention)",
        id="cross-attention-of-equal-lengths",
    ),
    pytest.param(
        lambda: attention_flow(_mixed_model(), TOKENS, residual=-0.1),
        ValueError,
        "attention_flow: `residual` must be None or a number in [0, 1]. Received: residual=-0.1",
        id="flow-residual-below-zero",
    ),
    pytest.param(
        lambda: attention_flow(_mixed_model(), TOKENS, normalize="yes"),
        TypeError,
        "attention_flow: `normalize` must be a bool. Received: normalize='yes'",
        id="flow-normalize-not-bool",
    ),
    pytest.param(
        lambda: attention_flow(
            _cross_model(), [np.ones((1, 2, 4)), np.ones((1, 3, 4))]
        ),
        ValueError,
        "attention_flow: " + CROSS,
        id="flow-cross-attention",
    ),
    pytest.param(
        lambda: attention_flow(_square_cross_model(), SQUARE_CROSS_INPUTS),
        ValueError,
        "attention_flow: every attention call must be self-attention over one sequence. Received: cross called with a `value` or `key` other than its `query` (cross-attention)",
        id="flow-cross-attention-of-equal-lengths",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)

import keras
import numpy as np
import pytest

from keras_attention import ScaledDotProductAttention, scaled_dot_product_attention
from tests.layer_test_case import (
    RNG,
    assert_raises_with,
    normal,
    run_layer_test,
    symbolic,
    to_numpy,
)


def test_self_attention_layer_behaviours(tmp_path):
    run_layer_test(
        ScaledDotProductAttention,
        init_kwargs={"causal": True},
        input_data=normal(2, 5, 8),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=0,
        run_training=False,  # no weights to train
        tmp_path=tmp_path,
    )


def test_cross_attention_layer_behaviours(tmp_path):
    run_layer_test(
        ScaledDotProductAttention,
        init_kwargs={"scale": 0.5, "dropout": 0.2, "seed": 1},
        input_data={
            "query": normal(2, 3, 4),
            "value": normal(2, 6, 7),
            "key": normal(2, 6, 4),
        },
        expected_output_shape=(2, 3, 7),
        expected_num_trainable_weights=0,
        run_training=False,
        tmp_path=tmp_path,
    )


def test_sliding_window_and_tiles_layer_behaviours(tmp_path):
    run_layer_test(
        ScaledDotProductAttention,
        init_kwargs={"sliding_window": 2, "tile_size": 4, "dropout": 0.2, "seed": 3},
        input_data={"query": normal(2, 7, 4), "value": normal(2, 5, 4)},
        expected_output_shape=(2, 7, 4),
        expected_num_trainable_weights=0,
        run_training=False,
        tmp_path=tmp_path,
    )


def test_layer_equals_the_function():
    q, v, k = normal(2, 3, 4), normal(2, 6, 7), normal(2, 6, 4)
    allowed = RNG.random((2, 3, 6)) > 0.3
    layer = ScaledDotProductAttention(scale=0.7)
    out, weights = layer(q, v, k, attention_mask=allowed, return_attention_scores=True)
    expected, expected_weights = scaled_dot_product_attention(
        q, k, v, allowed, scale=0.7, return_weights=True
    )
    np.testing.assert_allclose(to_numpy(out), to_numpy(expected), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(weights), to_numpy(expected_weights))


def test_in_a_sequential_model_with_padding():
    tokens = np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]])
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(10, 6, mask_zero=True))
    model.add(ScaledDotProductAttention(causal=True))
    out = to_numpy(model(tokens))
    embedded = to_numpy(model.layers[0](tokens))
    # Position 0 of a causal layer only sees itself: output = its own value.
    np.testing.assert_allclose(out[:, 0], embedded[:, 0], rtol=1e-6)
    assert np.all(out[tokens == 0] == 0)


SDPA = "ScaledDotProductAttention: "

BAD_INPUTS = [
    pytest.param(
        lambda: ScaledDotProductAttention(scale=-1),
        ValueError,
        SDPA + "`scale` must be None or a positive finite number. Received: scale=-1",
        id="scale-negative",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention(dropout=1),
        ValueError,
        SDPA + "`dropout` must be a number in [0, 1). Received: dropout=1",
        id="dropout-one",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention(sliding_window=-1),
        ValueError,
        SDPA
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=-1",
        id="sliding-window-negative",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention(sliding_window=2.5),
        ValueError,
        SDPA
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=2.5",
        id="sliding-window-float",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention(tile_size="8"),
        TypeError,
        SDPA
        + "`tile_size` must be None, 0 (the full computation) or a positive integer. Received: tile_size='8' of type str",
        id="tile-size-type",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention()(normal(3, 4)),
        ValueError,
        SDPA
        + "`query` must have rank 3, (batch, seq_len, dim). Received: query.shape=(3, 4)",
        id="rank",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention()(
            normal(2, 3, 4), normal(2, 3, 4), normal(2, 3, 5)
        ),
        ValueError,
        SDPA
        + "`query` and `key` must have the same last dimension. Received: query.shape=(2, 3, 4), key.shape=(2, 3, 5)",
        id="depth-mismatch",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention()(symbolic(None, 3, 4), symbolic(None, 5, 6)),
        ValueError,
        SDPA
        + "`query` and `key` must have the same last dimension. Received: query.shape=(None, 3, 4), key.shape=(None, 5, 6)",
        id="depth-mismatch-symbolic",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention()(np.ones((2, 3, 4), "int32")),
        TypeError,
        SDPA
        + "`query` must be a floating-point tensor. Received: query with dtype int32",
        id="int-query",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention()(
            normal(2, 3, 4), normal(2, 5, 4), value_mask=np.ones((2, 4), bool)
        ),
        ValueError,
        SDPA
        + "`value_mask` must have shape (batch, k_len)=(2, 5) or broadcast to it. Received: value_mask.shape=(2, 4)",
        id="value-mask-shape",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention()(normal(2, 3, 4), use_causal_mask="no"),
        TypeError,
        SDPA + "`use_causal_mask` must be a bool. Received: use_causal_mask='no'",
        id="use-causal-mask-type",
    ),
    pytest.param(
        lambda: ScaledDotProductAttention()(normal(2, 3, 4), start_index=4),
        ValueError,
        SDPA
        + "`start_index` gives the positions of a `rotary_embedding`, and this layer has none. Received: start_index=4",
        id="start-index-without-rotary",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)

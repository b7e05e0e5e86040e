import keras
import numpy as np
import pytest

from keras_attention import ScaledDotProductAttention, scaled_dot_product_attention
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(2)


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


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


def test_bad_arguments():
    with pytest.raises(
        ValueError,
        match=r"ScaledDotProductAttention: `scale` must be None or a positive finite "
        r"number\. Received: scale=-2",
    ):
        ScaledDotProductAttention(scale=-2)
    with pytest.raises(
        ValueError,
        match=r"ScaledDotProductAttention: `sliding_window` must be None or a "
        r"positive integer\. Received: sliding_window=-1",
    ):
        ScaledDotProductAttention(sliding_window=-1)
    with pytest.raises(
        TypeError,
        match=r"ScaledDotProductAttention: `tile_size` must be None or a positive "
        r"integer\. Received: tile_size='8' of type str",
    ):
        ScaledDotProductAttention(tile_size="8")
    with pytest.raises(
        ValueError,
        match=r"ScaledDotProductAttention: `query` and `key` must have the same last "
        r"dimension\. Received: query\.shape=\(2, 3, 4\), key\.shape=\(2, 3, 5\)",
    ):
        ScaledDotProductAttention()(normal(2, 3, 4), normal(2, 3, 4), normal(2, 3, 5))
    with pytest.raises(
        TypeError,
        match=r"ScaledDotProductAttention: `use_causal_mask` must be a bool\. "
        r"Received: use_causal_mask=None",
    ):
        ScaledDotProductAttention()(normal(2, 3, 4), use_causal_mask=None)


def test_start_index_needs_a_rotary_embedding():
    with pytest.raises(
        ValueError,
        match=r"ScaledDotProductAttention: `start_index` gives the positions of a "
        r"`rotary_embedding`, and this layer has none\. Received: start_index=4",
    ):
        ScaledDotProductAttention()(normal(2, 3, 4), start_index=4)

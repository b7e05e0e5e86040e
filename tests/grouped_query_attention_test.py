"""Grouped-query and multi-query attention: the function and the layer.

Oracles: the same attention with the keys and values repeated per group (what
`keras.layers.GroupQueryAttention` computes), and Keras' layer itself through
`set_weights`.
"""

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import MultiHeadAttention, scaled_dot_product_attention
from tests.layer_test_case import RNG, assert_raises_with, normal, to_numpy

OPTIONS = [
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


@pytest.mark.parametrize("options", OPTIONS)
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


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_layer_equals_keras_group_query_attention(kv_heads):
    query, value = normal(2, 5, 16), normal(2, 6, 16)
    theirs = keras.layers.GroupQueryAttention(
        head_dim=4, num_query_heads=4, num_key_value_heads=kv_heads
    )
    ours = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=kv_heads)
    theirs(query, value)
    ours(query, value)
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in theirs.weights
    ]
    ours.set_weights(theirs.get_weights())
    expected, expected_scores = theirs(query, value, return_attention_scores=True)
    output, scores = ours(query, value, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(output), to_numpy(expected), atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores), to_numpy(expected_scores), atol=1e-6)
    causal = theirs(query, query, use_causal_mask=True)
    np.testing.assert_allclose(
        to_numpy(ours(query, use_causal_mask=True)), to_numpy(causal), atol=1e-5
    )


def test_grouped_layer_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 16, mask_zero=True)(inputs)
    x = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=1, causal=True)(
        x
    )
    model = keras.Model(inputs, x)
    tokens = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    path = str(tmp_path / "gqa.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.layers[-1].num_key_value_heads == 1
    assert tuple(loaded.layers[-1].key_dense.kernel.shape) == (16, 1, 4)
    np.testing.assert_allclose(
        loaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-6
    )


BAD = [
    pytest.param(
        lambda: MultiHeadAttention(num_heads=4, key_dim=2, num_key_value_heads=3),
        ValueError,
        "MultiHeadAttention: `num_key_value_heads` must divide `num_heads`. "
        "Received: num_key_value_heads=3, num_heads=4",
        id="mha-kv-heads-not-dividing",
    ),
    pytest.param(
        lambda: MultiHeadAttention(num_heads=4, key_dim=2, num_key_value_heads=0),
        ValueError,
        "MultiHeadAttention: `num_key_value_heads` must be None or a positive "
        "integer. Received: num_key_value_heads=0",
        id="mha-kv-heads-zero",
    ),
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
]


@pytest.mark.parametrize("call,error,message", BAD)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


def test_config_keeps_the_head_counts_as_python_ints():
    layer = keras_attention.MultiHeadAttention(
        num_heads=np.int64(8), key_dim=4, num_key_value_heads=np.int64(1)
    )
    config = layer.get_config()
    assert (config["num_heads"], config["num_key_value_heads"]) == (8, 1)

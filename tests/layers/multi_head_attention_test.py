"""`MultiHeadAttention`: the layer test, parity with Keras' layer through
`set_weights`, masks, grouped-query heads, rotary embeddings and ALiBi. Its
drop-in compatibility with `keras.layers.MultiHeadAttention` (Keras' own
test cases, weight files, LoRA, quantization) is in
`multi_head_attention_keras_test.py`, its key/value cache in
`kv_cache_test.py`."""

import inspect
import warnings

import keras
import numpy as np
import pytest
from hypothesis import given
from keras import ops

import keras_attention
from keras_attention import MultiHeadAttention, alibi_slopes
from tests.gradients import value_and_gradient
from tests.layer_test_case import (
    RNG,
    assert_raises_with,
    compiled,
    normal,
    run_layer_test,
    symbolic,
    to_numpy,
)
from tests.ops_test import alibi_reference
from tests.properties import (
    VERY_FEW,
    WIDTH,
    attention_layers,
    forget,
    lengths,
    random_mask,
    rng_normal,
    seeds,
)


def test_self_attention_layer_behaviours(tmp_path):
    run_layer_test(
        MultiHeadAttention,
        init_kwargs={"num_heads": 2, "key_dim": 4},
        input_data=normal(2, 5, 8),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=8,
        tmp_path=tmp_path,
    )


def test_cross_attention_layer_behaviours_with_unequal_lengths(tmp_path):
    run_layer_test(
        MultiHeadAttention,
        init_kwargs={
            "num_heads": 3,
            "key_dim": 4,
            "value_dim": 5,
            "use_bias": False,
            "output_shape": 6,
            "causal": True,
            "dropout": 0.1,
            "seed": 2,
        },
        input_data={"query": normal(2, 3, 8), "value": normal(2, 7, 10)},
        expected_output_shape=(2, 3, 6),
        expected_num_trainable_weights=4,
        tmp_path=tmp_path,
    )


def test_sliding_window_and_tiles_layer_behaviours(tmp_path):
    run_layer_test(
        MultiHeadAttention,
        init_kwargs={
            "num_heads": 2,
            "key_dim": 4,
            "causal": True,
            "sliding_window": 3,
            "tile_size": 4,
        },
        input_data=normal(2, 9, 8),
        expected_output_shape=(2, 9, 8),
        expected_num_trainable_weights=8,
        tmp_path=tmp_path,
    )


def test_key_different_from_value(tmp_path):
    run_layer_test(
        MultiHeadAttention,
        init_kwargs={"num_heads": 2, "key_dim": 4, "output_shape": (2, 3)},
        input_data={
            "query": normal(2, 3, 8),
            "value": normal(2, 6, 10),
            "key": normal(2, 6, 5),
        },
        expected_output_shape=(2, 3, 2, 3),
        expected_num_trainable_weights=8,
        tmp_path=tmp_path,
    )


def test_weights_have_keras_layout_and_order():
    ours = MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5)
    ours.build((2, 3, 8), (2, 7, 10), (2, 7, 6))
    theirs = keras.layers.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5)
    theirs.build((2, 3, 8), (2, 7, 10), (2, 7, 6))
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in theirs.weights
    ]
    assert [tuple(w.shape) for w in ours.weights][:2] == [(8, 3, 4), (3, 4)]


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_parity_with_keras_mha_through_set_weights(use_bias, causal):
    query, value = normal(2, 4, 8), normal(2, 6, 12)
    theirs = keras.layers.MultiHeadAttention(
        num_heads=2, key_dim=5, value_dim=3, use_bias=use_bias
    )
    expected, expected_scores = theirs(
        query, value, use_causal_mask=causal, return_attention_scores=True
    )
    ours = MultiHeadAttention(num_heads=2, key_dim=5, value_dim=3, use_bias=use_bias)
    ours(query, value)
    ours.set_weights(theirs.get_weights())
    output, scores = ours(
        query, value, use_causal_mask=causal, return_attention_scores=True
    )
    np.testing.assert_allclose(to_numpy(output), to_numpy(expected), atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores), to_numpy(expected_scores), atol=1e-6)


@pytest.mark.skipif(
    "sliding_window"
    not in inspect.signature(keras.layers.MultiHeadAttention).parameters,
    reason=f"Keras {keras.version()}: keras.layers.MultiHeadAttention has no "
    "`sliding_window` to compare with (the band is checked against NumPy in "
    "tests/ops_test.py)",
)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [1, 3, 20])
def test_sliding_window_parity_with_keras_mha_through_set_weights(causal, window):
    query, value = normal(2, 9, 8), normal(2, 12, 6)
    theirs = keras.layers.MultiHeadAttention(
        num_heads=2, key_dim=4, sliding_window=window
    )
    expected, expected_scores = theirs(
        query, value, use_causal_mask=causal, return_attention_scores=True
    )
    ours = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=window)
    ours(query, value)
    ours.set_weights(theirs.get_weights())
    output, scores = ours(
        query, value, use_causal_mask=causal, return_attention_scores=True
    )
    np.testing.assert_allclose(to_numpy(output), to_numpy(expected), atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores), to_numpy(expected_scores), atol=1e-6)
    without_scores = ours(query, value, use_causal_mask=causal)
    np.testing.assert_allclose(to_numpy(without_scores), to_numpy(expected), atol=1e-5)


def _padded_tokens():
    tokens = RNG.integers(1, 20, size=(3, 6))
    tokens[0, 4:] = 0
    tokens[1, 2:] = 0
    return tokens


def test_parity_with_keras_mha_under_padding_masks():
    tokens = _padded_tokens()
    embedding = keras.layers.Embedding(20, 8, mask_zero=True)
    inputs = keras.Input((None,), dtype="int32")
    embedded = embedding(inputs)
    theirs = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    reference = keras.Model(inputs, theirs(embedded, embedded))
    ours = MultiHeadAttention(num_heads=2, key_dim=4)
    model = keras.Sequential([keras.Input((None,), dtype="int32"), embedding, ours])
    ours.set_weights(theirs.get_weights())
    real = tokens != 0  # padded query rows are excluded: the layers differ there
    np.testing.assert_allclose(
        to_numpy(model(tokens))[real], to_numpy(reference(tokens))[real], atol=1e-5
    )


def test_padded_key_never_influences_a_real_position():
    tokens = _padded_tokens()
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(20, 8, mask_zero=True),
            MultiHeadAttention(num_heads=2, key_dim=4),
        ]
    )
    base = to_numpy(model(tokens))
    # Change what sits in the padded slots' embedding: real rows must not move.
    embedding = model.layers[0]
    table = to_numpy(embedding.embeddings)
    table[0] = RNG.normal(size=8) * 100
    embedding.embeddings.assign(table)
    moved = to_numpy(model(tokens))
    real = tokens != 0
    np.testing.assert_allclose(moved[real], base[real], atol=1e-5)


def test_padded_query_gets_output_bias_and_mask_passes_on():
    tokens = _padded_tokens()
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    embedding = keras.layers.Embedding(20, 8, mask_zero=True)
    embedded = embedding(tokens)
    mask = embedding.compute_mask(tokens)
    output = to_numpy(layer(embedded, mask=mask))
    np.testing.assert_allclose(output[tokens == 0], 0.0)  # zero biases at init
    np.testing.assert_array_equal(
        to_numpy(layer.compute_mask(embedded, mask)), tokens != 0
    )


def test_cross_attention_masks_from_keras():
    query_tokens, value_tokens = _padded_tokens()[:, :4], _padded_tokens()
    q_embed = keras.layers.Embedding(20, 8, mask_zero=True)
    v_embed = keras.layers.Embedding(20, 8, mask_zero=True)
    q_in, v_in = (
        keras.Input((None,), dtype="int32"),
        keras.Input((None,), dtype="int32"),
    )
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    _, scores = layer(q_embed(q_in), v_embed(v_in), return_attention_scores=True)
    model = keras.Model([q_in, v_in], scores)
    weights = to_numpy(model([query_tokens, value_tokens]))
    assert weights.shape == (3, 2, 4, 6)
    pad = np.broadcast_to((value_tokens == 0)[:, None, None, :], weights.shape)
    assert np.all(weights[pad] == 0)


def test_attention_mask_combines_with_causal():
    x = normal(2, 5, 8)
    allowed = RNG.random((2, 5, 5)) > 0.3
    layer = MultiHeadAttention(num_heads=2, key_dim=4, causal=True)
    _, scores = layer(x, attention_mask=allowed, return_attention_scores=True)
    expected = allowed & np.tril(np.ones((5, 5), bool))
    np.testing.assert_array_equal(to_numpy(scores)[:, 0] > 0, expected)


def test_compute_output_shape_with_unequal_lengths():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, output_shape=6)
    assert layer.compute_output_shape((None, 3, 8), (None, 9, 5)) == (None, 3, 6)
    q, v = keras.Input((3, 8)), keras.Input((9, 5))
    out, scores = layer(q, v, return_attention_scores=True)
    assert tuple(out.shape) == (None, 3, 6)
    assert tuple(scores.shape) == (None, 2, 3, 9)


def test_dropout_is_reproducible_with_a_seed():
    x = normal(2, 5, 8)
    a = MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5, seed=7)
    b = MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5, seed=7)
    a(x)
    b(x)
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(
        to_numpy(a(x, training=True)), to_numpy(b(x, training=True))
    )
    assert not np.allclose(to_numpy(a(x, training=True)), to_numpy(a(x)))


def test_sequential_save_and_load_without_custom_objects(tmp_path):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=True))
    model.add(keras_attention.MultiHeadAttention(num_heads=2, key_dim=4, causal=True))
    tokens = _padded_tokens()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(to_numpy(loaded(tokens)), to_numpy(model(tokens)))


def mha(**kwargs):
    return MultiHeadAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


MHA = "MultiHeadAttention: "


BAD_INPUTS = [
    pytest.param(
        lambda: mha(num_heads=0),
        ValueError,
        MHA + "`num_heads` must be a positive integer. Received: num_heads=0",
        id="num-heads-zero",
    ),
    pytest.param(
        lambda: mha(num_heads=2.0),
        ValueError,
        MHA + "`num_heads` must be a positive integer. Received: num_heads=2.0",
        id="num-heads-float",
    ),
    pytest.param(
        lambda: mha(key_dim=-1),
        ValueError,
        MHA + "`key_dim` must be a positive integer. Received: key_dim=-1",
        id="key-dim-negative",
    ),
    pytest.param(
        lambda: mha(key_dim="4"),
        TypeError,
        MHA + "`key_dim` must be a positive integer. Received: key_dim='4' of type str",
        id="key-dim-type",
    ),
    pytest.param(
        lambda: mha(value_dim=0),
        ValueError,
        MHA + "`value_dim` must be None or a positive integer. Received: value_dim=0",
        id="value-dim-zero",
    ),
    pytest.param(
        lambda: mha(dropout=1.5),
        ValueError,
        MHA + "`dropout` must be a number in [0, 1). Received: dropout=1.5",
        id="dropout-above-one",
    ),
    pytest.param(
        lambda: mha(dropout=-0.1),
        ValueError,
        MHA + "`dropout` must be a number in [0, 1). Received: dropout=-0.1",
        id="dropout-negative",
    ),
    pytest.param(
        lambda: mha(dropout="0.1"),
        TypeError,
        MHA
        + "`dropout` must be a number in [0, 1). Received: dropout='0.1' of type str",
        id="dropout-type",
    ),
    pytest.param(
        lambda: mha(output_shape=(3, 0)),
        ValueError,
        MHA
        + "`output_shape` must be None, a positive integer or a non-empty tuple of positive integers. Received: output_shape=(3, 0)",
        id="output-shape",
    ),
    pytest.param(
        lambda: mha(causal="yes"),
        TypeError,
        MHA + "`causal` must be a bool. Received: causal='yes'",
        id="causal-type",
    ),
    pytest.param(
        lambda: mha(use_bias="no"),
        TypeError,
        MHA + "`use_bias` must be a bool. Received: use_bias='no'",
        id="use-bias-type",
    ),
    pytest.param(
        lambda: mha(sliding_window=0),
        ValueError,
        MHA
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=0",
        id="sliding-window-zero",
    ),
    pytest.param(
        lambda: mha(sliding_window=-1),
        ValueError,
        MHA
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=-1",
        id="sliding-window-negative",
    ),
    pytest.param(
        lambda: mha(sliding_window=4.0),
        ValueError,
        MHA
        + "`sliding_window` must be None, a positive integer w (keys |i - j| < w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i + right). Received: sliding_window=4.0",
        id="sliding-window-float",
    ),
    pytest.param(
        lambda: mha(tile_size=-1),
        ValueError,
        MHA
        + "`tile_size` must be None, 0 (the full computation) or a positive integer. Received: tile_size=-1",
        id="tile-size-negative",
    ),
    pytest.param(
        lambda: mha(seed="x"),
        TypeError,
        MHA + "`seed` must be None or an int. Received: seed='x' of type str",
        id="seed-type",
    ),
    pytest.param(
        lambda: mha(kernel_initializer="no_such_initializer"),
        ValueError,
        MHA
        + "`kernel_initializer` must be the name, config or instance of a Keras initializer. Received: kernel_initializer='no_such_initializer'",
        id="unknown-initializer",
    ),
    pytest.param(
        lambda: mha()(normal(2, 8)),
        ValueError,
        MHA
        + "`query` must have rank >= 3, (batch, ..., seq_len, dim), with a known last dimension. Received: query.shape=(2, 8)",
        id="rank-2",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 4, 8), normal(2, 3, 8)),
        ValueError,
        MHA
        + "`query`, `value` and `key` must have the same rank. Received: query.shape=(2, 3, 4, 8), value.shape=(2, 3, 8), key.shape=(2, 3, 8)",
        id="ranks-differ",
    ),
    pytest.param(
        lambda: mha().build((None, 3, None)),
        ValueError,
        MHA
        + "`query` must have rank >= 3, (batch, ..., seq_len, dim), with a known last dimension. Received: query.shape=(None, 3, None)",
        id="unknown-last-dimension",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), normal(3, 4, 8)),
        ValueError,
        MHA
        + "`query`, `value` and `key` must have the same batch size. Received: query.shape=(2, 3, 8), value.shape=(3, 4, 8), key.shape=(3, 4, 8)",
        id="batch",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), normal(2, 4, 8), normal(2, 5, 8)),
        ValueError,
        MHA
        + "`key` and `value` must have the same sequence length. Received: value.shape=(2, 4, 8), key.shape=(2, 5, 8)",
        id="key-value-length",
    ),
    pytest.param(
        lambda: mha()(symbolic(None, 3, 8), symbolic(None, 4, 8), symbolic(None, 5, 8)),
        ValueError,
        MHA
        + "`key` and `value` must have the same sequence length. Received: value.shape=(None, 4, 8), key.shape=(None, 5, 8)",
        id="key-value-length-symbolic",
    ),
    pytest.param(
        lambda: mha()(symbolic(None, 3, 8, dtype="int32")),
        TypeError,
        MHA
        + "`query` must be a floating-point tensor. Received: query with dtype int32",
        id="int-query-symbolic",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), np.array([[["a"] * 8] * 3] * 2)),
        TypeError,
        MHA
        + "`value` must be a floating-point tensor. Received: value with dtype str32",
        id="string-value",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), attention_mask=np.ones((2, 3, 4), bool)),
        ValueError,
        MHA
        + "`attention_mask` must have shape (batch, q_len, k_len)=(2, 3, 3) or broadcast to it. Received: attention_mask.shape=(2, 3, 4)",
        id="attention-mask-shape",
    ),
    pytest.param(
        lambda: mha()(
            symbolic(None, 3, 8), attention_mask=symbolic(None, 3, 4, dtype="bool")
        ),
        ValueError,
        MHA
        + "`attention_mask` must have shape (batch, q_len, k_len)=(None, 3, 3) or broadcast to it. Received: attention_mask.shape=(None, 3, 4)",
        id="attention-mask-shape-symbolic",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), attention_mask=np.ones((2, 3, 3), "float32")),
        TypeError,
        MHA
        + "`attention_mask` must be boolean or integer, non-zero where a query may attend to a key (Keras' convention). Received: attention_mask with dtype float32",
        id="float-attention-mask",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), attention_mask=[[[True] * 3] * 3] * 2),
        TypeError,
        MHA
        + "`attention_mask` must be a tensor or array. Received: attention_mask of type list",
        id="list-attention-mask",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), mask=np.ones((2, 4), bool)),
        ValueError,
        MHA
        + "`mask` must have shape (batch, q_len)=(2, 3) or broadcast to it. Received: mask.shape=(2, 4)",
        id="padding-mask-shape",
    ),
    pytest.param(
        lambda: mha()(
            normal(2, 3, 8), normal(2, 5, 8), value_mask=np.ones((2, 5), "float32")
        ),
        TypeError,
        MHA
        + "`value_mask` must be boolean or integer, non-zero at real positions and zero at padding (Keras' convention). Received: value_mask with dtype float32",
        id="float-padding-mask",
    ),
    # Grouped-query attention.
    pytest.param(
        lambda: MultiHeadAttention(num_heads=4, key_dim=2, num_key_value_heads=3),
        ValueError,
        MHA + "`num_key_value_heads` must divide `num_heads`. "
        "Received: num_key_value_heads=3, num_heads=4",
        id="mha-kv-heads-not-dividing",
    ),
    pytest.param(
        lambda: MultiHeadAttention(num_heads=4, key_dim=2, num_key_value_heads=0),
        ValueError,
        MHA + "`num_key_value_heads` must be None or a positive "
        "integer. Received: num_key_value_heads=0",
        id="mha-kv-heads-zero",
    ),
    # ALiBi.
    pytest.param(
        lambda: MultiHeadAttention(num_heads=2, key_dim=4, alibi="yes"),
        TypeError,
        MHA + "`alibi` must be a bool. Received: alibi='yes'",
        id="layer alibi not a bool",
    ),
    pytest.param(
        lambda: MultiHeadAttention(num_heads=2, key_dim=4, alibi=True)(
            normal(2, 3, 4, 8)
        ),
        ValueError,
        MHA + "`alibi` needs inputs of rank 3, (batch, seq_len, dim). "
        "Received: query.shape=(2, 3, 4, 8)",
        id="layer alibi on rank 4",
    ),
]


PATTERN_BAD_INPUTS = [
    pytest.param(
        lambda: mha(sliding_window=(2, -1)),
        ValueError,
        MHA + "`sliding_window` must be None, a positive integer w (keys |i - j| "
        "< w) or a pair (left, right) of integers >= 0 (keys i - left <= j <= i "
        "+ right). Received: sliding_window=(2, -1)",
        id="window-pair-negative",
    ),
    pytest.param(
        lambda: mha(chunk_size=0),
        ValueError,
        MHA + "`chunk_size` must be None or a positive integer. Received: chunk_size=0",
        id="chunk-zero",
    ),
    pytest.param(
        lambda: mha(softcap=-1.0),
        ValueError,
        MHA + "`softcap` must be a positive finite number. Received: softcap=-1.0",
        id="softcap-negative",
    ),
    pytest.param(
        lambda: mha(use_sinks="yes"),
        TypeError,
        MHA + "`use_sinks` must be a bool. Received: use_sinks='yes'",
        id="use-sinks-string",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 4, 8), segment_ids=np.zeros((2, 3), "int32")),
        ValueError,
        MHA + "`segment_ids` describes the positions of inputs of rank 3, "
        "(batch, seq_len, dim). Received: segment_ids with query.shape=(2, 3, 4, 8)",
        id="segment-ids-rank-4",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), segment_ids=np.zeros((2, 4), "int32")),
        ValueError,
        "scaled_dot_product_attention: `query segment_ids` must have shape "
        "(length,)=(3,) or (batch, length)=(2, 3), batch being axis 0 of the "
        "query. Received: query segment_ids.shape=(2, 4)",
        id="segment-ids-length",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), positions=np.zeros((2, 3), "int32")),
        ValueError,
        MHA + "`positions` are the positions of a `rotary_embedding`, and this "
        "layer has none. Received: positions",
        id="positions-without-rotary",
    ),
    pytest.param(
        lambda: mha()(normal(2, 3, 8), prefix_length=2),
        ValueError,
        MHA + "`prefix_length` makes the first positions of a causal row "
        "bidirectional: build the layer with causal=True or call it with "
        "use_causal_mask=True. Received: prefix_length with a call that is "
        "not causal",
        id="prefix-without-causal",
    ),
    pytest.param(
        lambda: mha(rotary_embedding=keras_attention.RotaryEmbedding())(
            normal(2, 3, 8), positions=np.zeros((2, 3), "int32"), start_index=2
        ),
        ValueError,
        MHA + "`positions` give the positions of the query and key of "
        "self-attention, instead of `start_index`: call the layer on one "
        "tensor, without `start_index`. Received: positions",
        id="positions-with-start-index",
    ),
    pytest.param(
        lambda: mha(causal=True)(
            normal(2, 1, 8),
            cache=mha(causal=True).init_cache(2, 4),
            cache_index=0,
            segment_ids=np.zeros((2, 1), "int32"),
        ),
        ValueError,
        MHA + "a cached call takes no `segment_ids`: the cache holds one "
        "sequence per row, its positions given by `cache_index`. Received: "
        "segment_ids",
        id="cache-segment-ids",
    ),
    pytest.param(
        lambda: mha(causal=True, global_tokens=2)(
            normal(2, 1, 8), cache=mha().init_cache(2, 4), cache_index=0
        ),
        ValueError,
        MHA + "a cached call cannot honour `global_tokens`: a global query sees "
        "keys the cache does not hold yet. Received: global_tokens=2",
        id="cache-global-tokens",
    ),
    pytest.param(
        lambda: mha(causal=True, sliding_window=(2, 0), chunk_size=4)(
            normal(2, 1, 8),
            cache=mha(sliding_window=3).init_cache(2, 8),
            cache_index=0,
        ),
        ValueError,
        MHA + "a ring cache (`sliding_window`=(2, 0), a cache of 3 >= the "
        "window) keeps only the window's positions, and `chunk_size` needs "
        "others: use a cache shorter than the window. Received: chunk_size=4",
        id="ring-chunk",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS + PATTERN_BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


def test_use_causal_mask_false_switches_the_constructor_causal_off():
    x = normal(2, 5, 8)
    causal = MultiHeadAttention(num_heads=2, key_dim=4, causal=True)
    plain = MultiHeadAttention(num_heads=2, key_dim=4)
    causal(x)
    plain(x)
    plain.set_weights(causal.get_weights())
    np.testing.assert_array_equal(
        to_numpy(causal(x, use_causal_mask=False)), to_numpy(plain(x))
    )
    np.testing.assert_array_equal(
        to_numpy(plain(x, use_causal_mask=True)), to_numpy(causal(x))
    )


def test_bottom_right_layer_steps_equal_the_whole_pass():
    x = normal(2, 6, 8)
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, causal=True, alignment="bottom_right"
    )
    layer.build(x.shape)

    def calls(x):  # six key lengths: one compiled program on JAX
        steps = [layer(x[:, t : t + 1], x[:, : t + 1]) for t in range(6)]
        return layer(x), ops.concatenate(steps, axis=1)

    whole, steps = (to_numpy(y) for y in compiled(calls)(x))
    np.testing.assert_allclose(steps, whole, atol=1e-5)


def test_rotary_and_alibi_layer_behaviours(tmp_path):
    rope = keras_attention.RotaryEmbedding(
        layout="interleaved",
        rotary_dim=2,
        scaling={"rope_type": "linear", "factor": 2.0},
    )
    run_layer_test(
        MultiHeadAttention,
        init_kwargs={
            "num_heads": 2,
            "key_dim": 4,
            "causal": True,
            "rotary_embedding": rope,
            "alibi": True,
        },
        input_data=normal(2, 5, 8),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=8,
        call_kwargs={"start_index": 3},
        tmp_path=tmp_path,
    )


def test_rotary_step_by_step_cross_attention_equals_one_causal_call():
    # Decoding with the keys of steps 0..t: the query at step t, positions
    # given for both.
    x = normal(2, 7, 8)
    rope = keras_attention.RotaryEmbedding(
        scaling={
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 4,
        }
    )
    layer = MultiHeadAttention(num_heads=2, key_dim=4, rotary_embedding=rope)
    layer.build(x.shape)

    def calls(x):  # seven shapes: one compiled program on JAX
        whole = layer(x, use_causal_mask=True)
        steps = [
            layer(x[:, t : t + 1], x[:, : t + 1], start_index=(t, 0)) for t in range(7)
        ]
        shifted = layer(x, use_causal_mask=True, start_index=1000)
        return whole, ops.concatenate(steps, axis=1), shifted

    whole, steps, shifted = (to_numpy(y) for y in compiled(calls)(x))
    np.testing.assert_allclose(steps, whole, atol=1e-5)
    # Self-attention from a start index: the same up to a shift of both.
    np.testing.assert_allclose(shifted, whole, atol=1e-4)


def test_rotary_embedding_changes_the_output():
    x = normal(2, 6, 8)
    plain = MultiHeadAttention(num_heads=2, key_dim=4, causal=True)
    rotary = MultiHeadAttention(
        num_heads=2,
        key_dim=4,
        causal=True,
        rotary_embedding=keras_attention.RotaryEmbedding(),
    )
    plain(x)
    rotary(x)
    rotary.set_weights(plain.get_weights())
    assert not np.allclose(to_numpy(rotary(x)), to_numpy(plain(x)), atol=1e-3)


@pytest.mark.parametrize(
    "make,error,message",
    [
        (
            lambda: MultiHeadAttention(num_heads=2, key_dim=4, rotary_embedding="rope"),
            TypeError,
            "MultiHeadAttention: `rotary_embedding` must be None or a keras_attention.RotaryEmbedding. Received: rotary_embedding of type str",
        ),
        (
            lambda: MultiHeadAttention(
                num_heads=2,
                key_dim=5,
                rotary_embedding=keras_attention.RotaryEmbedding(),
            ),
            ValueError,
            "MultiHeadAttention: `rotary_embedding` does not fit heads of `key_dim`=5: RotaryEmbedding: the last dimension of `inputs` must be even to rotate every feature in pairs; set `rotary_dim` to rotate fewer. Received: inputs with last dimension 5",
        ),
        (
            lambda: MultiHeadAttention(
                num_heads=2,
                key_dim=4,
                rotary_embedding=keras_attention.RotaryEmbedding(),
            )(normal(2, 3, 4, 8)),
            ValueError,
            "MultiHeadAttention: `rotary_embedding` needs inputs of rank 3, (batch, seq_len, dim). Received: query.shape=(2, 3, 4, 8)",
        ),
        (
            lambda: MultiHeadAttention(
                num_heads=2,
                key_dim=4,
                rotary_embedding=keras_attention.RotaryEmbedding(),
            )(normal(2, 1, 8), normal(2, 3, 8), start_index=2),
            ValueError,
            "MultiHeadAttention: cross-attention with a `rotary_embedding` needs the positions of the query and of the key: pass start_index=(query_start, key_start). Received: start_index=2",
        ),
        (
            lambda: MultiHeadAttention(
                num_heads=2,
                key_dim=4,
                rotary_embedding=keras_attention.RotaryEmbedding(),
            )(normal(2, 3, 8), start_index=-1),
            ValueError,
            "MultiHeadAttention: `start_index` must be >= 0. Received: start_index=-1",
        ),
        (
            lambda: MultiHeadAttention(num_heads=2, key_dim=4)(
                normal(2, 3, 8), start_index=2
            ),
            ValueError,
            "MultiHeadAttention: `start_index` gives the positions of a `rotary_embedding`, and this layer has none. Received: start_index=2",
        ),
    ],
    ids=[
        "rotary_embedding of the wrong type",
        "rotary_embedding that does not fit key_dim",
        "rotary_embedding on rank 4",
        "cross-attention without the key's positions",
        "negative start_index",
        "start_index without a rotary_embedding",
    ],
)
def test_bad_rotary_arguments(make, error, message):
    assert_raises_with(make, error, message)


# Grouped-query and multi-query attention ---------------------------------------


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


def test_config_keeps_the_head_counts_as_python_ints():
    layer = keras_attention.MultiHeadAttention(
        num_heads=np.int64(8), key_dim=4, num_key_value_heads=np.int64(1)
    )
    config = layer.get_config()
    assert (config["num_heads"], config["num_key_value_heads"]) == (8, 1)


# ALiBi ----------------------------------------------------------------------------


def mha_reference(layer, x, causal):
    """The layer's attention with ALiBi, in NumPy from its kernels."""
    heads, key_dim = layer.num_heads, layer.key_dim

    def project(dense, x):
        kernel, bias = (to_numpy(w) for w in dense.weights)
        return np.einsum("btd,dhk->bhtk", x, kernel) + bias[None, :, None, :]

    q, k, v = (
        project(d, x) for d in (layer.query_dense, layer.key_dense, layer.value_dense)
    )
    context = alibi_reference(q, k, v, alibi_slopes(heads), causal)
    kernel, bias = (to_numpy(w) for w in layer.output_dense.weights)
    assert kernel.shape[:2] == (heads, key_dim)
    return np.einsum("bhtk,hkd->btd", context, kernel) + bias


def test_multi_head_attention_with_alibi_equals_numpy():
    causal = True  # the function's tests (tests/ops_test.py) cover both
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


# Properties (hypothesis; tests/properties.py) -----------------------------------


@pytest.fixture(autouse=True, scope="module")
def _forget_cached_layers():
    yield
    forget()


@VERY_FEW
@given(length=lengths, seed=seeds)
def test_layer_gradients_are_finite_with_fully_masked_rows(length, seed):
    rng = np.random.default_rng(seed)
    x = rng_normal(rng, 2, length, WIDTH)
    mask = random_mask(rng, (2, length, length))
    layer = attention_layers()["MultiHeadAttention"]
    if not layer.built:  # not in the gradient's trace
        layer.build(x.shape)

    def loss(x):
        return ops.sum(layer(x, attention_mask=mask) ** 2)

    value, (grad,) = value_and_gradient(loss, x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_a_rotary_layer_built_symbolically_quantizes():
    # A rotary embedding inside a layer built from symbolic shapes (a
    # Sequential with an Input) was never built, and `model.quantize`
    # refused the whole model, leaving it half-quantized.
    model = keras.Sequential(
        [
            keras.Input((None, 16)),
            MultiHeadAttention(
                num_heads=2,
                key_dim=8,
                causal=True,
                rotary_embedding=keras_attention.RotaryEmbedding(),
            ),
        ]
    )
    x = normal(2, 5, 16)
    before = to_numpy(model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: the Input has nothing to quantize
        model.quantize("int8")
    assert model.layers[0].query_dense.quantization_mode == "int8"
    np.testing.assert_allclose(to_numpy(model(x)), before, atol=0.05)


# Patterns -----------------------------------------------------------------------

PATTERN = dict(
    causal=True,
    sliding_window=(3, 0),
    chunk_size=8,
    softcap=4.0,
    sink_tokens=1,
    use_sinks=True,
)


def test_pattern_layer_behaviours(tmp_path):
    run_layer_test(
        MultiHeadAttention,
        init_kwargs={"num_heads": 2, "key_dim": 4, "global_tokens": 1, **PATTERN},
        input_data=normal(2, 9, 8),
        expected_output_shape=(2, 9, 8),
        expected_num_trainable_weights=9,  # the sinks too
        tmp_path=tmp_path,
    )


def packed_layer():
    layer = MultiHeadAttention(
        num_heads=2,
        key_dim=4,
        rotary_embedding=keras_attention.RotaryEmbedding(),
        **{**PATTERN, "chunk_size": None},
    )
    layer.build((2, 12, 8))
    layer.sinks.assign([0.5, -1.0])
    return layer


def test_packed_rows_equal_the_documents_alone_and_save_in_safe_mode(tmp_path):
    # Three documents in each row; rotary positions restart at each one.
    # Documents of one length: alone, they are one batch.
    layer = packed_layer()
    packed = keras_attention.pack_sequences([np.arange(4)] * 6, 12)
    x = normal(2, 12, 8)
    inputs = keras.Input((None, 8))
    rows = {name: keras.Input((None,), dtype="int32") for name in ("ids", "pos")}
    model = keras.Model(
        [inputs, rows["ids"], rows["pos"]],
        layer(inputs, segment_ids=rows["ids"], positions=rows["pos"]),
    )
    got = to_numpy(model([x, packed["segment_ids"], packed["positions"]]))
    alone = to_numpy(layer(x.reshape(6, 4, 8)))
    np.testing.assert_allclose(got.reshape(6, 4, 8), alone, atol=1e-5)
    path = tmp_path / "packed.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        to_numpy(loaded([x, packed["segment_ids"], packed["positions"]])), got
    )
    config = loaded.layers[-1].get_config()
    assert (config["sliding_window"], config["softcap"], config["use_sinks"]) == (
        [3, 0],
        4.0,
        True,
    )


def test_the_sinks_weight_gets_a_gradient():
    layer = packed_layer()
    x = normal(2, 6, 8)
    others = [v for v in layer.trainable_variables if v is not layer.sinks]

    def loss(sinks):
        values = [
            sinks if v is layer.sinks else v.value for v in layer.trainable_variables
        ]
        output, _ = layer.stateless_call(values, [], x)
        return ops.sum(output**2)

    assert len(others) == len(layer.trainable_variables) - 1
    _, (grad,) = value_and_gradient(loss, np.array([0.5, -1.0], "float32"))
    assert np.all(np.abs(grad) > 1e-6)

"""`MultiHeadAttention` as a drop-in for `keras.layers.MultiHeadAttention`.

What Keras' own test file for its layer checks
(`keras/src/layers/attention/multi_head_attention_test.py`), written again
against ours — most cases compared with Keras' layer itself through
`set_weights` rather than only checked for shape — plus what moving a Keras
model over needs: its weight files, configs, LoRA and int8 quantization.
The rest of the layer's tests are in `multi_head_attention_test.py`; this
file is kept apart because together they would make one file of some 1,350
lines.
"""

import inspect
import warnings

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import MultiHeadAttention
from tests.layer_test_case import HAS_FLOAT64, RNG, normal, to_numpy

KERAS_HAS = set(inspect.signature(keras.layers.MultiHeadAttention).parameters)


def pair(**kwargs):
    """Keras' layer and ours with the same arguments (ours built, same weights
    set once Keras' layer is built by the caller: see `same_weights`)."""
    return keras.layers.MultiHeadAttention(**kwargs), MultiHeadAttention(**kwargs)


def same_weights(theirs, ours, *inputs):
    theirs(*inputs)
    ours(*inputs)
    ours.set_weights(theirs.get_weights())


# Inputs of rank > 3 and `attention_axes` (Keras' test_high_dim_attention):
# the query, value and attention-mask shapes without the batch.
HIGH_DIM = [
    pytest.param((3, 4), (3, 2), (4, 2), (2,), id="4d_one_free_axis_mask2"),
    pytest.param((3, 4), (3, 2), (3, 4, 2), (2,), id="4d_one_free_axis_mask3"),
    pytest.param((3, 4), (3, 2), (3, 2, 4, 2), (2,), id="4d_one_free_axis_mask4"),
    pytest.param((3, 4), (3, 2), (3, 4, 3, 2), (1, 2), id="4d_two_attention_axes"),
    pytest.param((5, 3, 4), (5, 3, 2), (3, 4, 3, 2), (2, 3), id="5d_mask4"),
    pytest.param((5, 3, 4), (5, 3, 2), (5, 3, 4, 3, 2), (2, 3), id="5d_full_mask"),
]


@pytest.mark.parametrize("q_dims,v_dims,mask_dims,axes", HIGH_DIM)
@pytest.mark.parametrize("use_gate", [False, True])
def test_high_dim_attention_equals_keras(q_dims, v_dims, mask_dims, axes, use_gate):
    if use_gate and "use_gate" not in KERAS_HAS:
        pytest.skip("this Keras' MultiHeadAttention has no `use_gate`")
    gate = {"use_gate": True} if use_gate else {}
    query, value = normal(2, *q_dims, 8), normal(2, *v_dims, 8)
    mask = RNG.random((2, *mask_dims)) < 0.7
    theirs, ours = pair(num_heads=2, key_dim=2, attention_axes=axes, **gate)
    same_weights(theirs, ours, query, value)
    assert len(ours.trainable_weights) == (10 if use_gate else 8)
    expected, expected_scores = theirs(
        query, value, attention_mask=mask, return_attention_scores=True
    )
    output, scores = ours(
        query, value, attention_mask=mask, return_attention_scores=True
    )
    assert tuple(output.shape) == (2, *q_dims, 8)
    assert tuple(scores.shape) == tuple(expected_scores.shape)
    np.testing.assert_allclose(
        to_numpy(ours(query, value)), to_numpy(theirs(query, value)), atol=1e-5
    )
    # Keras gives a query that may attend to no key uniform weights; ours
    # zeros (documented). Every other row must agree.
    key_axes = tuple(range(-len(axes), 0))
    seen = to_numpy(scores).sum(axis=key_axes) > 0.5
    assert seen.mean() > 0.5
    np.testing.assert_allclose(
        to_numpy(scores)[seen], to_numpy(expected_scores)[seen], atol=1e-6
    )


def test_negative_attention_axes_equal_positive_ones():
    x = normal(2, 3, 8, 4)
    positive = MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=2)
    negative = MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=-2)
    positive(x, x)
    negative(x, x)
    negative.set_weights(positive.get_weights())
    a, a_scores = positive(x, x, return_attention_scores=True)
    b, b_scores = negative(x, x, return_attention_scores=True)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    np.testing.assert_array_equal(to_numpy(a_scores), to_numpy(b_scores))


@pytest.mark.parametrize(
    "query_dims,value_dims,key_dims,output_shape",
    [
        pytest.param((4, 8), (2, 8), None, None, id="without_key"),
        pytest.param((4, 8), (2, 8), (2, 3), None, id="with_key"),
        pytest.param((4, 8), (2, 8), (2, 3), (1, 5), id="output_shape"),
        pytest.param((4, 2, 3, 8), (1, 1, 5, 8), (1, 1, 5, 2), None, id="high_dim"),
        pytest.param((4, 2, 3, 8), (4, 2, 3, 7), (4, 2, 3, 8), (3, 2), id="qv_dims"),
    ],
)
def test_compute_output_shape_equals_the_output_shape(
    query_dims, value_dims, key_dims, output_shape
):
    layer = MultiHeadAttention(
        num_heads=2, key_dim=2, value_dim=2, output_shape=output_shape
    )
    query, value = np.ones((7, *query_dims)), np.ones((7, *value_dims))
    key = None if key_dims is None else np.ones((7, *key_dims))
    output = layer(query=query, value=value, key=key)
    key_shape = None if key is None else key.shape
    assert layer.compute_output_shape(query.shape, value.shape, key_shape) == tuple(
        output.shape
    )
    as_lists = layer.compute_output_shape(
        list(query.shape), list(value.shape), None if key is None else list(key_shape)
    )
    assert tuple(as_lists) == tuple(output.shape)


@pytest.mark.parametrize(
    "query_shape,value_shape,key_shape,message",
    [
        pytest.param(
            (2, 4, 8), (2, 2, 8), (2, 1, 7), "same sequence length", id="key_value"
        ),
        pytest.param(
            (2, 4, 2, 3, 8),
            (2, 1, 1, 5, 8),
            (2, 1, 15, 5, 2),
            "all dimensions of `value` and `key` but the last must be equal",
            id="key_value_high_dim",
        ),
    ],
)
def test_shape_mismatch_is_a_value_error(query_shape, value_shape, key_shape, message):
    layer = MultiHeadAttention(num_heads=4, key_dim=2, value_dim=2)
    with pytest.raises(ValueError, match=message):
        layer.compute_output_shape(query_shape, value_shape, key_shape)
    with pytest.raises(ValueError, match=message):
        layer(np.ones(query_shape), np.ones(value_shape), np.ones(key_shape))


@pytest.mark.parametrize("bad", [0, -2, 1.5], ids=["zero", "negative", "fraction"])
@pytest.mark.parametrize("argument", ["num_heads", "key_dim", "value_dim"])
def test_invalid_sizes_are_value_errors(argument, bad):
    kwargs = {"num_heads": 4, "key_dim": 4, argument: bad}
    message = f"`{argument}` must be (None or )?a positive integer. Received: {argument}={bad}$"
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


def test_numpy_scalars_are_accepted_as_python_numbers():
    layer = MultiHeadAttention(
        num_heads=np.int64(2),
        key_dim=np.int32(4),
        dropout=np.float32(0.25),
        seed=np.int64(3),
    )
    config = layer.get_config()
    assert (config["num_heads"], config["key_dim"], config["seed"]) == (2, 4, 3)
    assert type(config["num_heads"]) is int and type(config["dropout"]) is float
    assert config["dropout"] == 0.25
    keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))


def test_bool_like_call_flags_are_accepted():
    x = normal(2, 4, 8)
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    reference = to_numpy(layer(x, use_causal_mask=True))
    np.testing.assert_array_equal(
        to_numpy(layer(x, use_causal_mask=np.True_)), reference
    )
    np.testing.assert_array_equal(to_numpy(layer(x, use_causal_mask=1)), reference)
    assert len(layer(x, return_attention_scores=1)) == 2
    np.testing.assert_array_equal(
        to_numpy(layer(x, use_causal_mask=0)), to_numpy(layer(x))
    )


def test_kernels_get_different_initial_values():
    layer = MultiHeadAttention(
        num_heads=4,
        key_dim=8,
        use_gate=True,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
    )
    layer.build((2, 4, 8), (2, 4, 8))
    kernels = [
        to_numpy(d.kernel).ravel()[:8]
        for d in (
            layer.query_dense,
            layer.key_dense,
            layer.value_dense,
            layer.output_dense,
            layer._gate_dense,
        )
    ]
    for other in kernels[1:]:
        assert not np.allclose(kernels[0], other)


def test_sublayers_have_keras_names_and_weight_order():
    theirs, ours = pair(num_heads=3, key_dim=4, value_dim=5, output_shape=(2, 3))
    for layer in (theirs, ours):
        layer.build((2, 3, 8), (2, 7, 10), (2, 7, 6))
    assert [ours.query_dense.name, ours.key_dense.name] == ["query", "key"]
    assert [ours.value_dense.name, ours.output_dense.name] == [
        "value",
        "attention_output",
    ]
    assert [(w.path.split("/", 1)[1], tuple(w.shape)) for w in ours.weights] == [
        (w.path.split("/", 1)[1], tuple(w.shape)) for w in theirs.weights
    ]


def test_query_mask_propagates_and_masks_equal_a_manual_mask():
    tokens = np.array([[1, 2, 3, 0, 0], [3, 3, 1, 1, 2], [1, 0, 0, 0, 0]])
    values = np.array([[5, 4, 0], [3, 0, 0], [2, 1, 1]])
    query = keras.layers.Embedding(4, 8, mask_zero=True)(tokens)
    value = keras.layers.Embedding(6, 8, mask_zero=True)(values)
    layer = MultiHeadAttention(num_heads=2, key_dim=2)
    for causal in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            output = layer(query=query, value=value, use_causal_mask=causal)
        manual = (tokens != 0)[:, :, None] & (values != 0)[:, None, :]
        if causal:
            manual = manual & np.tril(np.ones((5, 3), bool))
        plain_query, plain_value = to_numpy(query), to_numpy(value)
        np.testing.assert_allclose(
            to_numpy(output),
            to_numpy(layer(plain_query, plain_value, attention_mask=manual)),
            atol=1e-6,
        )


def test_query_mask_reaches_the_next_layer():
    tokens = np.array([[1, 2, 3, 0, 0], [1, 0, 0, 0, 0]])
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(4, 8, mask_zero=True)(inputs)
    x = MultiHeadAttention(num_heads=2, key_dim=2)(x, x)
    model = keras.Model(inputs, x)
    outputs = model(tokens)
    mask = getattr(outputs, "_keras_mask", None)
    if mask is None:  # some backends do not attach masks to outputs
        mask = model.layers[-1].compute_mask(None, keras.ops.not_equal(tokens, 0))
    np.testing.assert_array_equal(to_numpy(mask), tokens != 0)


def test_masks_of_every_documented_shape_agree():
    x = normal(2, 5, 8)
    causal = np.tril(np.ones((5, 5), bool))
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    two_d = to_numpy(layer(x, x, attention_mask=causal))
    three_d = to_numpy(layer(x, x, attention_mask=np.tile(causal[None], (2, 1, 1))))
    per_head = np.tile(causal[None, None], (2, 2, 1, 1))
    four_d = to_numpy(layer(x, x, attention_mask=per_head))
    np.testing.assert_allclose(two_d, three_d, atol=1e-6)
    np.testing.assert_allclose(two_d, four_d, atol=1e-6)
    np.testing.assert_allclose(
        two_d, to_numpy(layer(x, use_causal_mask=True)), atol=1e-6
    )


def test_per_head_mask_applies_to_each_head_and_equals_keras():
    x = normal(2, 5, 8)
    mask = RNG.random((2, 2, 5, 5)) < 0.6
    mask[..., 0] = True  # every row sees a key: Keras averages the others
    theirs, ours = pair(num_heads=2, key_dim=4)
    same_weights(theirs, ours, x, x)
    expected, expected_scores = theirs(
        x, x, attention_mask=mask, return_attention_scores=True
    )
    output, scores = ours(x, x, attention_mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(to_numpy(output), to_numpy(expected), atol=1e-5)
    np.testing.assert_allclose(to_numpy(scores), to_numpy(expected_scores), atol=1e-6)


def test_positional_call_order_is_keras():
    query, value = normal(2, 4, 8), normal(2, 3, 8)
    query_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    value_mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    theirs, ours = pair(num_heads=2, key_dim=4)
    same_weights(theirs, ours, query, value)
    # (query, value, key, query_mask, value_mask): masks where Keras reads them.
    output = ours(query, value, value, query_mask, value_mask)
    keyword = ours(query, value, query_mask=query_mask, value_mask=value_mask)
    np.testing.assert_array_equal(to_numpy(output), to_numpy(keyword))
    expected = theirs(query, value, value, query_mask, value_mask)
    real = query_mask  # Keras averages padded query rows; compare real ones
    np.testing.assert_allclose(
        to_numpy(output)[real], to_numpy(expected)[real], atol=1e-5
    )


def test_constraints_reach_every_projection():
    layer = MultiHeadAttention(
        num_heads=2,
        key_dim=2,
        use_gate=True,
        kernel_constraint="non_neg",
        bias_constraint="non_neg",
    )
    layer.build((1, 2, 2), (1, 2, 2))
    for dense in layer._denses():
        assert isinstance(dense.kernel.constraint, keras.constraints.NonNeg)
        assert isinstance(dense.bias.constraint, keras.constraints.NonNeg)


def test_regularizers_give_keras_losses():
    x = normal(2, 4, 8)
    kwargs = dict(
        num_heads=2,
        key_dim=4,
        kernel_regularizer=keras.regularizers.L2(0.1),
        bias_regularizer="l1",
        activity_regularizer=keras.regularizers.L2(0.01),
        bias_initializer="ones",
    )
    theirs, ours = pair(**kwargs)
    same_weights(theirs, ours, x, x)
    theirs(x, x)
    ours(x, x)
    assert len(ours.losses) == len(theirs.losses)
    np.testing.assert_allclose(
        sorted(float(to_numpy(v)) for v in ours.losses),
        sorted(float(to_numpy(v)) for v in theirs.losses),
        rtol=1e-5,
    )


def test_from_config_of_a_keras_layer():
    kwargs = dict(
        num_heads=2,
        key_dim=4,
        value_dim=3,
        dropout=0.1,
        output_shape=(5,),
        attention_axes=(1,),
        kernel_regularizer="l2",
        bias_constraint="non_neg",
        seed=4,
    )
    if "use_gate" in KERAS_HAS:
        kwargs["use_gate"] = True
    if "sliding_window" in KERAS_HAS:
        kwargs["sliding_window"] = 3
    keras_config = keras.layers.MultiHeadAttention(**kwargs).get_config()
    ours = MultiHeadAttention.from_config(keras_config)
    config = ours.get_config()
    for key, value in keras_config.items():
        if key in ("kernel_regularizer", "bias_constraint"):
            assert config[key]["class_name"] == value["class_name"]
        else:
            assert config[key] == value, key


def test_symbolic_return_attention_scores_shapes():
    for shape in ((1, 2, 3), (2, 3, 5)):
        layer = MultiHeadAttention(num_heads=4, key_dim=2)
        symbolic = layer(
            keras.Input(batch_shape=shape),
            keras.Input(batch_shape=shape),
            return_attention_scores=True,
        )
        eager = layer(np.ones(shape), np.ones(shape), return_attention_scores=True)
        assert [tuple(t.shape) for t in symbolic] == [tuple(t.shape) for t in eager]


def test_output_shape_int_tuple_and_error():
    x = normal(2, 4, 16)
    assert MultiHeadAttention(2, 16, output_shape=8)(x, x).shape == (2, 4, 8)
    assert MultiHeadAttention(2, 16, output_shape=(8, 8))(x, x).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="`output_shape` must be None, a positive"):
        MultiHeadAttention(num_heads=2, key_dim=16, output_shape=8.0)


def test_flash_attention_is_accepted_and_refuses_what_keras_refuses():
    x = normal(2, 4, 8)
    plain = MultiHeadAttention(num_heads=2, key_dim=2)
    flash = MultiHeadAttention(num_heads=2, key_dim=2, flash_attention=True)
    same_weights(plain, flash, x)
    np.testing.assert_array_equal(to_numpy(flash(x)), to_numpy(plain(x)))
    with pytest.raises(ValueError, match="`dropout` must be 0 with `flash_attention"):
        MultiHeadAttention(num_heads=2, key_dim=2, flash_attention=True, dropout=0.1)
    with pytest.raises(ValueError, match="`return_attention_scores=True` is not"):
        flash(x, return_attention_scores=True)


def test_a_layer_built_for_one_width_refuses_another():
    layer = MultiHeadAttention(num_heads=2, key_dim=2)
    layer(normal(1, 3, 8))
    with pytest.raises(
        ValueError,
        match=r"built for `query` of last dimension 8\. Received: query\.shape=\(1, 3, 6\)",
    ):
        layer(normal(1, 3, 6))


def numpy_multi_head_attention(x, weights):
    """Self-attention of Keras' layer in float64 NumPy, from its 8 weights."""
    wq, bq, wk, bk, wv, bv, wo, bo = (np.asarray(w, "float64") for w in weights)
    q, k, v = (
        np.einsum("btd,dnh->bnth", x, w) + b[None, :, None]
        for w, b in ((wq, bq), (wk, bk), (wv, bv))
    )
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bnth,nho->bto", weights @ v, wo) + bo


@pytest.mark.skipif(not HAS_FLOAT64, reason="this backend runs float64 as float32")
def test_float64_layer_computes_in_float64():
    x = RNG.normal(size=(2, 4, 8))
    theirs, ours = pair(num_heads=2, key_dim=4, dtype="float64")
    same_weights(theirs, ours, x, x)
    output = ours(x, x)
    assert keras.backend.standardize_dtype(output.dtype) == "float64"
    expected = numpy_multi_head_attention(x, theirs.get_weights())
    np.testing.assert_allclose(to_numpy(output), expected, atol=1e-12)
    if keras.backend.backend() != "torch":
        # On PyTorch, Keras' own layer computes part of it in float32 (1e-7
        # off the float64 result); elsewhere the two agree in float64.
        np.testing.assert_allclose(to_numpy(theirs(x, x)), expected, atol=1e-12)


def test_dropout_under_attention_axes_is_the_function_s_with_flattened_batches():
    # The hash's batch entry is the (batch, head, non-attention position)
    # index: the layer equals the function on the projections laid out so.
    x = normal(2, 3, 5, 8)
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, dropout=0.5, seed=7, attention_axes=2
    )
    layer(x, x)
    output = layer.__class__.from_config(layer.get_config())
    output(x, x)
    output.set_weights(layer.get_weights())
    query, key, value = (
        keras.ops.transpose(d(x), (0, 3, 1, 2, 4))
        for d in (output.query_dense, output.key_dense, output.value_dense)
    )
    context = keras_attention.scaled_dot_product_attention(
        query,
        key,
        value,
        dropout=0.5,
        seed=keras.random.SeedGenerator(7),
        training=True,
    )
    expected = output.output_dense(keras.ops.transpose(context, (0, 2, 3, 1, 4)))
    np.testing.assert_allclose(
        to_numpy(output(x, x, training=True)), to_numpy(expected), atol=1e-5
    )


@pytest.mark.skipif(
    keras.backend.backend() == "numpy", reason="LoRA training needs gradients"
)
def test_lora_trains_the_low_rank_matrices_and_biases_only(tmp_path):
    query = keras.Input((3, 4))
    layer = MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    model = keras.Model(query, layer(query))
    before = {w.path: to_numpy(w).copy() for w in model.weights}
    for dense in (
        layer.query_dense,
        layer.key_dense,
        layer.value_dense,
        layer.output_dense,
    ):
        dense.enable_lora(2)
    trainable = {w.path for w in model.trainable_weights}
    assert all("lora" in p or p.endswith("bias") for p in trainable), trainable
    lora_before = {w.path: to_numpy(w).copy() for w in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = normal(4, 3, 4), normal(4, 3, 4)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for w in model.weights:
        if w.path.endswith("kernel"):
            np.testing.assert_array_equal(to_numpy(w), before[w.path])
    for w in model.trainable_weights:
        if "lora_kernel_b" in w.path or w.path.endswith("bias"):
            assert not np.array_equal(to_numpy(w), lora_before[w.path]), w.path
    path = str(tmp_path / "lora.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_int8_quantization_is_close_and_saves_and_loads(tmp_path):
    x = normal(4, 6, 16)
    inputs = keras.Input((6, 16))
    model = keras.Model(
        inputs, MultiHeadAttention(num_heads=2, key_dim=8, use_gate=True)(inputs)
    )
    expected = model.predict(x, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers with nothing to quantize
        model.quantize("int8")
    layer = model.layers[-1]
    for dense in layer._denses():
        assert keras.backend.standardize_dtype(dense._kernel.dtype) == "int8"
    quantized = model.predict(x, verbose=0)
    assert np.abs(quantized - expected).max() < 0.05 * np.abs(expected).max()
    assert not np.array_equal(quantized, expected)
    path = str(tmp_path / "int8.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), quantized)


def test_dtype_policy_map_quantizes_named_sublayers():
    policy = keras.dtype_policies.DTypePolicyMap()
    for name in ("query", "key", "value"):
        policy[f"mha/{name}"] = keras.dtype_policies.get("int8_from_float32")
    layer = MultiHeadAttention(
        num_heads=3, key_dim=8, use_bias=False, dtype=policy, name="mha"
    )
    layer.build((1, 2, 2), (1, 2, 2))
    for dense in (layer.query_dense, layer.key_dense, layer.value_dense):
        assert keras.backend.standardize_dtype(dense._kernel.dtype) == "int8"
    assert keras.backend.standardize_dtype(layer.output_dense.kernel.dtype) == "float32"


@pytest.mark.parametrize("use_gate", [False, True])
def test_a_keras_weights_file_loads_into_ours(tmp_path, use_gate):
    if use_gate and "use_gate" not in KERAS_HAS:
        pytest.skip("this Keras' MultiHeadAttention has no `use_gate`")
    gate = {"use_gate": True} if use_gate else {}

    def model(layer_class):
        query, value = keras.Input((4, 8)), keras.Input((3, 6))
        layer = layer_class(num_heads=2, key_dim=4, name="multi_head_attention", **gate)
        return keras.Model([query, value], layer(query, value))

    theirs, ours = model(keras.layers.MultiHeadAttention), model(MultiHeadAttention)
    path = str(tmp_path / "keras.weights.h5")
    theirs.save_weights(path)
    ours.load_weights(path)
    x = [normal(2, 4, 8), normal(2, 3, 6)]
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), theirs.predict(x, verbose=0), atol=1e-5
    )

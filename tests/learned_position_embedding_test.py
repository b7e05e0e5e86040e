import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import LearnedPositionEmbedding
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(4)
BACKEND = keras.backend.backend()
jax_only = pytest.mark.skipif(BACKEND != "jax", reason="needs the JAX backend")

TOO_LONG = r"LearnedPositionEmbedding: the sequence \(length {length}, start_index {start}\) is longer than `max_length`={max_length}\."


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def built(max_length=10, dim=6, **kwargs):
    layer = LearnedPositionEmbedding(max_length, **kwargs)
    layer.build((None, None, dim))
    return layer, to_numpy(layer.embeddings)


def test_layer_behaviours(tmp_path):
    run_layer_test(
        LearnedPositionEmbedding,
        init_kwargs={"max_length": 10},
        input_data=normal(2, 5, 6),
        expected_output_shape=(2, 5, 6),
        expected_num_trainable_weights=1,
        tmp_path=tmp_path,
    )


def test_layer_behaviours_rank_4_start_index(tmp_path):
    run_layer_test(
        LearnedPositionEmbedding,
        init_kwargs={"max_length": 7, "embeddings_initializer": "random_normal"},
        input_data=normal(2, 3, 4, 5),
        expected_output_shape=(2, 3, 4, 5),
        expected_num_trainable_weights=1,
        call_kwargs={"start_index": 3},
        tmp_path=tmp_path,
    )


def test_one_table_created_in_build():
    layer = LearnedPositionEmbedding(12, embeddings_initializer="ones")
    assert not layer.weights
    layer.build((None, None, 5))
    assert [(w.name, tuple(w.shape), w.trainable) for w in layer.weights] == [
        ("embeddings", (12, 5), True)
    ]
    np.testing.assert_array_equal(to_numpy(layer.embeddings), np.ones((12, 5)))
    layer(normal(2, 4, 5))
    layer(normal(2, 3, 5), start_index=4)
    assert len(layer.weights) == 1


def test_config_serializes_the_initializer():
    initializer = keras.initializers.RandomNormal(stddev=0.3, seed=5)
    layer = LearnedPositionEmbedding(9, embeddings_initializer=initializer, name="pos")
    config = layer.get_config()
    assert config["max_length"] == 9
    assert config["embeddings_initializer"] == keras.initializers.serialize(initializer)
    revived = LearnedPositionEmbedding.from_config(config)
    assert isinstance(revived.embeddings_initializer, keras.initializers.RandomNormal)
    assert revived.embeddings_initializer.stddev == 0.3
    layer.build((None, None, 4))
    revived.build((None, None, 4))
    np.testing.assert_array_equal(
        to_numpy(revived.embeddings), to_numpy(layer.embeddings)
    )


@pytest.mark.parametrize("start", [0, 3, 6])
def test_adds_the_rows_of_the_positions(start):
    layer, table = built(max_length=10, dim=6)
    x = normal(3, 4, 6)
    np.testing.assert_allclose(
        to_numpy(layer(x, start_index=start)), x + table[start : start + 4], atol=1e-6
    )


def test_any_rank_broadcasts_over_leading_axes():
    layer, table = built(max_length=5, dim=3)
    x = normal(2, 4, 5, 3)
    np.testing.assert_allclose(to_numpy(layer(x)), x + table, atol=1e-6)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_one_step_at_a_time_equals_whole(as_tensor):
    layer, _ = built(max_length=6, dim=4)
    x = normal(2, 6, 4)
    whole = to_numpy(layer(x))
    steps = []
    for t in range(6):
        start = keras.ops.convert_to_tensor(t, "int32") if as_tensor else t
        steps.append(to_numpy(layer(x[:, t : t + 1], start_index=start)))
    np.testing.assert_array_equal(np.concatenate(steps, axis=1), whole)


def test_lookup_of_explicit_positions():
    layer, table = built(max_length=10, dim=6)
    # The tutorial's use: the vectors of positions [0, 1, 2].
    np.testing.assert_array_equal(to_numpy(layer.lookup([0, 1, 2])), table[[0, 1, 2]])
    positions = np.array([[9, 0], [4, 4]])
    rows = to_numpy(layer.lookup(keras.ops.convert_to_tensor(positions)))
    assert rows.shape == (2, 2, 6)
    np.testing.assert_array_equal(rows, table[positions])


def test_lookup_errors():
    layer = LearnedPositionEmbedding(10)
    with pytest.raises(
        ValueError,
        match=r"LearnedPositionEmbedding: `lookup` needs the table, which `build` creates from the inputs' last dimension\. Call the layer, or `build\(\(batch, seq_len, dim\)\)`, first\.",
    ):
        layer.lookup([0])
    layer.build((None, None, 4))
    for positions, low, high in (([0, 10], 0, 10), ([[-1], [3]], -1, 3)):
        with pytest.raises(
            ValueError,
            match=rf"^LearnedPositionEmbedding: `positions` must be in \[0, `max_length`=10\)\. Received: positions from {low} to {high}$",
        ):
            layer.lookup(positions)
    with pytest.raises(
        TypeError,
        match=r"^LearnedPositionEmbedding: `positions` must be integers\. Received: positions with dtype float32$",
    ):
        layer.lookup(np.array([1.0], "float32"))


def test_training_moves_only_the_rows_used():
    layer = LearnedPositionEmbedding(10)
    model = keras.Sequential([keras.Input((4, 3)), layer])
    before = to_numpy(layer.embeddings)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(normal(8, 4, 3), normal(8, 4, 3), epochs=1, verbose=0)
    after = to_numpy(layer.embeddings)
    assert np.all(np.abs(after[:4] - before[:4]).max(axis=1) > 0)
    np.testing.assert_array_equal(after[4:], before[4:])


def test_length_known_only_at_run_time():
    inputs = keras.Input((None, 6))
    layer = LearnedPositionEmbedding(10)
    model = keras.Model(inputs, layer(inputs))
    assert tuple(model.output_shape) == (None, None, 6)
    table = to_numpy(layer.embeddings)
    for length in (3, 10):
        x = normal(2, length, 6)
        np.testing.assert_allclose(
            model.predict(x, verbose=0), x + table[:length], atol=1e-6
        )


def test_a_sequence_that_exactly_fits():
    layer, table = built(max_length=5, dim=2)
    x = normal(1, 2, 2)
    np.testing.assert_allclose(
        to_numpy(layer(x, start_index=3)), x + table[3:], atol=1e-6
    )


@pytest.mark.parametrize("as_tensor", [False, True])
def test_too_long_raises_when_called(as_tensor):
    layer, _ = built(max_length=10, dim=6)
    start = keras.ops.convert_to_tensor(4, "int32") if as_tensor else 4
    with pytest.raises(
        ValueError, match=TOO_LONG.format(length=7, start=4, max_length=10)
    ):
        layer(normal(2, 7, 6), start_index=start)
    with pytest.raises(
        ValueError, match=TOO_LONG.format(length=11, start=0, max_length=10)
    ):
        layer(normal(2, 11, 6))


def test_too_long_raises_when_the_model_is_built():
    with pytest.raises(
        ValueError, match=TOO_LONG.format(length=12, start=0, max_length=10)
    ):
        keras.Sequential([keras.Input((12, 6)), LearnedPositionEmbedding(10)])
    with pytest.raises(
        ValueError, match=TOO_LONG.format(length=8, start=3, max_length=10)
    ):
        LearnedPositionEmbedding(10)(keras.Input((8, 6)), start_index=3)


def test_too_long_raises_in_predict_with_a_run_time_length():
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, LearnedPositionEmbedding(10)(inputs))
    model.predict(normal(2, 10, 6), verbose=0)
    if BACKEND == "tensorflow":
        # Keras traces predict with a run-time length: checked when it runs.
        import tensorflow as tf

        error = tf.errors.InvalidArgumentError
        message = r"LearnedPositionEmbedding: the sequence \(length \] \[11\] \[, start_index 0\) is longer than `max_length`=10\."
    else:  # JAX traces with the data's static length.
        error, message = ValueError, TOO_LONG.format(length=11, start=0, max_length=10)
    with pytest.raises(error, match=message):
        model.predict(normal(2, 11, 6), verbose=0)


@pytest.mark.tensorflow_only
def test_too_long_raises_in_a_tf_function():
    import tensorflow as tf

    layer, table = built(max_length=10, dim=6)
    encode = tf.function(
        lambda x, start: layer(x, start_index=start),
        input_signature=[tf.TensorSpec([None, None, 6]), tf.TensorSpec([], tf.int32)],
    )
    x = normal(2, 3, 6)
    np.testing.assert_allclose(encode(x, 7).numpy(), x + table[7:], atol=1e-6)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"LearnedPositionEmbedding: the sequence \(length \] \[3\] \[, start_index \] \[8\] \[\) is longer than `max_length`=10\.",
    ):
        encode(x, 8)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"LearnedPositionEmbedding: `start_index` must be >= 0\. Received: start_index=\] \[-1\]",
    ):
        encode(x, -1)

    # Static length, tensor start_index: only the start is filled in at run time.
    static = tf.function(
        lambda start: layer(x, start_index=start),
        input_signature=[tf.TensorSpec([], tf.int32)],
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"LearnedPositionEmbedding: the sequence \(length 3, start_index \] \[9\] \[\) is longer than `max_length`=10\.",
    ):
        static(9)

    # Run-time length, Python-int start_index.
    dynamic = tf.function(
        lambda x: layer(x, start_index=2),
        input_signature=[tf.TensorSpec([None, None, 6])],
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"LearnedPositionEmbedding: the sequence \(length \] \[9\] \[, start_index 2\) is longer than `max_length`=10\.",
    ):
        dynamic(normal(1, 9, 6))

    lookup = tf.function(
        layer.lookup, input_signature=[tf.TensorSpec([None], tf.int32)]
    )
    np.testing.assert_array_equal(lookup([1, 9]).numpy(), table[[1, 9]])
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"LearnedPositionEmbedding: `positions` must be in \[0, `max_length`=10\)\. Received: positions from \] \[2\] \[ to \] \[10\]",
    ):
        lookup([2, 10])


@pytest.mark.tensorflow_only
def test_xla_cannot_check_a_traced_start_index_and_gives_nan_rows():
    import tensorflow as tf

    layer, table = built(max_length=10, dim=6)
    encode = tf.function(lambda x, start: layer(x, start_index=start), jit_compile=True)
    x = normal(2, 3, 6)
    np.testing.assert_allclose(
        encode(x, tf.constant(7)).numpy(), x + table[7:], atol=1e-6
    )
    output = encode(x, tf.constant(8)).numpy()
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=(0, 2)), [False, False, True]
    )
    np.testing.assert_allclose(output[:, :2], x[:, :2] + table[8:], atol=1e-6)


@jax_only
def test_jax_jit_checks_the_length_and_gives_nan_rows_for_a_traced_start():
    import jax

    layer, table = built(max_length=10, dim=6)
    with pytest.raises(
        ValueError, match=TOO_LONG.format(length=11, start=0, max_length=10)
    ):
        jax.jit(layer)(normal(1, 11, 6))
    with pytest.raises(
        ValueError, match=TOO_LONG.format(length=3, start=8, max_length=10)
    ):
        jax.jit(lambda x: layer(x, start_index=8))(normal(1, 3, 6))

    encode = jax.jit(lambda x, start: layer(x, start_index=start))
    x = normal(2, 3, 6)
    np.testing.assert_allclose(np.asarray(encode(x, 7)), x + table[7:], atol=1e-6)
    output = np.asarray(encode(x, 8))  # no clamping to the last rows
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=(0, 2)), [False, False, True]
    )
    np.testing.assert_allclose(output[:, :2], x[:, :2] + table[8:], atol=1e-6)
    rows = np.asarray(jax.jit(layer.lookup)(np.array([1, 10, -1])))
    np.testing.assert_array_equal(np.isnan(rows).all(axis=-1), [False, True, True])


def _tokens():
    tokens = RNG.integers(1, 20, size=(3, 6))
    tokens[0, 4:] = 0
    tokens[1, 2:] = 0
    return tokens


@pytest.mark.parametrize("mask_zero", [True, False])
def test_padding_mask_passes_through_to_attention(mask_zero):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=mask_zero))
    model.add(LearnedPositionEmbedding(6))
    model.add(keras_attention.MultiHeadAttention(num_heads=2, key_dim=4))
    tokens = _tokens()
    real = tokens != 0
    base = to_numpy(model(tokens))
    embedding = model.layers[0]
    table = to_numpy(embedding.embeddings)
    table[0] = RNG.normal(size=8) * 100
    embedding.embeddings.assign(table)
    moved = to_numpy(model(tokens))
    if mask_zero:
        np.testing.assert_allclose(moved[real], base[real], atol=1e-5)
    else:  # Without the mask the padded token does reach real positions.
        assert np.abs(moved[real] - base[real]).max() > 1e-2


def test_compute_mask_returns_the_mask_unchanged():
    layer, _ = built(max_length=6, dim=8)
    mask = keras.ops.convert_to_tensor(_tokens() != 0)
    np.testing.assert_array_equal(
        to_numpy(layer.compute_mask(normal(3, 6, 8), mask)), to_numpy(mask)
    )


def test_sequential_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=True))
    model.add(LearnedPositionEmbedding(16, embeddings_initializer="random_normal"))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        to_numpy(loaded.layers[-1].embeddings), to_numpy(model.layers[-1].embeddings)
    )
    tokens = _tokens()
    np.testing.assert_allclose(to_numpy(loaded(tokens)), to_numpy(model(tokens)))


@pytest.mark.parametrize(
    "max_length,error,message",
    [
        (
            0,
            ValueError,
            r"`max_length` must be a positive integer\. Received: max_length=0",
        ),
        (
            -3,
            ValueError,
            r"`max_length` must be a positive integer\. Received: max_length=-3",
        ),
        (
            2.5,
            TypeError,
            r"`max_length` must be a positive integer\. Received: max_length=2\.5 of type float",
        ),
        (
            None,
            TypeError,
            r"`max_length` must be a positive integer\. Received: max_length=None of type NoneType",
        ),
    ],
)
def test_bad_max_length(max_length, error, message):
    with pytest.raises(error, match=r"^LearnedPositionEmbedding: " + message + "$"):
        LearnedPositionEmbedding(max_length)


def test_bad_inputs():
    with pytest.raises(
        ValueError,
        match=r"LearnedPositionEmbedding: `inputs` must have rank >= 3, \(batch, \.\.\., seq_len, dim\)\. Received: inputs\.shape=\(None, 4\)",
    ):
        LearnedPositionEmbedding(10).build((None, 4))
    with pytest.raises(
        ValueError,
        match=r"LearnedPositionEmbedding: the last dimension of `inputs` must be known\. Received: inputs\.shape=\(None, 3, None\)",
    ):
        LearnedPositionEmbedding(10)(keras.Input((3, None)))
    layer, _ = built(max_length=10, dim=6)
    with pytest.raises(
        ValueError,
        match=r"LearnedPositionEmbedding: the last dimension of `inputs` must be 6, the depth of the table\. Received: inputs\.shape=\(2, 3, 5\)",
    ):
        layer(normal(2, 3, 5))
    with pytest.raises(
        TypeError,
        match=r"LearnedPositionEmbedding: `inputs` must be a floating-point tensor \(vectors, such as the output of `Embedding`\)\. Received: inputs with dtype int32",
    ):
        layer(np.ones((2, 3, 6), "int32"))


@pytest.mark.parametrize(
    "start_index,error,message",
    [
        (-1, ValueError, r"`start_index` must be >= 0\. Received: start_index=-1"),
        (
            "tensor -2",
            ValueError,
            r"`start_index` must be >= 0\. Received: start_index=-2",
        ),
        (
            1.0,
            TypeError,
            r"`start_index` must be an int or a scalar integer tensor\. Received: start_index=1\.0 of type float",
        ),
        (
            np.array([1, 2]),
            ValueError,
            r"`start_index` must be a scalar\. Received: start_index\.shape=\(2,\)",
        ),
    ],
)
def test_bad_start_index(start_index, error, message):
    if isinstance(start_index, str):
        start_index = keras.ops.convert_to_tensor(-2, "int32")
    layer, _ = built(max_length=10, dim=4)
    with pytest.raises(error, match=r"LearnedPositionEmbedding: " + message):
        layer(normal(2, 3, 4), start_index=start_index)

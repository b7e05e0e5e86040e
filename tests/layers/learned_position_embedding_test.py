import keras
import numpy as np
import pytest

from keras_attention import LearnedPositionEmbedding
from tests.layer_test_case import (
    assert_raises_with,
    jax_only,
    normal,
    run_layer_test,
    to_numpy,
)

LPE = "LearnedPositionEmbedding: "


def does_not_fit(start, length, max_length=10):
    """The message for positions past `max_length`, known when called."""
    return (
        f"{LPE}the positions do not fit: `start_index` + length = {start + length} "
        f"exceeds `max_length` = {max_length}. Received: start_index={start}, "
        f"length={length}"
    )


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


def test_lookup_of_explicit_positions():
    layer, table = built(max_length=10, dim=6)
    # The tutorial's use: the vectors of positions [0, 1, 2].
    np.testing.assert_array_equal(to_numpy(layer.lookup([0, 1, 2])), table[[0, 1, 2]])
    positions = np.array([[9, 0], [4, 4]])
    rows = to_numpy(layer.lookup(keras.ops.convert_to_tensor(positions)))
    assert rows.shape == (2, 2, 6)
    np.testing.assert_array_equal(rows, table[positions])


def test_training_moves_only_the_rows_used():
    layer = LearnedPositionEmbedding(10)
    model = keras.Sequential([keras.Input((4, 3)), layer])
    before = to_numpy(layer.embeddings)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(normal(8, 4, 3), normal(8, 4, 3), epochs=1, verbose=0)
    after = to_numpy(layer.embeddings)
    assert np.all(np.abs(after[:4] - before[:4]).max(axis=1) > 0)
    np.testing.assert_array_equal(after[4:], before[4:])


def test_a_sequence_that_exactly_fits():
    layer, table = built(max_length=5, dim=2)
    x = normal(1, 2, 2)
    np.testing.assert_allclose(
        to_numpy(layer(x, start_index=3)), x + table[3:], atol=1e-6
    )


def test_too_long_raises_in_predict_with_a_run_time_length():
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, LearnedPositionEmbedding(10)(inputs))
    model.predict(normal(2, 10, 6), verbose=0)
    if keras.backend.backend() == "tensorflow":
        # Keras traces predict with a run-time length: checked when it runs.
        import tensorflow as tf

        error = tf.errors.InvalidArgumentError
        message = f"[{LPE}the positions do not fit: `start_index` + length] [11] [exceeds `max_length` = 10. Received: start_index=0, length] [11]"
    else:  # JAX traces with the data's static length.
        error, message = ValueError, does_not_fit(0, 11)
    assert_raises_with(
        lambda: model.predict(normal(2, 11, 6), verbose=0), error, message
    )


@pytest.mark.tensorflow_only
def test_too_long_raises_in_a_tf_function():
    import tensorflow as tf

    layer, table = built(max_length=10, dim=6)
    x = normal(2, 3, 6)
    fails = tf.errors.InvalidArgumentError
    # Run-time length and start_index: both filled in when the check fails.
    encode = tf.function(
        lambda x, start: layer(x, start_index=start),
        input_signature=[tf.TensorSpec([None, None, 6]), tf.TensorSpec([], tf.int32)],
    )
    np.testing.assert_allclose(encode(x, 7).numpy(), x + table[7:], atol=1e-6)
    assert_raises_with(
        lambda: encode(x, 8),
        fails,
        f"[{LPE}the positions do not fit: `start_index` + length] [11] [exceeds `max_length` = 10. Received: start_index] [8] [length] [3]",
    )
    # Static length, run-time start_index.
    static = tf.function(
        lambda start: layer(x, start_index=start),
        input_signature=[tf.TensorSpec([], tf.int32)],
    )
    assert_raises_with(
        lambda: static(9),
        fails,
        f"[{LPE}the positions do not fit: `start_index` + length] [12] [exceeds `max_length` = 10. Received: start_index] [9] [length=3]",
    )
    # Run-time length, Python-int start_index.
    dynamic = tf.function(
        lambda x: layer(x, start_index=2),
        input_signature=[tf.TensorSpec([None, None, 6])],
    )
    assert_raises_with(
        lambda: dynamic(normal(1, 9, 6)),
        fails,
        f"[{LPE}the positions do not fit: `start_index` + length] [11] [exceeds `max_length` = 10. Received: start_index=2, length] [9]",
    )
    lookup = tf.function(
        layer.lookup, input_signature=[tf.TensorSpec([None], tf.int32)]
    )
    np.testing.assert_array_equal(lookup([1, 9]).numpy(), table[[1, 9]])
    assert_raises_with(
        lambda: lookup([2, 10]),
        fails,
        f"[{LPE}`positions` must be in [0, `max_length`=10). Received: positions from] [2] [to] [10]",
    )


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
    assert_raises_with(
        lambda: jax.jit(layer)(normal(1, 11, 6)), ValueError, does_not_fit(0, 11)
    )
    assert_raises_with(
        lambda: jax.jit(lambda x: layer(x, start_index=8))(normal(1, 3, 6)),
        ValueError,
        does_not_fit(8, 3),
    )

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


def built_layer(max_length=10, dim=6):
    return built(max_length, dim)[0]


POSITIONS = "`positions` must be in [0, `max_length`=10). Received: positions from "
MAX_LENGTH = "`max_length` must be a positive integer. Received: max_length="

BAD_INPUTS = [
    pytest.param(
        lambda: LearnedPositionEmbedding(0),
        ValueError,
        LPE + MAX_LENGTH + "0",
        id="max-length-zero",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(-3),
        ValueError,
        LPE + MAX_LENGTH + "-3",
        id="max-length-negative",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(2.5),
        ValueError,
        LPE + MAX_LENGTH + "2.5",
        id="max-length-float",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(None),
        TypeError,
        LPE + MAX_LENGTH + "None of type NoneType",
        id="max-length-none",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(
            4, embeddings_initializer="no_such_initializer"
        ),
        ValueError,
        LPE
        + "`embeddings_initializer` must be the name, config or instance of a Keras initializer. Received: embeddings_initializer='no_such_initializer'",
        id="unknown-initializer",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(10).build((None, 4)),
        ValueError,
        LPE
        + "`inputs` must have rank >= 3, (batch, ..., seq_len, dim). Received: inputs.shape=(None, 4)",
        id="rank-build",
    ),
    pytest.param(
        lambda: built_layer(dim=6)(normal(2, 3, 5)),
        ValueError,
        LPE
        + "the last dimension of `inputs` must be 6, the depth of the table. Received: inputs.shape=(2, 3, 5)",
        id="depth-mismatch",
    ),
    pytest.param(
        lambda: built_layer()(normal(2, 7, 6), start_index=4),
        ValueError,
        does_not_fit(4, 7),
        id="too-long-from-start",
    ),
    pytest.param(
        lambda: built_layer()(
            normal(2, 7, 6), start_index=keras.ops.convert_to_tensor(4, "int32")
        ),
        ValueError,
        does_not_fit(4, 7),
        id="too-long-from-tensor-start",
    ),
    pytest.param(
        lambda: built_layer()(normal(2, 11, 6)),
        ValueError,
        does_not_fit(0, 11),
        id="too-long",
    ),
    pytest.param(
        lambda: keras.Sequential([keras.Input((12, 6)), LearnedPositionEmbedding(10)]),
        ValueError,
        does_not_fit(0, 12),
        id="too-long-in-a-model",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(10)(keras.Input((8, 6)), start_index=3),
        ValueError,
        does_not_fit(3, 8),
        id="too-long-from-start-symbolic",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(10).lookup([0]),
        ValueError,
        LPE
        + "`lookup` needs the table, which `build` creates from the inputs' last dimension. Call the layer, or `build((batch, seq_len, dim))`, first.",
        id="lookup-before-build",
    ),
    pytest.param(
        lambda: built_layer().lookup([0, 10]),
        ValueError,
        LPE + POSITIONS + "0 to 10",
        id="lookup-past-max-length",
    ),
    pytest.param(
        lambda: built_layer().lookup([[-1], [3]]),
        ValueError,
        LPE + POSITIONS + "-1 to 3",
        id="lookup-negative",
    ),
    pytest.param(
        lambda: built_layer().lookup(np.array([1.0], "float32")),
        TypeError,
        LPE + "`positions` must be integers. Received: positions with dtype float32",
        id="lookup-float-positions",
    ),
    pytest.param(
        lambda: built_layer()(
            normal(2, 3, 6), positions=np.array([[0, 1, 2], [8, 9, 10]])
        ),
        ValueError,
        LPE + POSITIONS + "0 to 10",
        id="positions-past-max-length",
    ),
    pytest.param(
        lambda: built_layer()(normal(2, 3, 6), positions=np.array([2, -1, 0])),
        ValueError,
        LPE + POSITIONS + "-1 to 2",
        id="positions-negative",
    ),
    pytest.param(
        lambda: LearnedPositionEmbedding(10)(
            keras.Input((3, 6)), positions=np.array([8, 9, 10])
        ),
        ValueError,
        LPE + POSITIONS + "8 to 10",
        id="positions-past-max-length-symbolic",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


@pytest.mark.parametrize("rank", [3, 4])
@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])
def test_positions_add_the_table_rows_they_gather(rank, per_row):
    layer, table = built(max_length=10, dim=6)
    positions = np.array([[9, 0, 4, 4], [1, 2, 8, 3]], "int32")
    if not per_row:
        positions = positions[0]
    x = normal(2, *(3,) * (rank - 3), 4, 6)
    rows = table[positions]  # positions.shape + (6,)
    if per_row and rank == 4:
        rows = rows[:, None]  # the same rows for every entry of axis 1
    np.testing.assert_allclose(
        to_numpy(layer(x, positions=positions)), x + rows, atol=1e-6
    )


def test_training_with_positions_moves_only_the_rows_used():
    inputs = keras.Input((3, 4))
    positions = keras.Input((3,), dtype="int32")
    layer = LearnedPositionEmbedding(10)
    model = keras.Model([inputs, positions], layer(inputs, positions=positions))
    before = to_numpy(layer.embeddings)
    model.compile(optimizer="sgd", loss="mse")
    used = np.array([[7, 2, 7], [5, 2, 9]] * 4, "int32")
    model.fit([normal(8, 3, 4), used], normal(8, 3, 4), epochs=1, verbose=0)
    moved = np.abs(to_numpy(layer.embeddings) - before).max(axis=1) > 0
    np.testing.assert_array_equal(np.flatnonzero(moved), [2, 5, 7, 9])


@pytest.mark.tensorflow_only
def test_traced_positions_past_max_length_fail_when_the_graph_runs_or_nan_in_xla():
    import tensorflow as tf

    layer, table = built(max_length=10, dim=6)
    x = normal(2, 3, 6)
    past = np.array([[0, 1, 2], [8, 9, 10]], "int32")
    encode = tf.function(
        lambda x, positions: layer(x, positions=positions),
        input_signature=[
            tf.TensorSpec([None, None, 6]),
            tf.TensorSpec([None, None], tf.int32),
        ],
    )
    assert_raises_with(
        lambda: encode(x, past),
        tf.errors.InvalidArgumentError,
        f"[{LPE}{POSITIONS.rstrip()}] [0] [to] [10]",
    )
    xla = tf.function(
        lambda x, positions: layer(x, positions=positions), jit_compile=True
    )
    output = xla(x, tf.constant(past)).numpy()
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=-1), [[False, False, False], [False, False, True]]
    )
    np.testing.assert_allclose(output[1, :2], x[1, :2] + table[8:], atol=1e-6)


@jax_only
def test_traced_positions_past_max_length_under_jax_jit_give_nan_rows():
    import jax

    layer, table = built(max_length=10, dim=6)
    x = normal(2, 3, 6)
    output = np.asarray(
        jax.jit(lambda x, positions: layer(x, positions=positions))(
            x, np.array([[0, 1, 2], [8, 9, 10]], "int32")
        )
    )
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=-1), [[False, False, False], [False, False, True]]
    )
    np.testing.assert_allclose(output[1, :2], x[1, :2] + table[8:], atol=1e-6)

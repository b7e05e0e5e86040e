import math

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import SinusoidalPositionEncoding, sinusoidal_table
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(3)
BACKEND = keras.backend.backend()
jax_only = pytest.mark.skipif(BACKEND != "jax", reason="needs the JAX backend")


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def reference(positions, depth, max_wavelength=10000.0):
    """The formula entry by entry, in float64."""
    table = np.zeros((len(positions), depth))
    for row, pos in enumerate(positions):
        for j in range(depth):
            angle = pos / max_wavelength ** (2 * (j // 2) / depth)
            table[row, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


def test_layer_behaviours(tmp_path):
    run_layer_test(
        SinusoidalPositionEncoding,
        init_kwargs={},
        input_data=normal(2, 5, 6),
        expected_output_shape=(2, 5, 6),
        expected_num_trainable_weights=0,
        run_training=False,  # no weights to train
        tmp_path=tmp_path,
    )


def test_layer_behaviours_rank_4_odd_depth_start_index(tmp_path):
    run_layer_test(
        SinusoidalPositionEncoding,
        init_kwargs={"max_wavelength": 500},
        input_data=normal(2, 3, 4, 7),
        expected_output_shape=(2, 3, 4, 7),
        expected_num_trainable_weights=0,
        run_training=False,  # no weights to train
        call_kwargs={"start_index": 3},
        tmp_path=tmp_path,
    )


def test_hand_computed_values():
    # depth 4: frequencies 1 and 1 / 10000^(2/4) = 0.01.
    np.testing.assert_allclose(
        to_numpy(sinusoidal_table(2, 4)),
        [[0, 1, 0, 1], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]],
        atol=1e-7,
    )
    # depth 3 ends with a sine of frequency 1 / 10000^(2/3) = 1 / 464.158...
    np.testing.assert_allclose(
        to_numpy(sinusoidal_table(2, 3))[1],
        [math.sin(1), math.cos(1), math.sin(1 / 464.15888336127786)],
        atol=1e-7,
    )
    # max_wavelength 100, depth 4: frequencies 1 and 0.1; position 2.
    layer = SinusoidalPositionEncoding(max_wavelength=100)
    x = np.ones((1, 3, 4), "float32")
    np.testing.assert_allclose(
        to_numpy(layer(x))[0, 2],
        1 + np.array([math.sin(2), math.cos(2), math.sin(0.2), math.cos(0.2)]),
        atol=1e-6,
    )


@pytest.mark.parametrize("depth", [1, 2, 7, 16])
@pytest.mark.parametrize("max_wavelength", [10000, 55.5])
def test_matches_numpy_reference(depth, max_wavelength):
    expected = reference(range(40), depth, max_wavelength)
    table = sinusoidal_table(40, depth, max_wavelength=max_wavelength)
    assert keras.backend.standardize_dtype(table.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(table), expected, atol=1e-5)

    x = normal(3, 40, depth)
    layer = SinusoidalPositionEncoding(max_wavelength=max_wavelength)
    np.testing.assert_allclose(to_numpy(layer(x)), x + expected, atol=1e-5)
    shifted = to_numpy(layer(x[:, :10], start_index=25))
    np.testing.assert_allclose(shifted, x[:, :10] + expected[25:35], atol=1e-5)


def test_table_rows_for_explicit_positions():
    # The tutorial's use: the vectors of positions [0, 1, 2].
    rows = keras.ops.take(sinusoidal_table(100, 10), [0, 1, 2], axis=0)
    np.testing.assert_allclose(to_numpy(rows), reference([0, 1, 2], 10), atol=1e-6)


def test_any_rank_broadcasts_over_leading_axes():
    x = normal(2, 3, 5, 4)
    output = to_numpy(SinusoidalPositionEncoding()(x))
    np.testing.assert_allclose(
        output - x, np.broadcast_to(reference(range(5), 4), x.shape), atol=1e-6
    )


@pytest.mark.parametrize("as_tensor", [False, True])
def test_one_step_at_a_time_equals_whole(as_tensor):
    x = normal(2, 6, 8)
    layer = SinusoidalPositionEncoding()
    whole = to_numpy(layer(x))
    steps = []
    for t in range(6):
        start = keras.ops.convert_to_tensor(t, "int32") if as_tensor else t
        steps.append(to_numpy(layer(x[:, t : t + 1], start_index=start)))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, atol=1e-6)


def test_length_known_only_at_run_time():
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, SinusoidalPositionEncoding()(inputs))
    assert tuple(model.output_shape) == (None, None, 6)
    for length in (3, 9):
        x = normal(2, length, 6)
        np.testing.assert_allclose(
            model.predict(x, verbose=0), x + reference(range(length), 6), atol=1e-5
        )


def test_bfloat16_output_is_right_at_positions_up_to_4096():
    depth, one_step = 64, 2.0**-8  # one bfloat16 step for values in [0.5, 1)
    exact = reference(range(4097), depth)
    layer = SinusoidalPositionEncoding(dtype="mixed_bfloat16")
    output = layer(np.zeros((1, 4097, depth), "float32"))
    assert keras.backend.standardize_dtype(output.dtype) == "bfloat16"
    encoding = to_numpy(keras.ops.cast(output, "float32"))[0]
    assert np.abs(encoding - exact).max() <= one_step

    # With inputs: the output is their sum rounded once to bfloat16 (half a
    # step of the sum), give or take the float32 error of the angles.
    x = to_numpy(
        keras.ops.cast(keras.ops.cast(normal(1, 4097, depth), "bfloat16"), "float32")
    )
    total = x[0] + exact
    output = to_numpy(keras.ops.cast(layer(x), "float32"))[0]
    half_step = 2.0 ** (np.floor(np.log2(np.abs(total))) - 8)
    assert np.all(np.abs(output - total) <= half_step + 5e-4)

    # The check can fail: positions and angles in bfloat16 are off by more
    # than 1 there.
    positions = keras.ops.cast(np.arange(4097.0)[:, None], "bfloat16")
    frequencies = keras.ops.cast(
        1 / 10000 ** (np.arange(0, depth, 2) / depth), "bfloat16"
    )
    naive = to_numpy(keras.ops.cast(keras.ops.sin(positions * frequencies), "float32"))
    assert np.abs(naive - exact[:, 0::2]).max() > 1.0


def _tokens():
    tokens = RNG.integers(1, 20, size=(3, 6))
    tokens[0, 4:] = 0
    tokens[1, 2:] = 0
    return tokens


@pytest.mark.parametrize("mask_zero", [True, False])
def test_padding_mask_passes_through_to_attention(mask_zero):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=mask_zero))
    model.add(SinusoidalPositionEncoding())
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
    layer = SinusoidalPositionEncoding()
    mask = keras.ops.convert_to_tensor(_tokens() != 0)
    np.testing.assert_array_equal(
        to_numpy(layer.compute_mask(normal(3, 6, 8), mask)), to_numpy(mask)
    )


def test_sequential_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=True))
    model.add(SinusoidalPositionEncoding(max_wavelength=1000))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.layers[-1].max_wavelength == 1000
    tokens = _tokens()
    np.testing.assert_allclose(to_numpy(loaded(tokens)), to_numpy(model(tokens)))


@pytest.mark.parametrize(
    "value,error,message",
    [
        (
            0,
            ValueError,
            r"`max_wavelength` must be a positive finite number\. Received: max_wavelength=0",
        ),
        (
            -5.0,
            ValueError,
            r"`max_wavelength` must be a positive finite number\. Received: max_wavelength=-5\.0",
        ),
        (
            math.inf,
            ValueError,
            r"`max_wavelength` must be a positive finite number\. Received: max_wavelength=inf",
        ),
        (
            True,
            TypeError,
            r"`max_wavelength` must be a positive finite number\. Received: max_wavelength=True of type bool",
        ),
        (
            "1e4",
            TypeError,
            r"`max_wavelength` must be a positive finite number\. Received: max_wavelength='1e4' of type str",
        ),
    ],
)
def test_bad_max_wavelength(value, error, message):
    with pytest.raises(error, match=r"^SinusoidalPositionEncoding: " + message + "$"):
        SinusoidalPositionEncoding(max_wavelength=value)
    with pytest.raises(error, match=r"^sinusoidal_table: " + message + "$"):
        sinusoidal_table(4, 4, max_wavelength=value)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            {"length": 0, "depth": 4},
            ValueError,
            r"`length` must be a positive integer\. Received: length=0",
        ),
        (
            {"length": 4, "depth": -2},
            ValueError,
            r"`depth` must be a positive integer\. Received: depth=-2",
        ),
        (
            {"length": 4.0, "depth": 4},
            TypeError,
            r"`length` must be a positive integer\. Received: length=4\.0 of type float",
        ),
        (
            {"length": 4, "depth": None},
            TypeError,
            r"`depth` must be a positive integer\. Received: depth=None of type NoneType",
        ),
    ],
)
def test_bad_table_arguments(kwargs, error, message):
    with pytest.raises(error, match=r"^sinusoidal_table: " + message + "$"):
        sinusoidal_table(**kwargs)


def test_bad_inputs():
    layer = SinusoidalPositionEncoding()
    with pytest.raises(
        ValueError,
        match=r"SinusoidalPositionEncoding: `inputs` must have rank >= 3, \(batch, \.\.\., seq_len, dim\)\. Received: inputs\.shape=\(5, 4\)",
    ):
        layer(normal(5, 4))
    with pytest.raises(
        ValueError,
        match=r"SinusoidalPositionEncoding: the last dimension of `inputs` must be known\. Received: inputs\.shape=\(None, 3, None\)",
    ):
        layer(keras.Input((3, None)))
    with pytest.raises(
        ValueError,
        match=r"SinusoidalPositionEncoding: `inputs` must have rank >= 3, \(batch, \.\.\., seq_len, dim\)\. Received: inputs\.shape=\(None, 4\)",
    ):
        layer.compute_output_shape((None, 4))
    with pytest.raises(
        TypeError,
        match=r"SinusoidalPositionEncoding: `inputs` must be a floating-point tensor \(vectors, such as the output of `Embedding`\)\. Received: inputs with dtype int32",
    ):
        layer(np.ones((2, 3, 4), "int32"))


@pytest.mark.parametrize(
    "start_index,error,message",
    [
        (-1, ValueError, r"`start_index` must be >= 0\. Received: start_index=-1"),
        (
            np.int64(-3),
            ValueError,
            r"`start_index` must be >= 0\. Received: start_index=-3",
        ),
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
            True,
            TypeError,
            r"`start_index` must be an int or a scalar integer tensor\. Received: start_index=True of type bool",
        ),
        (
            np.float32(2),
            TypeError,
            r"`start_index` must be an int or a scalar integer tensor\. Received: start_index with dtype float32",
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
    layer = SinusoidalPositionEncoding()
    with pytest.raises(error, match=r"SinusoidalPositionEncoding: " + message):
        layer(normal(2, 3, 4), start_index=start_index)
    with pytest.raises(error, match=r"SinusoidalPositionEncoding: " + message):
        layer(keras.Input((3, 4)), start_index=start_index)


@pytest.mark.tensorflow_only
def test_negative_tensor_start_index_in_a_tf_function():
    import tensorflow as tf

    layer = SinusoidalPositionEncoding()
    encode = tf.function(
        lambda x, start: layer(x, start_index=start),
        input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([], tf.int32)],
    )
    x = normal(2, 3, 4)
    np.testing.assert_allclose(encode(x, 2).numpy(), to_numpy(layer(x, start_index=2)))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"SinusoidalPositionEncoding: `start_index` must be >= 0\. Received: start_index=\] \[-1\]",
    ):
        encode(x, -1)


@jax_only
def test_negative_traced_start_index_under_jax_jit_gives_nan():
    import jax

    layer = SinusoidalPositionEncoding()
    encode = jax.jit(lambda x, start: layer(x, start_index=start))
    x = normal(2, 3, 4)
    np.testing.assert_allclose(
        np.asarray(encode(x, 1)), to_numpy(layer(x, start_index=1)), atol=1e-6
    )
    output = np.asarray(encode(x, -2))
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=(0, 2)), [True, True, False]
    )

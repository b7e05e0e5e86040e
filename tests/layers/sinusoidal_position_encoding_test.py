import math

import keras
import numpy as np
import pytest

from keras_attention import SinusoidalPositionEncoding, sinusoidal_table
from tests.layer_test_case import (
    assert_raises_with,
    jax_only,
    normal,
    run_layer_test,
    to_numpy,
)


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


SPE = "SinusoidalPositionEncoding: "
TABLE = "sinusoidal_table: "
WAVELENGTH = (
    "`max_wavelength` must be a positive finite number. Received: max_wavelength="
)
BAD_WAVELENGTHS = [
    (0, ValueError, "0", "zero"),
    (-5.0, ValueError, "-5.0", "negative"),
    (math.inf, ValueError, "inf", "infinite"),
    (True, TypeError, "True of type bool", "bool"),
    ("1e4", TypeError, "'1e4' of type str", "str"),
]
PAST_INT32 = (
    SPE
    + "the positions do not fit: `start_index` + length = 2147483649 exceeds 2**31 = 2147483648 (positions are int32). Received: start_index=2147483646, length=3"
)
OUT_OF_RANGE = (
    SPE
    + "`positions` must be in [0, 2**31) (positions are int32). Received: positions from "
)

BAD_INPUTS = [
    *(
        pytest.param(
            lambda value=value: SinusoidalPositionEncoding(max_wavelength=value),
            error,
            SPE + WAVELENGTH + shown,
            id=f"max-wavelength-{name}",
        )
        for value, error, shown, name in BAD_WAVELENGTHS
    ),
    *(
        pytest.param(
            lambda value=value: sinusoidal_table(4, 4, max_wavelength=value),
            error,
            TABLE + WAVELENGTH + shown,
            id=f"table-max-wavelength-{name}",
        )
        for value, error, shown, name in BAD_WAVELENGTHS
    ),
    pytest.param(
        lambda: sinusoidal_table(0, 4),
        ValueError,
        TABLE + "`length` must be a positive integer. Received: length=0",
        id="table-length-zero",
    ),
    pytest.param(
        lambda: sinusoidal_table(4.0, 4),
        ValueError,
        TABLE + "`length` must be a positive integer. Received: length=4.0",
        id="table-length-float",
    ),
    pytest.param(
        lambda: sinusoidal_table(4, -2),
        ValueError,
        TABLE + "`depth` must be a positive integer. Received: depth=-2",
        id="table-depth-negative",
    ),
    pytest.param(
        lambda: sinusoidal_table(4, 4.0),
        ValueError,
        TABLE + "`depth` must be a positive integer. Received: depth=4.0",
        id="table-depth-float",
    ),
    pytest.param(
        lambda: sinusoidal_table(4, None),
        TypeError,
        TABLE
        + "`depth` must be a positive integer. Received: depth=None of type NoneType",
        id="table-depth-none",
    ),
    pytest.param(
        lambda: SinusoidalPositionEncoding()(normal(1, 3, 4), start_index=2**31 - 2),
        ValueError,
        PAST_INT32,
        id="positions-past-int32",
    ),
    pytest.param(
        lambda: SinusoidalPositionEncoding()(
            keras.Input((3, 4)), start_index=2**31 - 2
        ),
        ValueError,
        PAST_INT32,
        id="positions-past-int32-symbolic",
    ),
    pytest.param(
        lambda: SinusoidalPositionEncoding()(
            normal(2, 3, 4), positions=np.array([[0, 1, 2], [-5, 0, 1]])
        ),
        ValueError,
        OUT_OF_RANGE + "-5 to 2",
        id="positions-negative",
    ),
    pytest.param(
        lambda: SinusoidalPositionEncoding()(
            keras.Input((3, 4)), positions=np.array([1, -1, 0])
        ),
        ValueError,
        OUT_OF_RANGE + "-1 to 1",
        id="positions-negative-symbolic",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


@pytest.mark.tensorflow_only
def test_positions_past_int32_in_a_tf_function_are_checked_when_it_runs():
    import tensorflow as tf

    layer = SinusoidalPositionEncoding()
    encode = tf.function(
        lambda x, start: layer(x, start_index=start),
        input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([], tf.int64)],
    )
    assert_raises_with(
        lambda: encode(normal(1, 3, 4), 2**31 - 2),
        tf.errors.InvalidArgumentError,
        f"[{SPE}the positions do not fit: `start_index` + length] [2147483649] [exceeds 2**31 = 2147483648 (positions are int32). Received: start_index] [2147483646] [length] [3]",
    )


@jax_only
def test_traced_positions_past_int32_under_jax_jit_give_nan_rows():
    import jax

    layer = SinusoidalPositionEncoding()
    output = np.asarray(
        jax.jit(lambda x, start: layer(x, start_index=start))(
            normal(2, 3, 4), 2**31 - 2
        )
    )
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=(0, 2)), [False, False, True]
    )


@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])
def test_positions_add_the_formula_at_arbitrary_positions(per_row):
    positions = np.array([[5, 0, 1000, 37], [2, 2, 9, 511]], "int32")
    if not per_row:
        positions = positions[0]
    x = normal(2, 4, 6)
    expected = reference(positions.reshape(-1), 6).reshape(positions.shape + (6,))
    layer = SinusoidalPositionEncoding()
    np.testing.assert_allclose(
        to_numpy(layer(x, positions=positions)), x + expected, atol=1e-4
    )


@pytest.mark.tensorflow_only
def test_int64_positions_past_int32_are_refused_now_and_when_a_graph_runs():
    import tensorflow as tf

    layer = SinusoidalPositionEncoding()
    x = normal(1, 3, 4)
    past = np.array([0, 1, 2**31], "int64")
    assert_raises_with(
        lambda: layer(x, positions=past), ValueError, OUT_OF_RANGE + "0 to 2147483648"
    )
    encode = tf.function(
        lambda x, positions: layer(x, positions=positions),
        input_signature=[
            tf.TensorSpec([None, None, 4]),
            tf.TensorSpec([None], tf.int64),
        ],
    )
    assert_raises_with(
        lambda: encode(x, past),
        tf.errors.InvalidArgumentError,
        f"[{OUT_OF_RANGE.rstrip()}] [0] [to] [2147483648]",
    )

"""`keras_attention/_checks.py`: the argument checks several owners share.

Each check's messages are tested here once, word for word, for every kind of
value it refuses (the wrong type, out of range, a bool where a number is
expected...); the owners' test files keep a row per argument, which shows
the owner calls the check. What a check accepts it returns as a plain
Python value: that is tested here too.
"""

import math

import keras
import numpy as np
import pytest

from keras_attention import _checks as checks
from tests.layer_test_case import assert_raises_with, symbolic

OWNER = "Owner"
PREFIX = OWNER + ": "
POSITIVE = "must be a positive integer. Received: "
TILE = "`tile_size` must be None, 0 (the full computation) or a positive integer. Received: "
DROPOUT = "`dropout` must be a number in [0, 1). Received: "
SCALE = "`scale` must be None or a positive finite number. Received: "
POSITIVE_NUMBER = "must be a positive finite number. Received: "
ACTIVATION = "`activation` must be the name, config or instance of a Keras activation. Received: "
MEANING = "non-zero where a query may attend to a key"


def check_mask(value, shape=(2, 3, 4)):
    return checks.mask(
        value, "attention_mask", OWNER, "(batch, q_len, k_len)", shape, MEANING
    )


BAD_INPUTS = [
    # number_type: anything but a Python or NumPy real number, bools included.
    pytest.param(
        lambda: checks.number_type("3", "size", OWNER, "a number"),
        TypeError,
        PREFIX + "`size` must be a number. Received: size='3' of type str",
        id="number-type-string",
    ),
    pytest.param(
        lambda: checks.number_type(True, "size", OWNER, "a number"),
        TypeError,
        PREFIX + "`size` must be a number. Received: size=True of type bool",
        id="number-type-bool",
    ),
    pytest.param(
        lambda: checks.number_type(None, "size", OWNER, "a number"),
        TypeError,
        PREFIX + "`size` must be a number. Received: size=None of type NoneType",
        id="number-type-none",
    ),
    # positive_int
    pytest.param(
        lambda: checks.positive_int(0, "size", OWNER),
        ValueError,
        PREFIX + "`size` " + POSITIVE + "size=0",
        id="positive-int-zero",
    ),
    pytest.param(
        lambda: checks.positive_int(-2, "size", OWNER),
        ValueError,
        PREFIX + "`size` " + POSITIVE + "size=-2",
        id="positive-int-negative",
    ),
    pytest.param(
        lambda: checks.positive_int(1.5, "size", OWNER),
        ValueError,
        PREFIX + "`size` " + POSITIVE + "size=1.5",
        id="positive-int-fraction",
    ),
    pytest.param(
        lambda: checks.positive_int(2.0, "size", OWNER),
        ValueError,
        PREFIX + "`size` " + POSITIVE + "size=2.0",
        id="positive-int-whole-float",
    ),
    pytest.param(
        lambda: checks.positive_int("4", "size", OWNER),
        TypeError,
        PREFIX + "`size` " + POSITIVE + "size='4' of type str",
        id="positive-int-string",
    ),
    pytest.param(
        lambda: checks.positive_int(True, "size", OWNER),
        TypeError,
        PREFIX + "`size` " + POSITIVE + "size=True of type bool",
        id="positive-int-bool",
    ),
    pytest.param(
        lambda: checks.positive_int(None, "size", OWNER),
        TypeError,
        PREFIX + "`size` " + POSITIVE + "size=None of type NoneType",
        id="positive-int-none-not-allowed",
    ),
    pytest.param(
        lambda: checks.positive_int(0, "size", OWNER, allow_none=True),
        ValueError,
        PREFIX + "`size` must be None or a positive integer. Received: size=0",
        id="positive-int-or-none-zero",
    ),
    pytest.param(
        lambda: checks.positive_int("4", "size", OWNER, allow_none=True),
        TypeError,
        PREFIX
        + "`size` must be None or a positive integer. Received: size='4' of type str",
        id="positive-int-or-none-string",
    ),
    # tile_size
    pytest.param(
        lambda: checks.tile_size(-1, OWNER),
        ValueError,
        PREFIX + TILE + "tile_size=-1",
        id="tile-size-negative",
    ),
    pytest.param(
        lambda: checks.tile_size(2.5, OWNER),
        ValueError,
        PREFIX + TILE + "tile_size=2.5",
        id="tile-size-fraction",
    ),
    pytest.param(
        lambda: checks.tile_size("8", OWNER),
        TypeError,
        PREFIX + TILE + "tile_size='8' of type str",
        id="tile-size-string",
    ),
    pytest.param(
        lambda: checks.tile_size(False, OWNER),
        TypeError,
        PREFIX + TILE + "tile_size=False of type bool",
        id="tile-size-bool",
    ),
    # boolean
    pytest.param(
        lambda: checks.boolean("yes", "causal", OWNER),
        TypeError,
        PREFIX + "`causal` must be a bool. Received: causal='yes'",
        id="boolean-string",
    ),
    pytest.param(
        lambda: checks.boolean(2, "causal", OWNER),
        TypeError,
        PREFIX + "`causal` must be a bool. Received: causal=2",
        id="boolean-two",
    ),
    pytest.param(
        lambda: checks.boolean(1.0, "causal", OWNER),
        TypeError,
        PREFIX + "`causal` must be a bool. Received: causal=1.0",
        id="boolean-float",
    ),
    pytest.param(
        lambda: checks.boolean(None, "causal", OWNER),
        TypeError,
        PREFIX + "`causal` must be a bool. Received: causal=None",
        id="boolean-none-not-allowed",
    ),
    pytest.param(
        lambda: checks.boolean("no", "training", OWNER, allow_none=True),
        TypeError,
        PREFIX + "`training` must be a bool (or None). Received: training='no'",
        id="boolean-or-none-string",
    ),
    # dropout
    pytest.param(
        lambda: checks.dropout(1, OWNER),
        ValueError,
        PREFIX + DROPOUT + "dropout=1",
        id="dropout-one",
    ),
    pytest.param(
        lambda: checks.dropout(-0.1, OWNER),
        ValueError,
        PREFIX + DROPOUT + "dropout=-0.1",
        id="dropout-negative",
    ),
    pytest.param(
        lambda: checks.dropout(math.nan, OWNER),
        ValueError,
        PREFIX + DROPOUT + "dropout=nan",
        id="dropout-nan",
    ),
    pytest.param(
        lambda: checks.dropout("0.1", OWNER),
        TypeError,
        PREFIX + DROPOUT + "dropout='0.1' of type str",
        id="dropout-string",
    ),
    # scale
    pytest.param(
        lambda: checks.scale(0.0, OWNER),
        ValueError,
        PREFIX + SCALE + "scale=0.0",
        id="scale-zero",
    ),
    pytest.param(
        lambda: checks.scale(-1, OWNER),
        ValueError,
        PREFIX + SCALE + "scale=-1",
        id="scale-negative",
    ),
    pytest.param(
        lambda: checks.scale(math.inf, OWNER),
        ValueError,
        PREFIX + SCALE + "scale=inf",
        id="scale-infinite",
    ),
    pytest.param(
        lambda: checks.scale(math.nan, OWNER),
        ValueError,
        PREFIX + SCALE + "scale=nan",
        id="scale-nan",
    ),
    pytest.param(
        lambda: checks.scale("1", OWNER),
        TypeError,
        PREFIX + SCALE + "scale='1' of type str",
        id="scale-string",
    ),
    # seed (a function's: an int or a SeedGenerator)
    pytest.param(
        lambda: checks.seed("1", OWNER),
        TypeError,
        PREFIX + "`seed` must be None, an int or a keras.random.SeedGenerator. "
        "Received: seed='1'",
        id="seed-string",
    ),
    pytest.param(
        lambda: checks.seed(True, OWNER),
        TypeError,
        PREFIX + "`seed` must be None, an int or a keras.random.SeedGenerator. "
        "Received: seed=True",
        id="seed-bool",
    ),
    pytest.param(
        lambda: checks.seed(1.0, OWNER),
        TypeError,
        PREFIX + "`seed` must be None, an int or a keras.random.SeedGenerator. "
        "Received: seed=1.0",
        id="seed-float",
    ),
    # layer_seed (a layer's: an int, as its config holds it)
    pytest.param(
        lambda: checks.layer_seed("x", OWNER),
        TypeError,
        PREFIX + "`seed` must be None or an int. Received: seed='x' of type str",
        id="layer-seed-string",
    ),
    pytest.param(
        lambda: checks.layer_seed(False, OWNER),
        TypeError,
        PREFIX + "`seed` must be None or an int. Received: seed=False of type bool",
        id="layer-seed-bool",
    ),
    pytest.param(
        lambda: checks.layer_seed(1.5, OWNER),
        TypeError,
        PREFIX + "`seed` must be None or an int. Received: seed=1.5 of type float",
        id="layer-seed-float",
    ),
    # positive_number
    pytest.param(
        lambda: checks.positive_number(0, "epsilon", OWNER),
        ValueError,
        PREFIX + "`epsilon` " + POSITIVE_NUMBER + "epsilon=0",
        id="positive-number-zero",
    ),
    pytest.param(
        lambda: checks.positive_number(-math.inf, "epsilon", OWNER),
        ValueError,
        PREFIX + "`epsilon` " + POSITIVE_NUMBER + "epsilon=-inf",
        id="positive-number-minus-infinity",
    ),
    pytest.param(
        lambda: checks.positive_number(math.inf, "epsilon", OWNER),
        ValueError,
        PREFIX + "`epsilon` " + POSITIVE_NUMBER + "epsilon=inf",
        id="positive-number-infinity",
    ),
    pytest.param(
        lambda: checks.positive_number([1e-6], "epsilon", OWNER),
        TypeError,
        PREFIX + "`epsilon` " + POSITIVE_NUMBER + "epsilon=[1e-06] of type list",
        id="positive-number-list",
    ),
    # keras_identifier
    pytest.param(
        lambda: checks.keras_identifier(
            keras.activations.get, 3, "activation", OWNER, "activation"
        ),
        TypeError,
        PREFIX + ACTIVATION + "activation=3 of type int",
        id="keras-identifier-type",
    ),
    pytest.param(
        lambda: checks.keras_identifier(
            keras.activations.get, "no_such", "activation", OWNER, "activation"
        ),
        ValueError,
        PREFIX + ACTIVATION + "activation='no_such'",
        id="keras-identifier-unknown-name",
    ),
    pytest.param(
        lambda: checks.keras_identifier(
            keras.initializers.get,
            {"class_name": "NoSuchInitializer", "config": {}},
            "kernel_initializer",
            OWNER,
            "initializer",
        ),
        ValueError,
        PREFIX + "`kernel_initializer` must be the name, config or instance of a Keras "
        "initializer. Received: kernel_initializer={'class_name': "
        "'NoSuchInitializer', 'config': {}}",
        id="keras-identifier-unknown-config",
    ),
    # tensor, not_strings, floating
    pytest.param(
        lambda: checks.tensor([[1.0]], "query", OWNER),
        TypeError,
        PREFIX + "`query` must be a tensor or array. Received: query of type list",
        id="tensor-list",
    ),
    pytest.param(
        lambda: checks.tensor(1.0, "query", OWNER),
        TypeError,
        PREFIX + "`query` must be a tensor or array. Received: query of type float",
        id="tensor-python-number",
    ),
    pytest.param(
        lambda: checks.not_strings(np.array([["a", "bc"]]), "inputs", OWNER),
        TypeError,
        PREFIX + "`inputs` must be a floating-point tensor. Received: inputs with "
        "dtype str64",
        id="not-strings-str",
    ),
    pytest.param(
        lambda: checks.not_strings(
            np.array([b"ab"]), "tokens", OWNER, expected="integer token ids"
        ),
        TypeError,
        PREFIX
        + "`tokens` must be integer token ids. Received: tokens with dtype bytes16",
        id="not-strings-bytes",
    ),
    pytest.param(
        lambda: checks.floating(np.ones((2, 3), "int32"), "query", OWNER),
        TypeError,
        PREFIX
        + "`query` must be a floating-point tensor. Received: query with dtype int32",
        id="floating-int",
    ),
    pytest.param(
        lambda: checks.floating(np.ones((2, 3), bool), "query", OWNER),
        TypeError,
        PREFIX
        + "`query` must be a floating-point tensor. Received: query with dtype bool",
        id="floating-bool",
    ),
    pytest.param(
        lambda: checks.floating(symbolic(None, 3, dtype="int32"), "query", OWNER),
        TypeError,
        PREFIX
        + "`query` must be a floating-point tensor. Received: query with dtype int32",
        id="floating-int-symbolic",
    ),
    pytest.param(
        lambda: checks.floating([1.0], "query", OWNER),
        TypeError,
        PREFIX + "`query` must be a tensor or array. Received: query of type list",
        id="floating-list",
    ),
    # mask
    pytest.param(
        lambda: check_mask(np.ones((2, 3, 4), "float32")),
        TypeError,
        PREFIX + f"`attention_mask` must be boolean or integer, {MEANING} (Keras' "
        "convention). Received: attention_mask with dtype float32",
        id="mask-float",
    ),
    pytest.param(
        lambda: check_mask(np.ones((2, 3, 5), bool)),
        ValueError,
        PREFIX + "`attention_mask` must have shape (batch, q_len, k_len)=(2, 3, 4) or "
        "broadcast to it. Received: attention_mask.shape=(2, 3, 5)",
        id="mask-wrong-axis",
    ),
    pytest.param(
        lambda: check_mask(np.ones((3, 4), bool)),
        ValueError,
        PREFIX + "`attention_mask` must have shape (batch, q_len, k_len)=(2, 3, 4) or "
        "broadcast to it. Received: attention_mask.shape=(3, 4)",
        id="mask-fewer-axes",
    ),
    pytest.param(
        lambda: check_mask(symbolic(None, 3, 5, dtype="bool"), shape=(None, 3, 4)),
        ValueError,
        PREFIX + "`attention_mask` must have shape (batch, q_len, k_len)=(None, 3, 4) "
        "or broadcast to it. Received: attention_mask.shape=(None, 3, 5)",
        id="mask-wrong-axis-symbolic",
    ),
    pytest.param(
        lambda: check_mask([[[True]]]),
        TypeError,
        PREFIX + "`attention_mask` must be a tensor or array. Received: attention_mask "
        "of type list",
        id="mask-list",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


GENERATOR = keras.random.SeedGenerator(5)

# Rows `(call, expected)`: what a check accepts, returned as plain Python
# (`expected` compared with `==` and by type).
ACCEPTED = [
    pytest.param(lambda: checks.positive_int(3, "n", OWNER), 3, id="positive-int"),
    pytest.param(
        lambda: checks.positive_int(np.int64(3), "n", OWNER),
        3,
        id="positive-int-numpy",
    ),
    pytest.param(
        lambda: checks.positive_int(None, "n", OWNER, allow_none=True),
        None,
        id="positive-int-none",
    ),
    pytest.param(lambda: checks.tile_size(None, OWNER), None, id="tile-size-none"),
    pytest.param(lambda: checks.tile_size(0, OWNER), 0, id="tile-size-zero"),
    pytest.param(
        lambda: checks.tile_size(np.int32(64), OWNER), 64, id="tile-size-numpy"
    ),
    pytest.param(lambda: checks.boolean(True, "f", OWNER), True, id="boolean-true"),
    pytest.param(
        lambda: checks.boolean(np.False_, "f", OWNER), False, id="boolean-numpy"
    ),
    pytest.param(lambda: checks.boolean(1, "f", OWNER), True, id="boolean-one"),
    pytest.param(
        lambda: checks.boolean(np.int8(0), "f", OWNER), False, id="boolean-numpy-zero"
    ),
    pytest.param(
        lambda: checks.boolean(None, "f", OWNER, allow_none=True),
        False,
        id="boolean-none",
    ),
    pytest.param(
        lambda: checks.boolean(keras.ops.convert_to_tensor(True), "f", OWNER),
        True,
        id="boolean-scalar-tensor",
    ),
    pytest.param(lambda: checks.dropout(0, OWNER), 0.0, id="dropout-zero"),
    pytest.param(
        lambda: checks.dropout(np.float32(0.25), OWNER), 0.25, id="dropout-numpy"
    ),
    pytest.param(lambda: checks.scale(None, OWNER), None, id="scale-none"),
    pytest.param(lambda: checks.scale(2, OWNER), 2.0, id="scale-int"),
    pytest.param(lambda: checks.seed(None, OWNER), None, id="seed-none"),
    pytest.param(lambda: checks.seed(-3, OWNER), -3, id="seed-negative-int"),
    pytest.param(lambda: checks.seed(np.int64(7), OWNER), 7, id="seed-numpy"),
    pytest.param(lambda: checks.layer_seed(None, OWNER), None, id="layer-seed-none"),
    pytest.param(
        lambda: checks.layer_seed(np.uint8(4), OWNER), 4, id="layer-seed-numpy"
    ),
    pytest.param(
        lambda: checks.positive_number(1, "epsilon", OWNER),
        1.0,
        id="positive-number-int",
    ),
    pytest.param(
        lambda: checks.positive_number(np.float16(0.5), "epsilon", OWNER),
        0.5,
        id="positive-number-numpy",
    ),
    pytest.param(
        lambda: checks.tensor(np.zeros((2, 0, 3)), "x", OWNER),
        (2, 0, 3),
        id="tensor-shape",
    ),
    pytest.param(
        lambda: checks.floating(np.zeros((4,), "float16"), "x", OWNER),
        (4,),
        id="floating-shape",
    ),
    pytest.param(
        lambda: checks.floating(symbolic(None, 5, 2), "x", OWNER),
        (None, 5, 2),
        id="floating-symbolic-shape",
    ),
    pytest.param(
        lambda: checks.not_strings(np.zeros((2,), "float32"), "x", OWNER),
        None,
        id="not-strings-numbers",
    ),
    pytest.param(
        lambda: checks.not_strings([["a"]], "x", OWNER),
        None,
        id="not-strings-list-left-to-the-tensor-check",
    ),
    pytest.param(lambda: check_mask(None), None, id="mask-none"),
    pytest.param(
        lambda: check_mask(np.ones((2, 3, 4), "int32")), None, id="mask-integer"
    ),
    pytest.param(
        lambda: check_mask(np.ones((1, 3, 1), bool)), None, id="mask-broadcast"
    ),
    pytest.param(
        lambda: check_mask(np.ones((2, 3, 4), bool), shape=(None, 3, None)),
        None,
        id="mask-unknown-axes",
    ),
]


@pytest.mark.parametrize("call,expected", ACCEPTED)
def test_accepted_values_are_returned_as_python_values(call, expected):
    result = call()
    assert result == expected
    assert type(result) is type(expected)


def test_is_integer_accepts_python_and_numpy_integers_not_bools():
    for value in (0, -3, 2**40, np.int8(1), np.uint64(7)):
        assert checks.is_integer(value), value
    for value in (True, np.True_, 1.0, np.float32(2), "1", None):
        assert not checks.is_integer(value), value


def test_number_type_accepts_every_real_number():
    for value in (0, -1.5, math.inf, np.int16(3), np.float64(0.5)):
        assert checks.number_type(value, "x", OWNER, "a number") is None


def test_seed_generator_and_keras_identifiers_are_returned_as_given():
    assert checks.seed(GENERATOR, OWNER) is GENERATOR
    assert checks.keras_identifier(
        keras.activations.get, "relu", "activation", OWNER, "activation"
    ) is keras.activations.get("relu")
    assert checks.keras_identifier(
        keras.activations.get, None, "activation", OWNER, "activation"
    ) is keras.activations.get(None)

    def own(x):
        return x

    assert (
        checks.keras_identifier(
            keras.activations.get, own, "activation", OWNER, "activation"
        )
        is own
    )
    initializer = checks.keras_identifier(
        keras.initializers.get,
        {"class_name": "Constant", "config": {"value": 2.0}},
        "kernel_initializer",
        OWNER,
        "initializer",
    )
    assert isinstance(initializer, keras.initializers.Constant)
    assert initializer.get_config()["value"] == 2.0


def test_keras_identifier_keeps_keras_error_as_the_cause():
    with pytest.raises(ValueError) as caught:
        checks.keras_identifier(
            keras.activations.get, "no_such", "activation", OWNER, "activation"
        )
    assert isinstance(caught.value.__cause__, (ValueError, TypeError))

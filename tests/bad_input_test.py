"""The bad inputs of the position layers and the toy model (the other
modules' bad inputs are in their own test files).

Every row is a call that must fail loudly and early: with exactly `ValueError`
(or `TypeError` for a value of the wrong type), never a backend error such as
TensorFlow's `InvalidArgumentError`, an `AttributeError`, NaN or a silently
clamped result, and with a message that starts with the owner's name, names
the argument and shows the received value. Keras wraps errors raised inside a
layer's `call` ("Exception encountered when calling ..."); the check reads our
message inside the wrapper. Rows marked `symbolic` call on `keras.Input`
tensors: the offending value is known when the model is built, so the error
comes then, not when the model first runs.
"""

import re

import keras
import numpy as np
import pytest

from keras_attention import (
    LearnedPositionEmbedding,
    SinusoidalPositionEncoding,
    build_toy_model,
    sinusoidal_table,
)

RNG = np.random.default_rng(7)


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def ones(*shape, dtype):
    return np.ones(shape, dtype)


def symbolic(*shape, dtype="float32"):
    """A `keras.Input` with the full shape, batch size included."""
    return keras.Input(batch_shape=shape, dtype=dtype)


def built_embedding(max_length=4, dim=8):
    layer = LearnedPositionEmbedding(max_length)
    layer.build((None, None, dim))
    return layer


def toy(**kwargs):
    return build_toy_model(**{"vocab_size": 10, "max_length": 8, **kwargs})


def row(call, error, message, id):
    return pytest.param(call, error, message, id=id)


SPE = "SinusoidalPositionEncoding: "
LPE = "LearnedPositionEmbedding: "
TABLE = "sinusoidal_table: "
TOY = "build_toy_model: "
INITIALIZER = r"must be the name, config or instance of a Keras initializer\."
TOO_LONG = (
    r"the sequence \(length {}, start_index {}\) is longer than `max_length`={}\."
)

BAD_INPUTS = [
    # SinusoidalPositionEncoding and sinusoidal_table
    row(
        lambda: SinusoidalPositionEncoding(max_wavelength=0),
        ValueError,
        SPE
        + r"`max_wavelength` must be a positive finite number\. Received: max_wavelength=0",
        "sinusoidal-max-wavelength-zero",
    ),
    row(
        lambda: SinusoidalPositionEncoding(max_wavelength="1e4"),
        TypeError,
        SPE
        + r"`max_wavelength` must be a positive finite number\. Received: max_wavelength='1e4' of type str",
        "sinusoidal-max-wavelength-type",
    ),
    row(
        lambda: SinusoidalPositionEncoding()(symbolic(None, 8)),
        ValueError,
        SPE
        + r"`inputs` must have rank >= 3, \(batch, \.\.\., seq_len, dim\)\. Received: inputs\.shape=\(None, 8\)",
        "sinusoidal-rank-symbolic",
    ),
    row(
        lambda: SinusoidalPositionEncoding()(ones(2, 3, 8, dtype="int32")),
        TypeError,
        SPE
        + r"`inputs` must be a floating-point tensor \(vectors, such as the output of `Embedding`\)\. Received: inputs with dtype int32",
        "sinusoidal-int-inputs",
    ),
    row(
        lambda: SinusoidalPositionEncoding()(normal(2, 3, 8), start_index=-1),
        ValueError,
        SPE + r"`start_index` must be >= 0\. Received: start_index=-1",
        "sinusoidal-negative-start",
    ),
    row(
        lambda: SinusoidalPositionEncoding()(symbolic(None, None, 8), start_index=-3),
        ValueError,
        SPE + r"`start_index` must be >= 0\. Received: start_index=-3",
        "sinusoidal-negative-start-symbolic",
    ),
    row(
        lambda: sinusoidal_table(0, 4),
        ValueError,
        TABLE + r"`length` must be a positive integer\. Received: length=0",
        "table-length-zero",
    ),
    row(
        lambda: sinusoidal_table(4, -1),
        ValueError,
        TABLE + r"`depth` must be a positive integer\. Received: depth=-1",
        "table-depth-negative",
    ),
    row(
        lambda: sinusoidal_table(4, 4.0),
        TypeError,
        TABLE
        + r"`depth` must be a positive integer\. Received: depth=4\.0 of type float",
        "table-depth-type",
    ),
    row(
        lambda: sinusoidal_table(4, 4, max_wavelength=-1),
        ValueError,
        TABLE
        + r"`max_wavelength` must be a positive finite number\. Received: max_wavelength=-1",
        "table-max-wavelength-negative",
    ),
    # LearnedPositionEmbedding
    row(
        lambda: LearnedPositionEmbedding(0),
        ValueError,
        LPE + r"`max_length` must be a positive integer\. Received: max_length=0",
        "learned-max-length-zero",
    ),
    row(
        lambda: LearnedPositionEmbedding(2.5),
        TypeError,
        LPE
        + r"`max_length` must be a positive integer\. Received: max_length=2\.5 of type float",
        "learned-max-length-type",
    ),
    row(
        lambda: LearnedPositionEmbedding(
            4, embeddings_initializer="no_such_initializer"
        ),
        ValueError,
        LPE
        + r"`embeddings_initializer` "
        + INITIALIZER
        + r" Received: embeddings_initializer='no_such_initializer'",
        "learned-unknown-initializer",
    ),
    row(
        lambda: built_embedding(max_length=4)(normal(2, 3, 8), start_index=2),
        ValueError,
        LPE + TOO_LONG.format(3, 2, 4),
        "learned-start-plus-length",
    ),
    row(
        lambda: LearnedPositionEmbedding(4)(symbolic(None, 5, 8)),
        ValueError,
        LPE + TOO_LONG.format(5, 0, 4),
        "learned-too-long-symbolic",
    ),
    row(
        lambda: built_embedding()(normal(2, 3, 8), start_index=-1),
        ValueError,
        LPE + r"`start_index` must be >= 0\. Received: start_index=-1",
        "learned-negative-start",
    ),
    row(
        lambda: built_embedding(dim=8)(normal(2, 3, 6)),
        ValueError,
        LPE
        + r"the last dimension of `inputs` must be 8, the depth of the table\. Received: inputs\.shape=\(2, 3, 6\)",
        "learned-depth-mismatch",
    ),
    row(
        lambda: built_embedding(max_length=4).lookup([0, 4]),
        ValueError,
        LPE
        + r"`positions` must be in \[0, `max_length`=4\)\. Received: positions from 0 to 4",
        "learned-lookup-out-of-range",
    ),
    # build_toy_model
    row(
        lambda: toy(encoding="rotary"),
        ValueError,
        TOY
        + r"`encoding` must be one of 'sinusoidal', 'learned' or None\. Received: encoding='rotary'",
        "toy-unknown-encoding",
    ),
    row(
        lambda: toy(d_model=30, num_heads=4),
        ValueError,
        TOY
        + r"`d_model` must be divisible by `num_heads`\. Received: d_model=30, num_heads=4",
        "toy-d-model-not-divisible",
    ),
    row(
        lambda: toy(vocab_size=0),
        ValueError,
        TOY + r"`vocab_size` must be a positive integer\. Received: vocab_size=0",
        "toy-vocab-size-zero",
    ),
    row(
        lambda: toy(max_length=-1),
        ValueError,
        TOY + r"`max_length` must be a positive integer\. Received: max_length=-1",
        "toy-max-length-negative",
    ),
    row(
        lambda: toy(num_heads=2.0),
        TypeError,
        TOY
        + r"`num_heads` must be a positive integer\. Received: num_heads=2\.0 of type float",
        "toy-num-heads-type",
    ),
    row(
        lambda: toy(dropout=1.0),
        ValueError,
        TOY + r"`dropout` must be a number in \[0, 1\)\. Received: dropout=1\.0",
        "toy-dropout-one",
    ),
    row(
        lambda: toy(
            max_length=4, d_model=8, num_heads=2, num_layers=1, encoding="learned"
        )(symbolic(None, 6, dtype="int32")),
        ValueError,
        LPE + TOO_LONG.format(6, 0, 4),
        "toy-learned-too-long-symbolic",
    ),
]


def our_message(error):
    """The message we raised, inside Keras' wrapper when there is one."""
    text = str(error)
    wrapped = re.search(
        r"Exception encountered when calling .*?\x1b\[1m(.*?)\x1b\[0m", text, re.S
    )
    return wrapped.group(1) if wrapped else text


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error_early(call, error, message):
    with pytest.raises(Exception) as caught:
        call()
    raised = caught.value
    # Exactly the type: not a backend subclass, not an AttributeError.
    assert type(raised) is error, (
        f"{type(raised).__module__}.{type(raised).__name__}: {raised}"
    )
    assert re.fullmatch(message, our_message(raised), re.S), our_message(raised)

"""One table of bad inputs across the public API.

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

import keras_attention
from keras_attention import (
    LearnedPositionEmbedding,
    MultiHeadAttention,
    ScaledDotProductAttention,
    SinusoidalPositionEncoding,
    TransformerBlock,
    attention_weights,
    build_toy_model,
    make_reversal_data,
    plot_attention,
    plot_position_encoding,
    real_token_accuracy,
    scaled_dot_product_attention,
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


def sdpa(*args, **kwargs):
    return scaled_dot_product_attention(*args, **kwargs)


def mha(**kwargs):
    return MultiHeadAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


def block(**kwargs):
    return TransformerBlock(**{"num_heads": 2, "intermediate_dim": 8, **kwargs})


def built_embedding(max_length=4, dim=8):
    layer = LearnedPositionEmbedding(max_length)
    layer.build((None, None, dim))
    return layer


def toy(**kwargs):
    return build_toy_model(**{"vocab_size": 10, "max_length": 8, **kwargs})


def row(call, error, message, id):
    return pytest.param(call, error, message, id=id)


F = "scaled_dot_product_attention: "
SDPA = "ScaledDotProductAttention: "
MHA = "MultiHeadAttention: "
TB = "TransformerBlock: "
SPE = "SinusoidalPositionEncoding: "
LPE = "LearnedPositionEmbedding: "
TABLE = "sinusoidal_table: "
TOY = "build_toy_model: "
INITIALIZER = r"must be the name, config or instance of a Keras initializer\."
ACTIVATION = r"must be the name, config or instance of a Keras activation\."
FLOAT = r"must be a floating-point tensor\."
TOO_LONG = (
    r"the sequence \(length {}, start_index {}\) is longer than `max_length`={}\."
)

BAD_INPUTS = [
    # scaled_dot_product_attention
    row(
        lambda: sdpa(normal(4), normal(4), normal(4)),
        ValueError,
        F
        + r"`query` must have rank >= 2, \(\.\.\., seq_len, depth\)\. Received: query\.shape=\(4,\)",
        "function-rank",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(3, 5), normal(3, 4)),
        ValueError,
        F
        + r"the last dimension of `query` and `key` must be equal\. Received: query\.shape=\(3, 4\), key\.shape=\(3, 5\)",
        "function-depth-mismatch",
    ),
    row(
        lambda: sdpa(symbolic(None, 3, 4), symbolic(None, 5, 6), symbolic(None, 5, 4)),
        ValueError,
        F
        + r"the last dimension of `query` and `key` must be equal\. Received: query\.shape=\(None, 3, 4\), key\.shape=\(None, 5, 6\)",
        "function-depth-mismatch-symbolic",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(5, 4), normal(6, 4)),
        ValueError,
        F
        + r"`key` and `value` must have the same sequence length \(axis -2\)\. Received: key\.shape=\(5, 4\), value\.shape=\(6, 4\)",
        "function-key-value-length",
    ),
    row(
        lambda: sdpa(normal(2, 3, 4), normal(3, 3, 4), normal(3, 3, 4)),
        ValueError,
        F
        + r"the batch dimensions of `query`, `key` and `value` must be equal\. Received: query\.shape=\(2, 3, 4\), key\.shape=\(3, 3, 4\), value\.shape=\(3, 3, 4\)",
        "function-batch",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(5, 4), normal(5, 4), ones(3, 4, dtype=bool)),
        ValueError,
        F
        + r"`mask` must be broadcastable to the logits' shape \(\.\.\., q_len, k_len\)=\(3, 5\)\. Received: mask\.shape=\(3, 4\)",
        "function-mask-shape",
    ),
    row(
        lambda: sdpa(
            symbolic(2, 3, 4),
            symbolic(2, 3, 4),
            symbolic(2, 3, 4),
            symbolic(2, 3, 3, dtype="float32"),
        ),
        TypeError,
        F + r"`mask` must be boolean or integer, .* Received: mask with dtype float32",
        "function-float-mask-symbolic",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(3, 4), normal(3, 4), scale=0.0),
        ValueError,
        F + r"`scale` must be None or a positive finite number\. Received: scale=0\.0",
        "function-scale-zero",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(3, 4), normal(3, 4), scale="1"),
        TypeError,
        F
        + r"`scale` must be None or a positive finite number\. Received: scale='1' of type str",
        "function-scale-type",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(3, 4), normal(3, 4), dropout=1.0),
        ValueError,
        F + r"`dropout` must be a number in \[0, 1\)\. Received: dropout=1\.0",
        "function-dropout-one",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(3, 4), normal(3, 4), training=1),
        TypeError,
        F + r"`training` must be a bool\. Received: training=1",
        "function-training-type",
    ),
    # ScaledDotProductAttention
    row(
        lambda: ScaledDotProductAttention()(normal(3, 4)),
        ValueError,
        SDPA
        + r"`query` must have rank 3, \(batch, seq_len, dim\)\. Received: query\.shape=\(3, 4\)",
        "sdpa-layer-rank",
    ),
    row(
        lambda: ScaledDotProductAttention()(symbolic(None, 3, 4), symbolic(None, 5, 6)),
        ValueError,
        SDPA
        + r"`query` and `key` must have the same last dimension\. Received: query\.shape=\(None, 3, 4\), key\.shape=\(None, 5, 6\)",
        "sdpa-layer-depth-mismatch-symbolic",
    ),
    row(
        lambda: ScaledDotProductAttention()(ones(2, 3, 4, dtype="int32")),
        TypeError,
        SDPA + r"`query` " + FLOAT + r" Received: query with dtype int32",
        "sdpa-layer-int-query",
    ),
    row(
        lambda: ScaledDotProductAttention()(
            normal(2, 3, 4), normal(2, 5, 4), value_mask=ones(2, 4, dtype=bool)
        ),
        ValueError,
        SDPA
        + r"`value_mask` must have shape \(batch, k_len\)=\(2, 5\) or broadcast to it\. Received: value_mask\.shape=\(2, 4\)",
        "sdpa-layer-padding-mask-shape",
    ),
    row(
        lambda: ScaledDotProductAttention(scale=-1),
        ValueError,
        SDPA + r"`scale` must be None or a positive finite number\. Received: scale=-1",
        "sdpa-layer-scale-negative",
    ),
    row(
        lambda: ScaledDotProductAttention(dropout=1),
        ValueError,
        SDPA + r"`dropout` must be a number in \[0, 1\)\. Received: dropout=1",
        "sdpa-layer-dropout-one",
    ),
    # MultiHeadAttention
    row(
        lambda: mha(num_heads=0),
        ValueError,
        MHA + r"`num_heads` must be a positive integer\. Received: num_heads=0",
        "mha-num-heads-zero",
    ),
    row(
        lambda: mha(num_heads=2.0),
        TypeError,
        MHA
        + r"`num_heads` must be a positive integer\. Received: num_heads=2\.0 of type float",
        "mha-num-heads-type",
    ),
    row(
        lambda: mha(key_dim=-1),
        ValueError,
        MHA + r"`key_dim` must be a positive integer\. Received: key_dim=-1",
        "mha-key-dim-negative",
    ),
    row(
        lambda: mha(key_dim="4"),
        TypeError,
        MHA
        + r"`key_dim` must be a positive integer\. Received: key_dim='4' of type str",
        "mha-key-dim-type",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(3, 4), normal(3, 4), sliding_window=0),
        ValueError,
        F
        + r"`sliding_window` must be None or a positive integer\. Received: sliding_window=0",
        "function-sliding-window-zero",
    ),
    row(
        lambda: sdpa(normal(3, 4), normal(3, 4), normal(3, 4), tile_size=-8),
        ValueError,
        F + r"`tile_size` must be None or a positive integer\. Received: tile_size=-8",
        "function-tile-size-negative",
    ),
    row(
        lambda: ScaledDotProductAttention(sliding_window=2.5),
        TypeError,
        SDPA + r"`sliding_window` must be None or a positive integer\. "
        r"Received: sliding_window=2\.5 of type float",
        "sdpa-layer-sliding-window-type",
    ),
    row(
        lambda: mha(sliding_window=-1),
        ValueError,
        MHA
        + r"`sliding_window` must be None or a positive integer\. Received: sliding_window=-1",
        "mha-sliding-window-negative",
    ),
    row(
        lambda: mha(dropout=-0.1),
        ValueError,
        MHA + r"`dropout` must be a number in \[0, 1\)\. Received: dropout=-0\.1",
        "mha-dropout-negative",
    ),
    row(
        lambda: mha(dropout="0.1"),
        TypeError,
        MHA
        + r"`dropout` must be a number in \[0, 1\)\. Received: dropout='0\.1' of type str",
        "mha-dropout-type",
    ),
    row(
        lambda: mha(kernel_initializer="no_such_initializer"),
        ValueError,
        MHA
        + r"`kernel_initializer` "
        + INITIALIZER
        + r" Received: kernel_initializer='no_such_initializer'",
        "mha-unknown-initializer",
    ),
    row(
        lambda: mha()(normal(2, 3, 4, 8)),
        ValueError,
        MHA
        + r"`query` must have rank 3, \(batch, seq_len, dim\)\. Received: query\.shape=\(2, 3, 4, 8\)",
        "mha-rank",
    ),
    row(
        lambda: mha()(symbolic(None, 3, 8), symbolic(None, 4, 8), symbolic(None, 5, 8)),
        ValueError,
        MHA
        + r"`key` and `value` must have the same sequence length\. Received: value\.shape=\(None, 4, 8\), key\.shape=\(None, 5, 8\)",
        "mha-key-value-length-symbolic",
    ),
    row(
        lambda: mha()(normal(2, 3, 8), normal(3, 4, 8)),
        ValueError,
        MHA
        + r"`query`, `value` and `key` must have the same batch size\. Received: query\.shape=\(2, 3, 8\), value\.shape=\(3, 4, 8\), key\.shape=\(3, 4, 8\)",
        "mha-batch",
    ),
    row(
        lambda: mha()(symbolic(None, 3, 8, dtype="int32")),
        TypeError,
        MHA + r"`query` " + FLOAT + r" Received: query with dtype int32",
        "mha-int-query-symbolic",
    ),
    row(
        lambda: mha()(
            symbolic(None, 3, 8),
            attention_mask=symbolic(None, 3, 4, dtype="bool"),
        ),
        ValueError,
        MHA
        + r"`attention_mask` must have shape \(batch, q_len, k_len\)=\(None, 3, 3\) or broadcast to it\. Received: attention_mask\.shape=\(None, 3, 4\)",
        "mha-attention-mask-shape-symbolic",
    ),
    row(
        lambda: mha()(normal(2, 3, 8), attention_mask=ones(2, 3, 3, dtype="float32")),
        TypeError,
        MHA
        + r"`attention_mask` must be boolean or integer, non-zero where a query may attend to a key \(Keras' convention\)\. Received: attention_mask with dtype float32",
        "mha-float-attention-mask",
    ),
    row(
        lambda: mha()(normal(2, 3, 8), attention_mask=[[[True] * 3] * 3] * 2),
        TypeError,
        MHA
        + r"`attention_mask` must be a tensor or array\. Received: attention_mask of type list",
        "mha-attention-mask-list",
    ),
    row(
        lambda: mha()(normal(2, 3, 8), mask=ones(2, 4, dtype=bool)),
        ValueError,
        MHA
        + r"`mask` must have shape \(batch, q_len\)=\(2, 3\) or broadcast to it\. Received: mask\.shape=\(2, 4\)",
        "mha-padding-mask-shape",
    ),
    row(
        lambda: mha()(
            normal(2, 3, 8), normal(2, 5, 8), value_mask=ones(2, 5, dtype="float32")
        ),
        TypeError,
        MHA
        + r"`value_mask` must be boolean or integer, non-zero at real positions and zero at padding \(Keras' convention\)\. Received: value_mask with dtype float32",
        "mha-float-padding-mask",
    ),
    # TransformerBlock
    row(
        lambda: block(num_heads=-2),
        ValueError,
        TB + r"`num_heads` must be a positive integer\. Received: num_heads=-2",
        "block-num-heads-negative",
    ),
    row(
        lambda: block(intermediate_dim=2.5),
        TypeError,
        TB
        + r"`intermediate_dim` must be a positive integer\. Received: intermediate_dim=2\.5 of type float",
        "block-intermediate-dim-type",
    ),
    row(
        lambda: block(dropout=1.5),
        ValueError,
        TB + r"`dropout` must be a number in \[0, 1\)\. Received: dropout=1\.5",
        "block-dropout",
    ),
    row(
        lambda: block(layer_norm_epsilon=0),
        ValueError,
        TB
        + r"`layer_norm_epsilon` must be a positive finite number\. Received: layer_norm_epsilon=0",
        "block-epsilon-zero",
    ),
    row(
        lambda: block(activation="no_such_activation"),
        ValueError,
        TB
        + r"`activation` "
        + ACTIVATION
        + r" Received: activation='no_such_activation'",
        "block-unknown-activation",
    ),
    row(
        lambda: block(activation=3),
        TypeError,
        TB + r"`activation` " + ACTIVATION + r" Received: activation=3 of type int",
        "block-activation-type",
    ),
    row(
        lambda: block(num_heads=4)(normal(1, 3, 10)),
        ValueError,
        TB
        + r"the input width must be divisible by `num_heads`\. Received: width=10, num_heads=4",
        "block-width-not-divisible",
    ),
    row(
        lambda: block(num_heads=4)(symbolic(None, None, 10)),
        ValueError,
        TB
        + r"the input width must be divisible by `num_heads`\. Received: width=10, num_heads=4",
        "block-width-not-divisible-symbolic",
    ),
    row(
        lambda: block()(normal(3, 8)),
        ValueError,
        TB
        + r"the input must have shape \(batch, seq_len, width\) with a known width\. Received: inputs\.shape=\(3, 8\)",
        "block-rank",
    ),
    row(
        lambda: block()(ones(2, 3, 8, dtype="int32")),
        TypeError,
        TB + r"`inputs` " + FLOAT + r" Received: inputs with dtype int32",
        "block-int-inputs",
    ),
    row(
        lambda: block()(normal(2, 3, 8), mask=ones(2, 4, dtype=bool)),
        ValueError,
        TB
        + r"`mask` must have shape \(batch, seq_len\)=\(2, 3\) or broadcast to it\. Received: mask\.shape=\(2, 4\)",
        "block-padding-mask-shape",
    ),
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
        lambda: toy(encoding="relative"),
        ValueError,
        TOY
        + r"`encoding` must be one of 'sinusoidal', 'learned', 'rotary', 'alibi' or None\. Received: encoding='relative'",
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
    # The helpers around the model
    row(
        lambda: attention_weights(
            keras.Sequential([keras.Input((3,))]), ones(2, 3, 4, dtype="int32")
        ),
        ValueError,
        r"attention_weights: `model` has no keras_attention attention layer .* Received: layers \[\]",
        "attention-weights-no-attention",
    ),
    row(
        lambda: attention_weights(
            keras.Sequential([keras.Input((None, 8)), ScaledDotProductAttention()]),
            normal(2, 3),
        ),
        ValueError,
        r"attention_weights: `inputs` must have the model's input shape \(None, None, 8\)\. Received: inputs\.shape=\(2, 3\)",
        "attention-weights-rank",
    ),
    row(
        lambda: make_reversal_data(4, max_length=3, vocab_size=5, min_length=4),
        ValueError,
        r"make_reversal_data: `min_length` must not exceed `max_length`\. Received: min_length=4, max_length=3",
        "reversal-min-length",
    ),
    row(
        lambda: make_reversal_data(4, max_length=3, vocab_size=1),
        ValueError,
        r"make_reversal_data: `vocab_size` must be at least 2 \(token 0 is padding\)\. Received: vocab_size=1",
        "reversal-vocab-size",
    ),
    row(
        lambda: real_token_accuracy(
            normal(2, 3, 5), np.zeros((2, 3)), np.zeros((2, 3))
        ),
        ValueError,
        r"real_token_accuracy: `inputs` holds no real \(non-zero\) token\. Received: inputs\.shape=\(2, 3\)",
        "accuracy-no-real-token",
    ),
    row(
        lambda: plot_attention(normal(2, 2, 3, 3)),
        ValueError,
        r"plot_attention: `weights` must have shape \(q_len, k_len\) or \(num_maps, q_len, k_len\)\. Received: weights\.shape=\(2, 2, 3, 3\)",
        "plot-attention-rank",
    ),
    row(
        lambda: plot_position_encoding(table=normal(4)),
        ValueError,
        r"plot_position_encoding: `table` must have shape \(length, depth\)\. Received: table\.shape=\(4,\)",
        "plot-encoding-rank",
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


def test_the_table_is_big_and_covers_every_owner():
    assert len(BAD_INPUTS) >= 30
    owners = {re.match(r"\w+", p.values[2]).group() for p in BAD_INPUTS}
    # Newer owners keep their rows in their own test file.
    public = set(keras_attention.__all__) - {
        "RotaryEmbedding",
        "alibi_slopes",
        "rope_permutation",
    }
    assert public <= owners, sorted(public - owners)

import keras
import numpy as np
import pytest

from keras_attention import TransformerBlock
from tests.layer_test_case import (
    RNG,
    assert_raises_with,
    normal,
    run_layer_test,
    symbolic,
    to_numpy,
)


def test_layer_behaviours(tmp_path):
    run_layer_test(
        TransformerBlock,
        init_kwargs={"num_heads": 2, "intermediate_dim": 16, "dropout": 0.1},
        input_data=normal(2, 5, 8),
        expected_output_shape=(2, 5, 8),
        # 2 layer norms (2 each), attention (8), two dense layers (2 each).
        expected_num_trainable_weights=16,
        tmp_path=tmp_path,
    )


def _model(causal=False):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=True))
    model.add(TransformerBlock(num_heads=2, intermediate_dim=16, causal=causal))
    return model


def test_padding_mask_reaches_the_attention_and_flows_on():
    tokens = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 0]])
    model = _model()
    base = to_numpy(model(tokens))
    table = to_numpy(model.layers[0].embeddings)
    table[0] = RNG.normal(size=8) * 50
    model.layers[0].embeddings.assign(table)
    moved = to_numpy(model(tokens))
    real = tokens != 0
    np.testing.assert_allclose(moved[real], base[real], atol=1e-5)
    # The block passes the mask on: the model's output carries it.
    block = model.layers[1]
    embedded = model.layers[0](tokens)
    mask = model.layers[0].compute_mask(tokens)
    np.testing.assert_array_equal(to_numpy(block.compute_mask(embedded, mask)), real)


def test_causal_block_ignores_the_future():
    tokens = RNG.integers(1, 20, size=(2, 6))
    model = _model(causal=True)
    changed = tokens.copy()
    changed[:, 4:] = (changed[:, 4:] % 19) + 1
    np.testing.assert_allclose(
        to_numpy(model(tokens))[:, :4], to_numpy(model(changed))[:, :4], atol=1e-5
    )


def test_returns_attention_scores():
    block = TransformerBlock(num_heads=2, intermediate_dim=16)
    out, scores = block(np.ones((2, 5, 8), "float32"), return_attention_scores=True)
    assert tuple(out.shape) == (2, 5, 8)
    assert tuple(scores.shape) == (2, 2, 5, 5)
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1, rtol=1e-5)


def block(**kwargs):
    return TransformerBlock(**{"num_heads": 2, "intermediate_dim": 8, **kwargs})


TB = "TransformerBlock: "
NOT_DIVISIBLE = (
    TB
    + "the input width must be divisible by `num_heads`. Received: width=10, num_heads=4"
)
ACTIVATION = "must be the name, config or instance of a Keras activation."

BAD_INPUTS = [
    pytest.param(
        lambda: block(tile_size=-4),
        ValueError,
        TB
        + "`tile_size` must be None, 0 (the full computation) or a positive integer. Received: tile_size=-4",
        id="tile-size-negative",
    ),
    pytest.param(
        lambda: block(num_heads=0),
        ValueError,
        TB + "`num_heads` must be a positive integer. Received: num_heads=0",
        id="num-heads-zero",
    ),
    pytest.param(
        lambda: block(num_heads=-2),
        ValueError,
        TB + "`num_heads` must be a positive integer. Received: num_heads=-2",
        id="num-heads-negative",
    ),
    pytest.param(
        lambda: block(intermediate_dim=-4),
        ValueError,
        TB
        + "`intermediate_dim` must be a positive integer. Received: intermediate_dim=-4",
        id="intermediate-dim-negative",
    ),
    pytest.param(
        lambda: block(intermediate_dim=2.5),
        ValueError,
        TB
        + "`intermediate_dim` must be a positive integer. Received: intermediate_dim=2.5",
        id="intermediate-dim-float",
    ),
    pytest.param(
        lambda: block(dropout=1),
        ValueError,
        TB + "`dropout` must be a number in [0, 1). Received: dropout=1",
        id="dropout-one",
    ),
    pytest.param(
        lambda: block(dropout=1.5),
        ValueError,
        TB + "`dropout` must be a number in [0, 1). Received: dropout=1.5",
        id="dropout-above-one",
    ),
    pytest.param(
        lambda: block(layer_norm_epsilon=0),
        ValueError,
        TB
        + "`layer_norm_epsilon` must be a positive finite number. Received: layer_norm_epsilon=0",
        id="epsilon-zero",
    ),
    pytest.param(
        lambda: block(activation="no_such_activation"),
        ValueError,
        TB + f"`activation` {ACTIVATION} Received: activation='no_such_activation'",
        id="unknown-activation",
    ),
    pytest.param(
        lambda: block(activation=3),
        TypeError,
        TB + f"`activation` {ACTIVATION} Received: activation=3 of type int",
        id="activation-type",
    ),
    pytest.param(
        lambda: block(num_heads=4)(normal(1, 3, 10)),
        ValueError,
        NOT_DIVISIBLE,
        id="width-not-divisible",
    ),
    pytest.param(
        lambda: block(num_heads=4)(symbolic(None, None, 10)),
        ValueError,
        NOT_DIVISIBLE,
        id="width-not-divisible-symbolic",
    ),
    pytest.param(
        lambda: block()(normal(3, 8)),
        ValueError,
        TB
        + "the input must have shape (batch, seq_len, width) with a known width. Received: inputs.shape=(3, 8)",
        id="rank",
    ),
    pytest.param(
        lambda: block()(np.ones((2, 3, 8), "int32")),
        TypeError,
        TB
        + "`inputs` must be a floating-point tensor. Received: inputs with dtype int32",
        id="int-inputs",
    ),
    pytest.param(
        lambda: block()(np.array([[["a"] * 4] * 3] * 2)),
        TypeError,
        TB
        + "`inputs` must be a floating-point tensor. Received: inputs with dtype str32",
        id="string-inputs",
    ),
    pytest.param(
        lambda: block(rotary_embedding=3),
        TypeError,
        TB
        + "`rotary_embedding` must be None or a keras_attention.RotaryEmbedding. Received: rotary_embedding of type int",
        id="rotary-embedding-type",
    ),
    pytest.param(
        lambda: block()(normal(2, 3, 8), mask=np.ones((2, 4), bool)),
        ValueError,
        TB
        + "`mask` must have shape (batch, seq_len)=(2, 3) or broadcast to it. Received: mask.shape=(2, 4)",
        id="padding-mask-shape",
    ),
    pytest.param(
        lambda: block(alibi=2),
        TypeError,
        TB + "`alibi` must be a bool. Received: alibi=2",
        id="block alibi not a bool",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


def test_rotary_and_alibi_layer_behaviours(tmp_path):
    from keras_attention import RotaryEmbedding

    run_layer_test(
        TransformerBlock,
        init_kwargs={
            "num_heads": 2,
            "intermediate_dim": 16,
            "causal": True,
            "rotary_embedding": RotaryEmbedding(max_wavelength=100.0),
            "alibi": True,
            "tile_size": 0,
        },
        input_data=RNG.normal(size=(2, 5, 8)).astype("float32"),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=16,
        run_mixed_precision=False,  # the attention's own test runs it
        tmp_path=tmp_path,
    )


def test_block_forwards_rotary_embedding_alibi_and_tile_size_to_its_attention():
    from keras_attention import RotaryEmbedding

    rope = RotaryEmbedding(layout="interleaved")
    block = TransformerBlock(
        num_heads=2, intermediate_dim=8, rotary_embedding=rope, alibi=True, tile_size=0
    )
    block(np.ones((1, 3, 8), "float32"))
    assert block.attention.rotary_embedding is rope
    assert block.attention.alibi
    assert block.attention.tile_size == 0

import keras
import numpy as np
import pytest

from keras_attention import TransformerBlock
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(3)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_layer_behaviours(tmp_path):
    run_layer_test(
        TransformerBlock,
        init_kwargs={"num_heads": 2, "intermediate_dim": 16, "dropout": 0.1},
        input_data=RNG.normal(size=(2, 5, 8)).astype("float32"),
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


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            {"num_heads": 0, "intermediate_dim": 4},
            ValueError,
            r"TransformerBlock: `num_heads` must be a positive integer\. Received: num_heads=0",
        ),
        (
            {"num_heads": 2, "intermediate_dim": -4},
            ValueError,
            r"TransformerBlock: `intermediate_dim` must be a positive integer\. Received: intermediate_dim=-4",
        ),
        (
            {"num_heads": 2, "intermediate_dim": 4, "dropout": 1},
            ValueError,
            r"TransformerBlock: `dropout` must be a number in \[0, 1\)\. Received: dropout=1",
        ),
        (
            {"num_heads": 2, "intermediate_dim": 4, "layer_norm_epsilon": 0},
            ValueError,
            r"TransformerBlock: `layer_norm_epsilon` must be a positive finite number\. Received: layer_norm_epsilon=0",
        ),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        TransformerBlock(**kwargs)


def test_width_must_divide_into_heads():
    with pytest.raises(
        ValueError,
        match=r"TransformerBlock: the input width must be divisible by `num_heads`\. "
        r"Received: width=10, num_heads=4",
    ):
        TransformerBlock(num_heads=4, intermediate_dim=8)(
            np.ones((1, 3, 10), "float32")
        )


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
        },
        input_data=RNG.normal(size=(2, 5, 8)).astype("float32"),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=16,
        run_mixed_precision=False,  # the attention's own test runs it
        tmp_path=tmp_path,
    )


def test_block_forwards_rotary_embedding_and_alibi_to_its_attention():
    from keras_attention import RotaryEmbedding

    rope = RotaryEmbedding(layout="interleaved")
    block = TransformerBlock(
        num_heads=2, intermediate_dim=8, rotary_embedding=rope, alibi=True
    )
    block(np.ones((1, 3, 8), "float32"))
    assert block.attention.rotary_embedding is rope
    assert block.attention.alibi
    with pytest.raises(
        TypeError,
        match=r"TransformerBlock: `rotary_embedding` must be None or a "
        r"keras_attention\.RotaryEmbedding\. Received: rotary_embedding of type int",
    ):
        TransformerBlock(num_heads=2, intermediate_dim=8, rotary_embedding=3)

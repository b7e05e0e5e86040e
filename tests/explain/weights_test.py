import keras
import numpy as np
import pytest

from keras_attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    TransformerBlock,
    attention_weights,
    attention_weights_by_layer,
    build_toy_model,
    make_reversal_data,
)
from tests.layer_test_case import assert_raises_with


def test_one_array_per_block_in_model_order_and_model_unchanged():
    model = build_toy_model(12, 8, d_model=16, num_heads=2, num_layers=3, dropout=0.3)
    tokens, _ = make_reversal_data(4, 8, 12, min_length=3, seed=2)
    before = model.predict(tokens, verbose=0)
    weights_before = [w.copy() for w in model.get_weights()]
    found = attention_weights(model, tokens)
    assert len(found) == 3
    real = tokens != 0
    for weights in found:
        assert isinstance(weights, np.ndarray)
        assert weights.shape == (4, 2, 8, 8)
        # The padding mask was carried: no weight on padded keys ...
        assert np.all(np.moveaxis(weights, 3, 1)[~real] == 0)
        # ... real queries sum to 1 (training=False: no dropout), padded to 0.
        sums = np.moveaxis(weights.sum(-1), 2, 1)  # (batch, q_len, heads)
        np.testing.assert_allclose(sums[real], 1, rtol=1e-5)
        np.testing.assert_allclose(sums[~real], 0)
    np.testing.assert_array_equal(model.predict(tokens, verbose=0), before)
    for a, b in zip(model.get_weights(), weights_before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_are_those_the_layer_computes():
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(10, 8, mask_zero=True))
    model.add(MultiHeadAttention(num_heads=2, key_dim=4))
    model.add(ScaledDotProductAttention(causal=True))
    tokens = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    first, second = attention_weights(model, tokens)
    embedded = model.layers[0](tokens)
    mask = model.layers[0].compute_mask(tokens)
    hidden, expected = model.layers[1](
        embedded, mask=mask, return_attention_scores=True
    )
    np.testing.assert_allclose(first, keras.ops.convert_to_numpy(expected), rtol=1e-6)
    _, expected = model.layers[2](hidden, mask=mask, return_attention_scores=True)
    assert second.shape == (2, 4, 4)
    np.testing.assert_allclose(second, keras.ops.convert_to_numpy(expected), rtol=1e-6)


def _encoder_decoder():
    """A small translation-like Functional model: self-attention in the
    encoder (a TransformerBlock), causal self- and cross-attention in the
    decoder, padding masks from the embeddings."""
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    encoded = keras.layers.Embedding(10, 8, mask_zero=True, name="embed_source")(source)
    encoded = TransformerBlock(2, 16, name="encoder")(encoded)
    decoded = keras.layers.Embedding(10, 8, mask_zero=True, name="embed_target")(target)
    decoded = MultiHeadAttention(2, 4, causal=True, name="decoder_self")(decoded)
    cross = MultiHeadAttention(2, 4, name="cross")
    decoded = cross(decoded, encoded)
    return keras.Model([source, target], keras.layers.Dense(10)(decoded), name="ed")


def test_functional_encoder_decoder_cross_attention_by_name():
    model = _encoder_decoder()
    source = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    target = np.array([[1, 2, 0], [3, 4, 5]])
    before = keras.ops.convert_to_numpy(model([source, target], training=False))
    found = attention_weights_by_layer(model, [source, target])
    # `layer.path`: where the layer was created (these outside the model).
    assert sorted(found) == ["cross", "decoder_self", "encoder/attention"]
    assert found["encoder/attention"].shape == (2, 2, 5, 5)
    cross = found["cross"]
    assert cross.shape == (2, 2, 3, 5)  # (batch, heads, target, source)
    # Padding masks as in the forward pass: no weight on padded source
    # tokens, none from padded target tokens, real target rows sum to 1.
    np.testing.assert_array_equal(cross[0, :, :, 3:], 0)
    np.testing.assert_array_equal(cross[0, :, 2, :], 0)
    np.testing.assert_allclose(cross[0, :, :2].sum(-1), 1, rtol=1e-5)
    np.testing.assert_allclose(cross[1].sum(-1), 1, rtol=1e-5)
    # The decoder's self-attention is causal.
    np.testing.assert_array_equal(np.triu(found["decoder_self"][1, 0], 1), 0)
    # The list form is the same arrays in the same order.
    listed = attention_weights(model, [source, target])
    for a, b in zip(listed, found.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    # Nothing stays on the layers; the model computes what it computed.
    for layer in [model.get_layer("cross"), model.get_layer("encoder").attention]:
        assert "call" not in vars(layer)
    after = keras.ops.convert_to_numpy(model([source, target], training=False))
    np.testing.assert_array_equal(after, before)


def test_cross_attention_weights_are_those_the_layer_computes():
    model = _encoder_decoder()
    source = np.array([[1, 2, 3, 0]])
    target = np.array([[5, 6]])
    cross = attention_weights_by_layer(model, [source, target])["cross"]
    # By hand: the layers one by one, as the model wires them.
    embed_source = model.get_layer("embed_source")
    embed_target = model.get_layer("embed_target")
    encoded = model.get_layer("encoder")(
        embed_source(source), mask=embed_source.compute_mask(source)
    )
    decoded = model.get_layer("decoder_self")(embed_target(target))
    _, expected = model.get_layer("cross")(
        decoded,
        encoded,
        query_mask=np.ones((1, 2), bool),
        value_mask=source != 0,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(cross, keras.ops.convert_to_numpy(expected), rtol=1e-5)


def test_nested_sequential_subclassed_and_shared_layers():
    inner = keras.Sequential(
        [keras.Input((None, 8)), ScaledDotProductAttention(name="inner_attention")],
        name="inner",
    )
    outer = keras.Sequential([keras.Input((None, 8)), inner, keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    (weights,) = attention_weights(outer, x)
    assert weights.shape == (2, 3, 3)
    assert list(attention_weights_by_layer(outer, x)) == ["inner/inner_attention"]

    class Twice(keras.Model):
        """A subclassed model calling one attention layer twice."""

        def __init__(self):
            super().__init__(name="twice")
            self.shared = MultiHeadAttention(2, 4, name="shared")

        def call(self, x):
            return self.shared(self.shared(x))

    model = Twice()
    model(x)
    found = attention_weights_by_layer(model, x)
    assert list(found) == ["twice/shared#0", "twice/shared#1"]
    assert not np.allclose(found["twice/shared#0"], found["twice/shared#1"])
    _, expected = model.shared(x, return_attention_scores=True)
    np.testing.assert_allclose(
        found["twice/shared#0"], keras.ops.convert_to_numpy(expected), rtol=1e-6
    )


def test_layers_are_restored_when_the_forward_pass_raises():
    model = _encoder_decoder()
    with pytest.raises(ValueError):
        attention_weights(model, [np.ones((1, 3)), np.ones((2, 3))])
    for layer in [model.get_layer("cross"), model.get_layer("encoder").attention]:
        assert "call" not in vars(layer)


class _Skips(keras.Model):
    """A subclassed model holding an attention layer that `call` never uses."""

    def __init__(self):
        super().__init__(name="skips")
        self.attention = MultiHeadAttention(2, 4, name="unused")
        self.attention.build((None, 3, 8))

    def call(self, x):
        return x


NO_ATTENTION = "attention_weights: `model` has no keras_attention attention layer (MultiHeadAttention, ScaledDotProductAttention or TransformerBlock). Received: layers "

BAD_INPUTS = [
    pytest.param(
        lambda: attention_weights(lambda x: x, np.zeros((1, 4, 8))),
        TypeError,
        "attention_weights: `model` must be a Keras model or layer. Received: model of type function",
        id="not-a-model",
    ),
    pytest.param(
        lambda: attention_weights(
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
            np.zeros((1, 4)),
        ),
        ValueError,
        NO_ATTENTION + "['Dense']",
        id="no-attention-layer",
    ),
    pytest.param(
        lambda: attention_weights(
            keras.Sequential([keras.Input((3,))]), np.ones((2, 3, 4), "int32")
        ),
        ValueError,
        NO_ATTENTION + "[]",
        id="no-layer",
    ),
    pytest.param(
        lambda: attention_weights_by_layer(_Skips(), np.zeros((1, 3, 8), "float32")),
        ValueError,
        "attention_weights_by_layer: the forward pass of `model` called none of its keras_attention attention layers (MultiHeadAttention, ScaledDotProductAttention or TransformerBlock). Received: layers ['unused'], none called",
        id="attention-never-called",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)

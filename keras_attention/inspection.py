"""Reading the attention weights out of a model, without changing it."""

import inspect

import keras

from keras_attention.layers._attention_layer import AttentionLayer
from keras_attention.layers.transformer_block import TransformerBlock

_SOURCES = (AttentionLayer, TransformerBlock)


def attention_weights(model, inputs):
    """The attention weights of every attention layer of a Sequential model.

    Runs `inputs` through `model`'s layers in order, with `training=False` and
    the Keras padding mask carried from layer to layer as the model itself
    does, and asks each of this package's attention layers
    (`MultiHeadAttention`, `ScaledDotProductAttention`) and blocks
    (`TransformerBlock`) for its weights. The model, its weights and its
    outputs are unchanged; nothing is stored on the layers.

    Args:
        model: a built `keras.Sequential`, e.g. from `build_toy_model`.
        inputs: the model's input, e.g. token ids `(batch, seq_len)`.

    Returns:
        A list with one NumPy array per attention layer, in model order:
        `(batch, num_heads, q_len, k_len)` for multi-head layers and blocks,
        `(batch, q_len, k_len)` for `ScaledDotProductAttention`.

    Raises:
        TypeError: `model` is not a `keras.Sequential`.
        ValueError: the model has none of this package's attention layers.
    """
    if not isinstance(model, keras.Sequential):
        raise TypeError(
            "attention_weights: `model` must be a keras.Sequential whose "
            "attention layers are keras_attention's MultiHeadAttention, "
            "ScaledDotProductAttention or TransformerBlock. "
            f"Received: model of type {type(model).__name__}"
        )
    if not any(isinstance(layer, _SOURCES) for layer in model.layers):
        raise ValueError(
            "attention_weights: `model` has no keras_attention attention layer "
            "(MultiHeadAttention, ScaledDotProductAttention or TransformerBlock). "
            f"Received: layers {[type(layer).__name__ for layer in model.layers]}"
        )
    x = keras.ops.convert_to_tensor(inputs)
    _check_inputs(model, tuple(x.shape))
    mask = None
    found = []
    for layer in model.layers:
        parameters = inspect.signature(layer.call).parameters
        kwargs = {}
        if "training" in parameters:
            kwargs["training"] = False
        if "mask" in parameters and mask is not None:
            kwargs["mask"] = mask
        if isinstance(layer, _SOURCES):
            output, weights = layer(x, return_attention_scores=True, **kwargs)
            found.append(keras.ops.convert_to_numpy(weights))
        else:
            output = layer(x, **kwargs)
        mask = layer.compute_mask(x, mask) if layer.supports_masking else None
        x = output
    return found


def _check_inputs(model, shape):
    """The layers are called one by one, so the model's own input check is
    skipped: this one stands in for it."""
    try:
        expected = tuple(model.input_shape)
    except AttributeError:  # built without a `keras.Input`: nothing to check
        return
    if len(shape) != len(expected) or any(
        e is not None and s != e for s, e in zip(shape, expected, strict=False)
    ):
        raise ValueError(
            "attention_weights: `inputs` must have the model's input shape "
            f"{expected}. Received: inputs.shape={shape}"
        )

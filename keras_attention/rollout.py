"""Attention rollout: how much each output position draws on each input.

Abnar & Zuidema (2020) follow the attention through the layers: each
layer's map, with its residual connection added as `residual * I +
(1 - residual) * A`, multiplied from the first layer to the last.
"""

import numpy as np

from keras_attention.inspection import _attention_layers, _record
from keras_attention.layers.transformer_block import TransformerBlock

_FUSIONS = ("mean", "none")


def attention_rollout(model, inputs, residual=None, head_fusion="mean"):
    """Attention rollout (Abnar & Zuidema, 2020) of a model's self-attention.

    Records every attention call of one forward pass as `attention_weights`
    does (`training=False`, the model's own masks), then for each, in call
    order, takes `A` (heads averaged, or per head), adds the residual
    connection, `R = residual * I + (1 - residual) * A`, and multiplies:
    `rollout = R_last @ ... @ R_first`. Row `i` says how much output
    position `i` draws on each input position.

    The residual weight is 0.5 for the attention inside a `TransformerBlock`
    (which adds its input, as in the paper) and 0 for a bare attention layer
    (which does not); `residual` overrides it for every layer. Padded
    positions (query rows the layers give no weight, keys given none) get 0:
    the identity is kept only at real positions, so rows of real positions
    sum to 1 and the rows and columns of padded ones are 0.

    Args:
        model: a Keras model whose attention layers are this package's, all
            self-attention over the same sequence (no cross-attention).
        inputs: what `model` takes.
        residual: `None` (per layer, as above) or a float in `[0, 1]` for
            every layer.
        head_fusion: `"mean"` averages the heads of each layer; `"none"`
            rolls each head out on its own (every layer needs the same
            number of heads).

    Returns:
        A NumPy array `(batch, seq_len, seq_len)`, or with
        `head_fusion="none"` `(batch, num_heads, seq_len, seq_len)`.

    Raises:
        ValueError: a bad `residual` or `head_fusion`, no attention layer of
            ours, cross-attention, or layers with different head counts.

    References:
        Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020.
    """
    owner = "attention_rollout"
    if residual is not None and (
        isinstance(residual, bool)
        or not isinstance(residual, int | float)
        or not 0 <= residual <= 1
    ):
        raise ValueError(
            f"{owner}: `residual` must be None or a number in [0, 1]. "
            f"Received: residual={residual!r}"
        )
    if head_fusion not in _FUSIONS:
        raise ValueError(
            f"{owner}: `head_fusion` must be one of {_FUSIONS}. "
            f"Received: head_fusion={head_fusion!r}"
        )
    inside = {
        id(block.attention)
        for block in _attention_layers(model, TransformerBlock)
        if hasattr(block, "attention")
    }
    rollout = None
    for layer, name, weights in _record(model, inputs, owner):
        if weights.ndim == 3:  # ScaledDotProductAttention: one head
            weights = weights[:, None]
        if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
            raise ValueError(
                f"{owner}: every attention call must be self-attention over "
                f"one sequence, weights (batch, heads, seq_len, seq_len). "
                f"Received: {name} with weights.shape={weights.shape}"
            )
        weights = weights.astype("float64")
        if head_fusion == "mean":
            weights = weights.mean(axis=1, keepdims=True)
        weight = (
            residual if residual is not None else (0.5 if id(layer) in inside else 0.0)
        )
        # The identity only at real positions: a padded query's row is 0.
        real = weights.sum(axis=-1) > 0  # (batch, heads, seq_len)
        identity = real[..., None] * np.eye(weights.shape[-1])
        step = weight * identity + (1 - weight) * weights
        if rollout is not None and rollout.shape != step.shape:
            raise ValueError(
                f"{owner}: every attention call must have the same sequence "
                f"length and, with head_fusion='none', head count. Received: "
                f"{name} with weights.shape={weights.shape} after "
                f"{rollout.shape}"
            )
        rollout = step if rollout is None else step @ rollout
    if head_fusion == "mean":
        rollout = rollout[:, 0]
    return rollout.astype("float32")

"""Attention rollout: how much each output position draws on each input.

Abnar & Zuidema (2020) follow the attention through the layers: each
layer's map, with its residual connection added as `residual * I +
(1 - residual) * A`, multiplied from the first layer to the last.
"""

import numpy as np

from keras_attention.explain._recording import attention_layers, record
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
    rollout = None
    for step in _layer_maps(model, inputs, residual, head_fusion, "attention_rollout"):
        rollout = step if rollout is None else step @ rollout
    if head_fusion == "mean":
        rollout = rollout[:, 0]
    return rollout.astype("float32")


# Capacities of `attention_flow` are the maps rounded to multiples of
# 1 / _FLOW_SCALE. A node's out-capacities sum to at most 1 (a map's row), so
# every flow and capacity stays below 2**30 + n: inside int32, which
# `scipy.sparse.csgraph.maximum_flow` takes on every SciPy version we allow.
_FLOW_SCALE = 2**30


def attention_flow(model, inputs, residual=None, head_fusion="mean", normalize=True):
    """Attention flow (Abnar & Zuidema, 2020) of a model's self-attention.

    The layers' maps, residual added exactly as in `attention_rollout`, are
    the capacities of a layered graph: `n` nodes per layer boundary (input,
    after attention call 1, ..., after call `L`) and an edge from node `i`
    after call `l` to node `j` before it, of capacity `R_l[i, j]`. The flow
    from output `i` to input `j` is the maximum flow from node `i` of the
    last boundary to node `j` of the first: how much attention can reach `j`
    through all paths at once, where rollout multiplies along paths. One
    attention call: the flow is the map itself.

    Each of the `batch * n * n` flows (times the heads with
    `head_fusion="none"`) is one `scipy.sparse.csgraph.maximum_flow` (Dinic)
    on integer capacities: the maps scaled by `2**30` and rounded. The flow
    is exact for the rounded capacities, so it differs from the real-valued
    one by at most `2**-31` per edge of the minimum cut: below 1e-5 as long
    as a cut has fewer than 21,000 edges (`L * n * n` bounds it: e.g. 2
    calls of 100 tokens).

    Args:
        model: a Keras model whose attention layers are this package's, all
            self-attention over the same sequence (no cross-attention).
        inputs: what `model` takes.
        residual: `None` (0.5 inside a `TransformerBlock`, 0 for a bare
            attention layer) or a float in `[0, 1]` for every layer, as in
            `attention_rollout`.
        head_fusion: `"mean"` averages the heads of each layer; `"none"`
            computes each head's flow on its own (every layer needs the same
            number of heads).
        normalize: `True` divides each real row by its sum, so rows of real
            positions sum to 1 (what the paper's code does, comparable with
            rollout); `False` keeps the flows, each in `[0, 1]` (a row's
            entries each at most the row's total capacity, 1).

    Returns:
        A NumPy array `(batch, seq_len, seq_len)`, or with
        `head_fusion="none"` `(batch, num_heads, seq_len, seq_len)`. Row `i`:
        the flow from output position `i` to each input position; padded
        positions get 0, as rows and as columns.

    Raises:
        ValueError: as `attention_rollout` (a bad `residual` or
            `head_fusion`, no attention layer of ours, cross-attention,
            layers with different head counts).
        TypeError: `normalize` is not a bool.

    References:
        Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020.
    """
    owner = "attention_flow"
    if not isinstance(normalize, bool):
        raise TypeError(
            f"{owner}: `normalize` must be a bool. Received: normalize={normalize!r}"
        )
    steps = _layer_maps(model, inputs, residual, head_fusion, owner)
    # (layers, batch, heads, n, n) -> one graph per (batch, head).
    maps = np.stack(steps)
    n_layers, batch, heads, n, _ = maps.shape
    flow = np.zeros((batch, heads, n, n))
    for b in range(batch):
        for h in range(heads):
            flow[b, h] = _max_flows(maps[:, b, h])
    if normalize:
        totals = flow.sum(axis=-1, keepdims=True)
        flow = np.divide(flow, totals, out=np.zeros_like(flow), where=totals > 0)
    if head_fusion == "mean":
        flow = flow[:, 0]
    return flow.astype("float32")


def _max_flows(maps):
    """`flow[i, j]`: the maximum flow from output `i` to input `j` through
    the layered graph of `maps` `(layers, n, n)`, capacities `maps[l, i, j]`
    from node `i` after layer `l` to node `j` before it."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    n_layers, n, _ = maps.shape
    capacity = np.rint(maps * _FLOW_SCALE).astype(np.int32)
    # Node `l * n + j` is position `j` before layer `l` (`l = n_layers`: the
    # output); edges point from a layer's output to its input.
    size = (n_layers + 1) * n
    graph = np.zeros((size, size), dtype=np.int32)
    for layer in range(n_layers):
        graph[(layer + 1) * n : (layer + 2) * n, layer * n : (layer + 1) * n] = (
            capacity[layer]
        )
    graph = csr_matrix(graph)
    out_capacity = capacity[-1].sum(axis=-1)
    in_capacity = capacity[0].sum(axis=0)
    flow = np.zeros((n, n))
    for i in range(n):
        if out_capacity[i] == 0:  # padded output position
            continue
        for j in range(n):
            if in_capacity[j] == 0:  # nothing reaches this input
                continue
            source = n_layers * n + i
            flow[i, j] = maximum_flow(graph, source, j, method="dinic").flow_value
    return flow / _FLOW_SCALE


def _layer_maps(model, inputs, residual, head_fusion, owner):
    """The maps rollout multiplies and flow routes through, in call order:
    `R = residual * I + (1 - residual) * A` per attention call, float64
    `(batch, heads, seq_len, seq_len)` (`heads` 1 with `head_fusion="mean"`).
    The one place the residual, the head fusion and the masks are applied."""
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
        for block in attention_layers(model, TransformerBlock)
        if hasattr(block, "attention")
    }
    records = record(model, inputs, owner)
    # Cross-attention anywhere refuses the whole model, whatever the lengths
    # (before the lengths of two self-attention calls could be compared).
    for _, name, _, self_attention in records:
        if not self_attention:
            raise ValueError(
                f"{owner}: every attention call must be self-attention over "
                f"one sequence. Received: {name} called with a `value` or "
                f"`key` other than its `query` (cross-attention)"
            )
    steps = []
    for layer, name, weights, _ in records:
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
        if steps and steps[-1].shape != step.shape:
            raise ValueError(
                f"{owner}: every attention call must have the same sequence "
                f"length and, with head_fusion='none', head count. Received: "
                f"{name} with weights.shape={weights.shape} after "
                f"{steps[-1].shape}"
            )
        steps.append(step)
    return steps

"""Reading the attention weights out of a model, without changing it.

How: every attention layer of this package reachable from the model (its
layers, their sublayers, e.g. the attention inside a `TransformerBlock`) gets,
for one forward pass, an instance attribute `call` that calls the layer's own
`call` with `return_attention_scores=True`, records the weights and hands the
caller what it asked for. `model(inputs, training=False)` runs once, eagerly;
the attributes are removed afterwards, also when the pass raises. So any
model works (Sequential, nested, Functional, subclassed), self- and
cross-attention alike, with the masks the model itself applies.
"""

import contextlib
import inspect

import keras

from keras_attention.layers._attention_layer import AttentionLayer

_OURS = "(MultiHeadAttention, ScaledDotProductAttention or TransformerBlock)"


def attention_weights(model, inputs):
    """The attention weights of every attention call of a model, in call order.

    Runs `model(inputs, training=False)` once with each of this package's
    attention layers (`MultiHeadAttention`, `ScaledDotProductAttention`, also
    inside a `TransformerBlock`) asked for its weights, and returns them. The
    model, its weights and its outputs are unchanged; nothing stays on the
    layers (see the module docstring for how). The padding and attention
    masks are those of the forward pass. A layer called several times (a
    shared layer) gives one array per call.

    For a `keras.Sequential` the result is what it always was: one array per
    attention layer or block, in model order. To know which array is which
    layer in other models, use `attention_weights_by_layer`.

    Args:
        model: a `keras.Model` (Sequential, nested, Functional or subclassed)
            or layer that uses this package's attention layers.
        inputs: what `model` takes, e.g. token ids `(batch, seq_len)`, or a
            list or dict for a model with several inputs.

    Returns:
        A list of NumPy arrays, one per attention call, in call order:
        `(batch, num_heads, q_len, k_len)` for `MultiHeadAttention` (and so
        `TransformerBlock`), `(batch, q_len, k_len)` for
        `ScaledDotProductAttention`.

    Raises:
        TypeError: `model` is not a Keras layer or model.
        ValueError: the model has none of this package's attention layers,
            or the forward pass called none of them.
    """
    records = _record(model, inputs, "attention_weights")
    return [weights for _, _, weights, _ in records]


def attention_weights_by_layer(model, inputs):
    """The attention weights of a model, keyed by the layer that computed them.

    As `attention_weights` (one forward pass, nothing changed), but returns a
    dict in call order: the key is the layer's `path` (e.g.
    `"encoder_decoder/decoder_block/cross_attention"`, or for the attention
    of a `TransformerBlock`, `".../block_0/attention"`). A layer called `n > 1`
    times gets the keys `path#0` ... `path#{n-1}`, one per call.

    Args:
        model: a `keras.Model` or layer that uses this package's attention
            layers.
        inputs: what `model` takes.

    Returns:
        A dict `{name: NumPy array}`, shapes as in `attention_weights`.

    Raises:
        TypeError: `model` is not a Keras layer or model.
        ValueError: the model has none of this package's attention layers,
            or the forward pass called none of them.
    """
    records = _record(model, inputs, "attention_weights_by_layer")
    calls = {}
    for _, name, _, _ in records:
        calls[name] = calls.get(name, 0) + 1
    named, seen = {}, {}
    for _, name, weights, _ in records:
        if calls[name] > 1:
            seen[name] = seen.get(name, -1) + 1
            name = f"{name}#{seen[name]}"
        named[name] = weights
    return named


def _record(model, inputs, owner):
    """`[(layer, path, weights, self_attention)]` of one forward pass, in
    call order; `self_attention` is False for a call given a `value` or `key`
    other than its `query` (cross-attention, whatever the lengths)."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"{owner}: `model` must be a Keras model or layer. "
            f"Received: model of type {type(model).__name__}"
        )
    layers = _attention_layers(model)
    if not layers:
        top = getattr(model, "layers", [model])
        raise ValueError(
            f"{owner}: `model` has no keras_attention attention layer {_OURS}. "
            f"Received: layers {[type(layer).__name__ for layer in top]}"
        )
    _check_inputs(model, inputs, owner)
    with _recording(layers) as records:
        model(inputs, training=False)
    if not records:
        raise ValueError(
            f"{owner}: the forward pass of `model` called none of its "
            f"keras_attention attention layers {_OURS}. Received: layers "
            f"{[layer.path for layer in layers]}, none called"
        )
    return records


def _attention_layers(root, kind=AttentionLayer):
    """The layers of type `kind` (this package's attention layers) reachable
    from `root`: its `layers` and every layer held in an attribute (or a
    list, tuple or dict of them), recursively."""
    found, seen, stack = [], set(), [root]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, kind):
            found.append(layer)
        children = list(getattr(layer, "layers", None) or [])
        for value in vars(layer).values():
            if isinstance(value, dict):
                children.extend(value.values())
            elif isinstance(value, list | tuple):
                children.extend(value)
            else:
                children.append(value)
        stack.extend(c for c in children if isinstance(c, keras.layers.Layer))
    return found


@contextlib.contextmanager
def _recording(layers):
    """Each layer's calls return and record their weights while inside."""
    records = []
    saved = {}
    try:
        for layer in layers:
            saved[id(layer)] = (layer, vars(layer).get("call"))
            # object.__setattr__: not tracked by Keras as a layer attribute.
            object.__setattr__(layer, "call", _recorder(layer, records))
        yield records
    finally:
        for layer, previous in saved.values():
            if previous is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", previous)


def _recorder(layer, records):
    original = layer.call
    signature = inspect.signature(original)
    name = getattr(layer, "path", None) or layer.name

    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        asked = bound.arguments.get("return_attention_scores", False)
        bound.arguments["return_attention_scores"] = True
        query = bound.arguments.get("query")
        others = (bound.arguments.get(argument) for argument in ("value", "key"))
        self_attention = all(other is None or other is query for other in others)
        output, weights = original(*bound.args, **bound.kwargs)
        records.append(
            (layer, name, keras.ops.convert_to_numpy(weights), self_attention)
        )
        return (output, weights) if asked else output

    return call


def _check_inputs(model, inputs, owner):
    """The model's own input check names Keras' internals; this one names
    the argument. Models of one input with a known shape only."""
    try:
        expected = model.input_shape
    except (AttributeError, ValueError):  # not built from `keras.Input`s
        return
    if not isinstance(expected, tuple) or any(
        not (e is None or isinstance(e, int)) for e in expected
    ):
        return  # several inputs: Keras checks them
    shape = tuple(keras.ops.shape(keras.ops.convert_to_tensor(inputs)))
    if len(shape) != len(expected) or any(
        e is not None and s != e for s, e in zip(shape, expected, strict=False)
    ):
        raise ValueError(
            f"{owner}: `inputs` must have the model's input shape "
            f"{expected}. Received: inputs.shape={shape}"
        )

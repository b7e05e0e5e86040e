"""Recording the attention weights of one forward pass of a model.

`attention_weights`, `attention_rollout` and `attention_flow` all read a
model's attention the same way: every attention layer of this package
reachable from the model (its layers, their sublayers, e.g. the attention
inside a `TransformerBlock`) gets, for one forward pass, an instance attribute
`call` that calls the layer's own `call` with `return_attention_scores=True`,
records the weights and hands the caller what it asked for.
`model(inputs, training=False)` runs once, eagerly; the attributes are
removed afterwards, also when the pass raises. So any model works
(Sequential, nested, Functional, subclassed), self- and cross-attention
alike, with the masks the model itself applies.
"""

import contextlib
import inspect

import keras

from keras_attention.layers._attention_layer import AttentionLayer

OURS = "(MultiHeadAttention, ScaledDotProductAttention or TransformerBlock)"


def record(model, inputs, owner):
    """`[(layer, path, weights, self_attention)]` of one forward pass, in
    call order; `self_attention` is False for a call given a `value` or `key`
    other than its `query` (cross-attention, whatever the lengths)."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"{owner}: `model` must be a Keras model or layer. "
            f"Received: model of type {type(model).__name__}"
        )
    layers = attention_layers(model)
    if not layers:
        top = getattr(model, "layers", [model])
        raise ValueError(
            f"{owner}: `model` has no keras_attention attention layer {OURS}. "
            f"Received: layers {[type(layer).__name__ for layer in top]}"
        )
    _check_inputs(model, inputs, owner)
    with _recording(layers) as records:
        model(inputs, training=False)
    if not records:
        raise ValueError(
            f"{owner}: the forward pass of `model` called none of its "
            f"keras_attention attention layers {OURS}. Received: layers "
            f"{[layer.path for layer in layers]}, none called"
        )
    return records


def attention_layers(root, kind=AttentionLayer):
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

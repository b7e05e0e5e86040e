"""Reading the attention weights out of a model, without changing it: one
forward pass, recorded by `_recording.py`."""

from keras_attention.explain._recording import record


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
    records = record(model, inputs, "attention_weights")
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
    records = record(model, inputs, "attention_weights_by_layer")
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

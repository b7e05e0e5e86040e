"""Multi-head attention with the weights of `keras.layers.MultiHeadAttention`.

Einsum letters: b batch, t query position, s key position, d input dim,
n head, h per-head dim, o output dim (flattened `output_shape`).
"""

import math

import keras
from keras import ops

from keras_attention import _checks as checks
from keras_attention.layers._attention_layer import AttentionLayer


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiHeadAttention(AttentionLayer):
    """Multi-head attention, a drop-in for `keras.layers.MultiHeadAttention`.

    Projects `query`, `key` and `value` to `num_heads` heads, runs scaled
    dot-product attention in each (`keras_attention.scaled_dot_product_attention`)
    and projects the concatenated heads back. The constructor arguments it
    shares with `keras.layers.MultiHeadAttention` mean the same, and the eight
    weights (four without biases) have the same shapes in the same order, so
    `ours.set_weights(keras_layer.get_weights())` moves a trained Keras layer
    over with the same outputs.

    Unlike Keras' layer it can be called on a single tensor (self-attention),
    so `model.add(MultiHeadAttention(...))` works in a `keras.Sequential`, and
    `causal` is a constructor argument, because a layer added with `model.add`
    receives no call arguments. A query that may attend to no key (a padded
    query, or a fully masked row) gets a zero context vector, so its output is
    the output bias; Keras' layer gives such rows an average instead.

    Masks: Keras' padding masks (from `Embedding(mask_zero=True)` or
    `Masking`) are honoured without any argument: a padded key gets no weight,
    and the query's mask is passed on to the next layer. `attention_mask` is a
    boolean or integer tensor `(batch, q_len, k_len)`, non-zero where a query
    may attend to a key; it combines with the padding masks and with `causal`.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head for query and key.
        value_dim: size of each head for value; defaults to `key_dim`.
        dropout: rate in `[0, 1)` at which attention weights are dropped
            during training.
        use_bias: whether the four projections have biases.
        output_shape: int or tuple of ints, the output's trailing shape;
            defaults to the query's last dimension.
        kernel_initializer: initializer of the four kernels.
        bias_initializer: initializer of the four biases.
        seed: int seed for the dropout.
        causal: if `True`, query `i` only attends to keys `j <= i` (aligned at
            the top left when `q_len != k_len`). The call argument
            `use_causal_mask=True` does the same for one call.
        sliding_window: if set to an int `w`, query `i` only attends to keys
            `j` with `|i - j| < w` (like `keras.layers.MultiHeadAttention`'s
            `sliding_window`); combines with `causal` and the masks.
        tile_size: `None` (default) lets `scaled_dot_product_attention`
            choose: on TensorFlow, long sequences run in tiles in memory
            linear in the length. An int forces tiles of that many positions.
            `return_attention_scores=True` always uses the full computation.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `(batch, q_len, query_dim)`.
        value: `(batch, k_len, value_dim)`; defaults to `query`
            (self-attention).
        key: `(batch, k_len, key_dim)`; defaults to `value`.
        attention_mask: optional boolean or integer `(batch, q_len, k_len)`.
        return_attention_scores: if `True`, also return the weights.
        training: whether dropout applies.
        use_causal_mask: apply a causal mask for this call.
        mask, query_mask, value_mask, key_mask: Keras' padding masks
            `(batch, seq_len)`; Keras fills them in, you need not.

    Returns:
        `(batch, q_len, *output_shape)`, and with
        `return_attention_scores=True` also the weights
        `(batch, num_heads, q_len, k_len)`.

    Example:

    >>> model = keras.Sequential([keras.Input((None,), dtype="int32")])
    >>> model.add(keras.layers.Embedding(100, 32, mask_zero=True))
    >>> layer = keras_attention.MultiHeadAttention(num_heads=4, key_dim=8, causal=True)
    >>> model.add(layer)
    >>> tuple(model.output_shape)
    (None, None, 32)

    References:
        Vaswani et al., "Attention Is All You Need", 2017.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed: int | None = None,
        causal: bool = False,
        sliding_window: int | None = None,
        tile_size: int | None = None,
        **kwargs,
    ):
        owner = type(self).__name__
        checks.positive_int(num_heads, "num_heads", owner)
        checks.positive_int(key_dim, "key_dim", owner)
        checks.positive_int(value_dim, "value_dim", owner, allow_none=True)
        checks.boolean(use_bias, "use_bias", owner)
        trailing = (output_shape,) if isinstance(output_shape, int) else output_shape
        if trailing is not None and (
            not isinstance(trailing, (tuple, list))
            or not trailing
            or any(
                isinstance(n, bool) or not isinstance(n, int) or n <= 0
                for n in trailing
            )
        ):
            raise ValueError(
                f"{owner}: `output_shape` must be None, a positive integer or a "
                f"non-empty tuple of positive integers. "
                f"Received: output_shape={output_shape!r}"
            )
        kernel_initializer, bias_initializer = (
            checks.keras_identifier(
                keras.initializers.get, value, argument, owner, "initializer"
            )
            for argument, value in (
                ("kernel_initializer", kernel_initializer),
                ("bias_initializer", bias_initializer),
            )
        )
        super().__init__(
            causal=causal,
            dropout=dropout,
            seed=seed,
            sliding_window=sliding_window,
            tile_size=tile_size,
            **kwargs,
        )
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim if value_dim is not None else key_dim
        self.use_bias = use_bias
        self._output_dims = None if trailing is None else tuple(trailing)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        query_shape, value_shape, key_shape = self._check_shapes(
            query_shape, value_shape, key_shape
        )
        heads = self.num_heads
        # Keras' order and shapes: query, key, value, output; kernel then bias.
        for name, dim, head_dim in (
            ("query", query_shape[-1], self.key_dim),
            ("key", key_shape[-1], self.key_dim),
            ("value", value_shape[-1], self.value_dim),
        ):
            self._add_projection(name, (dim, heads, head_dim), (heads, head_dim))
        out = self._output_dims or query_shape[-1:]
        self._add_projection("output", (heads, self.value_dim, *out), out)

    def _add_projection(self, name, kernel_shape, bias_shape):
        kernel = self.add_weight(
            name=f"{name}_kernel",
            shape=kernel_shape,
            initializer=self._clone(self.kernel_initializer),
        )
        bias = None
        if self.use_bias:
            bias = self.add_weight(
                name=f"{name}_bias",
                shape=bias_shape,
                initializer=self._clone(self.bias_initializer),
            )
        setattr(self, f"{name}_kernel", kernel)
        setattr(self, f"{name}_bias", bias)

    @staticmethod
    def _clone(initializer):
        # A seeded initializer instance would give every kernel the same values.
        return initializer.__class__.from_config(initializer.get_config())

    def _check_shapes(self, query_shape, value_shape, key_shape):
        shapes = super()._check_shapes(query_shape, value_shape, key_shape)
        for argument, shape in zip(("query", "value", "key"), shapes, strict=True):
            if shape[-1] is None:
                raise ValueError(
                    f"{type(self).__name__}: the last dimension of `{argument}` "
                    f"must be known. Received: {argument}.shape={shape}"
                )
        return shapes

    def _project(self, query, key, value):
        # (batch, heads, t, head_dim) for the query, (batch, heads, s, ...)
        # for the key and value.
        return (
            _project("btd,dnh->bnth", query, self.query_kernel, self.query_bias),
            _project("bsd,dnh->bnsh", key, self.key_kernel, self.key_bias),
            _project("bsd,dnh->bnsh", value, self.value_kernel, self.value_bias),
        )

    def _output(self, context):
        out = self._output_dims or (self.output_kernel.shape[-1],)
        size = math.prod(out)
        kernel = ops.reshape(self.output_kernel, (self.num_heads, self.value_dim, size))
        output = ops.einsum("bnth,nho->bto", context, kernel)  # (batch, t, size)
        if self.use_bias:
            output = output + ops.reshape(self.output_bias, (size,))
        if len(out) > 1:
            batch, q_len = ops.shape(output)[0], ops.shape(output)[1]
            output = ops.reshape(output, (batch, q_len, *out))
        return output

    def _output_shape(self, query_shape, value_shape, key_shape):
        return query_shape[:-1] + (self._output_dims or query_shape[-1:])

    def _weights_shape(self, query_shape, value_shape, key_shape):
        return (query_shape[0], self.num_heads, query_shape[1], key_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            value_dim=self.value_dim,
            use_bias=self.use_bias,
            output_shape=self._output_dims,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


def _project(equation, x, kernel, bias):
    projected = ops.einsum(equation, x, kernel)
    if bias is not None:
        projected = projected + ops.expand_dims(bias, 1)  # (heads, 1, dim)
    return projected

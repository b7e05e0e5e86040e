import keras

from keras_attention import _checks as checks
from keras_attention.layers._attention_layer import AttentionLayer


@keras.saving.register_keras_serializable(package="keras_attention")
class ScaledDotProductAttention(AttentionLayer):
    """Scaled dot-product attention as a layer, with no weights.

    Computes `softmax(query · keyᵀ · scale) · value` with
    `keras_attention.scaled_dot_product_attention`. Called on one tensor it is
    self-attention, so it can be added to a `keras.Sequential` model with
    `model.add(...)`.

    Masks: Keras' padding masks (from `Embedding(mask_zero=True)` or
    `Masking`) are honoured without any argument: a padded key gets no weight,
    a padded query gets a zero context vector, and the query's mask is passed
    on to the next layer. `attention_mask` is a boolean or integer tensor
    `(batch, q_len, k_len)`, non-zero where a query may attend to a key; it
    combines with the padding masks and with `causal`.

    Args:
        causal: if `True`, query `i` only attends to keys `j <= i` (see
            `alignment` when `q_len != k_len`). The call argument
            `use_causal_mask` overrides it for one call.
        dropout: rate in `[0, 1)` at which attention weights are dropped
            during training.
        scale: positive number multiplying the logits; defaults to
            `1 / sqrt(dim)`.
        seed: int seed for the dropout.
        sliding_window: if set to an int `w`, query `i` only attends to keys
            `j` with `|i - j| < w` (like `keras.layers.MultiHeadAttention`'s
            `sliding_window`); combines with `causal` and the masks. A pair
            `(left, right)`: keys `i - left <= j <= i + right`.
        tile_size: `None` (default) lets `scaled_dot_product_attention`
            choose: long sequences (and, on TensorFlow, lengths unknown
            when traced) run in tiles in memory linear in the length, on
            PyTorch its fused kernel where it applies. `0` forces
            the full computation (for TensorFlow Lite, see
            docs/guides/serving-and-export.md); a positive int tiles of
            that many positions.
            `return_attention_scores=True` always uses the full computation.
        alignment: `"top_left"` (default, like Keras) or `"bottom_right"`:
            where the queries sit among the keys when `q_len != k_len`, for
            `causal` and `sliding_window` (see
            `keras_attention.scaled_dot_product_attention`). With
            `"bottom_right"` the last query sits at the last key, as when new
            queries attend to earlier keys and themselves.
        chunk_size: optional int `c`: query `i` only attends to keys of its
            own chunk, `i // c == j // c` (Llama 4), on the row's positions.
        softcap: optional positive number `c`: the scaled logits become
            `c · tanh(logits / c)` (Gemma 2).
        sink_tokens: optional int `n`: the first `n` keys of each segment
            stay visible past `sliding_window` and `chunk_size` (attention
            sinks; still causal).
        global_tokens: optional int `n`: the first `n` positions of each
            segment attend to, and are attended by, every position of their
            segment (a boolean `global_tokens` call argument overrides it).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `(batch, q_len, dim)`.
        value: `(batch, k_len, value_dim)`; defaults to `query`
            (self-attention).
        key: `(batch, k_len, dim)`; defaults to `value`.
        attention_mask: optional boolean or integer `(batch, q_len, k_len)`.
        return_attention_scores: if `True`, also return the weights.
        training: whether dropout applies.
        use_causal_mask: `None` (the default) follows the constructor's
            `causal`; `True` or `False` turns the causal mask on or off for
            this call.
        mask, query_mask, value_mask, key_mask: Keras' padding masks
            `(batch, seq_len)`; Keras fills them in, you need not.
        segment_ids: keyword-only, optional integer tensor `(batch,
            seq_len)` of self-attention (or a pair for queries and keys): a
            query attends only to keys with its own id, as when documents
            are packed into one row (see `keras_attention.pack_sequences`).
        prefix_length: keyword-only, with `causal`: an int or an integer
            `(batch,)` tensor; the first positions of each row attend to
            each other both ways (prefix-LM).
        global_tokens: keyword-only, optional boolean `(batch, seq_len)`
            tensor of the global positions, instead of the constructor's int.

    Returns:
        `(batch, q_len, value_dim)`, and with `return_attention_scores=True`
        also the weights `(batch, q_len, k_len)`.

    Example:

    >>> model = keras.Sequential([keras.Input((None,), dtype="int32")])
    >>> model.add(keras.layers.Embedding(100, 16, mask_zero=True))
    >>> model.add(keras_attention.ScaledDotProductAttention(causal=True))
    >>> tuple(model.output_shape)
    (None, None, 16)

    References:
        Vaswani et al., "Attention Is All You Need", 2017.
    """

    def __init__(
        self,
        causal: bool = False,
        dropout: float = 0.0,
        scale: float | None = None,
        seed: int | None = None,
        sliding_window: int | None = None,
        tile_size: int | None = None,
        alignment: str = "top_left",
        chunk_size: int | None = None,
        softcap: float | None = None,
        sink_tokens: int | None = None,
        global_tokens: int | None = None,
        **kwargs,
    ):
        scale = checks.scale(scale, type(self).__name__)
        super().__init__(
            causal=causal,
            dropout=dropout,
            seed=seed,
            sliding_window=sliding_window,
            tile_size=tile_size,
            alignment=alignment,
            chunk_size=chunk_size,
            softcap=softcap,
            sink_tokens=sink_tokens,
            global_tokens=global_tokens,
            **kwargs,
        )
        self.scale = scale

    def _check_shapes(self, query_shape, value_shape, key_shape):
        query_shape, value_shape, key_shape = super()._check_shapes(
            query_shape, value_shape, key_shape
        )
        if (
            None not in (query_shape[-1], key_shape[-1])
            and query_shape[-1] != key_shape[-1]
        ):
            raise ValueError(
                f"{type(self).__name__}: `query` and `key` must have the "
                f"same last dimension. Received: query.shape={query_shape}, "
                f"key.shape={key_shape}"
            )
        return query_shape, value_shape, key_shape

    def _output_shape(self, query_shape, value_shape, key_shape):
        return query_shape[:-1] + value_shape[-1:]

    def _weights_shape(self, query_shape, value_shape, key_shape):
        return query_shape[:-1] + key_shape[1:2]

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale)
        return config

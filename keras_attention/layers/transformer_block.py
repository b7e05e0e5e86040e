import keras

from keras_attention import _checks as checks
from keras_attention.layers._attention_layer import per_row
from keras_attention.layers._sublayer_policies import (
    save_sublayer_policies,
    sublayer_policy,
)
from keras_attention.layers.multi_head_attention import MultiHeadAttention
from keras_attention.layers.rotary_embedding import as_rotary_embedding


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerBlock(keras.layers.Layer):
    """A pre-norm Transformer encoder block that keeps the padding mask.

    `x + Dropout(MultiHeadAttention(LayerNorm(x)))`, then
    `x + Dropout(Dense(Dense(LayerNorm(x), activation)))`: self-attention and
    a position-wise feed-forward network, each behind a layer normalization
    and a residual connection (Xiong et al., 2020). The Keras padding mask of
    the input reaches the attention (padded keys get no weight) and is passed
    on unchanged to the next layer, which a bare `x + attention(x)` would drop.

    Args:
        num_heads: number of attention heads; the model width must be
            divisible by it (each head has `width // num_heads` dimensions).
        intermediate_dim: width of the feed-forward network's hidden layer.
        dropout: rate in `[0, 1)` for the attention weights and both residual
            branches.
        causal: if `True`, position `i` attends only to positions `j <= i`.
        activation: activation of the feed-forward hidden layer.
        layer_norm_epsilon: epsilon of both layer normalizations.
        rotary_embedding: optional `keras_attention.RotaryEmbedding` for the
            attention's query and key (see `MultiHeadAttention`).
        alibi: if `True`, the attention uses ALiBi (see `MultiHeadAttention`).
        tile_size: the attention's `tile_size` (see `MultiHeadAttention`):
            `None` chooses, `0` the full computation (a model meant for
            TensorFlow Lite), a positive int tiles of that size.
        sliding_window: the attention's window: an int `w` or a pair
            `(left, right)` (see `MultiHeadAttention`).
        chunk_size: the attention's chunks (see `MultiHeadAttention`).
        softcap: the attention's logit soft-cap (see `MultiHeadAttention`).
        sink_tokens: the attention's sink tokens (see `MultiHeadAttention`).
        global_tokens: the attention's global tokens, an int (see
            `MultiHeadAttention`).
        use_sinks: a learned sink logit per head (see `MultiHeadAttention`).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, seq_len, width)`.
        mask: Keras' padding mask `(batch, seq_len)`; filled in by Keras.
        training: whether dropout applies.
        return_attention_scores: if `True`, also return the attention weights
            `(batch, num_heads, seq_len, seq_len)`.
        cache, cache_index: keyword-only, for decoding with a key/value
            cache: `cache` from `init_cache(batch_size, max_length)` (or the
            previous call), `cache_index` the number of positions already in
            it, an int or a `(batch,)` integer tensor (one per row). See
            `MultiHeadAttention`; the weights then have `max_length` keys.
        segment_ids: keyword-only, the attention's segment ids (packed
            documents; see `MultiHeadAttention`).
        positions: keyword-only, the rotary embedding's positions per row
            (see `MultiHeadAttention`).
        prefix_length: keyword-only, the causal attention's bidirectional
            prefix (see `MultiHeadAttention`).
        global_tokens: keyword-only, a boolean `(batch, seq_len)` tensor of
            global positions (see `MultiHeadAttention`).

    Returns:
        `(batch, seq_len, width)`, and the weights when asked for; with a
        `cache`, a tuple that ends with the updated cache:
        `(outputs, new_cache)` or `(outputs, weights, new_cache)`.

    Example:

    >>> model = keras.Sequential([keras.Input((None,), dtype="int32")])
    >>> model.add(keras.layers.Embedding(100, 32, mask_zero=True))
    >>> model.add(keras_attention.TransformerBlock(num_heads=4, intermediate_dim=64))
    >>> tuple(model.output_shape)
    (None, None, 32)

    References:
        Vaswani et al., "Attention Is All You Need", 2017.
        Xiong et al., "On Layer Normalization in the Transformer
        Architecture", 2020.
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        dropout: float = 0.0,
        causal: bool = False,
        activation="relu",
        layer_norm_epsilon: float = 1e-5,
        rotary_embedding=None,
        alibi: bool = False,
        tile_size: int | None = None,
        sliding_window=None,
        chunk_size: int | None = None,
        softcap: float | None = None,
        sink_tokens: int | None = None,
        global_tokens: int | None = None,
        use_sinks: bool = False,
        **kwargs,
    ):
        owner = type(self).__name__
        checks.positive_int(num_heads, "num_heads", owner)
        checks.positive_int(intermediate_dim, "intermediate_dim", owner)
        checks.dropout(dropout, owner)
        checks.boolean(causal, "causal", owner)
        activation = checks.keras_identifier(
            keras.activations.get, activation, "activation", owner, "activation"
        )
        checks.positive_number(layer_norm_epsilon, "layer_norm_epsilon", owner)
        rotary_embedding = as_rotary_embedding(rotary_embedding, owner)
        checks.boolean(alibi, "alibi", owner)
        tile_size = checks.tile_size(tile_size, owner)
        # Checked as the attention checks them, and saved as given.
        pattern = dict(
            sliding_window=checks.window_config(
                checks.window(sliding_window, "sliding_window", owner)
            ),
            chunk_size=checks.positive_int(
                chunk_size, "chunk_size", owner, allow_none=True
            ),
            softcap=None
            if softcap is None
            else float(checks.positive_number(softcap, "softcap", owner)),
            sink_tokens=checks.count(sink_tokens, "sink_tokens", owner),
            global_tokens=checks.count(global_tokens, "global_tokens", owner),
            use_sinks=checks.boolean(use_sinks, "use_sinks", owner),
        )
        super().__init__(**kwargs)
        self._pattern_options = {
            k: v for k, v in pattern.items() if v not in (None, False)
        }
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.causal = causal
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.rotary_embedding = rotary_embedding
        self.alibi = alibi
        self.tile_size = tile_size
        self.supports_masking = True

    def build(self, inputs_shape):
        width = self._check_shape(inputs_shape)

        def sublayer(name):
            return {"name": name, "dtype": sublayer_policy(self, name)}

        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, **sublayer("attention_norm")
        )
        self.attention = MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=width // self.num_heads,
            dropout=self.dropout,
            causal=self.causal,
            rotary_embedding=self.rotary_embedding,
            alibi=self.alibi,
            tile_size=self.tile_size,
            **self._pattern_options,
            # The whole map: the attention picks its projections' policies.
            name="attention",
            dtype=self.dtype_policy,
        )
        self.feedforward_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, **sublayer("feedforward_norm")
        )
        self.intermediate = keras.layers.Dense(
            self.intermediate_dim,
            activation=self.activation,
            **sublayer("intermediate"),
        )
        self.output_dense = keras.layers.Dense(width, **sublayer("output"))
        self.residual_dropout = keras.layers.Dropout(
            self.dropout, dtype=sublayer_policy(self, "dropout")
        )
        self.attention_norm.build(inputs_shape)
        self.attention.build(inputs_shape)
        self.feedforward_norm.build(inputs_shape)
        self.intermediate.build(inputs_shape)
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))

    def _check_shape(self, inputs_shape):
        shape = tuple(inputs_shape)
        owner = type(self).__name__
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                f"{owner}: the input must have shape (batch, seq_len, width) with "
                f"a known width. Received: inputs.shape={shape}"
            )
        if shape[-1] % self.num_heads:
            raise ValueError(
                f"{owner}: the input width must be divisible by `num_heads`. "
                f"Received: width={shape[-1]}, num_heads={self.num_heads}"
            )
        return shape[-1]

    def _check_inputs(self, inputs, mask):
        owner = type(self).__name__
        checks.floating(inputs, "inputs", owner)
        shape = tuple(inputs.shape)
        self._check_shape(shape)
        checks.mask(
            mask,
            "mask",
            owner,
            "(batch, seq_len)",
            shape[:2],
            "non-zero at real positions and zero at padding",
        )
        return shape

    def __call__(self, *args, **kwargs):
        # Keras converts NumPy inputs to tensors before `call` and fails on
        # strings with a backend's error: check them first.
        inputs = args[0] if args else kwargs.get("inputs")
        checks.not_strings(inputs, "inputs", type(self).__name__)
        return super().__call__(*args, **kwargs)

    def init_cache(
        self, batch_size: int, max_length: int, *, segment_length: int = 512
    ):
        """An empty key/value cache of the block's attention (see
        `MultiHeadAttention.init_cache`); the block must be built (called
        once, or part of a built model), as its width sizes the heads."""
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}: `init_cache` needs the block built, as "
                "the input width sizes the heads: call it once or build its "
                "model first."
            )
        return self.attention.init_cache(
            batch_size, max_length, segment_length=segment_length
        )

    def call(
        self,
        inputs,
        mask=None,
        training=None,
        return_attention_scores=False,
        *,
        cache=None,
        cache_index=None,
        segment_ids=None,
        positions=None,
        prefix_length=None,
        global_tokens=None,
    ):
        self._check_inputs(inputs, mask)
        cached = cache is not None or cache_index is not None
        extra = {"cache": cache, "cache_index": cache_index} if cached else {}
        rows = per_row(segment_ids, positions, prefix_length, global_tokens)
        extra.update({k: v for k, v in rows.items() if v is not None})
        attended = self.attention(
            self.attention_norm(inputs),
            mask=mask,
            training=training,
            return_attention_scores=return_attention_scores,
            **extra,
        )
        new_cache = None
        if cached:
            *attended, new_cache = attended
            attended = tuple(attended) if return_attention_scores else attended[0]
        attended, scores = attended if return_attention_scores else (attended, None)
        x = inputs + self.residual_dropout(attended, training=training)
        hidden = self.intermediate(self.feedforward_norm(x))
        x = x + self.residual_dropout(self.output_dense(hidden), training=training)
        outputs = (x, scores) if return_attention_scores else (x,)
        if cached:
            return (*outputs, new_cache)
        return outputs if return_attention_scores else x

    def compute_output_shape(self, inputs_shape):
        self._check_shape(inputs_shape)
        return tuple(inputs_shape)

    def compute_output_spec(
        self,
        inputs,
        mask=None,
        training=None,
        return_attention_scores=False,
        *,
        cache=None,
        cache_index=None,
        **rows,
    ):
        shape = self._check_inputs(inputs, mask)
        output = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if cache is not None or cache_index is not None:
            return (
                output,
                *self.attention.compute_output_spec(
                    inputs,
                    return_attention_scores=return_attention_scores,
                    cache=cache,
                    cache_index=cache_index,
                )[1:],
            )
        if not return_attention_scores:
            return output
        batch, length = shape[0], shape[1]
        scores = keras.KerasTensor(
            (batch, self.num_heads, length, length), dtype=self.compute_dtype
        )
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
            causal=self.causal,
            activation=keras.activations.serialize(self.activation),
            layer_norm_epsilon=self.layer_norm_epsilon,
            rotary_embedding=keras.saving.serialize_keras_object(self.rotary_embedding),
            alibi=self.alibi,
            tile_size=self.tile_size,
            **self._pattern_options,
        )
        # Quantized sublayers' policies by path, the attention's included,
        # so that the reloaded block builds them the same way.
        sublayers = list(self._flatten_layers(include_self=False, recursive=True))
        return save_sublayer_policies(config, self, sublayers)

"""Multi-head attention with the sublayers and weights of Keras' layer.

The four projections are `keras.layers.EinsumDense` sublayers named, built and
shaped as in `keras.layers.MultiHeadAttention` (`query`, `key`, `value`,
`attention_output`, and `gate` with `use_gate`), reachable as `query_dense`,
`key_dense`, `value_dense` and `output_dense`: weight files, LoRA
(`enable_lora`), int8 quantization and dtype-policy maps work on them as on
Keras' layer. Between the projections, the attention runs on
`(batch, heads, ..., len, head_dim)` tensors, the attention axes flattened
into one sequence axis.
"""

import math
import string

import keras
from keras import ops

from keras_attention import _checks as checks
from keras_attention.layers import _kv_cache as kv_cache
from keras_attention.layers._attention_layer import AttentionLayer
from keras_attention.layers._position_layer import static_start_index
from keras_attention.layers._sublayer_policies import (
    save_sublayer_policies,
    sublayer_policy,
)
from keras_attention.layers.rotary_embedding import as_rotary_embedding
from keras_attention.ops import alibi_slopes, scaled_dot_product_attention


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiHeadAttention(AttentionLayer):
    """Multi-head attention, a drop-in for `keras.layers.MultiHeadAttention`.

    Projects `query`, `key` and `value` to `num_heads` heads, runs scaled
    dot-product attention in each (`keras_attention.scaled_dot_product_attention`)
    and projects the concatenated heads back. The constructor and call
    arguments it shares with `keras.layers.MultiHeadAttention` come in the
    same order and mean the same, its sublayers have the same names and
    weights, so a Keras layer's config (`from_config`), weights
    (`set_weights`) and weight files (`load_weights`) move over with the same
    outputs, and `layer.query_dense.enable_lora(rank)` and
    `model.quantize("int8")` work as with Keras' layer.

    Unlike Keras' layer it can be called on a single tensor (self-attention),
    so `model.add(MultiHeadAttention(...))` works in a `keras.Sequential`, and
    `causal` is a constructor argument, because a layer added with `model.add`
    receives no call arguments. A query that may attend to no key (a padded
    query, or a fully masked row) gets a zero context vector, so its output is
    the output bias; Keras' layer gives such rows an average instead.

    Masks: Keras' padding masks (from `Embedding(mask_zero=True)` or
    `Masking`) are honoured without any argument: a padded key gets no weight,
    and the query's mask is passed on to the next layer. `attention_mask` is a
    boolean or integer tensor `(batch, q_len, k_len)`, `(q_len, k_len)` or,
    per head, `(batch, num_heads, q_len, k_len)`, non-zero where a query may
    attend to a key; it combines with the padding masks and with `causal`.

    Inputs of rank > 3: `(batch, d_1, ..., d_n, dim)`, attention over
    `attention_axes` (default: all of `d_1 .. d_n`), as in Keras' layer. The
    attention axes are flattened, in order, into one sequence axis, so
    `causal` and `sliding_window` apply to that flattened order; the other
    axes are batch axes, each with its own dropout. Padding masks need rank-3
    inputs; an `attention_mask` broadcasts to `(batch, <other axes>,
    <query attention axes>, <key attention axes>)`.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head for query and key.
        value_dim: size of each head for value; defaults to `key_dim`.
        dropout: rate in `[0, 1)` at which attention weights are dropped
            during training.
        use_bias: whether the projections have biases.
        output_shape: int or tuple of ints, the output's trailing shape;
            defaults to the query's last dimension.
        attention_axes: int or tuple of ints, the input axes attention runs
            over; defaults to every axis but the batch and the features.
        sliding_window: if set to an int `w`, query `i` only attends to keys
            `j` with `|i - j| < w` (like `keras.layers.MultiHeadAttention`'s
            `sliding_window`); combines with `causal` and the masks. A pair
            `(left, right)`: keys `i - left <= j <= i + right` (Mistral's
            causal window of 4096 keys is `(4095, 0)`).
        flash_attention: accepted for compatibility with Keras' layer. It
            selects nothing here: the attention always runs this package's
            own kernel (on CPU Keras' flash attention is unavailable too). As
            in Keras, `True` refuses `dropout > 0` and
            `return_attention_scores=True`.
        kernel_initializer: initializer of the projections' kernels.
        bias_initializer: initializer of the projections' biases.
        kernel_regularizer: regularizer of the projections' kernels.
        bias_regularizer: regularizer of the projections' biases.
        activity_regularizer: regularizer of each projection's output, as in
            Keras.
        kernel_constraint: constraint of the projections' kernels.
        bias_constraint: constraint of the projections' biases.
        use_gate: if `True`, the attention output of each head is multiplied
            by `sigmoid(gate(query))` before the output projection (an extra
            `gate` projection, as in Keras' layer; Qiu et al., 2025).
        seed: int seed for the dropout.
        causal: if `True`, query `i` only attends to keys `j <= i` (see
            `alignment` when `q_len != k_len`). The call argument
            `use_causal_mask` overrides it for one call.
        tile_size: `None` (default) lets `scaled_dot_product_attention`
            choose: long sequences (and, on TensorFlow, lengths unknown
            when traced) run in tiles in memory linear in the length, on
            PyTorch its fused kernel where it applies. `0` forces
            the full computation (for TensorFlow Lite, see
            docs/guides/serving-and-export.md); a positive int tiles of
            that many positions.
            `return_attention_scores=True` always uses the full computation.
        num_key_value_heads: grouped-query attention: the number of key and
            value heads, dividing `num_heads` (1: multi-query attention);
            query head `h` shares key and value head
            `h // (num_heads // num_key_value_heads)`. `None` means
            `num_heads`. The weights are those of
            `keras.layers.GroupQueryAttention(head_dim=key_dim,
            num_query_heads=num_heads, num_key_value_heads=...)`, and the keys
            and values are never copied per group.
        alignment: `"top_left"` (default, like Keras) or `"bottom_right"`:
            where the queries sit among the keys when `q_len != k_len`, for
            `causal` and `sliding_window` (see
            `keras_attention.scaled_dot_product_attention`). With
            `"bottom_right"` the last query sits at the last key, as when new
            queries attend to earlier keys and themselves.
        rotary_embedding: optional `keras_attention.RotaryEmbedding`, applied
            to the projected query and key of every head (rank-3 inputs).
            Saved with the layer.
        alibi: if `True`, ALiBi: each head's logits get the bias
            `-slope · |i - j|`, with the slopes of
            `keras_attention.alibi_slopes(num_heads)` (rank-3 inputs).
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
        use_sinks: if `True`, a trainable logit per head (the weight
            `sinks`, zeros at first) joins every softmax's denominator and
            takes no value (GPT-OSS's sinks); saved with the layer.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments (in Keras' order):
        query: `(batch, q_len, query_dim)`.
        value: `(batch, k_len, value_dim)`; defaults to `query`
            (self-attention).
        key: `(batch, k_len, key_dim)`; defaults to `value`.
        query_mask, value_mask, key_mask: Keras' padding masks
            `(batch, seq_len)`; Keras fills them in, you need not.
        attention_mask: optional boolean or integer mask (see above).
        return_attention_scores: if `True`, also return the weights.
        training: whether dropout applies.
        use_causal_mask: `None` (the default) follows the constructor's
            `causal`; `True` or `False` turns the causal mask on or off for
            this call.
        mask: the padding mask of a one-tensor call; Keras fills it in.
        start_index: keyword-only, with a `rotary_embedding`: the position of
            the first step, an int or a scalar integer tensor (default 0), for
            the query and the key of self-attention. Cross-attention (a
            `value` passed) needs both: `start_index=(query_start,
            key_start)`, e.g. `(t, 0)` for a query at step `t` attending to
            keys from step 0.
        cache: keyword-only, for decoding one step at a time: the pair
            `(key_cache, value_cache)` from `init_cache(batch_size,
            max_length)` or from the previous call (see "Decoding" below).
        cache_index: keyword-only, with `cache`: the number of positions
            already in the cache, where this call's keys and values are
            written; an int or an integer tensor, scalar or `(batch,)` (a
            position per row, for prompts of different lengths).
        segment_ids: keyword-only, optional integer tensor `(batch,
            seq_len)` of self-attention (or a pair for queries and keys): a
            query attends only to keys with its own id, as when documents
            are packed into one row (see `keras_attention.pack_sequences`).
        prefix_length: keyword-only, with `causal`: an int or an integer
            `(batch,)` tensor; the first positions of each row attend to
            each other both ways (prefix-LM).
        global_tokens: keyword-only, optional boolean `(batch, seq_len)`
            tensor of the global positions, instead of the constructor's int.
        positions: keyword-only, with a `rotary_embedding`: integer
            `(batch, seq_len)` positions of self-attention's tokens, instead
            of `start_index` (each packed document's count from 0).

    Returns:
        `(batch, q_len, *output_shape)`, and with
        `return_attention_scores=True` also the weights
        `(batch, num_heads, q_len, k_len)` (for rank > 3 inputs,
        `(batch, <other axes>, num_heads, <query attention axes>,
        <key attention axes>)`, as Keras). With a `cache`, a tuple that ends
        with the updated cache: `(output, new_cache)`, or `(output, weights,
        new_cache)` with weights over the cache's `max_length` positions.

    Decoding (self-attention, rank-3 inputs): `cache = layer.init_cache(
    batch_size, max_length)` holds the keys and values of `num_key_value_heads`
    heads in the layer's compute dtype (the attention itself still runs in
    float32); how it is stored, written and read is the docstring of
    `keras_attention/layers/_kv_cache.py`. `output, cache = layer(x,
    cache=cache, cache_index=i)` writes the keys and values of `x` `(batch,
    q_len, dim)` at positions `i .. i + q_len - 1` and attends from them to the
    cache: query `t` is at position `i + t` and, with `causal`, sees cache
    positions `<= i + t` (bottom-right alignment); a call that is not causal
    takes one new position (which sees every filled position) and refuses
    more. A `rotary_embedding` rotates at those
    positions, ALiBi measures its distances from them and `sliding_window`
    counts from them, so the steps give the outputs of one call on the whole
    sequence; these reach `keras_attention.scaled_dot_product_attention` as its
    options (`query_start=i`), so a long prompt prefilled in one call runs in
    tiles, in linear memory, as without a cache. With a `(batch,)`
    `cache_index` each row has its own positions: right-pad prompts of
    different lengths, pass their lengths as `cache_index` for the first new
    token, and each prompt's positions count from its first token (such a call
    runs the full computation). With a cache the padding `mask` only zeroes
    padded queries' outputs; keys are masked by position alone. `cache_index +
    q_len` must not exceed `max_length` (a `ValueError` when the values are
    known; in a compiled loop, an assertion when a `tf.function` runs, and a
    NaN output where none can run: `jax.jit`, XLA), except in the ring that
    `init_cache` makes for a
    `sliding_window` shorter than `max_length`: memory follows the window, and
    decoding may go on past `max_length`; a ring must be written in order, each
    call starting where the previous one ended (`generate` moves the rows in
    step), and it returns no weights. Not supported with a cache: `value`,
    `key`, `attention_mask`, `start_index`, `segment_ids`, `positions`,
    `prefix_length`, `global_tokens` (a global query would see keys the
    cache does not hold yet); `chunk_size`, `softcap`, `sink_tokens` and the
    sinks apply as in one call on the whole sequence, but a ring holds
    neither a chunk's start nor the sink keys, so it refuses `chunk_size`
    and `sink_tokens`. A single eager call copies the
    cache: run the steps in one compiled loop (`keras.ops.while_loop`, as
    `keras_attention.generate` does) with the cache as a loop variable, which
    XLA and `jax.jit` update in place.

    Example:

    >>> model = keras.Sequential([keras.Input((None,), dtype="int32")])
    >>> model.add(keras.layers.Embedding(100, 32, mask_zero=True))
    >>> layer = keras_attention.MultiHeadAttention(num_heads=4, key_dim=8, causal=True)
    >>> model.add(layer)
    >>> tuple(model.output_shape)
    (None, None, 32)
    >>> tuple(layer.query_dense.kernel.shape)
    (32, 4, 8)
    >>> rotary = keras_attention.MultiHeadAttention(
    ...     num_heads=4, key_dim=8, causal=True,
    ...     rotary_embedding=keras_attention.RotaryEmbedding())
    >>> tuple(rotary(keras.random.normal((2, 5, 32)), start_index=7).shape)
    (2, 5, 32)

    References:
        Vaswani et al., "Attention Is All You Need", 2017.
        Qiu et al., "Gated Attention for Large Language Models", 2025.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape=None,
        attention_axes=None,
        sliding_window: int | None = None,
        flash_attention: bool | None = None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate: bool = False,
        seed: int | None = None,
        causal: bool = False,
        tile_size: int | None = None,
        num_key_value_heads: int | None = None,
        alignment: str = "top_left",
        rotary_embedding=None,
        alibi: bool = False,
        chunk_size: int | None = None,
        softcap: float | None = None,
        sink_tokens: int | None = None,
        global_tokens: int | None = None,
        use_sinks: bool = False,
        **kwargs,
    ):
        owner = type(self).__name__
        num_heads = checks.positive_int(num_heads, "num_heads", owner)
        num_key_value_heads = checks.positive_int(
            num_key_value_heads, "num_key_value_heads", owner, allow_none=True
        )
        if num_key_value_heads is not None and num_heads % num_key_value_heads:
            raise ValueError(
                f"{owner}: `num_key_value_heads` must divide `num_heads`. "
                f"Received: num_key_value_heads={num_key_value_heads}, "
                f"num_heads={num_heads}"
            )
        key_dim = checks.positive_int(key_dim, "key_dim", owner)
        rotary_embedding = _rotary(rotary_embedding, key_dim, owner)
        alibi = checks.boolean(alibi, "alibi", owner)
        use_sinks = checks.boolean(use_sinks, "use_sinks", owner)
        value_dim = checks.positive_int(value_dim, "value_dim", owner, allow_none=True)
        use_bias = checks.boolean(use_bias, "use_bias", owner)
        use_gate = checks.boolean(use_gate, "use_gate", owner)
        flash_attention = checks.boolean(
            flash_attention, "flash_attention", owner, allow_none=True
        )
        output_shape = _int_tuple(output_shape, "output_shape", owner, positive=True)
        attention_axes = _int_tuple(attention_axes, "attention_axes", owner)
        identifiers = {
            "kernel_initializer": (
                kernel_initializer,
                keras.initializers,
                "initializer",
            ),
            "bias_initializer": (bias_initializer, keras.initializers, "initializer"),
            "kernel_regularizer": (
                kernel_regularizer,
                keras.regularizers,
                "regularizer",
            ),
            "bias_regularizer": (bias_regularizer, keras.regularizers, "regularizer"),
            "activity_regularizer": (
                activity_regularizer,
                keras.regularizers,
                "regularizer",
            ),
            "kernel_constraint": (kernel_constraint, keras.constraints, "constraint"),
            "bias_constraint": (bias_constraint, keras.constraints, "constraint"),
        }
        resolved = {
            argument: checks.keras_identifier(module.get, value, argument, owner, kind)
            for argument, (value, module, kind) in identifiers.items()
        }
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
        if flash_attention and self.dropout > 0:
            raise ValueError(
                f"{owner}: `dropout` must be 0 with `flash_attention=True`, as in "
                f"Keras. Received: dropout={dropout}"
            )
        self.num_heads = num_heads
        self.num_key_value_heads = num_key_value_heads or num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim if value_dim is not None else key_dim
        self.use_bias = use_bias
        self.use_gate = use_gate
        self.flash_attention = flash_attention
        self._output_dims = output_shape
        self.attention_axes = attention_axes
        self.rotary_embedding = rotary_embedding
        self.alibi = alibi
        self._alibi_slopes = alibi_slopes(num_heads) if alibi else None
        self.use_sinks = use_sinks
        # Not `self.activity_regularizer`: the base layer would apply that to
        # the output. As in Keras, it applies to each projection's output.
        self._activity_regularizer = resolved.pop("activity_regularizer")
        for argument, value in resolved.items():
            setattr(self, argument, value)

    # Public names first: Keras' weight files address the sublayers as
    # `query_dense`, `key_dense`, ... (its own layer has these properties).
    @property
    def query_dense(self):
        return self._query_dense

    @property
    def key_dense(self):
        return self._key_dense

    @property
    def value_dense(self):
        return self._value_dense

    @property
    def output_dense(self):
        return self._output_dense

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        query_shape, value_shape, key_shape = self._check_shapes(
            query_shape, value_shape, key_shape
        )
        heads, shared = (self.num_heads,), (self.num_key_value_heads,)
        # Keras' order: query, key, gate, value, output.
        self._query_dense = self._dense("query", query_shape, heads + (self.key_dim,))
        self._key_dense = self._dense("key", key_shape, shared + (self.key_dim,))
        if self.use_gate:
            self._gate_dense = self._dense(
                "gate", query_shape, heads + (self.value_dim,), activation="sigmoid"
            )
        self._value_dense = self._dense(
            "value", value_shape, shared + (self.value_dim,)
        )
        out = self._output_dims or query_shape[-1:]
        heads_shape = query_shape[:-1] + heads + (self.value_dim,)
        self._output_dense = self._dense(
            "attention_output", heads_shape, out, contracted=2
        )
        if self.use_sinks:
            # One logit per head in every softmax's denominator (GPT-OSS).
            self.sinks = self.add_weight(
                name="sinks", shape=(self.num_heads,), initializer="zeros"
            )
        if self.rotary_embedding is not None and not self.rotary_embedding.built:
            # Built with the layer, as the projections are: `model.quantize`
            # refuses a model holding a layer that is not built.
            self.rotary_embedding.build(query_shape[:-1] + heads + (self.key_dim,))

    def _dense(self, name, input_shape, output_dims, contracted=1, activation=None):
        """An `EinsumDense` from `(batch, *free, *contracted)` to
        `(batch, *free, *output_dims)`, built, with Keras' equation."""
        letters = string.ascii_lowercase
        free = letters[: len(input_shape) - contracted]
        summed = letters[len(free) : len(input_shape)]
        outs = letters[len(input_shape) : len(input_shape) + len(output_dims)]
        dense = keras.layers.EinsumDense(
            f"{free}{summed},{summed}{outs}->{free}{outs}",
            output_shape=(None,) * (len(free) - 1) + tuple(output_dims),
            bias_axes=outs if self.use_bias else None,
            activation=activation,
            name=name,
            kernel_initializer=_clone(self.kernel_initializer),
            bias_initializer=_clone(self.bias_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self._activity_regularizer,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            dtype=sublayer_policy(self, name),
        )
        # The inputs may carry the padding mask; the projections keep the
        # positions, so passing it through is right (and Keras stays silent).
        dense.supports_masking = True
        dense.build(tuple(input_shape))
        return dense

    def _denses(self):
        names = ["_query_dense", "_key_dense", "_gate_dense", "_value_dense"]
        found = [getattr(self, name, None) for name in names + ["_output_dense"]]
        return [dense for dense in found if dense is not None]

    # The attention layout: (batch, heads, *other axes, flattened attention
    # axes, head_dim), from Keras' projected (batch, *axes, heads, head_dim).

    def _axes(self, rank):
        """`(other, attention)`: the input axes (batch excluded, features
        excluded) that are batch-like, and those attended over."""
        free = range(1, rank - 1)
        if self.attention_axes is None:
            attention = tuple(free)
        else:
            attention = tuple(sorted({a % rank for a in self.attention_axes}))
        return tuple(a for a in free if a not in attention), attention

    @property
    def _sink_logits(self):
        return self.sinks if self.use_sinks else None

    def _takes_positions(self):
        return self.rotary_embedding is not None

    def _project(self, query, key, value, starts, positions=None):
        query, key = self._query_dense(query), self._key_dense(key)
        if positions is not None:
            # Positions per row: each packed document's count from 0.
            positions = ops.cast(positions, "int32")
            query, key = (
                ops.cast(self.rotary_embedding(x, positions=positions), x.dtype)
                for x in (query, key)
            )
        elif starts is not None:
            # (batch, len, heads, key_dim), rotated at the positions from
            # each start.
            query, key = (
                # In the heads' dtype, whatever the rotary layer's policy.
                ops.cast(self.rotary_embedding(x, start_index=start), x.dtype)
                for x, start in zip((query, key), starts, strict=True)
            )
        return (
            self._to_heads(query),
            self._to_heads(key),
            self._to_heads(self._value_dense(value)),
        )

    # The key/value cache of decoding: self-attention of new positions to
    # every earlier one, one call per step.

    def init_cache(
        self, batch_size: int, max_length: int, *, segment_length: int = 512
    ):
        """An empty key/value cache for `call(..., cache=, cache_index=)`.

        Args:
            batch_size: the batch size of the calls.
            max_length: the number of positions to decode (prompt and
                generated tokens together).
            segment_length: the length of the cache's first segment (see
                below); a step reads the fewest segments that hold every
                filled position.

        Returns:
            The pair `(key_cache, value_cache)`, each a tuple of segments
            `(batch_size, num_key_value_heads, n, key_dim)` (and
            `value_dim`) of zeros in the layer's compute dtype that hold
            consecutive positions: `segment_length`, `segment_length`, then
            twice as many as all before, `max_length` in all; with a
            `sliding_window` no longer than `max_length`, one ring of
            `sliding_window` positions. How the cache is written and read:
            `keras_attention/layers/_kv_cache.py`. The layer need not be
            built.
        """
        return kv_cache.init(
            batch_size,
            max_length,
            heads=self.num_key_value_heads,
            key_dim=self.key_dim,
            value_dim=self.value_dim,
            dtype=self.compute_dtype,
            window=self._ring_window,
            owner=type(self).__name__,
            segment_length=segment_length,
        )

    @property
    def _ring_window(self):
        """How many positions a causal step's window reaches back, itself
        included (`left + 1`): the size of a ring cache."""
        return None if self._window is None else self._window[0] + 1

    def _cached_call(
        self,
        query,
        value,
        key,
        *,
        cache,
        cache_index,
        mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=None,
        start_index=None,
    ):
        owner, return_attention_scores, causal = self._call_options(
            return_attention_scores, use_causal_mask
        )
        for argument, given in (
            ("value", value),
            ("key", key),
            ("value_mask", value_mask),
            ("key_mask", key_mask),
            ("attention_mask", attention_mask),
            ("start_index", start_index),
        ):
            if given is not None:
                reason = (
                    "the positions follow `cache_index`"
                    if argument == "start_index"
                    else "the keys are the cache, masked by position"
                )
                raise ValueError(
                    f"{owner}: with a `cache`, the layer attends from `query` "
                    f"to itself and the cache, and takes no `{argument}` "
                    f"({reason}). Received: a `{argument}`"
                )
        parts = self._check_cache(query, cache, cache_index, mask)
        if not causal and query.shape[1] != 1:
            raise ValueError(
                f"{owner}: a cached call of several new positions must be "
                "causal, as decoding is (a prompt fed through the cache would "
                "otherwise attend to its own later tokens): build the layer "
                "with causal=True, or pass use_causal_mask=True. Received: "
                f"a call that is not causal with q_len={query.shape[1]}"
            )
        if self.global_tokens is not None:
            raise ValueError(
                f"{owner}: a cached call cannot honour `global_tokens`: a "
                "global query sees keys the cache does not hold yet. Received: "
                f"global_tokens={self.global_tokens}"
            )
        if parts.ring and (self.sink_tokens is not None or self.chunk_size):
            option = "sink_tokens" if self.sink_tokens is not None else "chunk_size"
            raise ValueError(
                f"{owner}: a ring cache (`sliding_window`={self.sliding_window}"
                f", a cache of {parts.max_length} >= the window) keeps only the "
                f"window's positions, and `{option}` needs others: use a cache "
                "shorter than the window. Received: "
                f"{option}={getattr(self, option)}"
            )
        if parts.ring and return_attention_scores:
            raise ValueError(
                f"{owner}: a ring cache (`sliding_window`={self.sliding_window}"
                f", a cache of {parts.max_length} >= sliding_window positions) "
                "keeps no weights by position: call with return_attention_scores="
                "False, or use a cache shorter than the window. Received: "
                "return_attention_scores=True"
            )
        q_len = ops.shape(query)[1]
        # The positions of the new steps, (batch or 1, q_len): they count
        # from each row's `cache_index`.
        positions = ops.expand_dims(parts.index, -1) + ops.arange(q_len, dtype="int32")
        query_heads = self._query_dense(query)
        new_key = self._key_dense(query)
        if self.rotary_embedding is not None:
            rotary_positions = ops.broadcast_to(positions, (ops.shape(query)[0], q_len))
            query_heads, new_key = (
                ops.cast(self.rotary_embedding(x, positions=rotary_positions), x.dtype)
                for x in (query_heads, new_key)
            )
        # (batch, heads, q_len, dim)
        query_heads, new_key, new_value = (
            ops.transpose(x, (0, 2, 1, 3))
            for x in (query_heads, new_key, self._value_dense(query))
        )

        def attend(keys, values, query_start, key_mask):
            return scaled_dot_product_attention(
                query_heads,
                keys,
                values,
                key_mask,
                alibi_slopes=self._alibi_slopes,
                scale=self.scale,
                causal=causal,
                sliding_window=self._window,
                chunk_size=self.chunk_size,
                softcap=self.softcap,
                sink_tokens=self.sink_tokens,
                sink_logits=self._sink_logits,
                query_start=query_start,
                dropout=self.dropout,
                seed=self.seed_generator,
                training=bool(training),
                return_weights=return_attention_scores,
                tile_size=self.tile_size,
            )

        result, new_cache = kv_cache.step(
            parts,
            new_key,
            new_value,
            attend,
            causal=causal,
            with_weights=return_attention_scores,
            whole=bool(training) and self.dropout > 0,
        )
        context, weights = result if return_attention_scores else (result, None)
        if mask is not None:
            # A padded query gets a zero context, as without a cache.
            query_mask = ops.reshape(ops.not_equal(mask, 0), (-1, 1, q_len, 1))
            context = ops.where(query_mask, context, ops.zeros_like(context))
        output = self._output(context, query)
        if return_attention_scores:
            return output, weights, new_cache
        return output, new_cache

    def _check_cache(self, query, cache, cache_index, mask):
        """The checked cache (`kv_cache.Parts`) of a cached call."""
        owner = type(self).__name__
        checks.floating(query, "query", owner)
        query_shape = tuple(query.shape)
        if len(query_shape) != 3:
            raise ValueError(
                f"{owner}: a `cache` needs `query` of rank 3, (batch, q_len, "
                f"dim). Received: query.shape={query_shape}"
            )
        self._check_shapes(query_shape, query_shape, query_shape)
        checks.mask(
            mask,
            "mask",
            owner,
            "(batch, q_len)",
            query_shape[:2],
            "non-zero at real positions and zero at padding",
        )
        return kv_cache.check(
            owner,
            cache,
            cache_index,
            query_shape,
            heads=self.num_key_value_heads,
            key_dim=self.key_dim,
            value_dim=self.value_dim,
            dtype=self.compute_dtype,
            window=self._ring_window,
        )

    def _cached_output_spec(self, query, value, key, cache, cache_index, scores):
        parts = self._check_cache(query, cache, cache_index, None)
        shape = tuple(query.shape)
        output = keras.KerasTensor(
            self._output_shape(shape, shape, shape), dtype=self.compute_dtype
        )
        keys, values = (
            tuple(keras.KerasTensor(x.shape, dtype=self.compute_dtype) for x in part)
            for part in (parts.keys, parts.values)
        )
        new_cache = parts.returned(keys, values)
        if not scores:
            return output, new_cache
        weights = keras.KerasTensor(
            (shape[0], self.num_heads, shape[1], parts.max_length),
            dtype=self.compute_dtype,
        )
        return output, weights, new_cache

    def _start_indices(self, start_index, self_attention):
        owner = type(self).__name__
        if self.rotary_embedding is None:
            return super()._start_indices(start_index, self_attention)
        if self_attention:
            starts = (0, 0) if start_index is None else (start_index, start_index)
        elif isinstance(start_index, (tuple, list)) and len(start_index) == 2:
            starts = tuple(start_index)
        else:
            raise ValueError(
                f"{owner}: cross-attention with a `rotary_embedding` needs the "
                "positions of the query and of the key: pass "
                "start_index=(query_start, key_start). "
                f"Received: start_index={start_index!r}"
            )
        for start in starts:
            static_start_index(start, owner)
        return tuple(ops.cast(start, "int32") for start in starts)

    def _to_heads(self, x):
        rank = len(x.shape) - 1  # the input's rank
        other, attention = self._axes(rank)
        # (batch, heads, *other, *attention, head_dim)
        x = ops.transpose(x, (0, rank - 1, *other, *attention, rank))
        if len(attention) == 1:
            return x
        shape = ops.shape(x)
        return ops.reshape(x, (*shape[: 2 + len(other)], -1, shape[-1]))

    def _output(self, context, query):
        rank = len(query.shape)
        other, attention = self._axes(rank)
        if len(attention) > 1:
            shape, sizes = ops.shape(context), ops.shape(query)
            lead = shape[: 2 + len(other)]
            context = ops.reshape(
                context, (*lead, *(sizes[a] for a in attention), shape[-1])
            )
        # Back to (batch, *axes, heads, head_dim): the inverse permutation.
        order = (0, rank - 1, *other, *attention, rank)
        context = ops.transpose(context, tuple(order.index(a) for a in range(rank + 1)))
        if self.use_gate:
            context = context * self._gate_dense(query)
        return self._output_dense(context)

    def _scores(self, weights, query, key):
        rank = len(query.shape)
        other, attention = self._axes(rank)
        if rank == 3:
            return weights  # (batch, heads, q_len, k_len), as Keras
        if len(attention) > 1:
            lead = ops.shape(weights)[: 2 + len(other)]
            q_sizes, k_sizes = ops.shape(query), ops.shape(key)
            weights = ops.reshape(
                weights,
                (
                    *lead,
                    *(q_sizes[a] for a in attention),
                    *(k_sizes[a] for a in attention),
                ),
            )
        # (batch, *other, heads, *query attention axes, *key attention axes)
        n = len(other)
        order = (0, *range(2, 2 + n), 1, *range(2 + n, len(weights.shape)))
        return ops.transpose(weights, order)

    def _layout_mask(self, mask, query, key):
        if mask is None:
            return None
        rank = len(query.shape)
        other, attention = self._axes(rank)
        n = len(attention)
        # Keras' rule: axes of size 1 go in before the query attention axes
        # until the mask has the rank of its scores, (batch, *other, heads,
        # *query attention axes, *key attention axes).
        while len(mask.shape) < 2 + len(other) + 2 * n:
            mask = ops.expand_dims(mask, -2 * n - 1)
        heads = 1 + len(other)
        order = (0, heads, *range(1, heads), *range(heads + 1, len(mask.shape)))
        mask = ops.transpose(mask, order)  # (batch, heads, *other, ...)
        if n == 1:
            return mask
        lead = ops.shape(mask)[: 2 + len(other)]
        q_sizes, k_sizes = ops.shape(query), ops.shape(key)
        sizes = (*(q_sizes[a] for a in attention), *(k_sizes[a] for a in attention))
        mask = ops.broadcast_to(mask, (*lead, *sizes))
        return ops.reshape(mask, (*lead, math.prod(sizes[:n]), math.prod(sizes[n:])))

    def _check_attention_mask(self, attention_mask, query_shape, key_shape):
        if attention_mask is not None:
            checks.tensor(attention_mask, "attention_mask", type(self).__name__)
        if len(query_shape) == 3:
            if attention_mask is not None and len(attention_mask.shape) == 4:
                checks.mask(
                    attention_mask,
                    "attention_mask",
                    type(self).__name__,
                    "(batch, num_heads, q_len, k_len)",
                    (query_shape[0], self.num_heads, query_shape[1], key_shape[1]),
                    "non-zero where a query may attend to a key",
                )
                return
            super()._check_attention_mask(attention_mask, query_shape, key_shape)
            return
        if attention_mask is None:
            return
        other, attention = self._axes(len(query_shape))
        scores_rank = 2 + len(other) + 2 * len(attention)
        if not 2 <= len(attention_mask.shape) <= scores_rank:
            raise ValueError(
                f"{type(self).__name__}: `attention_mask` must broadcast to "
                "(batch, <other axes>, <query attention axes>, <key attention "
                f"axes>). Received: attention_mask.shape={attention_mask.shape}"
            )
        checks.mask(
            attention_mask,
            "attention_mask",
            type(self).__name__,
            "(..)",
            tuple(attention_mask.shape),
            "non-zero where a query may attend to a key",
        )

    def _check_inputs(
        self, query, value, key, attention_mask, mask, query_mask, value_mask, key_mask
    ):
        if len(query.shape) > 3:
            for argument, padding in (
                ("mask", mask),
                ("query_mask", query_mask),
                ("value_mask", value_mask),
                ("key_mask", key_mask),
            ):
                if padding is not None:
                    raise ValueError(
                        f"{type(self).__name__}: padding masks need inputs of "
                        f"rank 3; use `attention_mask` for rank "
                        f"{len(query.shape)}. Received: {argument} with "
                        f"query.shape={tuple(query.shape)}"
                    )
        return super()._check_inputs(
            query, value, key, attention_mask, mask, query_mask, value_mask, key_mask
        )

    def _check_shapes(self, query_shape, value_shape, key_shape):
        owner = type(self).__name__
        shapes = {
            "query": tuple(query_shape),
            "value": tuple(value_shape),
            "key": tuple(key_shape),
        }
        for argument, shape in shapes.items():
            if len(shape) < 3 or shape[-1] is None:
                raise ValueError(
                    f"{owner}: `{argument}` must have rank >= 3, (batch, ..., "
                    f"seq_len, dim), with a known last dimension. "
                    f"Received: {argument}.shape={shape}"
                )
        query_shape, value_shape, key_shape = shapes.values()
        if not len(query_shape) == len(value_shape) == len(key_shape):
            raise ValueError(
                f"{owner}: `query`, `value` and `key` must have the same rank. "
                f"Received: query.shape={query_shape}, value.shape={value_shape}, "
                f"key.shape={key_shape}"
            )
        rank = len(query_shape)
        if rank != 3 and (self.rotary_embedding is not None or self.alibi):
            option = "rotary_embedding" if self.rotary_embedding else "alibi"
            raise ValueError(
                f"{owner}: `{option}` needs inputs of rank 3, (batch, seq_len, "
                f"dim). Received: query.shape={query_shape}"
            )
        if self.attention_axes is not None:
            for axis in self.attention_axes:
                if not 1 <= axis % rank <= rank - 2 or not -rank <= axis < rank:
                    raise ValueError(
                        f"{owner}: `attention_axes` must name axes between the "
                        f"batch and the features of inputs of rank {rank}. "
                        f"Received: attention_axes={self.attention_axes}"
                    )
        if rank == 3:
            super()._check_shapes(query_shape, value_shape, key_shape)
        else:
            other, _ = self._axes(rank)
            for a in (0, *other):
                sizes = {query_shape[a], value_shape[a], key_shape[a]} - {None}
                if len(sizes) > 1:
                    raise ValueError(
                        f"{owner}: the batch and non-attention axes of `query`, "
                        f"`value` and `key` must be equal. Received: "
                        f"query.shape={query_shape}, value.shape={value_shape}, "
                        f"key.shape={key_shape}"
                    )
            if not all(
                v is None or k is None or v == k
                for v, k in zip(value_shape[1:-1], key_shape[1:-1], strict=True)
            ):
                raise ValueError(
                    f"{owner}: all dimensions of `value` and `key` but the last "
                    f"must be equal. Received: value.shape={value_shape}, "
                    f"key.shape={key_shape}"
                )
        if self.built:
            for argument, shape, dense in (
                ("query", query_shape, self._query_dense),
                ("value", value_shape, self._value_dense),
                ("key", key_shape, self._key_dense),
            ):
                built = dense.kernel.shape[0]
                if shape[-1] != built:
                    raise ValueError(
                        f"{owner}: the layer was built for `{argument}` of last "
                        f"dimension {built}. Received: {argument}.shape={shape}"
                    )
        return query_shape, value_shape, key_shape

    def _output_shape(self, query_shape, value_shape, key_shape):
        return query_shape[:-1] + (self._output_dims or query_shape[-1:])

    def _weights_shape(self, query_shape, value_shape, key_shape):
        other, attention = self._axes(len(query_shape))
        if len(query_shape) == 3:
            return (query_shape[0], self.num_heads, query_shape[1], key_shape[1])
        return (
            query_shape[0],
            *(query_shape[a] for a in other),
            self.num_heads,
            *(query_shape[a] for a in attention),
            *(key_shape[a] for a in attention),
        )

    def load_own_variables(self, store):
        """Loads the sinks (`use_sinks`), the layer's only own weight; the
        others live in the sublayers, except in a file saved by
        keras_attention 0.1.0, which kept the eight weights (four without
        biases) on the layer itself in Keras' order: those go to the
        sublayers, which then accept their empty stores."""
        if not len(store.keys()):
            return
        if self.use_sinks and len(store.keys()) == 1:
            self.sinks.assign(store["0"])
            return
        variables = [
            v
            for dense in self._denses()
            for v in (dense.kernel, dense.bias)
            if v is not None
        ]
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"{type(self).__name__} '{self.name}': expected {len(variables)} "
                f"variables in the saved file, found {len(store.keys())}."
            )
        for index, variable in enumerate(variables):
            variable.assign(store[str(index)])
        for dense in self._denses():
            _skip_next_load(dense)

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            num_heads=self.num_heads,
            num_key_value_heads=self.num_key_value_heads,
            key_dim=self.key_dim,
            value_dim=self.value_dim,
            use_bias=self.use_bias,
            use_gate=self.use_gate,
            output_shape=self._output_dims,
            attention_axes=self.attention_axes,
            kernel_initializer=serialize(self.kernel_initializer),
            bias_initializer=serialize(self.bias_initializer),
            kernel_regularizer=serialize(self.kernel_regularizer),
            bias_regularizer=serialize(self.bias_regularizer),
            activity_regularizer=serialize(self._activity_regularizer),
            kernel_constraint=serialize(self.kernel_constraint),
            bias_constraint=serialize(self.bias_constraint),
            rotary_embedding=serialize(self.rotary_embedding),
            alibi=self.alibi,
        )
        if self.use_sinks:
            config["use_sinks"] = True
        if self.flash_attention is not None:
            config["flash_attention"] = self.flash_attention
        # Quantized sublayers' policies by path, so that the reloaded layer
        # builds them the same way (Keras' own layer does not save them).
        return save_sublayer_policies(config, self, self._denses())


def _rotary(rotary_embedding, key_dim, owner):
    """A `RotaryEmbedding` (or None) that fits heads of `key_dim`, from an
    instance or its serialized config."""
    rotary_embedding = as_rotary_embedding(rotary_embedding, owner)
    if rotary_embedding is None:
        return None
    try:
        rotary_embedding.rotary_dim_for(key_dim)
    except ValueError as error:
        raise ValueError(
            f"{owner}: `rotary_embedding` does not fit heads of "
            f"`key_dim`={key_dim}: {error}"
        ) from error
    return rotary_embedding


def _skip_next_load(layer):
    """Makes `layer` accept its next (empty) store once. An instance attribute
    rather than a subclass: Keras quantizes only exact `EinsumDense`s."""

    def load_own_variables(store):
        del layer.load_own_variables  # back to the class' method
        if len(store.keys()):
            layer.load_own_variables(store)

    layer.load_own_variables = load_own_variables


def _clone(initializer):
    # A seeded initializer instance would give every kernel the same values.
    return initializer.__class__.from_config(initializer.get_config())


def _int_tuple(value, argument, owner, positive=False):
    """None, or an int or a sequence of ints (NumPy ones too) as a tuple."""
    if value is None:
        return None
    items = (value,) if checks.is_integer(value) else value
    if (
        not isinstance(items, (tuple, list))
        or not items
        or not all(checks.is_integer(n) and (n > 0 or not positive) for n in items)
    ):
        kind = "positive integer" if positive else "integer"
        raise ValueError(
            f"{owner}: `{argument}` must be None, a {kind} or a non-empty tuple "
            f"of {kind}s. Received: {argument}={value!r}"
        )
    return tuple(int(n) for n in items)

"""What `ScaledDotProductAttention` and `MultiHeadAttention` share.

Both layers take the same call arguments, in Keras' `(query, value, key)`
order, merge Keras' padding masks and the explicit `attention_mask` into one
boolean mask, and check the input shapes once. A call reads top to bottom:
the subclass' projection (`_project`, in `(query, key, value)` order), one
call of `keras_attention.scaled_dot_product_attention` with the layer's
options, the subclass' output step (`_output`).
"""

import keras
from keras import ops

from keras_attention import _attention_pattern as pattern
from keras_attention import _checks as checks
from keras_attention.ops import check_alignment, scaled_dot_product_attention


class AttentionLayer(keras.layers.Layer):
    """Base of the attention layers (private; not exported).

    Subclasses may override `_project` and `_output` (identities here), must
    implement `_output_shape` and `_weights_shape`, and may extend
    `_check_shapes`.
    """

    def __init__(
        self,
        causal: bool = False,
        dropout: float = 0.0,
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
        owner = type(self).__name__
        alignment = check_alignment(alignment, owner)
        causal = checks.boolean(causal, "causal", owner)
        dropout = checks.dropout(dropout, owner)
        window = checks.window(sliding_window, "sliding_window", owner)
        chunk_size = checks.positive_int(
            chunk_size, "chunk_size", owner, allow_none=True
        )
        if softcap is not None:
            softcap = float(checks.positive_number(softcap, "softcap", owner))
        sink_tokens = checks.count(sink_tokens, "sink_tokens", owner)
        global_tokens = checks.count(global_tokens, "global_tokens", owner)
        tile_size = checks.tile_size(tile_size, owner)
        seed = checks.layer_seed(seed, owner)
        super().__init__(**kwargs)
        self.causal = causal
        self.dropout = dropout
        self.seed = seed
        # As given: an int `w`, or the pair (left, right) when the sides
        # differ; `_window` is always the pair.
        self.sliding_window = checks.window_config(window)
        if isinstance(self.sliding_window, list):
            self.sliding_window = tuple(self.sliding_window)
        self._window = window
        self.chunk_size = chunk_size
        self.softcap = softcap
        self.sink_tokens = sink_tokens
        self.global_tokens = global_tokens
        self.tile_size = tile_size
        self.alignment = alignment
        self.seed_generator = keras.random.SeedGenerator(seed) if dropout > 0 else None
        self.supports_masking = True

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        self._check_shapes(query_shape, value_shape, key_shape)

    def __call__(self, *args, **kwargs):
        # Keras converts NumPy inputs to tensors before `call` and fails on
        # strings with a backend's error: check them first.
        for index, argument in enumerate(("query", "value", "key")):
            value = args[index] if index < len(args) else kwargs.get(argument)
            checks.not_strings(value, argument, type(self).__name__)
        return super().__call__(*args, **kwargs)

    def _call_options(self, return_attention_scores, use_causal_mask):
        """`(owner, return_attention_scores, causal)` of a call, checked:
        `use_causal_mask=None` means the constructor's `causal`, True or
        False overrides it; scores are refused with `flash_attention`, as in
        Keras."""
        owner = type(self).__name__
        return_attention_scores = checks.boolean(
            return_attention_scores, "return_attention_scores", owner
        )
        causal = (
            self.causal
            if use_causal_mask is None
            else checks.boolean(use_causal_mask, "use_causal_mask", owner)
        )
        if self.flash_attention and return_attention_scores:
            raise ValueError(
                f"{owner}: `return_attention_scores=True` is not supported with "
                "`flash_attention=True`, as in Keras. Received: "
                "return_attention_scores=True"
            )
        return owner, return_attention_scores, causal

    def call(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=None,
        mask=None,
        *,
        start_index=None,
        cache=None,
        cache_index=None,
        segment_ids=None,
        positions=None,
        prefix_length=None,
        global_tokens=None,
    ):
        rows = per_row(segment_ids, positions, prefix_length, global_tokens)
        if cache is not None or cache_index is not None:
            self._refuse_in_cache(rows)
            return self._cached_call(
                query,
                value,
                key,
                cache=cache,
                cache_index=cache_index,
                mask=query_mask if query_mask is not None else mask,
                value_mask=value_mask,
                key_mask=key_mask,
                attention_mask=attention_mask,
                return_attention_scores=return_attention_scores,
                training=training,
                use_causal_mask=use_causal_mask,
                start_index=start_index,
            )
        owner, return_attention_scores, causal = self._call_options(
            return_attention_scores, use_causal_mask
        )
        self_attention = value is None
        value = query if value is None else value
        key = value if key is None else key
        self._check_inputs(
            query, value, key, attention_mask, mask, query_mask, value_mask, key_mask
        )
        rows = self._check_rows(rows, query, self_attention, start_index, causal)
        starts = self._start_indices(start_index, self_attention)
        # Keras hands the padding mask to `mask` when the layer is called on
        # one tensor, and to `query_mask`/`value_mask`/`key_mask` otherwise.
        if query_mask is None:
            query_mask = mask
        if self_attention and value_mask is None:
            value_mask = query_mask
        attention_mask, query_mask = _merge_masks(
            attention_mask, query_mask, value_mask, key_mask, return_attention_scores
        )

        projected = self._project(query, key, value, starts, positions)
        result = scaled_dot_product_attention(
            *projected,
            self._layout_mask(attention_mask, query, key),
            alibi_slopes=self._alibi_slopes,
            scale=self.scale,
            causal=causal,
            sliding_window=self._window,
            alignment=self.alignment,
            **self._pattern_options(rows),
            dropout=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_weights=return_attention_scores,
            tile_size=self.tile_size,
        )
        context, weights = result if return_attention_scores else (result, None)
        if query_mask is not None:
            # A padded query gets a zero context.
            query_mask = self._layout_mask(query_mask, query, key)
            context = ops.where(query_mask, context, ops.zeros_like(context))
        output = self._output(context, query)
        if not return_attention_scores:
            return output
        return output, self._scores(weights, query, key)

    # What a subclass overrides: the projections before the attention and
    # after it (identities here), and the shapes of the results.
    scale = None  # the logits' scale; None means 1 / sqrt(depth)
    flash_attention = None  # True refuses return_attention_scores, as Keras
    _alibi_slopes = None  # ALiBi slopes for `scaled_dot_product_attention`

    def _project(self, query, key, value, starts, positions=None):
        """`(query, key, value)` as the attention takes them: `(batch, ...,
        len, depth)`, any axes (heads) between the batch and the length.
        `starts`: the first positions of the query and the key for the
        rotary embedding, or None without one; `positions`: the rotary
        embedding's positions per row instead (self-attention), or None."""
        return query, key, value

    _sink_logits = None  # per-head sink logits (`MultiHeadAttention`)

    def _pattern_options(self, rows):
        """The pattern options of `scaled_dot_product_attention` from the
        constructor and the call's checked per-row tensors."""
        global_tokens = rows["global_tokens"]
        return dict(
            chunk_size=self.chunk_size,
            softcap=self.softcap,
            sink_tokens=self.sink_tokens,
            sink_logits=self._sink_logits,
            global_tokens=self.global_tokens
            if global_tokens is None
            else global_tokens,
            segment_ids=rows["segment_ids"],
            prefix_length=rows["prefix_length"],
        )

    def _check_rows(self, rows, query, self_attention, start_index, causal):
        """The call's per-row tensors (`segment_ids`, `positions`,
        `prefix_length`, `global_tokens`), checked where the layer can say
        more than `scaled_dot_product_attention` would: they describe the
        positions of rank-3 inputs, and `positions` feed a rotary
        embedding."""
        owner = type(self).__name__
        given = [name for name, value in rows.items() if value is not None]
        if given and len(query.shape) != 3:
            raise ValueError(
                f"{owner}: `{given[0]}` describes the positions of inputs of "
                f"rank 3, (batch, seq_len, dim). Received: {given[0]} with "
                f"query.shape={tuple(query.shape)}"
            )
        if rows["prefix_length"] is not None and not causal:
            raise ValueError(
                f"{owner}: `prefix_length` makes the first positions of a "
                "causal row bidirectional: build the layer with causal=True "
                "or call it with use_causal_mask=True. Received: "
                "prefix_length with a call that is not causal"
            )
        positions = rows["positions"]
        if positions is not None:
            if not self._takes_positions():
                raise ValueError(
                    f"{owner}: `positions` are the positions of a "
                    "`rotary_embedding`, and this layer has none. Received: "
                    "positions"
                )
            if not self_attention or start_index is not None:
                raise ValueError(
                    f"{owner}: `positions` give the positions of the query and "
                    "key of self-attention, instead of `start_index`: call the "
                    "layer on one tensor, without `start_index`. Received: "
                    "positions"
                )
            checks.mask(
                positions,
                "positions",
                owner,
                "(batch, seq_len)",
                tuple(query.shape[:2]),
                "the position of each token in its document",
            )
        return rows

    def _takes_positions(self):
        return False

    def _refuse_in_cache(self, rows):
        for name, value in rows.items():
            if value is not None:
                raise ValueError(
                    f"{type(self).__name__}: a cached call takes no `{name}`: "
                    "the cache holds one sequence per row, its positions given "
                    f"by `cache_index`. Received: {name}"
                )

    def _cached_call(self, query, value, key, *, cache, cache_index, **kwargs):
        """The call with a key/value cache (`MultiHeadAttention` has one)."""
        raise ValueError(
            f"{type(self).__name__}: `cache` and `cache_index` need the "
            "projections of `MultiHeadAttention`; this layer keeps no cache. "
            f"Received: cache_index={cache_index!r}"
        )

    def _cached_output_spec(self, query, value, key, cache, cache_index, scores):
        return self._cached_call(
            query, value, key, cache=cache, cache_index=cache_index
        )

    def _start_indices(self, start_index, self_attention):
        """The first positions `(query, key)` for `_project`, from the
        `start_index` call argument: None here, where nothing depends on
        positions (a layer with a rotary embedding overrides this)."""
        if start_index is not None:
            raise ValueError(
                f"{type(self).__name__}: `start_index` gives the positions of a "
                "`rotary_embedding`, and this layer has none. "
                f"Received: start_index={start_index!r}"
            )
        return None

    def _layout_mask(self, mask, query, key):
        """A merged mask (`(batch, q_len or 1, k_len)`, or None) laid out for
        the projected tensors; here they are the inputs, so as it is."""
        return mask

    def _output(self, context, query):
        """The layer's output from the context `(batch, ..., q_len, depth)`."""
        return context

    def _scores(self, weights, query, key):
        """The attention scores returned to the user, from the weights."""
        return weights

    def _check_inputs(
        self, query, value, key, attention_mask, mask, query_mask, value_mask, key_mask
    ):
        """Raises unless the call's tensors and masks fit together. Returns
        the shapes of `query`, `value` and `key` as tuples."""
        owner = type(self).__name__
        for argument, x in (("query", query), ("value", value), ("key", key)):
            checks.floating(x, argument, owner)
        shapes = self._check_shapes(query.shape, value.shape, key.shape)
        query_shape, value_shape, key_shape = shapes
        self._check_attention_mask(attention_mask, query_shape, key_shape)
        padding = "non-zero at real positions and zero at padding"
        for argument, padding_mask, axes, shape in (
            ("mask", mask, "(batch, q_len)", query_shape),
            ("query_mask", query_mask, "(batch, q_len)", query_shape),
            ("value_mask", value_mask, "(batch, k_len)", value_shape),
            ("key_mask", key_mask, "(batch, k_len)", key_shape),
        ):
            checks.mask(padding_mask, argument, owner, axes, shape[:2], padding)
        return shapes

    def _check_attention_mask(self, attention_mask, query_shape, key_shape):
        """`(q_len, k_len)` or `(batch, q_len, k_len)`, like Keras."""
        if attention_mask is not None:
            checks.tensor(attention_mask, "attention_mask", type(self).__name__)
        if attention_mask is not None and len(attention_mask.shape) == 2:
            axes, expected = "(q_len, k_len)", (query_shape[1], key_shape[1])
        else:
            axes = "(batch, q_len, k_len)"
            expected = (query_shape[0], query_shape[1], key_shape[1])
        checks.mask(
            attention_mask,
            "attention_mask",
            type(self).__name__,
            axes,
            expected,
            "non-zero where a query may attend to a key",
        )

    def _check_shapes(self, query_shape, value_shape, key_shape):
        """Raises unless the shapes fit together. Returns them as tuples."""
        owner = type(self).__name__
        shapes = {
            "query": tuple(query_shape),
            "value": tuple(value_shape),
            "key": tuple(key_shape),
        }
        for argument, shape in shapes.items():
            if len(shape) != 3:
                raise ValueError(
                    f"{owner}: `{argument}` must have rank 3, (batch, seq_len, "
                    f"dim). Received: {argument}.shape={shape}"
                )
        query_shape, value_shape, key_shape = shapes.values()
        batches = {s[0] for s in shapes.values()} - {None}
        if len(batches) > 1:
            raise ValueError(
                f"{owner}: `query`, `value` and `key` must have the same batch "
                f"size. Received: query.shape={query_shape}, "
                f"value.shape={value_shape}, key.shape={key_shape}"
            )
        if (
            None not in (value_shape[1], key_shape[1])
            and value_shape[1] != key_shape[1]
        ):
            raise ValueError(
                f"{owner}: `key` and `value` must have the same sequence "
                f"length. Received: value.shape={value_shape}, "
                f"key.shape={key_shape}"
            )
        return query_shape, value_shape, key_shape

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        shapes = self._check_shapes(query_shape, value_shape, key_shape)
        return self._output_shape(*shapes)

    def compute_output_spec(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=None,
        mask=None,
        *,
        start_index=None,
        cache=None,
        cache_index=None,
        segment_ids=None,
        positions=None,
        prefix_length=None,
        global_tokens=None,
    ):
        rows = per_row(segment_ids, positions, prefix_length, global_tokens)
        if cache is not None or cache_index is not None:
            self._refuse_in_cache(rows)
            return self._cached_output_spec(
                query, value, key, cache, cache_index, return_attention_scores
            )
        causal = self.causal if use_causal_mask is None else use_causal_mask
        self._check_rows(rows, query, value is None, start_index, causal)
        self._start_indices(start_index, value is None)
        value = query if value is None else value
        key = value if key is None else key
        shapes = self._check_inputs(
            query, value, key, attention_mask, mask, query_mask, value_mask, key_mask
        )
        output = keras.KerasTensor(
            self._output_shape(*shapes), dtype=self.compute_dtype
        )
        if not return_attention_scores:
            return output
        weights = keras.KerasTensor(
            self._weights_shape(*shapes), dtype=self.compute_dtype
        )
        return output, weights

    def get_config(self):
        config = super().get_config()
        config.update(
            causal=self.causal,
            dropout=self.dropout,
            seed=self.seed,
            sliding_window=checks.window_config(self._window),
            tile_size=self.tile_size,
            alignment=self.alignment,
        )
        # Saved only when set, so that configs without them load in earlier
        # versions of the package (and in Keras, for `MultiHeadAttention`).
        for name in ("chunk_size", "softcap", "sink_tokens", "global_tokens"):
            if getattr(self, name) is not None:
                config[name] = getattr(self, name)
        return config


def per_row(segment_ids, positions, prefix_length, global_tokens):
    """The per-row call arguments of the attention layers, by name (None
    where not given): what `TransformerBlock` passes on, and what a cached
    call refuses."""
    return {
        "segment_ids": segment_ids,
        "positions": positions,
        "prefix_length": prefix_length,
        "global_tokens": global_tokens,
    }


def _merge_masks(attention_mask, query_mask, value_mask, key_mask, full):
    """One boolean mask `(batch, [heads,] q_len or 1, k_len)` and the query's.

    Returns `(mask, query_mask)`; each may be None. A `(q_len, k_len)`
    `attention_mask` gets a batch axis; a per-head one `(batch, heads, q_len,
    k_len)` makes the padding masks get a heads axis. A padded key is never
    attended to: `(batch, 1, k_len)` keeps the mask linear in the length. A
    padded query gets no context; it is folded into the mask only when that
    is `(..., q_len, k_len)` anyway (an `attention_mask`, or when the weights
    are returned, `full`), and otherwise returned as `(batch, [1,] q_len, 1)`
    for the caller to zero the context rows, which is the same and stays
    linear.
    """
    attention_mask = pattern.boolean(attention_mask)
    rank = 3
    if attention_mask is not None:
        if len(attention_mask.shape) == 2:
            attention_mask = ops.expand_dims(attention_mask, 0)
        rank = len(attention_mask.shape)
    paddings = [
        None if m is None else _with_axes(ops.expand_dims(pattern.boolean(m), -2), rank)
        for m in (value_mask, key_mask)
    ]
    merged = pattern.combine(attention_mask, *paddings)
    if query_mask is not None:
        query_mask = _with_axes(ops.expand_dims(pattern.boolean(query_mask), -1), rank)
        if attention_mask is not None or full:
            merged = pattern.combine(merged, query_mask)
            query_mask = None
    return merged, query_mask


def _with_axes(mask, rank):
    """`mask` `(batch, ..., rows, cols)` with axes of size 1 after the batch,
    up to `rank`."""
    for _ in range(rank - len(mask.shape)):
        mask = ops.expand_dims(mask, 1)
    return mask

import keras

from keras_attention import _checks as checks
from keras_attention.layers.learned_position_embedding import (
    LearnedPositionEmbedding,
)
from keras_attention.layers.rotary_embedding import RotaryEmbedding
from keras_attention.layers.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
)
from keras_attention.layers.transformer_block import TransformerBlock

ENCODINGS = ("sinusoidal", "learned", "rotary", "alibi", None)
# Hugging Face's names of a layer's attention (`config.layer_types`).
LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")
_NAME = "build_toy_model"


def build_toy_model(
    vocab_size: int,
    max_length: int,
    d_model: int = 64,
    num_heads: int = 4,
    num_layers: int = 2,
    encoding: str | None = "sinusoidal",
    dropout: float = 0.0,
    tile_size: int | None = None,
    causal: bool = False,
    *,
    packed: bool = False,
    layer_types=None,
    sliding_window=None,
    chunk_size: int | None = None,
):
    """A small Transformer encoder for per-token prediction, built with `model.add`.

    `Embedding(mask_zero=True)` -> position encoding -> `num_layers`
    `TransformerBlock`s -> `LayerNormalization` -> per-token
    `Dense(vocab_size)` logits, always in float32 (also under a mixed
    precision policy). Token 0 is padding: its mask flows through
    every layer, so padded positions are never attended to and do not count
    in the loss.

    The model comes **compiled**, with Adam (learning rate 3e-3) and
    `SparseCategoricalCrossentropy(from_logits=True)`, ready for `fit`;
    compile it again to change either. It saves with `model.save("x.keras")`
    and loads with `keras.saving.load_model(path, safe_mode=True)` once
    `keras_attention` is imported.

    Args:
        vocab_size: number of tokens, padding (0) included.
        max_length: the longest sequence; sizes the learned position table
            (longer inputs then raise an error).
        d_model: model width; divisible by `num_heads`.
        num_heads: attention heads per block.
        num_layers: number of `TransformerBlock`s.
        encoding: `"sinusoidal"` (`SinusoidalPositionEncoding`), `"learned"`
            (`LearnedPositionEmbedding`), `"rotary"` (a `RotaryEmbedding` in
            every block's attention), `"alibi"` (ALiBi in every block's
            attention) or `None` (no position information: the model is then
            permutation-equivariant).
        dropout: dropout rate in `[0, 1)` inside the blocks.
        tile_size: the blocks' `tile_size`: `None` chooses, `0` the full
            computation, which a model meant for TensorFlow Lite needs (see
            docs/guides/serving-and-export.md).
        causal: if `True`, every block's attention is causal (position `i`
            sees positions `<= i`): a decoder, for `keras_attention.generate`.
        packed: if `True`, a functional model for packed rows: its inputs
            are the dict `{"tokens", "segment_ids", "positions"}` that
            `keras_attention.pack_sequences` returns (each `(batch,
            seq_len)`), every block attends within a document, and a rotary
            embedding restarts at each document's first token. Needs
            `encoding` `"rotary"`, `"alibi"` or None (the other encodings
            count positions along the row).
        layer_types: optional list of one attention type per block, Hugging
            Face's names: `"full_attention"`, `"sliding_attention"` (a
            `sliding_window`), `"chunked_attention"` (a `chunk_size`). By
            default every block has the `sliding_window` and `chunk_size`
            given, if any.
        sliding_window: the window of the sliding blocks: an int `w` or a
            pair `(left, right)` (see `MultiHeadAttention`).
        chunk_size: the chunk of the chunked blocks.

    Returns:
        A compiled `keras.Sequential` mapping int tokens `(batch, seq_len)` to
        logits `(batch, seq_len, vocab_size)`, or with `packed=True` a
        functional `keras.Model` of the same outputs.

    Example:

    >>> model = keras_attention.build_toy_model(vocab_size=12, max_length=10)
    >>> tuple(model.output_shape)
    (None, None, 12)
    """
    for argument, value in (
        ("vocab_size", vocab_size),
        ("max_length", max_length),
        ("d_model", d_model),
        ("num_heads", num_heads),
        ("num_layers", num_layers),
    ):
        checks.positive_int(value, argument, _NAME)
    if d_model % num_heads:
        raise ValueError(
            f"{_NAME}: `d_model` must be divisible by `num_heads`. "
            f"Received: d_model={d_model}, num_heads={num_heads}"
        )
    if encoding not in ENCODINGS:
        raise ValueError(
            f"{_NAME}: `encoding` must be one of 'sinusoidal', 'learned', "
            f"'rotary', 'alibi' or None. Received: encoding={encoding!r}"
        )
    checks.dropout(dropout, _NAME)
    checks.tile_size(tile_size, _NAME)
    causal = checks.boolean(causal, "causal", _NAME)
    packed = checks.boolean(packed, "packed", _NAME)
    if packed and encoding in ("sinusoidal", "learned"):
        raise ValueError(
            f"{_NAME}: a packed model restarts positions at each document, "
            "which `encoding` 'rotary' does (and 'alibi' and None need not): "
            f"the other encodings count along the row. Received: "
            f"encoding={encoding!r} with packed=True"
        )
    patterns = _block_patterns(layer_types, num_layers, sliding_window, chunk_size)
    # Unit-variance token vectors, on the scale of the position encoding, so
    # that neither drowns the other after the sum.
    embedding = keras.layers.Embedding(
        vocab_size,
        d_model,
        mask_zero=True,
        embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
        name="token_embedding",
    )
    blocks = [
        TransformerBlock(
            num_heads=num_heads,
            intermediate_dim=2 * d_model,
            dropout=dropout,
            causal=causal,
            rotary_embedding=RotaryEmbedding() if encoding == "rotary" else None,
            alibi=encoding == "alibi",
            tile_size=tile_size,
            name=f"block_{index}",
            **pattern,
        )
        for index, pattern in enumerate(patterns)
    ]
    final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
    # float32 logits under a mixed policy too, as Keras' mixed-precision
    # guide advises for a model's output layer: the softmax and the loss are
    # numerically safer in float32.
    logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")
    if packed:
        inputs = {
            name: keras.Input((None,), dtype="int32", name=name)
            for name in ("tokens", "segment_ids", "positions")
        }
        x = embedding(inputs["tokens"])
        for block in blocks:
            x = block(
                x,
                segment_ids=inputs["segment_ids"],
                positions=inputs["positions"] if encoding == "rotary" else None,
            )
        model = keras.Model(
            inputs, logits(final_norm(x)), name=f"packed_toy_model_{encoding}"
        )
        return _compiled(model)

    model = keras.Sequential(name=f"toy_model_{encoding or 'none'}")
    model.add(keras.Input((None,), dtype="int32", name="tokens"))
    model.add(embedding)
    if encoding == "sinusoidal":
        model.add(SinusoidalPositionEncoding(name="position_encoding"))
    elif encoding == "learned":
        model.add(LearnedPositionEmbedding(max_length, name="position_embedding"))
    for block in blocks:
        model.add(block)
    model.add(final_norm)
    model.add(logits)
    return _compiled(model)


def _compiled(model):
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _block_patterns(layer_types, num_layers, sliding_window, chunk_size):
    """The pattern options of each block, from `layer_types` (or the same
    for every block)."""
    if layer_types is None:
        pattern = {"sliding_window": sliding_window, "chunk_size": chunk_size}
        return [pattern] * num_layers
    if not isinstance(layer_types, (list, tuple)) or len(layer_types) != num_layers:
        raise ValueError(
            f"{_NAME}: `layer_types` must be a list of one attention type per "
            f"block, num_layers={num_layers} of them. Received: "
            f"layer_types={layer_types!r}"
        )
    patterns = []
    for kind in layer_types:
        if kind not in LAYER_TYPES:
            raise ValueError(
                f"{_NAME}: each of `layer_types` must be one of {LAYER_TYPES}. "
                f"Received: {kind!r}"
            )
        needs = {"sliding_attention": ("sliding_window", sliding_window)}
        needs["chunked_attention"] = ("chunk_size", chunk_size)
        if kind in needs:
            argument, value = needs[kind]
            if value is None:
                raise ValueError(
                    f"{_NAME}: `layer_types` has {kind!r} blocks: pass their "
                    f"`{argument}`. Received: {argument}=None"
                )
            patterns.append({argument: value})
        else:
            patterns.append({})
    return patterns

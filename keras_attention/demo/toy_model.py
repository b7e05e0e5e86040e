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

    Returns:
        A compiled `keras.Sequential` mapping int tokens `(batch, seq_len)` to
        logits `(batch, seq_len, vocab_size)`.

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

    model = keras.Sequential(name=f"toy_model_{encoding or 'none'}")
    model.add(keras.Input((None,), dtype="int32", name="tokens"))
    # Unit-variance token vectors, on the scale of the position encoding, so
    # that neither drowns the other after the sum.
    model.add(
        keras.layers.Embedding(
            vocab_size,
            d_model,
            mask_zero=True,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="token_embedding",
        )
    )
    if encoding == "sinusoidal":
        model.add(SinusoidalPositionEncoding(name="position_encoding"))
    elif encoding == "learned":
        model.add(LearnedPositionEmbedding(max_length, name="position_embedding"))
    for index in range(num_layers):
        model.add(
            TransformerBlock(
                num_heads=num_heads,
                intermediate_dim=2 * d_model,
                dropout=dropout,
                causal=causal,
                rotary_embedding=RotaryEmbedding() if encoding == "rotary" else None,
                alibi=encoding == "alibi",
                tile_size=tile_size,
                name=f"block_{index}",
            )
        )
    model.add(keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm"))
    # float32 logits under a mixed policy too, as Keras' mixed-precision
    # guide advises for a model's output layer: the softmax and the loss are
    # numerically safer in float32.
    model.add(keras.layers.Dense(vocab_size, dtype="float32", name="logits"))
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model

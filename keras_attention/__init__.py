"""Attention and position-encoding layers for Keras 3."""

import os
import sys

__version__ = "0.1.0"

__all__ = [
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "ScaledDotProductAttention",
    "SinusoidalPositionEncoding",
    "TransformerBlock",
    "alibi_slopes",
    "attention_flow",
    "attention_html",
    "attention_rollout",
    "attention_weights",
    "attention_weights_by_layer",
    "build_toy_model",
    "generate",
    "make_reversal_data",
    "pack_sequences",
    "plot_attention",
    "plot_position_encoding",
    "real_token_accuracy",
    "rope_permutation",
    "scaled_dot_product_attention",
    "sinusoidal_table",
]


def _command_line_is_starting():
    """True while the command line (`python -m keras_attention`, or the
    `keras-attention` console script) imports this package, just before it
    runs `keras_attention/__main__.py`.

    The command line imports Keras only after parsing its arguments, so that
    `--help` or a mistyped option does not wait for TensorFlow; for that, the
    public API below must not be imported here first. Python sets
    `sys.argv[0]` to "-m" while it locates the module to run, and
    `sys.orig_argv` names that module; the console script is named by
    `sys.argv[0]`. Every other import of the package,
    including one by another package run with `-m`, imports the public API,
    which is also what registers the layers for `keras.saving.load_model`.
    """
    if os.path.basename(sys.argv[0]) == "keras-attention":
        # The console script, whose wrapper imports `__main__.main`.
        return True
    if sys.argv[:1] != ["-m"] or "-m" not in sys.orig_argv:
        return False
    module = sys.orig_argv.index("-m") + 1
    return sys.orig_argv[module : module + 1] == ["keras_attention"]


if not _command_line_is_starting():
    from keras_attention.demo.reversal_task import (
        make_reversal_data,
        real_token_accuracy,
    )
    from keras_attention.demo.toy_model import build_toy_model
    from keras_attention.explain.head_view import attention_html
    from keras_attention.explain.plotting import plot_attention, plot_position_encoding
    from keras_attention.explain.rollout import attention_flow, attention_rollout
    from keras_attention.explain.weights import (
        attention_weights,
        attention_weights_by_layer,
    )
    from keras_attention.generation import generate
    from keras_attention.layers.learned_position_embedding import (
        LearnedPositionEmbedding,
    )
    from keras_attention.layers.multi_head_attention import MultiHeadAttention
    from keras_attention.layers.rotary_embedding import (
        RotaryEmbedding,
        rope_permutation,
    )
    from keras_attention.layers.scaled_dot_product_attention import (
        ScaledDotProductAttention,
    )
    from keras_attention.layers.sinusoidal_position_encoding import (
        SinusoidalPositionEncoding,
        sinusoidal_table,
    )
    from keras_attention.layers.transformer_block import TransformerBlock
    from keras_attention.ops import alibi_slopes, scaled_dot_product_attention
    from keras_attention.packing import pack_sequences

"""Attention and position-encoding layers for Keras 3."""

from keras_attention.inspection import attention_weights
from keras_attention.layers.learned_position_embedding import (
    LearnedPositionEmbedding,
)
from keras_attention.layers.multi_head_attention import MultiHeadAttention
from keras_attention.layers.rotary_embedding import RotaryEmbedding, rope_permutation
from keras_attention.layers.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)
from keras_attention.layers.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
    sinusoidal_table,
)
from keras_attention.layers.transformer_block import TransformerBlock
from keras_attention.models.toy_model import build_toy_model
from keras_attention.ops import alibi_slopes, scaled_dot_product_attention
from keras_attention.plotting import plot_attention, plot_position_encoding
from keras_attention.reversal_task import make_reversal_data, real_token_accuracy

__version__ = "0.1.0"

__all__ = [
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "ScaledDotProductAttention",
    "SinusoidalPositionEncoding",
    "TransformerBlock",
    "alibi_slopes",
    "attention_weights",
    "build_toy_model",
    "make_reversal_data",
    "plot_attention",
    "plot_position_encoding",
    "real_token_accuracy",
    "rope_permutation",
    "scaled_dot_product_attention",
    "sinusoidal_table",
]

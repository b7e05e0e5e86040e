"""What the property tests (hypothesis) share: settings, strategies, data.

Few examples each, drawn from a fixed seed (`derandomize=True`), so a run is
reproducible. Shapes come from small pools shared by the tests, because JAX
compiles every operation once per shape: a handful of shapes keeps the files
fast there. The arrays come from NumPy generators seeded by the drawn `seed`
(`rng_normal`).

The property tests live in the test file of the module whose behaviour they
check; `attention_layers()` and `toy_model()` build their layers and models
once per test file (each file that uses them calls `forget()` when done).
"""

import functools

import keras
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from keras_attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    TransformerBlock,
    build_toy_model,
)

FEW = settings(max_examples=6, deadline=None, derandomize=True, database=None)
VERY_FEW = settings(max_examples=3, deadline=None, derandomize=True, database=None)
WIDTH = 8  # the layers' width: one set of weight shapes, compiled once on JAX

seeds = st.integers(0, 2**31 - 1)
leading_dims = st.sampled_from([(), (2, 1)])  # no batch dimension, or two
lengths = st.sampled_from([3, 4])  # self-attention sequence lengths
q_k_lengths = st.sampled_from([(3, 3), (1, 4), (4, 2)])  # cross-attention


def rng_normal(rng, *shape):
    """Standard normal float32 values of `shape` from the generator `rng`."""
    return rng.normal(size=shape).astype("float32")


@st.composite
def permutations(draw, identity=True):
    """A permutation of a drawn length (never the identity if not allowed)."""
    order = draw(st.permutations(range(draw(lengths))))
    if not identity and order == sorted(order):
        order = order[::-1]
    return np.array(order)


def random_mask(rng, shape, fully_masked_row=True):
    """Boolean mask over `(..., q_len, k_len)` with some rows fully masked."""
    allowed = rng.random(shape) > 0.4
    if fully_masked_row:
        allowed[..., rng.integers(shape[-2]), :] = False
    return allowed


@st.composite
def causal_cases(draw):
    """A sequence length, the last position `t` kept, and a seed."""
    length = draw(lengths)
    t = draw(st.integers(0, length - 2))
    return length, t, draw(seeds)


def change_after(rng, x, t):
    """`x` with every position after `t` (axis -2) drawn anew, 10 times larger."""
    changed = x.copy()
    changed[..., t + 1 :, :] = rng_normal(rng, *changed[..., t + 1 :, :].shape) * 10
    return changed


def check_distribution(weights, allowed):
    """`weights` are a distribution over the `allowed` keys of each row, and
    exactly zero elsewhere (a row with no allowed key sums to 0)."""
    allowed = np.broadcast_to(allowed, weights.shape)
    assert np.all(weights >= 0)
    assert np.all(weights[~allowed] == 0)  # exactly zero, not merely small
    np.testing.assert_allclose(
        weights.sum(-1), allowed.any(-1).astype("float32"), atol=1e-5
    )


@functools.cache
def attention_layers():
    """One of each attention layer, built for `WIDTH` (no dropout)."""
    keras.utils.set_random_seed(0)
    return {
        "ScaledDotProductAttention": ScaledDotProductAttention(),
        "MultiHeadAttention": MultiHeadAttention(num_heads=2, key_dim=4),
        "TransformerBlock": TransformerBlock(num_heads=2, intermediate_dim=16),
    }


@functools.cache
def toy_model(encoding):
    keras.utils.set_random_seed(0)
    return build_toy_model(
        vocab_size=10,
        max_length=6,
        d_model=8,
        num_heads=2,
        num_layers=1,
        encoding=encoding,
    )


def forget():
    """Drops the layers and models `attention_layers` and `toy_model` made."""
    attention_layers.cache_clear()
    toy_model.cache_clear()

"""What the attention layers share through their base,
`keras_attention/layers/_attention_layer.py`: `ScaledDotProductAttention`
and `MultiHeadAttention` merge Keras' padding masks with `attention_mask`
and causality, and pass `tile_size` on; `TransformerBlock`, which wraps a
`MultiHeadAttention`, is checked beside them where the property is theirs
too. Each test runs over the layers; what one layer does alone is tested in
its own file.
"""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    TransformerBlock,
)
from tests.layer_test_case import RNG, to_numpy
from tests.properties import (
    FEW,
    WIDTH,
    attention_layers,
    causal_cases,
    change_after,
    check_distribution,
    forget,
    permutations,
    q_k_lengths,
    random_mask,
    rng_normal,
    seeds,
)

TILE = 8


@pytest.mark.parametrize("layer_cls", [MultiHeadAttention, ScaledDotProductAttention])
def test_layers_give_the_same_output_with_tiles(layer_cls):
    # The layers pass `tile_size` on: tiles of 8 give the full output.
    tokens = RNG.integers(1, 20, size=(2, 23))
    tokens[0, 15:] = 0  # padding
    embedding = keras.layers.Embedding(20, 8, mask_zero=True)
    kwargs = {"num_heads": 2, "key_dim": 4} if layer_cls is MultiHeadAttention else {}
    kwargs.update(causal=True, sliding_window=6)
    plain = layer_cls(**kwargs)
    tiles = layer_cls(**kwargs, tile_size=TILE)
    x = embedding(tokens)
    mask = embedding.compute_mask(tokens)
    expected = plain(x, mask=mask)
    tiles(x, mask=mask)
    tiles.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        to_numpy(tiles(x, mask=mask)), to_numpy(expected), atol=1e-5
    )
    assert np.all(to_numpy(expected)[0, 15:] == 0)  # padded queries, zero bias


# Properties (hypothesis; tests/properties.py) -----------------------------------


@pytest.fixture(autouse=True, scope="module")
def _forget_cached_layers():
    yield
    forget()


@FEW
@given(order=permutations(), seed=seeds)
def test_layers_are_permutation_equivariant_with_padding(order, seed):
    rng = np.random.default_rng(seed)
    length = len(order)
    x = rng_normal(rng, 2, length, WIDTH)
    padding = rng.random((2, length)) > 0.3
    for name, layer in attention_layers().items():
        out = to_numpy(layer(x, mask=padding))
        permuted = to_numpy(layer(x[:, order], mask=padding[:, order]))
        np.testing.assert_allclose(permuted, out[:, order], atol=1e-5, err_msg=name)


@FEW
@given(sizes=q_k_lengths, seed=seeds)
def test_layer_weights_honour_every_mask(sizes, seed):
    (q_len, k_len), rng = sizes, np.random.default_rng(seed)
    query, value = rng_normal(rng, 2, q_len, WIDTH), rng_normal(rng, 2, k_len, WIDTH)
    attention_mask = random_mask(rng, (2, q_len, k_len))
    query_mask = rng.random((2, q_len)) > 0.3
    value_mask = rng.random((2, k_len)) > 0.3
    allowed = attention_mask & query_mask[:, :, None] & value_mask[:, None, :]
    layers = attention_layers()
    for layer in (layers["ScaledDotProductAttention"], layers["MultiHeadAttention"]):
        _, weights = layer(
            query,
            value,
            attention_mask=attention_mask,
            query_mask=query_mask,
            value_mask=value_mask,
            return_attention_scores=True,
        )
        weights = to_numpy(weights)
        if weights.ndim == 4:  # (batch, heads, q_len, k_len)
            check_distribution(weights, allowed[:, None])
        else:
            check_distribution(weights, allowed)


def _two_causal_layers(kind, causal, seed):
    """Two layers with the same weights and the same dropout seed.

    Each called once, right after `keras.utils.set_random_seed(seed)`, they
    drop the same entries.
    """
    if kind == "TransformerBlock":
        # No `seed` argument: the same global seed gives the same generators.
        # On PyTorch an unseeded `keras.layers.Dropout` (the residual dropout)
        # draws from torch's global generator instead, hence the global seed
        # reset before each call.
        pair = []
        for _ in range(2):
            keras.utils.set_random_seed(seed)
            layer = TransformerBlock(
                num_heads=2, intermediate_dim=16, dropout=0.5, causal=causal
            )
            layer.build((None, None, WIDTH))
            pair.append(layer)
    else:
        cls = {
            "ScaledDotProductAttention": ScaledDotProductAttention,
            "MultiHeadAttention": MultiHeadAttention,
        }[kind]
        extra = {"num_heads": 2, "key_dim": 4} if kind == "MultiHeadAttention" else {}
        pair = [cls(dropout=0.5, seed=seed, causal=causal, **extra) for _ in range(2)]
        for layer in pair:
            layer.build((None, None, WIDTH))
    pair[1].set_weights(pair[0].get_weights())
    return pair


@FEW
@given(
    case=causal_cases(),
    kind=st.sampled_from(
        ["ScaledDotProductAttention", "MultiHeadAttention", "TransformerBlock"]
    ),
    by_constructor=st.booleans(),
    return_scores=st.booleans(),
)
def test_layer_causal_output_ignores_the_future_with_dropout(
    case, kind, by_constructor, return_scores
):
    # Keras' MultiHeadAttention once dropped the causal mask exactly when
    # dropout was on or the scores were asked for (keras-team/keras#23038).
    length, t, seed = case
    rng = np.random.default_rng(seed)
    x = rng_normal(rng, 2, length, WIDTH)
    changed = change_after(rng, x, t)
    if kind == "TransformerBlock":
        by_constructor = True  # a block takes `causal` only in its constructor
    first, second = _two_causal_layers(kind, by_constructor, seed % 1000)
    kwargs = {"training": True, "return_attention_scores": return_scores}
    if not by_constructor:
        kwargs["use_causal_mask"] = True
    keras.utils.set_random_seed(seed % 1000)
    before = first(x, **kwargs)
    keras.utils.set_random_seed(seed % 1000)
    after = second(changed, **kwargs)
    if return_scores:
        (before, scores), (after, _) = before, after
        future = np.triu(np.ones((length, length), bool), 1)
        assert np.all(to_numpy(scores)[..., future] == 0)
    before, after = to_numpy(before), to_numpy(after)
    np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-5)
    # The dropout was on: the output differs from an evaluation-mode call.
    kwargs.update(training=False, return_attention_scores=False)
    assert not np.allclose(before, to_numpy(first(x, **kwargs)))

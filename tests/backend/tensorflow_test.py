"""The TensorFlow backend's own pieces (`keras_attention/_backend/tensorflow.py`)
other than the tiled kernel (`tests/backend/tf_tiled_test.py`): the full
computation's hand-written gradient outside XLA."""

import pytest

from keras_attention import alibi_slopes, scaled_dot_product_attention
from tests.backend.tf_tiled_test import (
    assert_same,
    default,
    full,
    value_and_grads,
    with_empty_rows,
)
from tests.layer_test_case import normal


def zero_tiles(q, k, v, mask=None, **kwargs):
    return scaled_dot_product_attention(q, k, v, mask, tile_size=0, **kwargs)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_full_path_differentiates_by_hand_outside_xla(monkeypatch, mode, dropout):
    # Outside XLA the full path's gradient is TensorFlow's kernel's own
    # (`full`), equal to autodiff's; under XLA, and with `tile_size=0`,
    # autodiff's.
    import tensorflow as tf

    from keras_attention._backend import tensorflow as kernels

    calls = []
    by_hand = kernels._full_backward

    def spy(*args):
        calls.append(1)
        return by_hand(*args)

    monkeypatch.setattr(kernels, "_full_backward", spy)
    q, k, v = normal(2, 4, 21, 4), normal(2, 2, 19, 4), normal(2, 2, 19, 3)
    options = dict(
        mask=with_empty_rows((2, 1, 21, 19), [2]),
        causal=True,
        alibi_slopes=alibi_slopes(4),
        dropout=dropout,
        seed=3,
        training=True,
    )
    expected = value_and_grads(full, q, k, v, **options)
    for path, by_hand_expected in ((default, mode != "xla"), (zero_tiles, False)):
        calls.clear()
        if mode == "eager":
            got = value_and_grads(path, q, k, v, **options)
        else:
            got = tf.function(
                lambda path=path: value_and_grads(path, q, k, v, **options),
                jit_compile=mode == "xla",
            )()
        assert_same(got, expected)
        assert bool(calls) == by_hand_expected, (path.__name__, mode)

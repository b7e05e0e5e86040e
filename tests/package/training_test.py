"""Training the toy model under XLA and mixed precision."""

import keras
import numpy as np
import pytest

import keras_attention

TOKENS, TARGETS = keras_attention.make_reversal_data(3000, 8, 10, min_length=2)
TEST_TOKENS, TEST_TARGETS = keras_attention.make_reversal_data(
    500, 8, 10, min_length=2, seed=1
)


def _model(jit_compile="auto"):
    keras.utils.set_random_seed(0)
    model = keras_attention.build_toy_model(10, 8, d_model=32, num_heads=2)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def _two_epochs(model, batch_size):
    """The losses of two epochs on the first 512 sequences, unshuffled."""
    return model.fit(
        TOKENS[:512],
        TARGETS[:512],
        batch_size=batch_size,
        epochs=2,
        shuffle=False,
        verbose=0,
    ).history["loss"]


# On JAX every compiled step is XLA already; run once, where it is a choice.
@pytest.mark.end_to_end
def test_xla_training_matches_and_masks_padding():
    eager, xla = _model(jit_compile=False), _model(jit_compile=True)
    history = {}
    for name, model in (("eager", eager), ("xla", xla)):
        history[name] = _two_epochs(model, batch_size=64)
    np.testing.assert_allclose(history["xla"], history["eager"], rtol=1e-3)
    np.testing.assert_allclose(
        xla.predict(TEST_TOKENS, verbose=0),
        eager.predict(TEST_TOKENS, verbose=0),
        atol=1e-3,
    )
    # Padding stays invisible to real positions in the compiled predict step.
    before = xla.predict(TEST_TOKENS, verbose=0)
    table = keras.ops.convert_to_numpy(xla.layers[0].embeddings)
    table[0] += 25.0
    xla.layers[0].embeddings.assign(table)
    after = xla.predict(TEST_TOKENS, verbose=0)
    real = TEST_TOKENS != 0
    np.testing.assert_allclose(after[real], before[real], atol=1e-4)


# How far the mixed-precision losses of two epochs may stray from float32's
# (seen: 5e-5 to 2.4e-4 for float16, 4e-4 to 5e-4 for bfloat16, on
# TensorFlow, JAX and PyTorch).
TOL_F16, TOL_BF16 = 2e-3, 5e-3


@pytest.mark.end_to_end
def test_mixed_precision_trains_like_float32():
    # The same steps from the same weights: the losses follow float32's
    # within the precision of the compute dtype (float16 with its loss
    # scaling, bfloat16), and they fall.
    losses = {}
    for policy in ("float32", "mixed_float16", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        model = _model()
        assert model.layers[-2].compute_dtype == policy.split("_")[-1]
        assert model.layers[-1].compute_dtype == "float32"  # the logits
        losses[policy] = _two_epochs(model, batch_size=32)
    keras.config.set_dtype_policy("float32")
    for policy, rtol in (("mixed_float16", TOL_F16), ("mixed_bfloat16", TOL_BF16)):
        assert np.all(np.isfinite(losses[policy])), losses
        assert losses[policy][1] < losses[policy][0], losses
        np.testing.assert_allclose(losses[policy], losses["float32"], rtol=rtol)

"""A `.keras` file saved under one backend loads under another."""

import os
import subprocess
import sys

import numpy as np
import pytest

# TensorFlow saves and loads in this process: see the test.
pytestmark = [pytest.mark.end_to_end, pytest.mark.tensorflow_only]

SAVE = """
import keras, numpy as np, keras_attention
from tests.layer_test_case import perturbed
keras.utils.set_random_seed(0)
tokens, _ = keras_attention.make_reversal_data(64, 8, 10, min_length=2)
np.save(f"{folder}/tokens.npy", tokens)
for encoding in ("sinusoidal", "learned"):
    model = keras_attention.build_toy_model(10, 8, d_model=16, num_heads=2, encoding=encoding)
    perturbed(model)
    model.save(f"{folder}/{backend}-{{encoding}}.keras")
    np.save(f"{folder}/{backend}-{{encoding}}.npy", model.predict(tokens, verbose=0))
"""

LOAD = """
import keras, numpy as np, keras_attention
tokens = np.load(f"{folder}/tokens.npy")
for encoding in ("sinusoidal", "learned"):
    model = keras.saving.load_model(f"{folder}/{saved}-{{encoding}}.keras", safe_mode=True)
    np.save(f"{folder}/{saved}-{{encoding}}.loaded.npy", model.predict(tokens, verbose=0))
"""


def _python(backend, code):
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_saved_under_one_backend_predicts_the_same_under_another(tmp_path):
    # TensorFlow (this session, which runs only on TensorFlow: end_to_end)
    # saves; JAX, in a process of its own, loads that and saves its own;
    # TensorFlow loads JAX's.
    exec(SAVE.format(folder=tmp_path, backend="tensorflow"), {})
    _python(
        "jax",
        LOAD.format(folder=tmp_path, saved="tensorflow")
        + SAVE.format(folder=tmp_path, backend="jax"),
    )
    exec(LOAD.format(folder=tmp_path, saved="jax"), {})
    for saved in ("tensorflow", "jax"):
        for encoding in ("sinusoidal", "learned"):
            np.testing.assert_allclose(
                np.load(tmp_path / f"{saved}-{encoding}.loaded.npy"),
                np.load(tmp_path / f"{saved}-{encoding}.npy"),
                atol=1e-5,
            )

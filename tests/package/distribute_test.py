"""Data-parallel training over two CPU devices, in fresh processes.

Logical devices must be set before TensorFlow initializes, and JAX reads
XLA_FLAGS at import, so each case runs in its own interpreter.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.end_to_end

TRAIN_SAVE_LOAD = """
import keras
import numpy as np
import keras_attention

tokens, targets = keras_attention.make_reversal_data(256, 8, 10, min_length=2)
with scope():
    model = keras_attention.build_toy_model(10, 8, d_model=16, num_heads=2)
losses = model.fit(tokens, targets, batch_size=32, epochs=2, verbose=0).history["loss"]
assert np.all(np.isfinite(losses)), losses
assert losses[-1] < losses[0], losses
path = {path!r}
model.save(path)
loaded = keras.saving.load_model(path, safe_mode=True)
np.testing.assert_allclose(
    loaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-5
)
print("replicas", replicas, "loss", losses[-1])
"""

TENSORFLOW = """
import tensorflow as tf

(cpu,) = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
replicas = strategy.num_replicas_in_sync
scope = strategy.scope
"""

JAX = """
import contextlib
import keras

devices = keras.distribution.list_devices()
replicas = len(devices)
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
scope = contextlib.nullcontext
"""


def _run(backend, setup, tmp_path, extra_env=None):
    script = setup + TRAIN_SAVE_LOAD.format(path=str(tmp_path / "model.keras"))
    env = {**os.environ, "KERAS_BACKEND": backend, **(extra_env or {})}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "replicas 2 " in result.stdout, result.stdout


def test_tensorflow_mirrored_strategy_on_two_cpu_devices(tmp_path):
    _run("tensorflow", TENSORFLOW, tmp_path)


def test_jax_data_parallel_on_two_cpu_devices(tmp_path):
    flags = "--xla_force_host_platform_device_count=2"
    _run("jax", JAX, tmp_path, {"XLA_FLAGS": flags})

"""Writes `keras_hub_rope.npz`: keras-hub's `RotaryEmbedding` outputs, as a
reference for `tests/layers/rotary_embedding_test.py`. Run only on purpose.

keras-hub depends on tensorflow-text (about 200 MB, pinned to TensorFlow's
minor version), so it is not a test dependency; this script runs in a
throwaway virtual environment instead, and its outputs are committed:

    python3 -m venv /tmp/keras-hub
    /tmp/keras-hub/bin/pip install keras jax numpy
    /tmp/keras-hub/bin/pip install --no-deps keras-hub
    /tmp/keras-hub/bin/pip install regex tokenizers kagglehub
    KERAS_BACKEND=jax /tmp/keras-hub/bin/python tests/data/make_keras_hub_rope_fixture.py

It does not import keras_attention. Every case uses keras-hub's only layout,
"half"; the keras-hub arguments of each case are stored with its outputs.
keras-hub's `rope_type="dynamic"` divides the frequencies by a fixed power
of the factor, which is not Hugging Face's dynamic NTK rule, so it has no
case here.
"""

import json
import pathlib

import keras
import keras_hub
import numpy as np

HERE = pathlib.Path(__file__).parent
RNG = np.random.default_rng(13)

# name: (keras-hub constructor arguments, input shape, call arguments)
CASES = {
    "default_rank_3": ({}, (2, 9, 16), {}),
    "default_rank_4_start_index": ({}, (2, 9, 3, 16), {"start_index": 37}),
    "linear_base_500": (
        {"max_wavelength": 500, "scaling_factor": 4.0},
        (2, 9, 3, 8),
        {"start_index": 5},
    ),
    "batched_positions": ({}, (2, 5, 2, 8), {"positions": [[3, 4, 5, 6, 7], [90] * 5]}),
    "yarn": (
        {
            "rope_type": "yarn",
            "scaling_factor": 4.0,
            "original_max_position_embeddings": 2048,
        },
        (2, 9, 2, 16),
        {"start_index": 100},
    ),
}


def main():
    arrays = {"keras_hub_version": np.array(keras_hub.__version__)}
    for name, (init, shape, call) in CASES.items():
        x = RNG.normal(size=shape).astype("float32")
        layer = keras_hub.layers.RotaryEmbedding(**init)
        arguments = dict(call)
        if "positions" in arguments:
            arguments["positions"] = np.array(arguments["positions"], "int32")
        output = keras.ops.convert_to_numpy(layer(x, **arguments))
        arrays[f"{name}.init"] = np.array(json.dumps(init))
        arrays[f"{name}.call"] = np.array(json.dumps(call))
        arrays[f"{name}.x"] = x
        arrays[f"{name}.output"] = output
    np.savez(HERE / "keras_hub_rope.npz", **arrays)


if __name__ == "__main__":
    main()

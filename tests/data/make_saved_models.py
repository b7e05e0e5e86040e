"""Writes a compatibility fixture into `tests/data/`. Run only on purpose.

    KERAS_BACKEND=tensorflow python -m tests.data.make_saved_models [DIRECTORY]

(from the repository root). It writes, into DIRECTORY (default: next to this
file):

- `toy_model.keras`: a tiny `build_toy_model` after one training step, so
  the optimizer's state is saved too (as in a user's trained model);
- `all_layers.keras`: a `keras.Sequential` holding every public layer, each
  with non-default constructor arguments, so that a renamed config key shows;
- `outputs.npz`: fixed padded `tokens` and each model's outputs for them.

Two sets are committed, each written by this package under one Keras (its
version is in each file's `metadata.json`): `tests/data/` under the pinned
Keras 3.15.1 (`constraints.txt`), and `tests/data/keras_3.9.0/` under the
oldest declared Keras, in the venv of `make test-oldest`:

    KERAS_BACKEND=tensorflow .venv-oldest/bin/python \
        -m tests.data.make_saved_models tests/data/keras_3.9.0

A `.keras` file loads under the Keras that wrote it and later ones, not
always under an older one (Keras 3.9 rejects the `quantization_config` that
Keras 3.15 writes into `Embedding`'s config), hence the second set.

`tests/package/saved_files_test.py` checks that the committed files still
load in safe mode and predict the recorded outputs. They stand for the
`.keras` files users saved with an earlier release: regenerate them only for
an intended breaking change (a new major version, with a CHANGELOG entry),
never to make a failing compatibility test pass.
"""

import argparse
import pathlib

import keras
import numpy as np

import keras_attention

HERE = pathlib.Path(__file__).parent
MODELS = ("toy_model", "all_layers")
TOKENS = np.array(
    [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 0, 0], [8, 0, 0, 0, 0, 0]], dtype="int32"
)  # 0 is padding


def toy_model():
    return keras_attention.build_toy_model(
        vocab_size=10, max_length=8, d_model=8, num_heads=2, num_layers=1
    )


def all_layers():
    model = keras.Sequential(name="all_layers")
    model.add(keras.Input((None,), dtype="int32"))
    model.add(keras.layers.Embedding(10, 8, mask_zero=True))
    model.add(keras_attention.SinusoidalPositionEncoding(max_wavelength=100))
    model.add(
        keras_attention.LearnedPositionEmbedding(
            max_length=8, embeddings_initializer="random_normal"
        )
    )
    model.add(
        keras_attention.MultiHeadAttention(
            num_heads=2, key_dim=4, value_dim=3, dropout=0.1, seed=1, causal=True
        )
    )
    model.add(keras_attention.ScaledDotProductAttention(scale=0.5))
    model.add(
        keras_attention.TransformerBlock(
            num_heads=2, intermediate_dim=16, activation="gelu", layer_norm_epsilon=1e-3
        )
    )
    model.add(keras.layers.Dense(5))
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description="Writes a compatibility fixture.")
    parser.add_argument("directory", nargs="?", type=pathlib.Path, default=HERE)
    directory = parser.parse_args(argv).directory
    directory.mkdir(exist_ok=True)
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    outputs = {"tokens": TOKENS}
    for name in MODELS:
        model = {"toy_model": toy_model, "all_layers": all_layers}[name]()
        # Non-zero biases and norms: a weight loaded into the wrong slot shows.
        model.set_weights(
            [w + rng.normal(scale=0.1, size=w.shape) for w in model.get_weights()]
        )
        if model.compiled:
            targets = np.where(TOKENS > 0, TOKENS[:, ::-1], 0)
            model.fit(TOKENS, targets, epochs=1, verbose=0)
        model.save(directory / f"{name}.keras")
        outputs[name] = model.predict(TOKENS, verbose=0)
    np.savez(directory / "outputs.npz", **outputs)
    versions = (
        f"keras_attention {keras_attention.__version__}, keras {keras.__version__}, "
        f"backend {keras.backend.backend()}"
    )
    print(f"wrote {', '.join(MODELS)} and outputs.npz to {directory} ({versions})")


if __name__ == "__main__":
    main()

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import build_toy_model, make_reversal_data

ENCODINGS = ["sinusoidal", "learned", "rotary", "alibi", None]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_structure_and_output(encoding):
    model = build_toy_model(12, 10, d_model=16, num_heads=2, encoding=encoding)
    assert isinstance(model, keras.Sequential)
    kinds = [type(layer).__name__ for layer in model.layers]
    position = {
        "sinusoidal": ["SinusoidalPositionEncoding"],
        "learned": ["LearnedPositionEmbedding"],
        "rotary": [],
        "alibi": [],
        None: [],
    }[encoding]
    assert kinds == [
        "Embedding",
        *position,
        "TransformerBlock",
        "TransformerBlock",
        "LayerNormalization",
        "Dense",
    ]
    assert model.layers[0].mask_zero
    assert model.compiled  # documented: it comes compiled
    attention = model.layers[-3].attention
    assert (attention.rotary_embedding is not None) == (encoding == "rotary")
    assert attention.alibi == (encoding == "alibi")
    tokens, _ = make_reversal_data(4, 10, 12)
    assert tuple(model(tokens).shape) == (4, 10, 12)


# Rotary and ALiBi save and load in the attention layers' own tests.
@pytest.mark.parametrize("encoding", ["sinusoidal", "learned", None])
def test_save_and_load_in_safe_mode_without_custom_objects(tmp_path, encoding):
    model = build_toy_model(12, 10, d_model=16, num_heads=2, encoding=encoding)
    tokens, targets = make_reversal_data(32, 10, 12)
    model.fit(tokens, targets, epochs=1, verbose=0)
    path = str(tmp_path / "toy.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        loaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0)
    )


def test_padding_never_reaches_real_positions():
    model = build_toy_model(12, 10, d_model=16, num_heads=2)
    tokens, _ = make_reversal_data(8, 10, 12, min_length=3, seed=5)
    base = keras.ops.convert_to_numpy(model(tokens))
    table = keras.ops.convert_to_numpy(model.layers[0].embeddings)
    table[0] += 30.0
    model.layers[0].embeddings.assign(table)
    moved = keras.ops.convert_to_numpy(model(tokens))
    real = tokens != 0
    np.testing.assert_allclose(moved[real], base[real], atol=1e-4)
    assert not np.allclose(moved[~real], base[~real])


def test_without_encoding_the_model_is_permutation_equivariant():
    model = build_toy_model(12, 6, d_model=16, num_heads=2, encoding=None)
    tokens = np.array([[3, 1, 4, 1, 5, 9]])
    order = np.array([5, 2, 0, 4, 1, 3])
    out = keras.ops.convert_to_numpy(model(tokens))
    permuted = keras.ops.convert_to_numpy(model(tokens[:, order]))
    np.testing.assert_allclose(permuted, out[:, order], atol=1e-5)
    with_position = build_toy_model(12, 6, d_model=16, num_heads=2)
    out = keras.ops.convert_to_numpy(with_position(tokens))
    permuted = keras.ops.convert_to_numpy(with_position(tokens[:, order]))
    assert not np.allclose(permuted, out[:, order], atol=1e-3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"encoding": "relative"},
            r"build_toy_model: `encoding` must be one of 'sinusoidal', 'learned', 'rotary', 'alibi' or None\. Received: encoding='relative'",
        ),
        (
            {"d_model": 30, "num_heads": 4},
            r"build_toy_model: `d_model` must be divisible by `num_heads`\. Received: d_model=30, num_heads=4",
        ),
        (
            {"vocab_size": 0},
            r"build_toy_model: `vocab_size` must be a positive integer\. Received: vocab_size=0",
        ),
        (
            {"max_length": -3},
            r"build_toy_model: `max_length` must be a positive integer\. Received: max_length=-3",
        ),
        (
            {"num_layers": 0},
            r"build_toy_model: `num_layers` must be a positive integer\. Received: num_layers=0",
        ),
        (
            {"num_heads": 0},
            r"build_toy_model: `num_heads` must be a positive integer\. Received: num_heads=0",
        ),
        (
            {"d_model": 0},
            r"build_toy_model: `d_model` must be a positive integer\. Received: d_model=0",
        ),
        (
            {"dropout": 1.0},
            r"build_toy_model: `dropout` must be a number in \[0, 1\)\. Received: dropout=1\.0",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"vocab_size": 12, "max_length": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        keras_attention.build_toy_model(**arguments)


def test_learned_model_rejects_sequences_longer_than_max_length():
    model = build_toy_model(12, 5, d_model=16, num_heads=2, encoding="learned")
    with pytest.raises(ValueError, match=r"longer than `max_length`=5"):
        model(np.ones((1, 6), "int32"))

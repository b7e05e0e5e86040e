"""Saved `.keras` files: they load in safe mode, keep loading across releases,
and a config edited to hold an invalid value fails loudly instead of loading.

`tests/data/` holds files saved by an earlier version of this package with
their recorded outputs (`tests/data/make_saved_models.py` wrote them; it is
run only on purpose): one set under the pinned Keras, one under the oldest
declared Keras. A file loads under the Keras that wrote it and every later
one; under an older Keras its tests skip. See the compatibility promise in
CHANGELOG.md.
"""

import json
import pathlib
import warnings
import zipfile

import keras
import numpy as np
import pytest
from packaging.version import Version

import keras_attention
from tests.data import make_saved_models

DATA = pathlib.Path(__file__).parents[1] / "data"
# The committed sets of files, named by the Keras that wrote them.
FILE_SETS = [
    pytest.param(DATA, id="keras_3.15.1"),
    pytest.param(DATA / "keras_3.9.0", id="keras_3.9.0"),
]
PUBLIC_LAYERS = [
    "LearnedPositionEmbedding",
    "MultiHeadAttention",
    "ScaledDotProductAttention",
    "SinusoidalPositionEncoding",
    "TransformerBlock",
]


def read_config(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def layer_configs(config):
    return {layer["class_name"]: layer for layer in config["config"]["layers"]}


def skip_if_written_by_a_later_keras(path):
    with zipfile.ZipFile(path) as archive:
        writer = json.loads(archive.read("metadata.json"))["keras_version"]
    if Version(keras.version()) < Version(writer):
        pytest.skip(
            f"{path.relative_to(DATA.parent.parent)} was written by Keras {writer}; an "
            f"older Keras ({keras.version()}) need not read it (Keras 3.9 rejects "
            "the `quantization_config` of Keras 3.15's Embedding config)"
        )


@pytest.mark.parametrize("files", FILE_SETS)
@pytest.mark.parametrize("name", make_saved_models.MODELS)
def test_committed_files_load_in_safe_mode_and_predict_the_recorded_outputs(
    files, name
):
    skip_if_written_by_a_later_keras(files / f"{name}.keras")
    recorded = np.load(files / "outputs.npz")
    model = keras.saving.load_model(str(files / f"{name}.keras"), safe_mode=True)
    np.testing.assert_allclose(
        model.predict(recorded["tokens"], verbose=0), recorded[name], atol=1e-5
    )


@pytest.mark.parametrize("files", FILE_SETS)
def test_committed_file_keeps_the_registered_names(files):
    layers = layer_configs(read_config(files / "all_layers.keras"))
    for name in PUBLIC_LAYERS:
        assert layers[name]["registered_name"] == f"keras_attention>{name}"
        assert keras.saving.get_registered_object(f"keras_attention>{name}") is getattr(
            keras_attention, name
        )


def test_every_layer_saves_with_no_code_and_loads_in_safe_mode(tmp_path):
    model = make_saved_models.all_layers()
    tokens = make_saved_models.TOKENS
    path = tmp_path / "all_layers.keras"
    model.save(str(path))
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [
            "config.json",
            "metadata.json",
            "model.weights.h5",
        ]
        config = archive.read("config.json").decode()
    # No Lambda layer, no serialized Python function or bytecode.
    for code in ("Lambda", "__lambda__", "__bytes__", "function_type"):
        assert code not in config
    assert set(PUBLIC_LAYERS) <= set(layer_configs(json.loads(config)))
    loaded = keras.saving.load_model(str(path), safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-6
    )


def _drop(key):
    def edit(config):
        del config[key]

    return edit


EDITED = [
    (
        "MultiHeadAttention",
        {"num_heads": -1},
        "MultiHeadAttention: `num_heads` must be a positive integer. Received: num_heads=-1",
    ),
    (
        "MultiHeadAttention",
        {"num_heads": "2"},
        "MultiHeadAttention: `num_heads` must be a positive integer. Received: num_heads='2' of type str",
    ),
    (
        "MultiHeadAttention",
        {"causal": "true"},
        "MultiHeadAttention: `causal` must be a bool. Received: causal='true'",
    ),
    (
        "MultiHeadAttention",
        {"use_causal_mask": True},
        "Unrecognized keyword arguments passed to MultiHeadAttention: {'use_causal_mask': True}",
    ),
    (
        "MultiHeadAttention",
        _drop("num_heads"),
        "missing 1 required positional argument: 'num_heads'",
    ),
    (
        "ScaledDotProductAttention",
        {"scale": -0.5},
        "ScaledDotProductAttention: `scale` must be None or a positive finite number. Received: scale=-0.5",
    ),
    (
        "ScaledDotProductAttention",
        {"window": 3},
        "Unrecognized keyword arguments passed to ScaledDotProductAttention: {'window': 3}",
    ),
    (
        "SinusoidalPositionEncoding",
        {"max_wavelength": "100"},
        "SinusoidalPositionEncoding: `max_wavelength` must be a positive finite number. Received: max_wavelength='100' of type str",
    ),
    (
        "SinusoidalPositionEncoding",
        {"max_length": 8},
        "Unrecognized keyword arguments passed to SinusoidalPositionEncoding: {'max_length': 8}",
    ),
    (
        "LearnedPositionEmbedding",
        {"max_length": 0},
        "LearnedPositionEmbedding: `max_length` must be a positive integer. Received: max_length=0",
    ),
    (
        "LearnedPositionEmbedding",
        {"mask_zero": True},
        "Unrecognized keyword arguments passed to LearnedPositionEmbedding: {'mask_zero': True}",
    ),
    (
        "TransformerBlock",
        {"dropout": 1.5},
        "TransformerBlock: `dropout` must be a number in [0, 1). Received: dropout=1.5",
    ),
    (
        "TransformerBlock",
        {"activation": "no_such_activation"},
        "TransformerBlock: `activation` must be the name, config or instance of a Keras activation. Received: activation='no_such_activation'",
    ),
    (
        "TransformerBlock",
        {"key_dim": 4},
        "Unrecognized keyword arguments passed to TransformerBlock: {'key_dim': 4}",
    ),
]


@pytest.mark.parametrize("files", FILE_SETS)
@pytest.mark.parametrize("class_name,edit,message", EDITED)
def test_an_edited_config_fails_to_load_with_our_message(
    tmp_path, files, class_name, edit, message
):
    original_path = files / "all_layers.keras"
    skip_if_written_by_a_later_keras(original_path)
    config = read_config(original_path)
    layer_config = layer_configs(config)[class_name]["config"]
    if callable(edit):
        edit(layer_config)
    else:
        layer_config.update(edit)
    path = tmp_path / "edited.keras"
    with (
        zipfile.ZipFile(original_path) as original,
        zipfile.ZipFile(path, "w") as edited,
    ):
        for item in original.namelist():
            content = (
                json.dumps(config) if item == "config.json" else original.read(item)
            )
            edited.writestr(item, content)
    # Keras wraps the constructor's error in its own TypeError.
    with pytest.raises((TypeError, ValueError)) as caught:
        keras.saving.load_model(str(path), safe_mode=True)
    assert message in str(caught.value)


def _sequential_attention():
    return keras.Sequential(
        [keras.Input((None, 16)), keras_attention.MultiHeadAttention(2, 8)]
    )


def _toy_rotary():
    return keras_attention.build_toy_model(
        12, 8, d_model=16, num_heads=2, num_layers=1, encoding="rotary"
    )


@pytest.mark.parametrize(
    "build, inputs",
    [
        (_toy_rotary, np.array([[3, 4, 5, 0]], "int32")),
        (
            _sequential_attention,
            np.linspace(-1, 1, 64, dtype="float32").reshape(1, 4, 16),
        ),
    ],
    ids=["toy-model-rotary", "sequential-attention"],
)
def test_a_quantized_model_saves_and_loads(tmp_path, build, inputs):
    # The attention layers and TransformerBlock save their quantized
    # sublayers' policies; a model reloaded from the file builds them
    # quantized again (before, only a bare MultiHeadAttention in a
    # Functional model reloaded: the policies were looked up by a path the
    # reloaded layers did not have yet).
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers with nothing to quantize
        model.quantize("int8")
    expected = model.predict(inputs, verbose=0)
    path = str(tmp_path / "int8.keras")
    model.save(path)
    # compile=False: the toy model is compiled, and Keras refuses the saved
    # optimizer of a model quantized after compiling (its variables changed).
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(loaded.predict(inputs, verbose=0), expected)

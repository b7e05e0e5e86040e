import keras
import numpy as np
import pytest
from hypothesis import given

import keras_attention
from keras_attention import build_toy_model, make_reversal_data
from keras_attention.demo.toy_model import ENCODINGS
from tests.layer_test_case import (
    assert_raises_with,
    compiled,
    perturbed,
    symbolic,
    to_numpy,
)
from tests.properties import VERY_FEW, forget, permutations, seeds, toy_model


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
    tokens, _ = make_reversal_data(32, 10, 12)
    perturbed(model)
    path = str(tmp_path / "toy.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        loaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0)
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_logits_are_float32_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    model = build_toy_model(12, 10, d_model=16, num_heads=2)
    tokens, _ = make_reversal_data(4, 10, 12)
    half = policy.split("_")[1]
    assert [layer.compute_dtype for layer in model.layers[:-1]] == [half] * 5
    assert model.layers[-1].compute_dtype == "float32"
    assert model.layers[-1].variable_dtype == "float32"
    assert keras.backend.standardize_dtype(model(tokens).dtype) == "float32"


def test_padding_never_reaches_real_positions():
    model = build_toy_model(12, 10, d_model=16, num_heads=2)
    tokens, _ = make_reversal_data(8, 10, 12, min_length=3, seed=5)
    base = keras.ops.convert_to_numpy(model(tokens))
    table = keras.ops.convert_to_numpy(model.layers[0].embeddings)
    # Not a constant shift, which the layer normalizations would undo.
    table[0] += 30.0 * np.linspace(-1.0, 1.0, table.shape[1])
    model.layers[0].embeddings.assign(table)
    moved = keras.ops.convert_to_numpy(model(tokens))
    real = tokens != 0
    np.testing.assert_allclose(moved[real], base[real], atol=1e-4)
    assert not np.allclose(moved[~real], base[~real])


def test_without_encoding_the_model_is_permutation_equivariant():
    # Why the demo's `none` row cannot learn to reverse, whatever its weights:
    # reversal is not permutation-equivariant (swap two tokens of abc: the
    # reversal of bac is cab, the swap of cba is bca), and this model is.
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


def toy(**kwargs):
    return build_toy_model(**{"vocab_size": 12, "max_length": 10, **kwargs})


TOY = "build_toy_model: "

BAD_INPUTS = [
    pytest.param(
        lambda: toy(tile_size=1.5),
        ValueError,
        TOY
        + "`tile_size` must be None, 0 (the full computation) or a positive integer. Received: tile_size=1.5",
        id="tile-size-float",
    ),
    pytest.param(
        lambda: toy(encoding="relative"),
        ValueError,
        TOY
        + "`encoding` must be one of 'sinusoidal', 'learned', 'rotary', 'alibi' or None. Received: encoding='relative'",
        id="unknown-encoding",
    ),
    pytest.param(
        lambda: toy(d_model=30, num_heads=4),
        ValueError,
        TOY
        + "`d_model` must be divisible by `num_heads`. Received: d_model=30, num_heads=4",
        id="d-model-not-divisible",
    ),
    pytest.param(
        lambda: toy(vocab_size=0),
        ValueError,
        TOY + "`vocab_size` must be a positive integer. Received: vocab_size=0",
        id="vocab-size-zero",
    ),
    pytest.param(
        lambda: toy(max_length=-3),
        ValueError,
        TOY + "`max_length` must be a positive integer. Received: max_length=-3",
        id="max-length-negative",
    ),
    pytest.param(
        lambda: toy(num_layers=0),
        ValueError,
        TOY + "`num_layers` must be a positive integer. Received: num_layers=0",
        id="num-layers-zero",
    ),
    pytest.param(
        lambda: toy(num_heads=0),
        ValueError,
        TOY + "`num_heads` must be a positive integer. Received: num_heads=0",
        id="num-heads-zero",
    ),
    pytest.param(
        lambda: toy(num_heads=2.0),
        ValueError,
        TOY + "`num_heads` must be a positive integer. Received: num_heads=2.0",
        id="num-heads-float",
    ),
    pytest.param(
        lambda: toy(d_model=0),
        ValueError,
        TOY + "`d_model` must be a positive integer. Received: d_model=0",
        id="d-model-zero",
    ),
    pytest.param(
        lambda: toy(dropout=1.0),
        ValueError,
        TOY + "`dropout` must be a number in [0, 1). Received: dropout=1.0",
        id="dropout-one",
    ),
    pytest.param(
        lambda: toy(max_length=5, d_model=16, num_heads=2, encoding="learned")(
            np.ones((1, 6), "int32")
        ),
        ValueError,
        "LearnedPositionEmbedding: the positions do not fit: `start_index` + length = 6 exceeds `max_length` = 5. Received: start_index=0, length=6",
        id="learned-too-long",
    ),
    pytest.param(
        lambda: toy(
            max_length=4, d_model=8, num_heads=2, num_layers=1, encoding="learned"
        )(symbolic(None, 6, dtype="int32")),
        ValueError,
        "LearnedPositionEmbedding: the positions do not fit: `start_index` + length = 6 exceeds `max_length` = 4. Received: start_index=0, length=6",
        id="learned-too-long-symbolic",
    ),
    pytest.param(
        lambda: toy(causal="yes"),
        TypeError,
        TOY + "`causal` must be a bool. Received: causal='yes'",
        id="causal-not-bool",
    ),
    pytest.param(
        lambda: toy(num_layers=2, layer_types=["full_attention"]),
        ValueError,
        TOY + "`layer_types` must be a list of one attention type per block, "
        "num_layers=2 of them. Received: layer_types=['full_attention']",
        id="layer-types-length",
    ),
    pytest.param(
        lambda: toy(num_layers=1, layer_types=["local"]),
        ValueError,
        TOY + "each of `layer_types` must be one of ('full_attention', "
        "'sliding_attention', 'chunked_attention'). Received: 'local'",
        id="layer-types-unknown",
    ),
    pytest.param(
        lambda: toy(num_layers=1, layer_types=["sliding_attention"]),
        ValueError,
        TOY + "`layer_types` has 'sliding_attention' blocks: pass their "
        "`sliding_window`. Received: sliding_window=None",
        id="layer-types-no-window",
    ),
    pytest.param(
        lambda: toy(packed=True, encoding="sinusoidal"),
        ValueError,
        TOY + "a packed model restarts positions at each document, which "
        "`encoding` 'rotary' does (and 'alibi' and None need not): the other "
        "encodings count along the row. Received: encoding='sinusoidal' with "
        "packed=True",
        id="packed-sinusoidal",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


def test_a_packed_model_gives_each_document_its_logits_alone(tmp_path):
    # A packed rotary decoder, a window on one block and full attention on
    # the other: each document of a packed row gets the logits the same
    # weights give it alone, and the model saves and loads in safe mode.
    options = dict(
        vocab_size=20,
        max_length=12,
        d_model=16,
        num_heads=2,
        encoding="rotary",
        causal=True,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=(2, 0),
    )
    packed_model = perturbed(toy(packed=True, **options))
    alone_model = toy(**options)
    alone_model.set_weights(packed_model.get_weights())
    # Documents of one length: alone, they are one batch (one compilation).
    documents = np.arange(1, 13, dtype="int32").reshape(3, 4)
    packed = keras_attention.pack_sequences(documents, 12)
    inputs = {name: packed[name] for name in ("tokens", "segment_ids", "positions")}
    # Compiled on JAX: one program, not an operation at a time.
    got = to_numpy(compiled(lambda x: packed_model(x))(inputs))
    alone = to_numpy(compiled(lambda x: alone_model(x))(documents))
    np.testing.assert_allclose(got[0].reshape(3, 4, -1), alone, atol=1e-4)
    path = tmp_path / "packed.keras"
    packed_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        to_numpy(compiled(lambda x: loaded(x))(inputs)), got, atol=1e-6
    )


# Properties (hypothesis; tests/properties.py) -----------------------------------


@pytest.fixture(autouse=True, scope="module")
def _forget_cached_layers():
    yield
    forget()


@VERY_FEW
@given(order=permutations(), seed=seeds)
def test_toy_model_without_encoding_is_permutation_equivariant(order, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 10, size=(2, len(order)))  # 0 is padding
    model = toy_model(None)
    call = compiled(lambda tokens: model(tokens))  # a new length: one program
    out = keras.ops.convert_to_numpy(call(tokens))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(call(tokens[:, order])), out[:, order], atol=1e-5
    )

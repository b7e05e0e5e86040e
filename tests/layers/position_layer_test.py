"""What the two position layers share, tested once over both.

`SinusoidalPositionEncoding` and `LearnedPositionEmbedding` share their base,
`keras_attention/layers/_position_layer.py`: positions from `start_index`
along axis -2 of inputs of any rank >= 3, a run-time length, the Keras mask
passed through, save and load, and the checks of `inputs` and
`start_index`. Each test here runs on both layers, as keras'
`merging_test.py` does over `base_merge.py`. What one layer does alone (the
sinusoidal formula and `sinusoidal_table`; the learned table, `max_length`
and `lookup`) is tested in that layer's own file.
"""

import keras
import numpy as np
import pytest
from hypothesis import given

import keras_attention
from keras_attention import (
    LearnedPositionEmbedding,
    SinusoidalPositionEncoding,
    sinusoidal_table,
)
from tests.layer_test_case import (
    RNG,
    assert_raises_with,
    jax_only,
    normal,
    symbolic,
    to_numpy,
)
from tests.properties import (
    VERY_FEW,
    WIDTH,
    attention_layers,
    forget,
    permutations,
    rng_normal,
    seeds,
    toy_model,
)

MAX_LENGTH = 16
DEPTH = 4
LAYERS = {"sinusoidal": SinusoidalPositionEncoding, "learned": LearnedPositionEmbedding}
over_both_layers = pytest.mark.parametrize(
    "layer_cls", LAYERS.values(), ids=LAYERS.keys()
)


def new(layer_cls, **kwargs):
    if layer_cls is LearnedPositionEmbedding:
        return LearnedPositionEmbedding(MAX_LENGTH, **kwargs)
    return SinusoidalPositionEncoding(**kwargs)


def built(layer_cls):
    """A layer for inputs of depth `DEPTH`."""
    layer = new(layer_cls)
    layer.build((None, None, DEPTH))
    return layer


def table(layer):
    """`(MAX_LENGTH, DEPTH)`: what the layer adds at each position, from its
    own definition (the learned table; `sinusoidal_table`, whose values the
    sinusoidal layer's file checks against the formula)."""
    if isinstance(layer, LearnedPositionEmbedding):
        return to_numpy(layer.embeddings)
    return to_numpy(sinusoidal_table(MAX_LENGTH, DEPTH))


def tokens():
    tokens = RNG.integers(1, 20, size=(3, 6))
    tokens[0, 4:] = 0
    tokens[1, 2:] = 0
    return tokens


@over_both_layers
@pytest.mark.parametrize("start", [0, 3, 6])
def test_adds_the_encoding_of_each_position(layer_cls, start):
    layer = built(layer_cls)
    x = normal(3, 4, DEPTH)
    np.testing.assert_allclose(
        to_numpy(layer(x, start_index=start)),
        x + table(layer)[start : start + 4],
        atol=1e-6,
    )


@over_both_layers
def test_any_rank_broadcasts_over_leading_axes(layer_cls):
    layer = built(layer_cls)
    x = normal(2, 3, 5, DEPTH)
    np.testing.assert_allclose(to_numpy(layer(x)), x + table(layer)[:5], atol=1e-6)


@over_both_layers
@pytest.mark.parametrize("as_tensor", [False, True])
def test_one_step_at_a_time_equals_whole(layer_cls, as_tensor):
    layer = built(layer_cls)
    x = normal(2, 6, DEPTH)
    whole = to_numpy(layer(x))
    steps = []
    for t in range(6):
        start = keras.ops.convert_to_tensor(t, "int32") if as_tensor else t
        steps.append(to_numpy(layer(x[:, t : t + 1], start_index=start)))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, atol=1e-6)


@over_both_layers
def test_length_known_only_at_run_time(layer_cls):
    inputs = keras.Input((None, DEPTH))
    layer = new(layer_cls)
    model = keras.Model(inputs, layer(inputs))
    assert tuple(model.output_shape) == (None, None, DEPTH)
    for length in (3, MAX_LENGTH):
        x = normal(2, length, DEPTH)
        np.testing.assert_allclose(
            model.predict(x, verbose=0), x + table(layer)[:length], atol=1e-5
        )


@over_both_layers
@pytest.mark.parametrize("mask_zero", [True, False])
def test_padding_mask_passes_through_to_attention(layer_cls, mask_zero):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=mask_zero))
    model.add(new(layer_cls))
    model.add(keras_attention.MultiHeadAttention(num_heads=2, key_dim=4))
    padded = tokens()
    real = padded != 0
    base = to_numpy(model(padded))
    embedding = model.layers[0]
    vectors = to_numpy(embedding.embeddings)
    vectors[0] = RNG.normal(size=8) * 100
    embedding.embeddings.assign(vectors)
    moved = to_numpy(model(padded))
    if mask_zero:
        np.testing.assert_allclose(moved[real], base[real], atol=1e-5)
    else:  # Without the mask the padded token does reach real positions.
        assert np.abs(moved[real] - base[real]).max() > 1e-2


@over_both_layers
def test_compute_mask_returns_the_mask_unchanged(layer_cls):
    mask = keras.ops.convert_to_tensor(tokens() != 0)
    np.testing.assert_array_equal(
        to_numpy(built(layer_cls).compute_mask(normal(3, 6, DEPTH), mask)),
        to_numpy(mask),
    )


@over_both_layers
def test_sequential_save_and_load(layer_cls, tmp_path):
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(20, 8, mask_zero=True))
    if layer_cls is SinusoidalPositionEncoding:
        model.add(SinusoidalPositionEncoding(max_wavelength=1000))
    else:
        model.add(new(layer_cls, embeddings_initializer="random_normal"))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    padded = tokens()
    np.testing.assert_allclose(to_numpy(loaded(padded)), to_numpy(model(padded)))


@pytest.mark.tensorflow_only
@over_both_layers
def test_tensor_start_index_in_a_tf_function_is_checked_when_it_runs(layer_cls):
    import tensorflow as tf

    layer = built(layer_cls)
    x = normal(2, 3, DEPTH)
    np.testing.assert_allclose(
        to_numpy(in_a_tf_function(layer, x, 2)), to_numpy(layer(x, start_index=2))
    )
    assert_raises_with(
        lambda: in_a_tf_function(layer, x, -1),
        tf.errors.InvalidArgumentError,
        f"[{layer_cls.__name__}: `start_index` must be >= 0. Received: start_index] [-1]",
    )


@jax_only
@over_both_layers
def test_negative_traced_start_index_under_jax_jit_gives_nan_rows(layer_cls):
    import jax

    layer = built(layer_cls)
    encode = jax.jit(lambda x, start: layer(x, start_index=start))
    x = normal(2, 3, DEPTH)
    np.testing.assert_allclose(
        np.asarray(encode(x, 1)), to_numpy(layer(x, start_index=1)), atol=1e-6
    )
    output = np.asarray(encode(x, -2))
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=(0, 2)), [True, True, False]
    )


def in_a_tf_function(layer, x, start_index):
    """`layer(x, start_index=...)` in a `tf.function` traced with a run-time
    length and `start_index`."""
    import tensorflow as tf

    encode = tf.function(
        lambda x, start: layer(x, start_index=start),
        input_signature=[
            tf.TensorSpec([None, None, x.shape[-1]]),
            tf.TensorSpec([], tf.int32),
        ],
    )
    return encode(x, start_index)


INPUTS = "`inputs` must be a floating-point tensor (vectors, such as the output of `Embedding`). Received: inputs with dtype "
RANK = (
    "`inputs` must have rank >= 3, (batch, ..., seq_len, dim). Received: inputs.shape="
)
NOT_AN_INT = (
    "`start_index` must be an int or a scalar integer tensor. Received: start_index"
)


# Rows `(id, call(layer), error type, message after "Owner: ")`, each run on
# both layers.
SHARED_BAD_INPUTS = [
    ("rank", lambda layer: layer(normal(5, DEPTH)), ValueError, RANK + "(5, 4)"),
    (
        "rank-symbolic",
        lambda layer: layer(symbolic(None, 8)),
        ValueError,
        RANK + "(None, 8)",
    ),
    (
        "rank-compute-output-shape",
        lambda layer: layer.compute_output_shape((None, 4)),
        ValueError,
        RANK + "(None, 4)",
    ),
    (
        "unknown-depth-symbolic",
        lambda layer: layer(keras.Input((3, None))),
        ValueError,
        "the last dimension of `inputs` must be known. Received: inputs.shape=(None, 3, None)",
    ),
    (
        "int-inputs",
        lambda layer: layer(np.ones((2, 3, DEPTH), "int32")),
        TypeError,
        INPUTS + "int32",
    ),
    (
        "string-inputs",
        lambda layer: layer(np.array([[["a"]]])),
        TypeError,
        INPUTS + "str32",
    ),
]

# Rows `(id, start_index(), error type, message after "Owner: ")`, each run
# on both layers, called on an array and on a `keras.Input`; `start_index()`
# makes the value when the row runs.
BAD_START_INDEX = [
    (
        "negative-start",
        lambda: -1,
        ValueError,
        "`start_index` must be >= 0. Received: start_index=-1",
    ),
    (
        "negative-numpy-start",
        lambda: np.int64(-3),
        ValueError,
        "`start_index` must be >= 0. Received: start_index=-3",
    ),
    (
        "negative-tensor-start",
        lambda: keras.ops.convert_to_tensor(-2, "int32"),
        ValueError,
        "`start_index` must be >= 0. Received: start_index=-2",
    ),
    (
        "start-past-int32",
        lambda: 2**31,
        ValueError,
        "`start_index` must be < 2**31 = 2147483648 (positions are int32). Received: start_index=2147483648",
    ),
    ("float-start", lambda: 1.0, TypeError, NOT_AN_INT + "=1.0 of type float"),
    ("bool-start", lambda: True, TypeError, NOT_AN_INT + "=True of type bool"),
    (
        "float-numpy-start",
        lambda: np.float32(2),
        TypeError,
        NOT_AN_INT + " with dtype float32",
    ),
    (
        "vector-start",
        lambda: np.array([1, 2]),
        ValueError,
        "`start_index` must be a scalar. Received: start_index.shape=(2,)",
    ),
]


def _on_array(start_index):
    return lambda layer: layer(normal(2, 3, DEPTH), start_index=start_index())


def _on_input(start_index):
    return lambda layer: layer(keras.Input((3, DEPTH)), start_index=start_index())


SHARED_BAD_INPUTS += [
    (row_id + suffix, call_on(start_index), error, message)
    for suffix, call_on in (("", _on_array), ("-symbolic", _on_input))
    for row_id, start_index, error, message in BAD_START_INDEX
]


NOT_INTEGER = "`positions` must be an integer tensor. Received: positions with dtype "
POSITIONS_SHAPE = "`positions` must have shape (seq_len,)=(3,) or (batch, seq_len)={}. Received: positions.shape={}"
BOTH = "pass `positions` or `start_index`, not both. Received: start_index={} and positions"

# Rows `(id, positions(), start_index(), error type, message after "Owner: ")`,
# each run on both layers, called on an array `(2, 3, DEPTH)` and on a
# `keras.Input((3, DEPTH))` (batch None); the values out of range are rows
# of each layer's own file (their messages name its range).
BAD_POSITIONS = [
    (
        "float-positions",
        lambda: np.arange(3.0),
        lambda: 0,
        TypeError,
        NOT_INTEGER + "float32",
    ),
    (
        "bool-positions",
        lambda: np.array([True, False, True]),
        lambda: 0,
        TypeError,
        NOT_INTEGER + "bool",
    ),
    (
        "string-positions",
        lambda: np.array(["0", "1", "2"]),
        lambda: 0,
        TypeError,
        NOT_INTEGER + "str32",
    ),
    (
        "list-positions",
        lambda: [0, 1, 2],
        lambda: 0,
        TypeError,
        "`positions` must be a tensor or array. Received: positions of type list",
    ),
    (
        "positions-too-short",
        lambda: np.arange(2),
        lambda: 0,
        ValueError,
        POSITIONS_SHAPE.format("{batch}", "(2,)"),
    ),
    (
        "positions-of-another-batch",
        lambda: np.zeros((3, 3), "int32"),
        lambda: 0,
        ValueError,
        POSITIONS_SHAPE.format("{batch}", "(3, 3)"),
    ),
    (
        "positions-rank-3",
        lambda: np.zeros((2, 3, 1), "int32"),
        lambda: 0,
        ValueError,
        POSITIONS_SHAPE.format("{batch}", "(2, 3, 1)"),
    ),
    (
        "positions-and-start-index",
        lambda: np.arange(3),
        lambda: 1,
        ValueError,
        BOTH.format(1),
    ),
    (
        "positions-and-tensor-start-index",
        lambda: np.arange(3),
        lambda: keras.ops.convert_to_tensor(2, "int32"),
        ValueError,
        BOTH.format(2),
    ),
]


def _with_positions(inputs, positions, start_index):
    return lambda layer: layer(
        inputs(), positions=positions(), start_index=start_index()
    )


SHARED_BAD_INPUTS += [
    (
        row_id + suffix,
        _with_positions(inputs, positions, start_index),
        error,
        message.replace("{batch}", batch),
    )
    for suffix, inputs, batch in (
        ("", lambda: normal(2, 3, DEPTH), "(2, 3)"),
        ("-symbolic", lambda: keras.Input((3, DEPTH)), "(None, 3)"),
    )
    for row_id, positions, start_index, error, message in BAD_POSITIONS
    # On a `keras.Input` the batch is unknown (any batch of positions fits),
    # and a list is refused as it is: one row of it is enough.
    if not (suffix and row_id in ("positions-of-another-batch", "list-positions"))
]


def _called_on(layer_cls, call):
    return lambda: call(built(layer_cls))


BAD_INPUTS = [
    pytest.param(
        _called_on(layer_cls, call),
        error,
        f"{layer_cls.__name__}: {message}",
        id=f"{name}-{row_id}",
    )
    for name, layer_cls in LAYERS.items()
    for row_id, call, error, message in SHARED_BAD_INPUTS
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


# Properties (hypothesis; tests/properties.py) -----------------------------------


@pytest.fixture(autouse=True, scope="module")
def _forget_cached_layers():
    yield
    forget()


@VERY_FEW
@given(order=permutations(identity=False), seed=seeds)
def test_position_information_breaks_permutation_equivariance(order, seed):
    rng = np.random.default_rng(seed)
    x = rng_normal(rng, 2, len(order), WIDTH)
    tokens = rng.integers(1, 10, size=(2, len(order)))
    for encoding in (SinusoidalPositionEncoding(), LearnedPositionEmbedding(6)):
        for attention in attention_layers().values():
            model = keras.Sequential([encoding, attention])
            out = to_numpy(model(x))
            permuted = to_numpy(model(x[:, order]))
            assert np.abs(permuted - out[:, order]).max() > 1e-3, (encoding, attention)
    for encoding in ("sinusoidal", "learned"):
        model = toy_model(encoding)
        out = to_numpy(model(tokens))
        permuted = to_numpy(model(tokens[:, order]))
        assert np.abs(permuted - out[:, order]).max() > 1e-3, encoding


# positions= -----------------------------------------------------------------


@over_both_layers
@pytest.mark.parametrize("start", [0, 5])
@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])
def test_positions_equal_start_index_where_they_coincide(layer_cls, start, per_row):
    layer = built(layer_cls)
    x = normal(2, 3, 4, DEPTH)  # rank 4: the positions run along axis -2
    positions = np.arange(start, start + 4, dtype="int32")
    if per_row:
        positions = np.tile(positions, (2, 1))
    np.testing.assert_allclose(
        to_numpy(layer(x, positions=positions)),
        to_numpy(layer(x, start_index=start)),
        rtol=0,
        atol=1e-6,
    )


@over_both_layers
@pytest.mark.parametrize("rank", [3, 4])
def test_positions_per_row_equal_each_row_with_its_start_index(layer_cls, rank):
    layer = built(layer_cls)
    x = normal(3, *(2,) * (rank - 3), 4, DEPTH)
    starts = [0, 7, 3]
    positions = np.array([np.arange(s, s + 4) for s in starts], "int32")
    rows = [to_numpy(layer(x[i : i + 1], start_index=s)) for i, s in enumerate(starts)]
    np.testing.assert_allclose(
        to_numpy(layer(x, positions=positions)), np.concatenate(rows), atol=1e-6
    )


@over_both_layers
def test_positions_as_a_model_input_save_and_load(layer_cls, tmp_path):
    inputs = keras.Input((None, DEPTH))
    positions = keras.Input((None,), dtype="int32")
    layer = new(layer_cls)
    outputs = layer(inputs, positions=positions)
    assert tuple(outputs.shape) == (None, None, DEPTH)
    model = keras.Model([inputs, positions], outputs)
    x = normal(2, 5, DEPTH)
    at = np.array([[4, 0, 9, 9, 1], [15, 14, 2, 3, 0]], "int32")
    expected = x + table(layer)[at]
    np.testing.assert_allclose(model.predict([x, at], verbose=0), expected, atol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_allclose(loaded.predict([x, at], verbose=0), expected, atol=1e-5)


def allowed_positions(layer_cls):
    """The range of positions in a layer's messages."""
    if layer_cls is LearnedPositionEmbedding:
        return f"[0, `max_length`={MAX_LENGTH})"
    return "[0, 2**31) (positions are int32)"


@pytest.mark.tensorflow_only
@over_both_layers
def test_traced_positions_in_a_tf_function_are_checked_when_it_runs(layer_cls):
    import tensorflow as tf

    layer = built(layer_cls)
    encode = tf.function(
        lambda x, positions: layer(x, positions=positions),
        input_signature=[
            tf.TensorSpec([None, None, DEPTH]),
            tf.TensorSpec([None, None], tf.int32),
        ],
    )
    x = normal(2, 3, DEPTH)
    at = np.array([[0, 1, 2], [9, 4, 15]], "int32")
    np.testing.assert_allclose(
        to_numpy(encode(x, at)), to_numpy(layer(x, positions=at)), atol=1e-6
    )
    assert_raises_with(
        lambda: encode(x, np.array([[0, 1, 2], [-3, 4, 5]], "int32")),
        tf.errors.InvalidArgumentError,
        f"[{layer_cls.__name__}: `positions` must be in {allowed_positions(layer_cls)}. Received: positions from] [-3] [to] [5]",
    )


@jax_only
@over_both_layers
def test_negative_traced_positions_under_jax_jit_give_nan_rows(layer_cls):
    import jax

    layer = built(layer_cls)
    encode = jax.jit(lambda x, positions: layer(x, positions=positions))
    x = normal(2, 3, DEPTH)
    at = np.array([[0, 1, 2], [9, 4, 15]], "int32")
    np.testing.assert_allclose(
        np.asarray(encode(x, at)), to_numpy(layer(x, positions=at)), atol=1e-6
    )
    output = np.asarray(encode(x, np.array([[0, -1, 2], [9, 4, 3]], "int32")))
    np.testing.assert_array_equal(
        np.isnan(output).all(axis=-1), [[False, True, False], [False, False, False]]
    )

"""The tiled path (and, on PyTorch, the fused one) against the full path,
pair for pair, on every backend; TensorFlow-only tests check its graphs.

The full path is reached with `return_weights=True`, which always uses it;
the tiled path with a small `tile_size`, so that short sequences already span
several tiles, lengths are not multiples of the tile, and causal and window
tiles get skipped.
"""

import keras
import numpy as np
import pytest

from keras_attention import (
    MultiHeadAttention,
    alibi_slopes,
    scaled_dot_product_attention,
)
from tests.layer_test_case import RNG, normal, to_numpy

TILE = 8


def full(q, k, v, mask=None, **kwargs):
    return scaled_dot_product_attention(q, k, v, mask, return_weights=True, **kwargs)[0]


def tiled(q, k, v, mask=None, **kwargs):
    return scaled_dot_product_attention(q, k, v, mask, tile_size=TILE, **kwargs)


def default(q, k, v, mask=None, **kwargs):
    """`tile_size=None`: the full path at these lengths, except on PyTorch,
    where its fused kernel runs whenever its result is ours."""
    return scaled_dot_product_attention(q, k, v, mask, **kwargs)


def value_and_grads(attention, q, k, v, **kwargs):
    """The output and the gradients of `sum(output * cotangent)`, by the
    backend's own differentiation."""
    backend = keras.backend.backend()

    def loss(q, k, v):
        output = attention(q, k, v, **kwargs)
        output32 = keras.ops.cast(output, "float32")
        count = keras.ops.size(output32)
        cotangent = keras.ops.cos(keras.ops.arange(count, dtype="float32"))
        cotangent = keras.ops.reshape(cotangent, keras.ops.shape(output32))
        return keras.ops.sum(output32 * cotangent), output

    if backend == "tensorflow":
        import tensorflow as tf

        q, k, v = (tf.convert_to_tensor(x) for x in (q, k, v))
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            total, output = loss(q, k, v)
        return [output, *tape.gradient(total, [q, k, v])]
    if backend == "jax":
        import jax

        grads, output = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(
            q, k, v
        )
        return [output, *grads]
    import torch

    q, k, v = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    total, output = loss(q, k, v)
    total.backward()
    return [output.detach(), q.grad, k.grad, v.grad]


def assert_same(got, expected):
    """Outputs within 1e-5, gradients within 1e-4."""
    np.testing.assert_allclose(to_numpy(got[0]), to_numpy(expected[0]), atol=1e-5)
    for g, e in zip(got[1:], expected[1:], strict=True):
        np.testing.assert_allclose(to_numpy(g), to_numpy(e), atol=1e-4)


def all_ops(function, *args):
    """Every op of the traced `function`, those of nested functions too."""
    graphs = [function.get_concrete_function(*args).graph]
    seen = set()
    while graphs:
        graph = graphs.pop()
        yield from graph.get_operations()
        for name, nested in graph._functions.items():
            if name not in seen:
                seen.add(name)
                graphs.append(nested.graph)


def with_empty_rows(shape, rows):
    mask = RNG.random(shape) > 0.3
    mask[..., rows, :] = False
    return mask


CASES = {
    "unmasked": dict(lead=(2, 3), q_len=21, k_len=21),
    "causal, q_len < k_len, ALiBi": dict(
        lead=(2, 3), q_len=13, k_len=29, causal=True, alibi_slopes=alibi_slopes(3)
    ),
    "causal, q_len > k_len": dict(lead=(2, 3), q_len=29, k_len=13, causal=True),
    "causal window, ALiBi per entry": dict(
        lead=(2,),
        q_len=37,
        k_len=30,
        causal=True,
        sliding_window=6,
        alibi_slopes=np.array([[[0.7]], [[0.05]]], "float32"),
    ),
    # Queries 20 and beyond have no key within the window: zero rows.
    "window past the keys": dict(lead=(2,), q_len=40, k_len=17, sliding_window=4),
    "mask with empty rows, ALiBi": dict(
        lead=(2, 3),
        q_len=21,
        k_len=27,
        mask=with_empty_rows((2, 1, 21, 27), [0, 9]),
        alibi_slopes=alibi_slopes(3),
    ),
    "padding mask, whole tiles": dict(
        lead=(2, 3), q_len=16, k_len=24, mask=RNG.random((2, 1, 1, 24)) > 0.4
    ),
    "query mask": dict(
        lead=(2, 3), q_len=21, k_len=18, mask=RNG.random((21, 1)) > 0.3, causal=True
    ),
    "unbatched, integer mask and window": dict(
        lead=(),
        q_len=25,
        k_len=23,
        mask=(RNG.random((25, 23)) > 0.3).astype("int32"),
        sliding_window=9,
    ),
}


@pytest.mark.parametrize("path", [tiled, default], ids=["tiled", "default"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_tiled_equals_full_values_and_gradients(case, path):
    case = dict(case)
    lead, q_len, k_len = case.pop("lead"), case.pop("q_len"), case.pop("k_len")
    q, k, v = normal(*lead, q_len, 4), normal(*lead, k_len, 4), normal(*lead, k_len, 3)
    expected = value_and_grads(full, q, k, v, **case)
    got = value_and_grads(path, q, k, v, **case)
    assert_same(got, expected)


@pytest.mark.parametrize("path", [tiled, default], ids=["tiled", "default"])
def test_rows_that_see_nothing_are_zero_with_finite_gradients(path):
    q, k, v = normal(2, 3, 21, 4), normal(2, 3, 27, 4), normal(2, 3, 27, 3)
    mask = with_empty_rows((2, 1, 21, 27), [3, 17])
    output, *grads = value_and_grads(path, q, k, v, mask=mask)
    assert np.all(to_numpy(output)[..., [3, 17], :] == 0)
    assert np.any(to_numpy(output)[..., 4, :] != 0)
    for grad in grads:
        assert np.all(np.isfinite(to_numpy(grad)))
    assert np.all(to_numpy(grads[0])[..., [3, 17], :] == 0)


@pytest.mark.parametrize("path", [tiled, default], ids=["tiled", "default"])
@pytest.mark.parametrize("seed", [5, "generator"])
def test_dropout_drops_the_same_weights_on_both_paths(seed, path):
    q, k, v = normal(2, 3, 21, 4), normal(2, 3, 19, 4), normal(2, 3, 19, 3)
    mask = RNG.random((2, 1, 21, 19)) > 0.2
    options = dict(
        mask=mask, causal=True, dropout=0.4, training=True, alibi_slopes=alibi_slopes(3)
    )

    def seeds():
        return keras.random.SeedGenerator(7) if seed == "generator" else seed

    expected = value_and_grads(full, q, k, v, seed=seeds(), **options)
    got = value_and_grads(path, q, k, v, seed=seeds(), **options)
    assert_same(got, expected)
    undropped = to_numpy(path(q, k, v, mask, causal=True, alibi_slopes=alibi_slopes(3)))
    assert not np.allclose(to_numpy(got[0]), undropped, atol=1e-3)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_graph_mode_and_xla_equal_the_eager_full_path(jit_compile):
    import tensorflow as tf

    q, k, v = normal(2, 2, 30, 4), normal(2, 2, 26, 4), normal(2, 2, 26, 3)
    options = dict(
        mask=RNG.random((2, 1, 1, 26)) > 0.2,
        causal=True,
        sliding_window=7,
        dropout=0.3,
        seed=11,
        training=True,
    )
    expected = value_and_grads(full, q, k, v, **options)
    compiled = tf.function(
        lambda: value_and_grads(tiled, q, k, v, **options), jit_compile=jit_compile
    )
    assert_same(compiled(), expected)


@pytest.mark.tensorflow_only
def test_float16_inputs_accumulate_in_float32():
    q, k, v = (normal(2, 21, 4, dtype="float16") for _ in range(3))
    got = tiled(q, k, v, causal=True)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    np.testing.assert_allclose(
        to_numpy(got).astype("float32"),
        to_numpy(full(q, k, v, causal=True)).astype("float32"),
        atol=2e-3,
    )
    # Each product is ~6e4 * 6e4: infinite in float16, fine in float32.
    big = np.full((2, 20, 4), 6e4, "float16")
    assert np.all(np.isfinite(to_numpy(tiled(big, big, v[:, :20]))))


@pytest.mark.tensorflow_only
def test_neither_pass_creates_a_q_len_by_k_len_tensor():
    import tensorflow as tf

    length = 500  # not a multiple of the tile: the last tiles run past it
    q = normal(1, 2, length, 8)
    padding = RNG.random((1, 1, 1, length)) > 0.1  # (..., 1, k_len)
    full_mask = RNG.random((1, 1, length, length)) > 0.1

    def large_outputs(attention, mask):
        """(op type, name) of every op of a forward+backward graph, nested
        loops included, with an output of at least q_len * k_len numbers, and
        the number of loops seen."""

        @tf.function
        def step(q, mask):
            with tf.GradientTape() as tape:
                tape.watch(q)
                output = attention(
                    q,
                    q,
                    q,
                    mask,
                    causal=True,
                    dropout=0.1,
                    seed=1,
                    training=True,
                    alibi_slopes=alibi_slopes(2),
                )
                loss = tf.reduce_sum(output * output)
            return tape.gradient(loss, q)

        large, loops = [], 0
        for op in all_ops(step, tf.constant(q), tf.constant(mask)):
            loops += op.type in ("While", "StatelessWhile")
            for t in op.outputs:
                # A tensor-list handle holds tiles made by other ops.
                if t.dtype in (tf.variant, tf.resource) or op.type == "Placeholder":
                    continue
                assert t.shape.is_fully_defined(), (op.name, t.shape)
                if t.shape.num_elements() >= length * length:
                    large.append((op.type, op.name))
        return large, loops

    large, loops = large_outputs(tiled, padding)
    assert loops >= 4, "the walk must reach the forward and backward tile loops"
    assert large == []
    # A (q_len, k_len) mask is only passed along, never copied or broadcast.
    large, _ = large_outputs(tiled, full_mask)
    assert {op_type for op_type, _ in large} <= {"Reshape", "StatelessWhile"}, large
    # The same walk finds the full path's (1, 2, q_len, k_len) weights.
    large, _ = large_outputs(full, padding)
    assert any(op_type == "Softmax" for op_type, _ in large), large


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "causal,window", [(True, None), (False, 5), (True, 5), (False, 13)]
)
@pytest.mark.parametrize(
    "bottom_right", [False, True], ids=["top_left", "bottom_right"]
)
@pytest.mark.parametrize("q_len,k_len", [(61, 53), (21, 45)])
def test_only_tiles_that_meet_the_pattern_are_visited(
    causal, window, bottom_right, q_len, k_len
):
    from keras_attention import _attention_pattern as pattern
    from keras_attention._backend import _tf_tiled as tiled_tensorflow

    tile = 8
    first = k_len - q_len if bottom_right else 0
    q, k = normal(1, q_len, 4), normal(1, k_len, 4)
    sides = None if window is None else (window - 1, window - 1)
    static = pattern.Pattern(causal=causal, window=sides)
    spec = tiled_tensorflow._Spec(
        q,
        k,
        None,
        spec=static,
        query_start=first,
        dropout=0.0,
        seed=None,
        tiles=(tile, tile),
    )
    visit = tiled_tensorflow._tile_map(
        static, pattern.NO_ROWS, (tile, tile), (q_len, k_len), first
    )
    rows, cols = np.arange(q_len)[:, None] + first, np.arange(k_len)[None, :]
    allowed = np.ones((q_len, k_len), bool)
    if causal:
        allowed &= cols <= rows
    if window is not None:
        allowed &= np.abs(rows - cols) < window

    def meets(i, j):
        return allowed[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile].any()

    q_tiles, k_tiles = -(-q_len // tile), -(-k_len // tile)
    order, count = (to_numpy(x) for x in spec.visit_order(visit))
    for i in range(q_tiles):
        expected = [j for j in range(k_tiles) if meets(i, j)]
        assert expected == order[i, : count[i]].tolist()
    order, count = (to_numpy(x) for x in spec.visit_order(visit, transposed=True))
    for j in range(k_tiles):
        expected = [i for i in range(q_tiles) if meets(i, j)]
        assert expected == order[j, : count[j]].tolist()


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_long_calls_and_unknown_lengths_are_tiled_tile_size_0_never(jit_compile):
    import tensorflow as tf

    from keras_attention import ops
    from keras_attention._backend import tensorflow as backend

    def loops(q_len, k_len, batch=None, tile_size=None, causal=False):
        function = tf.function(
            lambda q, k: scaled_dot_product_attention(
                q, k, k, tile_size=tile_size, causal=causal
            ),
            jit_compile=jit_compile,
        )
        specs = (tf.TensorSpec((batch, 1, n, 4)) for n in (q_len, k_len))
        return any(
            op.type in ("While", "StatelessWhile") for op in all_ops(function, *specs)
        )

    # Under XLA the tiles start at TILED_FROM_LOGITS, and so do causal
    # tiles, which skip work; outside XLA the others (where TensorFlow's own
    # full computation is faster) at a larger threshold.
    threshold = ops.TILED_FROM_LOGITS
    side = int(np.sqrt(threshold))
    assert loops(side, side, causal=True)
    assert not loops(side, side // 2, causal=True)
    if not jit_compile:
        threshold = backend.OUTSIDE_XLA_TILED_FROM_LOGITS
        assert threshold > ops.TILED_FROM_LOGITS
        assert not loops(side, side)
    side = int(np.sqrt(threshold))
    assert loops(side, side)
    assert not loops(side, side // 2)
    assert loops(side, side // 2, batch=2)
    # Unknown at trace time: tiles, whose sizes are computed at run time.
    assert loops(None, 3)
    assert loops(None, None)
    # tile_size=0: the full computation, however long (TensorFlow Lite).
    assert not loops(side, side, tile_size=0)
    assert not loops(None, None, tile_size=0)


@pytest.mark.tensorflow_only
def test_fit_on_a_second_length_traces_the_unknown_length_with_tiles(monkeypatch):
    # `fit` retraces for a second length with the length unknown, and that
    # trace once ran the full O(T²) path. Whichever path a trace takes, it
    # calls the kernel or not: record the calls.
    from keras_attention._backend import tensorflow as backend

    kernel, traced = backend.attention, []

    def recorded(query, key, *args, **kwargs):
        traced.append((query.shape[-2], key.shape[-2]))
        return kernel(query, key, *args, **kwargs)

    monkeypatch.setattr(backend, "attention", recorded)
    inputs = keras.Input((None, 8))
    outputs = MultiHeadAttention(num_heads=2, key_dim=4, causal=True)(inputs, inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    for length in (6, 9):  # short: only an unknown length takes the tiles
        x = normal(2, length, 8)
        history = model.fit(x, x, batch_size=2, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    assert traced and set(traced) == {(None, None)}, traced


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "lengths,batch,tile_size,most",
    [
        # Explicit tiles of 8: padded to 24, 32 or 40, and 24 and 32
        # themselves, whole tiles, which run unpadded with static lengths.
        (range(17, 37), 2, 8, 5),
        # Chosen tiles: 2 of 256 for 512, else 3 of 192 (rounded up from 171+).
        (range(512, 532), 16, None, 2),
    ],
    ids=["tile_size", "chosen"],
)
def test_twenty_lengths_compile_a_few_times_not_twenty(lengths, batch, tile_size, most):
    from keras_attention._backend import _tf_tiled as backend

    counted = backend._compiled_forward
    before = counted.experimental_get_tracing_count()
    for length in lengths:
        q = normal(batch, 1, length, 4)
        padding = RNG.random((batch, 1, 1, length)) > 0.1
        got = scaled_dot_product_attention(
            q, q, q, padding, causal=True, tile_size=tile_size
        )
        if length in (lengths[0], lengths[-1]):
            np.testing.assert_allclose(
                to_numpy(got), to_numpy(full(q, q, q, padding, causal=True)), atol=1e-5
            )
    assert counted.experimental_get_tracing_count() - before <= most


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "q_len,k_len,static", [(16, 24, True), (16, 21, False), (21, 24, False)]
)
def test_whole_tiles_run_unpadded_with_static_lengths(
    monkeypatch, q_len, k_len, static
):
    # Lengths known when traced that are whole tiles reach the kernels as
    # Python ints: no key mask past the end, no run-time bounds. Others are
    # padded and passed as run-time values (one compilation per tile count).
    from keras_attention._backend import _tf_tiled as backend

    kernel, seen = backend._compiled_forward, []

    def recorded(
        query, key, value, sinks, mask, seed, slopes, data, visit, *sizes, **config
    ):
        seen.append((query.shape[-2], key.shape[-2], *sizes))
        return kernel(
            query, key, value, sinks, mask, seed, slopes, data, visit, *sizes, **config
        )

    monkeypatch.setattr(backend, "_compiled_forward", recorded)
    q, k, v = normal(2, q_len, 4), normal(2, k_len, 4), normal(2, k_len, 3)
    assert_same(value_and_grads(tiled, q, k, v), value_and_grads(full, q, k, v))
    ((q_rows, k_rows, q_size, k_size, *tile_sizes, first),) = seen
    assert tile_sizes == [TILE, TILE] and int(first) == 0
    assert (q_rows, k_rows) == (-(-q_len // TILE) * TILE, -(-k_len // TILE) * TILE)
    if static:
        assert type(q_size) is int and type(k_size) is int
        assert (q_size, k_size) == (q_len, k_len)
    else:
        assert not isinstance(q_size, int) and not isinstance(k_size, int)
        assert (int(q_size), int(k_size)) == (q_len, k_len)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_unknown_lengths_in_graph_mode_and_xla(jit_compile):
    import tensorflow as tf

    # Traced once for any length (as Keras may trace a model), then run on
    # lengths that give one tile and several uneven ones.
    spec = tf.TensorSpec((None, 2, None, 4))
    compiled = tf.function(
        lambda q, k, v: value_and_grads(
            scaled_dot_product_attention, q, k, v, causal=True, tile_size=256
        ),
        input_signature=[spec] * 3,
        jit_compile=jit_compile,
    )
    for length in (5, 700):
        q, k, v = (normal(1, 2, length, 4) for _ in range(3))
        expected = value_and_grads(full, q, k, v, causal=True)
        assert_same(compiled(q, k, v), expected)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "path", [full, tiled, default], ids=["full", "tiled", "default"]
)
def test_grouped_keys_and_values_are_never_copied_per_group(path):
    import tensorflow as tf

    # 8 query heads share 2 key/value heads; lengths and depths all differ,
    # so a copy of the values per group has a shape nothing else has.
    q, k, v = normal(1, 8, 20, 4), normal(1, 2, 21, 4), normal(1, 2, 21, 3)
    padding = RNG.random((1, 1, 1, 21)) > 0.2
    options = dict(causal=True, dropout=0.2, seed=4, training=True)
    repeated = [np.repeat(x, 4, axis=1) for x in (k, v)]
    expected = value_and_grads(path, q, *repeated, mask=padding, **options)
    # A shared key's gradient is the sum of its copies' gradients.
    expected[2:] = [to_numpy(g).reshape(1, 2, 4, 21, -1).sum(2) for g in expected[2:]]
    assert_same(value_and_grads(path, q, k, v, mask=padding, **options), expected)

    @tf.function
    def step(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            loss = tf.reduce_sum(path(q, k, v, padding, **options) ** 2)
        return tape.gradient(loss, [q, k, v])

    copies = {(8, 21, 4), (8, 21, 3), (4, 21, 4), (4, 21, 3)}
    for op in all_ops(step, *(tf.constant(x) for x in (q, k, v))):
        for t in op.outputs:
            if t.dtype in (tf.variant, tf.resource) or t.shape.rank is None:
                continue
            dims = [n for n in t.shape.as_list() if n != 1]
            assert tuple(dims[-3:]) not in copies, (op.type, op.name, t.shape)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("q_len,k_len", [(13, 30), (30, 13)], ids=["fewer", "more"])
@pytest.mark.parametrize("window", [None, 5])
def test_bottom_right_tiles_equal_full(q_len, k_len, window):
    q, k, v = normal(2, q_len, 4), normal(2, k_len, 4), normal(2, k_len, 3)
    options = dict(
        causal=True,
        sliding_window=window,
        alignment="bottom_right",
        dropout=0.3,
        seed=2,
        training=True,
    )
    assert_same(
        value_and_grads(tiled, q, k, v, **options),
        value_and_grads(full, q, k, v, **options),
    )


@pytest.mark.tensorflow_only
def test_eager_calls_of_several_lengths_print_no_retracing_warning(caplog):
    # Each new length traces the compiled kernel once, by design; TensorFlow
    # would warn from the fifth trace on.
    for length in range(8, 56, 8):
        q = normal(1, 1, length, 4)
        tiled(q, q, q)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


@pytest.mark.tensorflow_only
def test_a_padding_mask_of_a_length_unknown_when_traced_is_padded_to_whole_tiles():
    # As in `fit` on batches of varying lengths with Embedding(mask_zero=True):
    # the mask's shape must follow the tiles, as the keys' does, or the
    # compiled kernels compile anew for every length.
    import tensorflow as tf

    from keras_attention._backend import _tf_tiled

    pad = tf.function(
        lambda mask, padded: tf.shape(_tf_tiled._pad_mask(mask, 64, padded)),
        input_signature=[
            tf.TensorSpec([2, 1, 1, None], tf.bool),
            tf.TensorSpec([], tf.int32),
        ],
    )
    assert pad(np.ones((2, 1, 1, 37), bool), 64).numpy().tolist() == [2, 1, 1, 64]
    # A mask axis of size 1 at run time broadcasts: it stays 1.
    assert pad(np.ones((2, 1, 1, 1), bool), 64).numpy().tolist() == [2, 1, 1, 1]

"""The key/value cache of `MultiHeadAttention` and `TransformerBlock`
(`keras_attention/layers/_kv_cache.py`): `init_cache`, calls with `cache=`
and `cache_index=`, caches in segments and rings. Every cached call equals
the matching rows of the full causal pass; the keys land where they belong.
`generate`, which decodes through these caches, is tested in
`tests/generation_test.py`.
"""

import functools

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

import keras_attention
from keras_attention import generation
from keras_attention.layers.multi_head_attention import MultiHeadAttention
from tests.generation_test import VOCAB, gqa_window_model, toy
from tests.layer_test_case import (
    MIXED_TOLERANCE,
    assert_raises_with,
    compiled,
    normal,
    to_numpy,
)
from tests.properties import VERY_FEW, WIDTH, rng_normal, seeds


def mha(**kwargs):
    return MultiHeadAttention(**{"num_heads": 2, "key_dim": 4, **kwargs})


MHA = "MultiHeadAttention: "


MODELS = {
    "rotary": lambda: toy("rotary"),
    "rotary-linear": lambda: keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(VOCAB, 16),
            MultiHeadAttention(
                2,
                8,
                causal=True,
                rotary_embedding=keras_attention.RotaryEmbedding(
                    scaling={"type": "linear", "factor": 2.0}
                ),
            ),
            keras.layers.Dense(VOCAB),
        ]
    ),
    "alibi": lambda: toy("alibi"),
    "learned": lambda: toy("learned"),
    "gqa-mqa-window": gqa_window_model,
}


# Not "gqa-mqa-window": its window layer's cache is a ring, written in order
# (generate does that: test_window_model_generates_past_its_ring in
# tests/generation_test.py).
@pytest.mark.parametrize("name", [name for name in MODELS if "window" not in name])
@pytest.mark.parametrize("shortest", [512, 2], ids=["one-segment", "segments"])
def test_cached_logits_equal_the_full_pass_at_every_step(name, shortest):
    # Prompts of lengths 3 and 1 in one batch, right-padded: each row writes
    # and reads its cache at its own positions (a per-row cache_index). With
    # `shortest` 2 the caches are segments of 2 positions, and each step
    # reads the ones it needs.
    model = MODELS[name]()
    tokens = np.array([[3, 4, 5, 6, 7, 8], [9, 2, 10, 11, 3, 0]], dtype="int32")
    lengths = np.array([3, 1], dtype="int32")
    full = to_numpy(model(tokens))  # (2, 6, vocab)
    layers = generation._decoder_layers(model)
    caches = tuple(
        layer.init_cache(2, 6, segment_length=shortest)
        for layer in layers[1]
        if hasattr(layer, "init_cache")
    )
    forward = compiled(functools.partial(generation._forward, layers))
    positions = np.tile(np.arange(3, dtype="int32"), (2, 1))
    logits, caches = forward(tokens[:, :3], positions, caches, np.int32(0))
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(
            to_numpy(logits)[row, :length], full[row, :length], atol=1e-5
        )
    for step in range(3):
        index = lengths + step
        rows = np.arange(2)
        logits, caches = forward(
            tokens[rows, index][:, None], index[:, None], caches, index
        )
        np.testing.assert_allclose(to_numpy(logits)[:, 0], full[rows, index], atol=1e-5)


def test_transformer_block_cache_returns_output_and_cache():
    model = toy("rotary")
    block = model.get_layer("block_0")
    x = keras.random.normal((2, 4, 16))
    full = to_numpy(block(x))

    def decode(x):
        cache = block.init_cache(2, 5)
        first, cache = block(x[:, :3], cache=cache, cache_index=0)
        last, weights, cache = block(
            x[:, 3:], cache=cache, cache_index=3, return_attention_scores=True
        )
        return first, last, weights, cache

    first, last, weights, cache = compiled(decode)(x)
    np.testing.assert_allclose(to_numpy(first), full[:, :3], atol=1e-5)
    np.testing.assert_allclose(to_numpy(last), full[:, 3:], atol=1e-5)
    assert tuple(weights.shape) == (2, 2, 1, 5)
    assert [tuple(part.shape) for part in cache[0]] == [(2, 2, 5, 8)]
    # Positions past the filled part get no weight.
    assert np.all(to_numpy(weights)[:, :, :, 4] == 0)


def test_cache_holds_the_compute_dtype():
    layer = MultiHeadAttention(2, 4, causal=True, dtype="mixed_float16")
    x = keras.random.normal((2, 3, 8))
    full = to_numpy(layer(x))  # builds the layer outside `jax.jit`

    def decode(x):
        cache = layer.init_cache(2, 4)
        first, cache = layer(x, cache=cache, cache_index=0)
        last, cache = layer(x[:, :1], cache=cache, cache_index=np.array([3, 2]))
        return first, last, cache

    first, last, cache = compiled(decode)(x)
    dtypes = {
        keras.backend.standardize_dtype(t.dtype)
        for t in (first, last, *keras.tree.flatten(cache))
    }
    assert dtypes == {"float16"}
    np.testing.assert_allclose(
        to_numpy(first), full, atol=MIXED_TOLERANCE["mixed_float16"]
    )


def cached_call(cache=None, cache_index=0, **kwargs):
    """A call of a causal layer with a cache of 4 positions on 2 new steps;
    `cache` makes a bad cache from the layer."""
    layer = mha(causal=True)
    cache = layer.init_cache(2, 4) if cache is None else cache(layer)
    return layer(normal(2, 2, 8), cache=cache, cache_index=cache_index, **kwargs)


def ring_call(**kwargs):
    """A step of a window-2 layer through its ring cache of 2 positions."""
    layer = mha(causal=True, sliding_window=2)
    cache = layer.init_cache(2, 4)
    return layer(normal(2, 1, 8), cache=cache, cache_index=3, **kwargs)


BAD_INPUTS = [
    pytest.param(
        lambda: mha().__call__(
            normal(2, 3, 8), cache=mha().init_cache(2, 4), cache_index=0
        ),
        ValueError,
        MHA
        + "a cached call of several new positions must be causal, as decoding is (a prompt fed through the cache would otherwise attend to its own later tokens): build the layer with causal=True, or pass use_causal_mask=True. Received: a call that is not causal with q_len=3",
        id="cached-prompt-not-causal",
    ),
    pytest.param(
        lambda: cached_call(use_causal_mask=False),
        ValueError,
        MHA
        + "a cached call of several new positions must be causal, as decoding is (a prompt fed through the cache would otherwise attend to its own later tokens): build the layer with causal=True, or pass use_causal_mask=True. Received: a call that is not causal with q_len=2",
        id="cached-prompt-causal-mask-off",
    ),
    pytest.param(
        lambda: cached_call(cache_index=3),
        ValueError,
        MHA + "the cache overflows: `cache_index` + q_len must be at most "
        "max_length=4, the length of the cache. Received: cache_index=3, q_len=2",
        id="cache-overflow",
    ),
    pytest.param(
        lambda: cached_call(cache_index=np.array([0, 3], "int32")),
        ValueError,
        MHA + "the cache overflows: `cache_index` + q_len must be at most "
        "max_length=4, the length of the cache. Received: cache_index=[0, 3], q_len=2",
        id="cache-overflow-per-row",
    ),
    pytest.param(
        lambda: ring_call(return_attention_scores=True),
        ValueError,
        MHA + "a ring cache (`sliding_window`=2, a cache of 2 >= sliding_window "
        "positions) keeps no weights by position: call with "
        "return_attention_scores=False, or use a cache shorter than the window. "
        "Received: return_attention_scores=True",
        id="ring-cache-scores",
    ),
    pytest.param(
        lambda: cached_call(cache_index=-1),
        ValueError,
        MHA + "`cache_index` must be >= 0. Received: cache_index=-1",
        id="cache-index-negative",
    ),
    pytest.param(
        lambda: cached_call(cache_index=np.zeros((3,), "int32")),
        ValueError,
        MHA + "`cache_index` must have shape () or (batch,)=(2,). "
        "Received: cache_index.shape=(3,)",
        id="cache-index-wrong-shape",
    ),
    pytest.param(
        lambda: cached_call(cache_index=np.float32(1.0)),
        TypeError,
        MHA + "`cache_index` must be an int or an integer tensor of shape () or "
        "(batch,). Received: cache_index with dtype float32",
        id="cache-index-float",
    ),
    pytest.param(
        lambda: cached_call(cache_index=None),
        ValueError,
        MHA + "a `cache` needs `cache_index`, the number of positions already in "
        "it (an int, or a `(batch,)` integer tensor for one per row). "
        "Received: cache_index=None",
        id="cache-without-index",
    ),
    pytest.param(
        lambda: mha(causal=True)(normal(2, 2, 8), cache_index=0),
        ValueError,
        MHA + "`cache_index` needs a `cache` (see `init_cache`). "
        "Received: cache=None, cache_index=0",
        id="cache-index-without-cache",
    ),
    pytest.param(
        lambda: cached_call(cache=lambda layer: layer.init_cache(2, 4)[0][0]),
        ValueError,
        MHA + "`cache` must be the pair (key_cache, value_cache) that "
        "`init_cache` returns. Received: cache of type "
        + type(keras.ops.zeros(())).__name__,
        id="cache-not-a-pair",
    ),
    pytest.param(
        lambda: cached_call(cache=lambda layer: mha(num_heads=4).init_cache(2, 4)),
        ValueError,
        MHA + "`cache` must be (key_cache, value_cache) of shapes (2, 2, "
        "max_length, 4) and (2, 2, max_length, 4) (or tuples of such segments, "
        "of the same lengths), as `init_cache(batch_size, max_length)` makes "
        "them. Received: shapes (2, 4, 4, 4) and (2, 4, 4, 4)",
        id="cache-wrong-shape",
    ),
    pytest.param(
        lambda: cached_call(
            cache=lambda layer: tuple(
                tuple(keras.ops.cast(c, "int32") for c in part)
                for part in layer.init_cache(2, 4)
            )
        ),
        ValueError,
        MHA + "`cache` must hold the layer's compute dtype float32. Received: "
        "cache dtypes int32",
        id="cache-wrong-dtype",
    ),
    pytest.param(
        lambda: cached_call(value=normal(2, 2, 8)),
        ValueError,
        MHA + "with a `cache`, the layer attends from `query` to itself and the "
        "cache, and takes no `value` (the keys are the cache, masked by "
        "position). Received: a `value`",
        id="cache-with-value",
    ),
    pytest.param(
        lambda: cached_call(start_index=1),
        ValueError,
        MHA + "with a `cache`, the layer attends from `query` to itself and the "
        "cache, and takes no `start_index` (the positions follow `cache_index`). "
        "Received: a `start_index`",
        id="cache-with-start-index",
    ),
    pytest.param(
        lambda: keras_attention.ScaledDotProductAttention()(
            normal(2, 2, 8), cache=(), cache_index=0
        ),
        ValueError,
        "ScaledDotProductAttention: `cache` and `cache_index` need the "
        "projections of `MultiHeadAttention`; this layer keeps no cache. "
        "Received: cache_index=0",
        id="cache-on-scaled-dot-product-attention",
    ),
    pytest.param(
        lambda: mha().init_cache(0, 4),
        ValueError,
        MHA + "`batch_size` must be a positive integer. Received: batch_size=0",
        id="init-cache-batch-zero",
    ),
    pytest.param(
        lambda: keras_attention.TransformerBlock(
            num_heads=2, intermediate_dim=8, causal=True
        ).init_cache(2, 4),
        ValueError,
        "TransformerBlock: `init_cache` needs the block built, as the input "
        "width sizes the heads: call it once or build its model first.",
        id="init-cache-unbuilt",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


@pytest.mark.parametrize("per_row", [False, True], ids=["scalar", "per-row"])
def test_a_cached_step_reads_only_the_segments_it_needs(per_row):
    # Segments of 2, 2 and 4 positions: a call writing positions 0-2 spans
    # the first two, and the step at position 3 reads only them. NaN in the
    # third would poison attention to the whole cache (a zero weight times
    # NaN is NaN).
    layer = MultiHeadAttention(num_heads=2, key_dim=4, causal=True)
    x = normal(2, 4, 8)
    layer.build(x.shape)
    keys, values = layer.init_cache(2, 8, segment_length=2)
    assert [tuple(part.shape) for part in keys] == [(2, 2, n, 4) for n in (2, 2, 4)]
    poisoned = tuple((*part[:2], np.nan + part[2]) for part in (keys, values))

    def index(i):
        return np.full((2,), i, "int32") if per_row else i

    def decode(cache):
        first, cache = layer(x[:, :3], cache=cache, cache_index=index(0))
        last, weights, cache = layer(
            x[:, 3:], cache=cache, cache_index=index(3), return_attention_scores=True
        )
        return layer(x), first, last, weights, cache, layer.key_dense(x)

    whole, first, last, weights, cache, keys = compiled(decode)(poisoned)
    whole = to_numpy(whole)
    np.testing.assert_allclose(to_numpy(first), whole[:, :3], atol=1e-5)
    np.testing.assert_allclose(to_numpy(last), whole[:, 3:], atol=1e-5)
    # Weights over all 8 positions, none past the filled 4.
    assert tuple(weights.shape) == (2, 2, 1, 8)
    np.testing.assert_array_equal(to_numpy(weights)[..., 4:], 0.0)
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, atol=1e-6)
    # The keys were written where they belong, across the segments, and the
    # third segment left as it was.
    written = np.concatenate([to_numpy(part) for part in cache[0][:2]], axis=2)
    expected = to_numpy(keys).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(written, expected, atol=1e-6)
    assert np.isnan(to_numpy(cache[0][2])).all()


def test_a_pair_of_single_arrays_is_a_one_segment_cache():
    # A cache made by hand as two arrays (longer than a segment): each call
    # returns the same form, the steps equal the whole pass, and the keys
    # land where they belong.
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, num_key_value_heads=1, causal=True
    )
    x = normal(2, 5, 8)
    layer.build(x.shape)

    def decode(cache):
        first, cache = layer(x[:, :3], cache=cache, cache_index=0)
        last, weights, cache = layer(
            x[:, 3:], cache=cache, cache_index=3, return_attention_scores=True
        )
        return layer(x), first, last, weights, cache, layer.key_dense(x)

    cache = (keras.ops.zeros((2, 1, 600, 4)), keras.ops.zeros((2, 1, 600, 4)))
    whole, first, last, weights, cache, keys = compiled(decode)(cache)
    whole = to_numpy(whole)
    assert [tuple(part.shape) for part in cache] == [(2, 1, 600, 4)] * 2
    assert tuple(weights.shape) == (2, 2, 2, 600)
    np.testing.assert_allclose(to_numpy(first), whole[:, :3], atol=1e-5)
    np.testing.assert_allclose(to_numpy(last), whole[:, 3:], atol=1e-5)
    expected = to_numpy(keys).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(to_numpy(cache[0])[:, :, :5], expected, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(cache[0])[:, :, 5:], 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"alibi": True},
        {"rotary_embedding": keras_attention.RotaryEmbedding()},
        {"sliding_window": (2, 1), "softcap": 1.5, "use_sinks": True},
    ],
    ids=["plain", "alibi", "rotary", "pair-softcap-sinks"],
)
def test_ring_cache_steps_equal_the_whole_pass(kwargs):
    # A window of 3 (a pair (2, 1) reaches as far back, and a causal step
    # never sees its right side): the cache is a ring of 3 positions, and 7
    # positions are decoded through it, in calls of 4 (more than the ring),
    # 2 and 1 steps.
    layer = MultiHeadAttention(
        num_heads=2,
        key_dim=4,
        num_key_value_heads=1,
        **{"sliding_window": 3, "causal": True, **kwargs},
    )
    x = normal(2, 7, 8)
    layer.build(x.shape)
    if layer.use_sinks:
        layer.sinks.assign([0.5, -1.0])

    def decode(x):
        cache = layer.init_cache(2, 7)
        outs, start = [], 0
        for length in (4, 2, 1):
            index = np.full((2,), start, "int32") if start == 6 else start
            out, cache = layer(
                x[:, start : start + length], cache=cache, cache_index=index
            )
            outs.append(out)
            start += length
        return layer(x), outs, cache

    whole, outs, cache = compiled(decode)(x)
    assert [tuple(part.shape) for part in cache[0]] == [(2, 1, 3, 4)]
    np.testing.assert_allclose(
        np.concatenate([to_numpy(out) for out in outs], axis=1),
        to_numpy(whole),
        atol=1e-5,
    )


def test_chunks_and_sink_tokens_in_segments_equal_the_whole_pass():
    # Chunks of 3, the first key a sink seen from every chunk, soft-capped
    # logits: a cache of segments gives every call the output of the whole
    # causal pass.
    layer = MultiHeadAttention(
        num_heads=2,
        key_dim=4,
        causal=True,
        chunk_size=3,
        sink_tokens=1,
        softcap=2.0,
    )
    x = normal(2, 7, 8)
    layer.build(x.shape)

    def decode(x):
        cache = layer.init_cache(2, 7, segment_length=2)
        outs, start = [], 0
        for length in (3, 1, 2, 1):
            out, cache = layer(
                x[:, start : start + length], cache=cache, cache_index=start
            )
            outs.append(out)
            start += length
        return layer(x), outs

    whole, outs = compiled(decode)(x)
    np.testing.assert_allclose(
        np.concatenate([to_numpy(out) for out in outs], axis=1),
        to_numpy(whole),
        atol=1e-5,
    )


# Properties (hypothesis; tests/properties.py) -----------------------------------

segmentations = st.sampled_from([(2, 2, 4), (3, 5), (1, 1, 1, 5)])
chunkings = st.sampled_from([(3, 1, 4), (5, 3)])  # across segment boundaries


@VERY_FEW
@given(sizes=segmentations, chunks=chunkings, per_row=st.booleans(), seed=seeds)
def test_cached_steps_equal_the_full_pass_through_any_segments(
    sizes, chunks, per_row, seed
):
    # A cache of 8 positions cut into segments, written by calls of any
    # lengths (across segment boundaries too): every call's output equals
    # the full causal pass, and the segments end up holding the keys.
    rng = np.random.default_rng(seed)
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, num_key_value_heads=1, causal=True, seed=seed
    )
    x = rng_normal(rng, 2, 8, WIDTH)
    layer.build(x.shape)

    def decode(x):
        cache = tuple(
            tuple(ops.zeros((2, 1, n, 4)) for n in sizes) for _ in ("key", "value")
        )
        outs, start = [], 0
        for length in chunks:
            index = np.full((2,), start, "int32") if per_row else start
            out, cache = layer(
                x[:, start : start + length], cache=cache, cache_index=index
            )
            outs.append(out)
            start += length
        return layer(x), outs, cache, layer.key_dense(x)

    whole, outs, cache, keys = compiled(decode)(x)
    np.testing.assert_allclose(
        np.concatenate([to_numpy(out) for out in outs], axis=1),
        to_numpy(whole),
        atol=1e-5,
    )
    assert [tuple(part.shape) for part in cache[0]] == [(2, 1, n, 4) for n in sizes]
    written = np.concatenate([to_numpy(part) for part in cache[0]], axis=2)
    expected = to_numpy(keys).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(written, expected, atol=1e-6)


def _traced_shapes(function, *args):
    """The static shapes of every value the traced `function` computes (the
    nested functions' too): TensorFlow's graph, or JAX's jaxpr."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        from tests.backend.tf_tiled_test import all_ops

        return [
            tuple(t.shape.as_list())
            for op in all_ops(tf.function(function), *args)
            for t in op.outputs
            if t.shape.rank is not None
        ]
    import jax

    shapes, stack = [], [jax.make_jaxpr(function)(*args).jaxpr]
    while stack:
        jaxpr = stack.pop()
        for eqn in jaxpr.eqns:
            shapes += [tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars]
            for param in eqn.params.values():
                for sub in param if isinstance(param, tuple | list) else [param]:
                    sub = getattr(sub, "jaxpr", sub)
                    if hasattr(sub, "eqns"):
                        stack.append(sub)
    return shapes


@pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="inspects a traced graph (TensorFlow) or jaxpr (JAX)",
)
@pytest.mark.parametrize(
    "cached", [False, True, "packed"], ids=["uncached", "cached", "packed"]
)
def test_a_prefill_holds_no_query_by_key_tensor(cached):
    # A prompt written into a cache in one call states causal, ALiBi and the
    # positions as options of the attention, as an uncached call does, so it
    # runs in tiles: no value of the trace is (q_len, k_len). A dense mask or
    # bias built by the cached call would send it down the full path. Packed
    # documents with every per-row option: their segment ids, global and
    # sink flags are sliced tile by tile, never expanded to (q_len, k_len).
    pattern = {}
    if cached == "packed":
        pattern = dict(
            sliding_window=(8, 0), chunk_size=16, sink_tokens=1, global_tokens=2
        )
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, causal=True, alibi=True, tile_size=16, **pattern
    )
    q_len, max_length = 40, 48
    x = keras.random.normal((1, q_len, 8), seed=0)
    ids = np.repeat([[1, 2, 3]], [10, 20, 10], axis=1).astype("int32")
    layer(x)
    cache = layer.init_cache(1, max_length)

    def prefill(x, cache):
        with keras.StatelessScope(
            state_mapping=[(v, v.value) for v in layer.variables]
        ):
            if cached == "packed":
                return layer(x, segment_ids=ids, prefix_length=5)
            return layer(x, cache=cache, cache_index=0) if cached else layer(x)

    shapes = _traced_shapes(prefill, x, cache)
    quadratic = [s for s in shapes if sum(n is not None and n >= q_len for n in s) >= 2]
    assert quadratic == []
    # The check sees a (q_len, k_len) tensor where there is one.
    full = MultiHeadAttention(num_heads=2, key_dim=4, causal=True, tile_size=0)
    full(x)

    def whole(x, cache):
        with keras.StatelessScope(state_mapping=[(v, v.value) for v in full.variables]):
            return full(x)

    assert (1, 2, q_len, q_len) in _traced_shapes(whole, x, cache)


def test_one_new_position_without_causal_sees_every_filled_position():
    # A layer built without causal (the causal mask passed per call, as in
    # keras.io's miniature GPT) decodes one position at a time through the
    # cache: the step equals the last row of the causal whole pass.
    layer = mha()
    x = normal(2, 4, 8)
    whole = to_numpy(layer(x, use_causal_mask=True))
    cache = layer.init_cache(2, 4)
    _, cache = layer(x[:, :3], cache=cache, cache_index=0, use_causal_mask=True)
    last, _ = layer(x[:, 3:], cache=cache, cache_index=3)
    np.testing.assert_allclose(to_numpy(last)[:, 0], whole[:, 3], atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="PyTorch runs eagerly: `cache_index` is always known (a ValueError)",
)
def test_a_compiled_step_past_the_cache_raises_or_gives_nan():
    # `cache_index` traced, so unknown until the step runs: row 1 writes
    # positions 3 and 4 into a cache of 4.
    layer = mha(causal=True)
    x = normal(2, 2, 8)
    fitting = to_numpy(layer(x, cache=layer.init_cache(2, 4), cache_index=0)[0])

    def step(x, index):
        return layer(x, cache=layer.init_cache(2, 4), cache_index=index)[0]

    index = np.array([0, 3], "int32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        assert_raises_with(
            lambda: tf.function(step)(x, tf.constant(index)),
            tf.errors.InvalidArgumentError,
            f"[{MHA}the cache overflows: `cache_index` + q_len must be at most "
            "max_length=4, the length of the cache. Received: cache_index] [3] [q_len=2]",
        )
        compiled_step = tf.function(step, jit_compile=True)  # XLA: no assertion
    else:
        import jax

        compiled_step = jax.jit(step)
    output = to_numpy(compiled_step(x, index))
    assert np.isnan(output[1]).all()
    np.testing.assert_allclose(output[0], fitting[0], atol=1e-6)

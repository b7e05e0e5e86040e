"""`keras_attention/generation.py`: `generate` gives the same tokens with
and without the key/value cache, decodes prompts in a batch as alone,
compiles its loop once, and refuses bad inputs. The cache itself is tested
in `tests/layers/kv_cache_test.py`, the generation demo in
`tests/demo/generation_demo_test.py`.

Tiny models, no training: each `generate` call compiles its loop once, so the
file makes few of them.
"""

import functools
import gc
import warnings
import weakref

import keras
import numpy as np
import pytest

import keras_attention
from keras_attention import generation
from keras_attention.layers.multi_head_attention import MultiHeadAttention
from tests.layer_test_case import assert_raises_with, compiled

VOCAB = 12
G = "generate: "


@functools.cache
def toy(encoding="rotary"):
    """A causal toy model, seeded (built once per encoding per session)."""
    keras.utils.set_random_seed(1)
    return keras_attention.build_toy_model(
        VOCAB,
        16,
        d_model=16,
        num_heads=2,
        num_layers=1,
        encoding=encoding,
        causal=True,
    )


def gqa_window_model():
    """Bare attention layers in a Sequential: GQA, MQA, a sliding window."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(VOCAB, 16),
            keras_attention.SinusoidalPositionEncoding(),
            MultiHeadAttention(4, 4, num_key_value_heads=2, causal=True),
            MultiHeadAttention(
                4, 4, num_key_value_heads=1, sliding_window=2, causal=True
            ),
            keras.layers.Dense(VOCAB),
        ]
    )
    return model


@pytest.mark.parametrize(
    "options",
    [
        {"sampler": "greedy", "end_token": 9},
        # "top_k" and "top_p" are this sampler with one filter required.
        {"sampler": "random", "top_k": 4, "top_p": 0.8, "temperature": 1.5, "seed": 3},
    ],
    ids=["greedy", "random-top-k-top-p"],
)
def test_same_tokens_with_and_without_the_cache(options):
    model = toy("rotary")
    prompts = [[3, 4, 5], [6, 7]]
    cached = keras_attention.generate(model, prompts, 5, **options)
    uncached = keras_attention.generate(model, prompts, 5, use_cache=False, **options)
    np.testing.assert_array_equal(cached, uncached)
    assert cached.shape == (2, 8) and cached.dtype == np.int32
    np.testing.assert_array_equal(cached[:, :3], [[3, 4, 5], [6, 7, cached[1, 2]]])
    assert cached[1, 7] == 0  # the shorter prompt's padding comes last
    for row, length in zip(cached, (3, 2), strict=True):
        new = row[length : length + 5]
        ends = np.flatnonzero(new == options.get("end_token"))
        stop = ends[0] + 1 if ends.size else 5
        assert np.all(new[:stop] > 0)  # padding is never generated
        assert np.all(new[stop:] == 0)  # nothing after the end token
    if options["sampler"] == "greedy":
        # The second prompt alone gives the tokens it gets in the batch.
        alone = keras_attention.generate(model, [[6, 7]], 5, **options)
        np.testing.assert_array_equal(cached[1, :7], alone[0])


@pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="PyTorch runs the loop eagerly: nothing is compiled",
)
def test_one_compilation_serves_every_step_and_later_weights(monkeypatch):
    # The whole loop is traced once (not per step), and a later call with
    # other weights and another seed reuses that compilation yet follows the
    # new weights: the variables are read when the loop runs, not baked in.
    traced = []
    loop = generation._cached_loop

    def counted(*args, **kwargs):
        traced.append(1)
        return loop(*args, **kwargs)

    monkeypatch.setattr(generation, "_cached_loop", counted)
    model = toy.__wrapped__("rotary")  # not the shared one: weights change
    prompts = [[3, 4, 5], [6]]
    keras_attention.generate(model, prompts, 6, sampler="random", seed=1)
    assert len(traced) == 1
    model.set_weights([w * 1.5 for w in model.get_weights()])
    again = keras_attention.generate(model, prompts, 6, sampler="random", seed=2)
    assert len(traced) == 1
    monkeypatch.setattr(generation, "_cached_loop", loop)
    expected = keras_attention.generate(
        model, prompts, 6, sampler="random", seed=2, use_cache=False
    )
    np.testing.assert_array_equal(again, expected)


def test_generate_keeps_no_model_alive():
    # A decoded model is freed: the compiled loops hold it weakly, and their
    # table lives on the model. Checked once the function that decoded has
    # returned: on TensorFlow, tracing reads the calling frame's locals, and
    # Python 3.11 then keeps that copy (`frame.f_locals`) until the frame
    # refreshes it or ends, so after a `del model` in the same function the
    # copy, not the package, still holds the model (in a loop of models, at
    # most the last one).
    def decode():
        model = toy.__wrapped__("rotary")
        keras_attention.generate(model, [[3, 4]], 2)
        return weakref.ref(model)

    ref = decode()
    gc.collect()
    assert ref() is None


def greedy_by_calls(model, prompt, steps):
    """Greedy decoding by calls of the model as it is now, one step at a
    time (token 0, the padding, is never generated). Each call reads the
    whole row, the tokens so far followed by token 1 (the model is causal:
    a position's logits do not depend on later tokens), so every call has
    one shape. On JAX they run under a `jax.jit` of a function made here:
    JAX keeps what it traced per function, and the model's variables are
    traced as constants, so a `jax.jit(model)` would run the model as it was
    when first traced. Not `predict`, whose compiled function Keras keeps
    through `enable_lora`."""
    tokens = list(prompt)
    row = np.ones((1, len(prompt) + steps), "int32")
    call = compiled(lambda row: model(row))
    for _ in range(steps):
        row[0, : len(tokens)] = tokens
        logits = keras.ops.convert_to_numpy(call(row))
        tokens.append(1 + int(np.argmax(logits[0, len(tokens) - 1, 1:])))
    return tokens


@pytest.mark.parametrize("change", ["lora", "int8"])
def test_generate_follows_the_model_as_it_is_now(change):
    # LoRA (and quantization) add or replace variables and change the call
    # path: a loop compiled before them must not run the old model.
    model = toy.__wrapped__("sinusoidal")
    prompt = [3, 4, 5]
    before = keras_attention.generate(model, [prompt], 3)
    np.testing.assert_array_equal(before[0], greedy_by_calls(model, prompt, 3))
    if change == "lora":
        keras.utils.set_random_seed(3)
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.EinsumDense):
                layer.enable_lora(2)
                layer.lora_kernel_b.assign(
                    keras.random.normal(layer.lora_kernel_b.shape, stddev=2.0)
                )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # layers with nothing to quantize
            model.quantize("int8")
        # Scales moved far enough that the quantized model's tokens differ
        # from the float model's: a stale loop would return the old ones.
        rng = np.random.default_rng(4)
        for layer in model._flatten_layers():
            scale = getattr(layer, "kernel_scale", None)
            if scale is not None:
                factors = rng.uniform(0.1, 4.0, tuple(scale.shape))
                scale.assign(keras.ops.convert_to_numpy(scale) * factors)
    expected = greedy_by_calls(model, prompt, 3)
    for use_cache in (True, False):
        after = keras_attention.generate(model, [prompt], 3, use_cache=use_cache)
        np.testing.assert_array_equal(after[0], expected)
    assert not np.array_equal(before[0], expected)


def test_prompts_as_arrays_of_different_lengths():
    # What tokenizers return: one 1-D array per prompt.
    model = toy("sinusoidal")
    as_arrays = keras_attention.generate(
        model, [np.array([3, 4], "int32"), np.array([5])], 3
    )
    as_lists = keras_attention.generate(model, [[3, 4], [5]], 3)
    np.testing.assert_array_equal(as_arrays, as_lists)


def test_extreme_temperatures_and_top_k_of_one():
    # A tiny temperature and top_k=1 are greedy (and top_k=1 asks Keras for
    # no softmax over one entry, which warns); a huge one draws among the
    # allowed tokens, never the padding token 0.
    model = toy("sinusoidal")
    prompts = [[3, 4, 5], [6, 7, 8]]
    greedy = keras_attention.generate(model, prompts, 4)
    for options in ({"temperature": 1e-45}, {"top_k": 1, "temperature": 3.0}):
        drawn = keras_attention.generate(
            model, prompts, 4, sampler="random", seed=1, **options
        )
        np.testing.assert_array_equal(drawn, greedy)
    hot = keras_attention.generate(
        model, prompts * 2, 6, sampler="random", seed=1, temperature=1e300
    )
    assert np.all(hot[:, 3:] != 0)
    assert len(np.unique(hot[:, 3:])) > VOCAB // 2


def test_window_model_generates_past_its_ring():
    # The window-2 layer keeps a ring of 2 positions; 3 + 8 positions are
    # decoded, rows of different lengths moving in step.
    model = gqa_window_model()
    prompts = [[3, 4, 5], [6]]
    window = model.layers[-2]
    assert [tuple(part.shape) for part in window.init_cache(2, 11)[0]] == [(2, 1, 2, 4)]
    cached = keras_attention.generate(model, prompts, 8)
    uncached = keras_attention.generate(model, prompts, 8, use_cache=False)
    np.testing.assert_array_equal(cached, uncached)
    alone = keras_attention.generate(model, [[6]], 8)
    np.testing.assert_array_equal(cached[1, :9], alone[0])
    assert np.all(cached[1, 9:] == 0)


def subclassed():
    class Decoder(keras.Model):
        def call(self, x):
            return x

    return Decoder(name="decoder")


def functional():
    tokens = keras.Input((None,), dtype="int32")
    logits = keras.layers.Dense(VOCAB)(keras.layers.Embedding(VOCAB, 8)(tokens))
    return keras.Model(tokens, logits, name="func")


def generate(model=None, prompts=((3, 4),), max_new_tokens=2, **kwargs):
    model = toy("rotary") if model is None else model
    prompts = [list(p) for p in prompts]
    return keras_attention.generate(model, prompts, max_new_tokens, **kwargs)


def encoder():
    keras.utils.set_random_seed(0)
    return keras_attention.build_toy_model(
        VOCAB, 16, d_model=16, num_heads=2, num_layers=1
    )


SEQUENTIAL = (
    "generate: `model` must be a keras.Sequential: an Embedding, this package's "
    "causal layers, and a final Dense (as build_toy_model(..., causal=True) "
    "makes). Decode other models with a step function that calls the attention "
    "layers with `cache=` and `cache_index=` (see the docstring). "
)

BAD_INPUTS = [
    pytest.param(
        lambda: generate(sampler="beam"),
        ValueError,
        G + "`sampler` must be one of ('greedy', 'random', 'top_k', 'top_p'). "
        "Received: sampler='beam'",
        id="unknown-sampler",
    ),
    pytest.param(
        lambda: generate(sampler="random", temperature=-0.5),
        ValueError,
        G
        + "`temperature` must be a finite number >= 0 (0 means greedy). Received: temperature=-0.5",
        id="negative-temperature",
    ),
    pytest.param(
        lambda: generate(sampler="random", temperature=float("inf")),
        ValueError,
        G
        + "`temperature` must be a finite number >= 0 (0 means greedy). Received: temperature=inf",
        id="infinite-temperature",
    ),
    pytest.param(
        lambda: generate(sampler="random", top_p=0.0),
        ValueError,
        G + "`top_p` must be None or a number in (0, 1]. Received: top_p=0.0",
        id="top-p-zero",
    ),
    pytest.param(
        lambda: generate(sampler="random", top_p=1.5),
        ValueError,
        G + "`top_p` must be None or a number in (0, 1]. Received: top_p=1.5",
        id="top-p-above-one",
    ),
    pytest.param(
        lambda: generate(sampler="top_k"),
        ValueError,
        G + "sampler='top_k' needs `top_k`. Received: top_k=None",
        id="top-k-sampler-without-top-k",
    ),
    pytest.param(
        lambda: generate(top_k=3),
        ValueError,
        G + "`top_k` and `top_p` restrict a random draw; sampler='greedy' takes "
        "neither (use sampler='random'). Received: top_k=3, top_p=None",
        id="greedy-with-top-k",
    ),
    pytest.param(
        lambda: generate(sampler="random", top_k=0),
        ValueError,
        G + "`top_k` must be None or a positive integer. Received: top_k=0",
        id="top-k-zero",
    ),
    pytest.param(
        lambda: generate(max_new_tokens=0),
        ValueError,
        G + "`max_new_tokens` must be a positive integer. Received: max_new_tokens=0",
        id="max-new-tokens-zero",
    ),
    pytest.param(
        lambda: generate(end_token=0),
        ValueError,
        G + "`end_token` must be None or a token id in [1, 12) (0 is padding). "
        "Received: end_token=0",
        id="end-token-padding",
    ),
    pytest.param(
        lambda: generate(seed=-1, sampler="random"),
        ValueError,
        G + "`seed` must be None or an int in [0, 2**31). Received: seed=-1",
        id="seed-negative",
    ),
    pytest.param(
        lambda: generate(prompts=((0, 3),)),
        ValueError,
        G + "every prompt must hold at least one token, with 0 (padding) only "
        "after its last one. Received: prompts with lengths [2] and 1 padding "
        "tokens inside them",
        id="prompt-left-padded",
    ),
    pytest.param(
        lambda: generate(prompts=((3, 12),)),
        ValueError,
        G + "`prompts` must hold token ids in [0, 12). Received: ids from 3 to 12",
        id="prompt-token-out-of-vocabulary",
    ),
    pytest.param(
        lambda: keras_attention.generate(toy("rotary"), np.zeros((2,), "int32"), 2),
        ValueError,
        G + "`prompts` must be integer tokens (batch, prompt_len), right-padded "
        "with 0, or a list of token lists or 1-D arrays. Received: prompts of "
        "shape (2,) and dtype int32",
        id="prompts-rank-1",
    ),
    pytest.param(
        lambda: generate(prompts=[np.array([3.0, 4.0]), np.array([5.0])]),
        ValueError,
        G + "`prompts` must be integer tokens (batch, prompt_len), right-padded "
        "with 0, or a list of token lists or 1-D arrays. Received: prompts of "
        "shape (2, 2) and dtype float64",
        id="prompts-float-arrays",
    ),
    pytest.param(
        lambda: generate(model=toy("learned"), max_new_tokens=15),
        ValueError,
        G + "the prompts and the new tokens need 17 positions, and the position "
        "layer 'position_embedding' encodes 16: shorten `max_new_tokens` or the "
        "prompts. Received: max_new_tokens=15, prompt length 2",
        id="learned-table-overflow",
    ),
    pytest.param(
        lambda: generate(model=functional()),
        ValueError,
        SEQUENTIAL + "Received: a Functional model 'func'",
        id="functional-model",
    ),
    pytest.param(
        lambda: generate(model=subclassed()),
        ValueError,
        SEQUENTIAL + "Received: a Decoder model 'decoder'",
        id="subclassed-model",
    ),
    pytest.param(
        lambda: generate(model=encoder()),
        ValueError,
        G + "every attention layer must be causal (a token may not see later "
        "ones). Received: layer 'block_0' with causal=False",
        id="non-causal-model",
    ),
    pytest.param(
        lambda: generate(
            model=keras.Sequential(
                [
                    keras.Input((None,), dtype="int32"),
                    keras.layers.Embedding(VOCAB, 8),
                    keras.layers.GRU(8, return_sequences=True, name="gru"),
                    keras.layers.Dense(VOCAB),
                ]
            )
        ),
        ValueError,
        G + "the layers between the Embedding and the final Dense must be "
        "TransformerBlock, MultiHeadAttention, SinusoidalPositionEncoding, "
        "LearnedPositionEmbedding, Dense, Dropout, LayerNormalization or "
        "Activation. Received: layer 'gru' of type GRU",
        id="unsupported-layer",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_position_layers_called_with_positions_give_the_same_tokens(encoding):
    # The cached loop calls the position layers with `positions=` (a
    # position per row); the uncached one runs the whole model, whose
    # position layers count from 0.
    model = toy(encoding)
    options = {"sampler": "random", "top_k": 5, "temperature": 1.5, "seed": 7}
    prompts = [[3, 4, 5], [6, 7]]
    cached = keras_attention.generate(model, prompts, 6, **options)
    uncached = keras_attention.generate(model, prompts, 6, use_cache=False, **options)
    np.testing.assert_array_equal(cached, uncached)

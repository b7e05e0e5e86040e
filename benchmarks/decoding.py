"""Decoding speed: `generate` with the key/value cache against
`use_cache=False`; the per-token cost at position 256 with caches of 512
and 8192 positions, ours (a cache in segments, attending to those that
hold the filled part; and one segment, the whole cache under a mask)
against keras-hub's cached `TransformerDecoder` used the same way.

Run on a quiet machine: `python benchmarks/decoding.py` (`--smoke` for a
tiny run that only checks the script works). TensorFlow with XLA
(`jit_compile=True`) or JAX (`jax.jit`): the backend is `KERAS_BACKEND`.
The toy model at `d_model=256`, 4 heads, 2 blocks, batch 8, 32-token
prompts, 256 new tokens. Every loop is compiled before it is timed (a
warm-up call of each length); a per-token time is the difference of a long
and a short run (each the best of 3 calls) divided by the extra tokens,
median of `--runs` interleaved repeats.
"""

import argparse
import time

import _measure
import keras
import numpy as np
from keras import ops

import keras_attention
from keras_attention import generation

VOCAB = 64


REPEATS = 3


def _seconds(function):
    """The best of `REPEATS` timings of `function()`: a short stall of the
    machine lengthens one call, never shortens one (timeit's rule)."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _per_token(run, long, short):
    """Seconds per token from a long and a short run of `run(n)`."""
    return (_seconds(lambda: run(long)) - _seconds(lambda: run(short))) / (long - short)


def generate_runner(model, prompts, use_cache):
    """`n -> generate(model, prompts, n)`, its output read back."""
    return lambda n: keras_attention.generate(model, prompts, n, use_cache=use_cache)


def _generate_ratio(model, prompts, new, short, runs):
    """`(median, low, high)` of use_cache=False / cache per-step times."""
    generators = {c: generate_runner(model, prompts, c) for c in (True, False)}
    for run in generators.values():
        run(new), run(short)  # compile both lengths
    times = {c: [] for c in generators}
    for _ in range(runs):
        for cached, run in generators.items():
            times[cached].append(_per_token(run, new, short))
    ratios = [u / c for c, u in zip(times[True], times[False], strict=True)]
    cache_ratio = _measure.spread(ratios)
    print(
        f"generate, ms per step: cache {1e3 * _measure.spread(times[True])[0]:.2f}, "
        f"use_cache=False {1e3 * _measure.spread(times[False])[0]:.2f}; "
        "ratio {:.2f}x ({:.2f}-{:.2f})".format(*cache_ratio)
    )
    return cache_ratio


def _compiled(loop):
    """`loop(token, steps)` compiled once for every step count."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(loop, jit_compile=True)
        return lambda token, steps: compiled(token, tf.constant(steps))
    if backend == "jax":
        import jax

        return jax.jit(loop)
    raise SystemExit("decoding.py measures compiled loops: TensorFlow or JAX")


def ours_runner(model, batch, max_length, start, segment_length=512):
    """`n -> n` decoding steps from position `start` with caches of
    `max_length` positions, in one compiled loop; `segment_length` at least
    `max_length` makes each cache one segment (attended to whole, under a
    mask)."""
    layers = generation._decoder_layers(model)
    attention = [layer for layer in layers[1] if hasattr(layer, "init_cache")]

    def loop(token, steps):
        caches = tuple(
            layer.init_cache(batch, max_length, segment_length=segment_length)
            for layer in attention
        )

        def body(i, token, caches):
            # One `cache_index` for the batch, as `generate` moves its rows.
            index = start + i
            positions = ops.full((batch, 1), start, "int32") + i
            logits, caches = generation._forward(
                layers, token[:, None], positions, caches, index
            )
            return i + 1, ops.cast(ops.argmax(logits[:, 0], -1), "int32"), caches

        return ops.while_loop(
            lambda i, *_: i < steps, body, (ops.convert_to_tensor(0), token, caches)
        )[1]

    compiled = _compiled(loop)
    token = ops.ones((batch,), "int32")
    return lambda n: ops.convert_to_numpy(compiled(token, n))


def keras_hub_model(d_model, num_heads, num_layers):
    """Embedding, keras-hub `TransformerDecoder`s (self-attention through its
    `CachedMultiHeadAttention`), Dense: the toy model's sizes."""
    import keras_hub

    keras.utils.set_random_seed(0)
    embedding = keras.layers.Embedding(VOCAB, d_model)
    decoders = [
        keras_hub.layers.TransformerDecoder(2 * d_model, num_heads)
        for _ in range(num_layers)
    ]
    head = keras.layers.Dense(VOCAB)
    x = embedding(ops.ones((1, 2), "int32"))
    for decoder in decoders:
        x = decoder(x)
    head(x)
    return embedding, decoders, head


def keras_hub_runner(parts, batch, max_length, start):
    """As `ours_runner`, with keras-hub's cache `(batch, 2, max_length,
    heads, head_dim)` and its one scalar position for the batch."""
    embedding, decoders, head = parts
    heads = decoders[0].num_heads
    head_dim = embedding.output_dim // heads

    def loop(token, steps):
        shape = (batch, 2, max_length, heads, head_dim)
        caches = tuple(ops.zeros(shape) for _ in decoders)

        def body(i, token, caches):
            x = embedding(token[:, None])
            new = []
            for decoder, cache in zip(decoders, caches, strict=True):
                x, cache = decoder(
                    x,
                    self_attention_cache=cache,
                    self_attention_cache_update_index=start + i,
                )
                new.append(cache)
            logits = head(x)
            return i + 1, ops.cast(ops.argmax(logits[:, 0], -1), "int32"), tuple(new)

        return ops.while_loop(
            lambda i, *_: i < steps, body, (ops.convert_to_tensor(0), token, caches)
        )[1]

    compiled = _compiled(loop)
    token = ops.ones((batch,), "int32")
    return lambda n: ops.convert_to_numpy(compiled(token, n))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run")
    parser.add_argument("--runs", type=int, default=7, help="interleaved repeats")
    args = parser.parse_args()
    if args.smoke:
        d_model, batch, prompt, new, short, lengths, start = (
            32,
            2,
            4,
            24,
            8,
            (64, 512),
            16,
        )
        steps, runs = (24, 8), 1
    else:
        d_model, batch, prompt, new, short = 256, 8, 32, 256, 32
        lengths, start, steps, runs = (512, 8192), 256, (72, 8), args.runs
    quiet = _measure.Quiet(_measure.numpy_matmul_gflops)
    quiet.check("start")
    print(_measure.machine())
    keras.utils.set_random_seed(0)
    model = keras_attention.build_toy_model(
        VOCAB,
        9000,
        d_model=d_model,
        num_heads=4,
        num_layers=2,
        causal=True,
        encoding="rotary",
    )
    prompts = np.random.default_rng(0).integers(1, VOCAB, (batch, prompt))
    print(
        f"backend {keras.backend.backend()}, d_model {d_model}, batch {batch}, "
        f"prompt {prompt}, {new} new tokens, {runs} interleaved runs"
    )

    # 1. generate, cache against use_cache=False.
    cache_ratio = _generate_ratio(model, prompts, new, short, runs)
    quiet.check("after generate")

    # 2. Per token at position `start`, caches of two lengths, three ways.
    parts = keras_hub_model(d_model, 4, 2)
    runners = {}
    for n in lengths:
        runners["ours", n] = ours_runner(model, batch, n, start)
        runners["keras-hub", n] = keras_hub_runner(parts, batch, n, start)
        runners["ours, whole cache", n] = ours_runner(
            model, batch, n, start, segment_length=n
        )
    for run in runners.values():
        run(steps[0]), run(steps[1])  # compile both counts
    per_step = {key: [] for key in runners}
    for _ in range(runs):
        for key, run in runners.items():
            per_step[key].append(_per_token(run, *steps))
    print(f"\nms per step at positions {start}-{start + steps[0]}:")
    print(
        "| implementation | "
        + " | ".join(f"max_length {n}" for n in lengths)
        + " | ratio |"
    )
    print("|---|" + "---|" * (len(lengths) + 1))
    growth = {}
    for name in ("ours", "ours, whole cache", "keras-hub"):
        small, large = (per_step[name, n] for n in lengths)
        ratios = [b / a for a, b in zip(small, large, strict=True)]
        growth[name] = _measure.spread(ratios)
        cells = " | ".join(
            "{:.2f} ({:.2f}-{:.2f})".format(*(1e3 * v for v in _measure.spread(t)))
            for t in (small, large)
        )
        print(
            f"| {name} | {cells} | " + "{:.2f}x ({:.2f}-{:.2f}) |".format(*growth[name])
        )
    small = lengths[0]
    prefix_cost = _measure.spread(
        [
            a / b
            for a, b in zip(
                per_step["ours", small],
                per_step["ours, whole cache", small],
                strict=True,
            )
        ]
    )
    hub = {
        n: _measure.spread(
            [
                b / a
                for a, b in zip(
                    per_step["ours", n], per_step["keras-hub", n], strict=True
                )
            ]
        )
        for n in lengths
    }
    for n in lengths:
        print(
            "keras-hub / ours at max_length {}: {:.2f}x ({:.2f}-{:.2f})".format(
                n, *hub[n]
            )
        )
    print(
        "ours prefix / whole cache at max_length {}: {:.2f}x ({:.2f}-{:.2f})".format(
            small, *prefix_cost
        )
    )
    quiet.check("end")
    print(quiet.verdict()[1])
    if small <= 512:  # init_cache's first segment
        # One prefix, the whole cache: both runs are the same code, and
        # their ratio shows the measurement's noise.
        prefix_line = (
            f"same code: per token at max_length {small}, prefix / whole cache "
            "(one prefix, the whole cache): {:.2f}x ({:.2f}-{:.2f})".format(
                *prefix_cost
            )
        )
    else:
        prefix_line = _measure.target_line(
            f"per token at max_length {small}, prefix / whole cache",
            prefix_cost[0],
            1.0,
            low=prefix_cost[1],
            high=prefix_cost[2],
            lower=True,
        )
    _measure.write_summary(
        f"decoding-{keras.backend.backend()}",
        [
            _measure.target_line(
                "generate, cache vs use_cache=False",
                cache_ratio[0],
                5,
                low=cache_ratio[1],
                high=cache_ratio[2],
            ),
            _measure.target_line(
                f"per token, max_length {lengths[1]} / {lengths[0]} at {start}",
                growth["ours"][0],
                1.3,
                low=growth["ours"][1],
                high=growth["ours"][2],
                lower=True,
            ),
            prefix_line,
        ],
    )


if __name__ == "__main__":
    main()

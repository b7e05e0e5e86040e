"""Decoding speed: `generate` with the key/value cache against
`use_cache=False`, and the per-token cost of a cache of 512 against one of
8192 positions at position 256.

Run on a quiet machine: `python benchmarks/decoding.py` (`--smoke` for a
tiny run that only checks the script works). The toy model at
`d_model=256`, batch 8, 32-token prompts, 256 new tokens. A `generate` call
compiles its loop, so the per-token time is the difference of two calls
(256 and 32 new tokens) divided by the 224 extra tokens.
"""

import argparse
import functools
import time

import _measure
import keras
import numpy as np
from keras import ops

import keras_attention
from keras_attention import generation

VOCAB = 64


def _seconds(function, *args, **kwargs):
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def per_token_generate(model, prompts, new_tokens, short, use_cache):
    """Seconds per generated token (batch included) from two calls."""
    run = functools.partial(
        keras_attention.generate, model, prompts, use_cache=use_cache
    )
    long_time = _seconds(run, new_tokens)
    short_time = _seconds(run, short)
    return (long_time - short_time) / (new_tokens - short)


def per_token_at(model, batch, max_length, start, steps):
    """Seconds per decoding step at positions `start .. start + steps` with
    caches of `max_length` positions, in one compiled loop (TensorFlow with
    XLA, JAX with jit)."""
    layers = generation._decoder_layers(model)
    attention = [layer for layer in layers[1] if hasattr(layer, "init_cache")]

    def loop(token, steps):
        caches = tuple(layer.init_cache(batch, max_length) for layer in attention)

        def body(i, token, caches):
            index = ops.full((batch,), start, "int32") + i
            logits, caches = generation._forward(
                layers, token[:, None], index[:, None], caches, index
            )
            return i + 1, ops.cast(ops.argmax(logits[:, 0], -1), "int32"), caches

        return ops.while_loop(
            lambda i, *_: i < steps, body, (ops.convert_to_tensor(0), token, caches)
        )[1]

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        loop = tf.function(loop, jit_compile=True)
    elif backend == "jax":
        import jax

        loop = jax.jit(loop, static_argnums=1)
    token = ops.ones((batch,), "int32")
    ops.convert_to_numpy(loop(token, 1))  # compile (TensorFlow: any count)
    if backend == "jax":
        ops.convert_to_numpy(loop(token, steps))
        ops.convert_to_numpy(loop(token, 8))
    long_time = _seconds(lambda: ops.convert_to_numpy(loop(token, steps)))
    short_time = _seconds(lambda: ops.convert_to_numpy(loop(token, 8)))
    return (long_time - short_time) / (steps - 8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run")
    args = parser.parse_args()
    if args.smoke:
        d_model, batch, prompt, new, short, lengths, start = (
            32,
            2,
            4,
            24,
            8,
            (64, 256),
            16,
        )
    else:
        d_model, batch, prompt, new, short, lengths, start = (
            256,
            8,
            32,
            256,
            32,
            (512, 8192),
            256,
        )
    quiet = _measure.Quiet(_measure.numpy_matmul_gflops)
    quiet.check("start")
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
        f"prompt {prompt}, {new} new tokens"
    )
    cached = per_token_generate(model, prompts, new, short, True)
    uncached = per_token_generate(model, prompts, new, short, False)
    print(
        f"generate, ms per step: cache {1e3 * cached:.2f}, "
        f"use_cache=False {1e3 * uncached:.2f} ({uncached / cached:.1f}x)"
    )
    times = {n: per_token_at(model, batch, n, start, 72) for n in lengths}
    small, large = lengths
    print(
        f"ms per step at position {start}: max_length {small} "
        f"{1e3 * times[small]:.2f}, {large} {1e3 * times[large]:.2f} "
        f"({times[large] / times[small]:.1f}x)"
    )
    quiet.check("end")
    print(quiet.verdict()[1])


if __name__ == "__main__":
    main()

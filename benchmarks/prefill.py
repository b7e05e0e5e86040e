"""Prefill memory: a long prompt written into a key/value cache in one call
costs what the same call without a cache costs.

Method (as memory.py): each case runs in its own subprocess (this script
with `--child`), which builds `MultiHeadAttention(num_heads=8, key_dim=32,
causal=True, alibi=True)` on `d_model=256`, allocates the cache of `T`
positions (`init_cache(1, T)`, before the measurement: its own bytes are not
counted), runs the call once on a short prompt (T=256), resets the high-water mark
(`/proc/self/clear_refs`), reads VmRSS, makes the measured call on a prompt
of `T` tokens and reads VmHWM. The figure is VmHWM minus VmRSS before. The
cached call writes the prompt at `cache_index=0`; the uncached call is the
same layer on the same prompt. Modes: eager, and compiled
(`tf.function` or `jax.jit`, traced or compiled for the measured length
before the mark is reset, the cache an argument, as in a decoding loop).

    python benchmarks/prefill.py [--backend tensorflow|jax] [--length 16384]
"""

import argparse
import json
import os
import subprocess
import sys

import _measure

HEADS, KEY_DIM, DIM = 8, 32, 256
GIB = 2**30
TARGET = 1.5  # cached / uncached peak-RSS increase, at most


def child(backend, cached, mode, length):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import keras_attention

    layer = keras_attention.MultiHeadAttention(
        num_heads=HEADS, key_dim=KEY_DIM, causal=True, alibi=True
    )

    def call(x, cache):
        if cached:
            output, cache = layer(x, cache=cache, cache_index=0)
            return output, cache
        return layer(x), cache

    short = keras.random.normal((1, 256, DIM), seed=0)
    x = keras.random.normal((1, length, DIM), seed=1)
    layer(short)  # built
    cache = layer.init_cache(1, length) if cached else ()
    if mode == "compiled":
        if backend == "tensorflow":
            import tensorflow as tf

            # Traced for the measured length (not run) before the mark.
            step = tf.function(call).get_concrete_function(x, cache)
        else:
            import jax

            def stateless(values, x, cache):
                mapping = list(zip(layer.variables, values, strict=True))
                with keras.StatelessScope(state_mapping=mapping):
                    return call(x, cache)

            jitted = jax.jit(stateless)
            values = [v.value for v in layer.variables]
            compiled = jitted.lower(values, x, cache).compile()

            def step(x, cache):
                return compiled(values, x, cache)
    else:
        step = call
        step(short, cache)  # kernels warmed up
    _measure.reset_peak()
    before = _measure.status("VmRSS")
    output, _ = step(x, cache)
    np.asarray(keras.ops.convert_to_numpy(output))
    print(json.dumps({"increase": _measure.status("VmHWM") - before}))


def measure(backend, cached, mode, length):
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            backend,
            str(int(cached)),
            mode,
            str(length),
        ],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        return f"failed: {result.stderr.strip().splitlines()[-1][:160]}"
    return json.loads(result.stdout.strip().splitlines()[-1])["increase"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, cached, mode, length = args.child
        child(backend, cached == "1", mode, int(length))
        return
    backend, length = args.backend, args.length
    print(f"Machine: {_measure.machine_without_keras()}; backend {backend}")
    quiet = _measure.Quiet(_measure.numpy_matmul_gflops)
    quiet.check("start")
    print(
        f"MultiHeadAttention(num_heads={HEADS}, key_dim={KEY_DIM}, causal=True, "
        f"alibi=True), d_model={DIM}, batch 1, a {length}-token prompt; "
        "peak-RSS increase of one call (the cache allocated before)"
    )
    print("| mode | without a cache | prefilled into the cache | ratio |")
    print("|---|---|---|---|")
    summary = []
    for mode in ("eager", "compiled"):
        plain = measure(backend, False, mode, length)
        cached = measure(backend, True, mode, length)
        ratio = None
        if isinstance(plain, int) and isinstance(cached, int):
            ratio = cached / plain
        shown = [
            v if isinstance(v, str) else f"{v / GIB:.3f} GiB" for v in (plain, cached)
        ]
        print(
            f"| {mode} | {shown[0]} | {shown[1]} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |",
            flush=True,
        )
        summary.append(
            _measure.target_line(
                f"prefill {backend} {mode} T={length}, cached / uncached memory",
                ratio,
                TARGET,
                lower=True,
            )
        )
    quiet.check("end")
    print(quiet.verdict()[1])
    _measure.write_summary(f"prefill-{backend}", summary)


if __name__ == "__main__":
    main()

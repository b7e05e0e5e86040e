"""Patterns: what skipping the tiles a pattern leaves empty buys.

Method (RESULTS.md, "How to read these figures"): one process per backend,
the attention function `keras_attention.scaled_dot_product_attention` on
`(batch, 8 heads, T, 32)` float32 inputs with its default path
(`tile_size=None`: whatever tile size it picks), forward and backward (the
gradients of `sum(output)` with respect to q, k and v), each step compiled
(TensorFlow `tf.function` without XLA, "graph", and with it, "XLA"; JAX
`jax.jit`), warmed up twice, then the cases of a table interleaved for
`--runs` runs; every output forced to NumPy. Ratios are medians of per-run
ratios, with their range.

Tables:

- packed: 16 documents of 1024 tokens in one row of 16384, causal, against
  plain causal attention over the whole row (target: at least 8x faster)
  and against the same documents as 16 separate rows, the ideal (target:
  within 1.2x). The dense-mask alternative, Keras' layer with a `(batch,
  T, T)` mask, does not fit at T=16384 (its forward+backward holds about
  three `(batch, 8, T, T)` float32 tensors, 24 GiB); it is measured at
  T=4096 (4 documents) beside ours.
- chunks: Llama 4's chunks of 8192 at T=32768, causal, against plain causal
  (target: at least 3x).
- window: a window of 512 (`|i - j| < 512`) with 16 global tokens at
  T=16384, against full attention (target: at least 4x).
- memory (`--memory`): the peak-RSS increase of one forward+backward in a
  fresh process per case (as memory.py measures it): 32 documents of 1024
  at T=32768 against plain causal attention (target: at most 1.2x).

The run records the evidence that nothing else ran (`_measure.Quiet`).

    python benchmarks/patterns.py [--backend tensorflow|jax] [--runs 5]
        [--quick] [--memory]
"""

import argparse
import json
import os
import subprocess
import sys
import time


def _parse():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--backend",
        choices=("tensorflow", "jax"),
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="shorter rows")
    parser.add_argument("--memory", action="store_true", help="the memory table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ["KERAS_BACKEND"] = ARGS.backend
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _measure  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_attention  # noqa: E402

BACKEND = keras.backend.backend()
MODES = {"tensorflow": ("graph", "XLA"), "jax": ("jit",)}[BACKEND]
HEADS, DEPTH = 8, 32


def step(mode, **options):
    """A compiled forward+backward of the attention with `options`."""
    attend = keras_attention.scaled_dot_product_attention
    if BACKEND == "jax":
        import jax

        def loss(q, k, v):
            return keras.ops.sum(attend(q, k, v, **options))

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")

    def run(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            loss = tf.reduce_sum(attend(q, k, v, **options))
        return tape.gradient(loss, [q, k, v])

    return tf.function(run, jit_compile=mode == "XLA")


def inputs(batch, length):
    rng = np.random.default_rng(0)
    shape = (batch, HEADS, length, DEPTH)
    return tuple(
        keras.ops.convert_to_tensor(rng.standard_normal(shape, dtype=np.float32))
        for _ in range(3)
    )


def force(result):
    for x in result:
        np.asarray(keras.ops.convert_to_numpy(x))


def interleaved(cases, runs):
    """Per-run seconds of each `(fn, args)`, after two warm-ups each."""
    for fn, args in cases:
        for _ in range(2):
            force(fn(*args))
    times = [[] for _ in cases]
    for _ in range(runs):
        for (fn, args), bucket in zip(cases, times, strict=True):
            start = time.perf_counter()
            force(fn(*args))
            bucket.append(time.perf_counter() - start)
    return times


def ratio(numerators, denominators):
    return _measure.spread(
        [a / b for a, b in zip(numerators, denominators, strict=True)]
    )


def packed_ids(documents, length):
    return np.repeat(np.arange(1, documents + 1), length // documents)[None].astype(
        "int32"
    )


def packed_table(mode, runs, length, documents, summary):
    size = length // documents
    row = inputs(1, length)
    separate = inputs(documents, size)
    ids = keras.ops.convert_to_tensor(packed_ids(documents, length))
    causal = step(mode, causal=True)
    packed = step(mode, causal=True, segment_ids=ids)
    alone = step(mode, causal=True)
    t_causal, t_packed, t_alone = interleaved(
        [(causal, row), (packed, row), (alone, separate)], runs
    )
    speedup = ratio(t_causal, t_packed)
    ideal = ratio(t_packed, t_alone)
    print(
        f"| packed {documents}x{size} in T={length} | {mode} | "
        f"{_measure.spread(t_causal)[0]:.2f} | {_measure.spread(t_packed)[0]:.2f} | "
        f"{_measure.spread(t_alone)[0]:.2f} | {speedup[0]:.2f} "
        f"({speedup[1]:.2f}-{speedup[2]:.2f}) | {ideal[0]:.2f} "
        f"({ideal[1]:.2f}-{ideal[2]:.2f}) |",
        flush=True,
    )
    summary.append(
        _measure.target_line(
            f"packed vs causal, T={length}, {mode}",
            speedup[0],
            8.0,
            low=speedup[1],
            high=speedup[2],
        )
    )
    summary.append(
        _measure.target_line(
            f"packed vs separate rows, T={length}, {mode}",
            ideal[0],
            1.2,
            low=ideal[1],
            high=ideal[2],
            lower=True,
        )
    )


def dense_table(mode, runs, length, documents):
    """Keras' layer with a dense (1, T, T) mask against ours with segment
    ids, the same weights, forward+backward of the layer."""
    ids = packed_ids(documents, length)
    mask = keras.ops.convert_to_tensor(
        (ids[:, :, None] == ids[:, None, :]) & np.tril(np.ones((length, length), bool))
    )
    ids = keras.ops.convert_to_tensor(ids)
    x = keras.ops.convert_to_tensor(
        np.random.default_rng(1).standard_normal((1, length, HEADS * DEPTH), np.float32)
    )
    ours = keras_attention.MultiHeadAttention(HEADS, DEPTH, causal=True)
    theirs = keras.layers.MultiHeadAttention(HEADS, DEPTH)
    ours.build(x.shape)
    theirs.build(x.shape, x.shape)
    theirs.set_weights(ours.get_weights())

    keras_step = layer_step(theirs, mode, (x, x), {"attention_mask": mask})
    ours_step = layer_step(ours, mode, (x,), {"segment_ids": ids})
    t_keras, t_ours = interleaved([(keras_step, (0,)), (ours_step, (0,))], runs)
    speedup = ratio(t_keras, t_ours)
    print(
        f"| dense mask (Keras) vs segment ids (ours), {documents}x"
        f"{length // documents} in T={length}, layers | {mode} | "
        f"{_measure.spread(t_keras)[0]:.2f} | {_measure.spread(t_ours)[0]:.2f} | "
        f"{speedup[0]:.2f} ({speedup[1]:.2f}-{speedup[2]:.2f}) |",
        flush=True,
    )


def layer_step(layer, mode, args, kwargs):
    """A compiled forward+backward of `layer(*args, **kwargs)`: the
    gradients of `sum(output)` with respect to the layer's weights."""
    if BACKEND == "jax":
        import jax

        weights = [v.value for v in layer.trainable_variables]

        def loss(weights):
            y, _ = layer.stateless_call(weights, [], *args, **kwargs)
            return keras.ops.sum(y)

        fn = jax.jit(jax.grad(loss))
        return lambda _: fn(weights)
    import tensorflow as tf

    def run(_):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(*args, **kwargs))
        return tape.gradient(loss, layer.trainable_variables)

    return tf.function(run, jit_compile=mode == "XLA")


def versus_table(mode, runs, name, length, base, fast, target, summary):
    row = inputs(1, length)
    t_base, t_fast = interleaved(
        [(step(mode, **base), row), (step(mode, **fast), row)], runs
    )
    speedup = ratio(t_base, t_fast)
    print(
        f"| {name} | {mode} | {_measure.spread(t_base)[0]:.2f} | "
        f"{_measure.spread(t_fast)[0]:.2f} | {speedup[0]:.2f} "
        f"({speedup[1]:.2f}-{speedup[2]:.2f}) |",
        flush=True,
    )
    summary.append(
        _measure.target_line(
            f"{name}, {mode}", speedup[0], target, low=speedup[1], high=speedup[2]
        )
    )


def child(case):
    """Prints `{"increase": bytes}` of one forward+backward (case
    "causal-<T>" or "packed-<T>-<documents>"), warmed up on T=256."""
    kind, length, *rest = case.split("-")
    length = int(length)
    mode = MODES[0]

    def options(n):
        if kind == "causal":
            return {"causal": True}
        documents = int(rest[0]) * n // length
        return {
            "causal": True,
            "segment_ids": keras.ops.convert_to_tensor(
                packed_ids(max(documents, 1), n)
            ),
        }

    fn = step(mode, **options(length))
    if BACKEND == "jax":
        # Compiled for the measured length before the mark is reset.
        big = inputs(1, length)
        compiled = fn.lower(*big).compile()
        del big
        run = compiled
    else:
        warm = step(mode, **options(256))
        force(warm(*inputs(1, 256)))
        run = fn
    q, k, v = inputs(1, length)
    _measure.reset_peak()
    before = _measure.status("VmRSS")
    force(run(q, k, v))
    print(json.dumps({"increase": _measure.status("VmHWM") - before}))


def memory_table(summary, length=32768, documents=32):
    results = {}
    for case in (f"causal-{length}", f"packed-{length}-{documents}"):
        out = subprocess.run(
            [sys.executable, __file__, "--backend", BACKEND, "--child", case],
            capture_output=True,
            text=True,
            check=True,
        )
        results[case] = json.loads(out.stdout.strip().splitlines()[-1])["increase"]
        print(f"| {case} | {results[case] / 2**20:.0f} MiB |", flush=True)
    relative = results[f"packed-{length}-{documents}"] / results[f"causal-{length}"]
    summary.append(
        _measure.target_line(
            f"peak memory, packed / causal, T={length}", relative, 1.2, lower=True
        )
    )


def matmul():
    return _measure.numpy_matmul_gflops()


def main(args):
    print(_measure.machine(), flush=True)
    quiet = _measure.Quiet(matmul)
    quiet.check("start")
    summary = []
    length = 4096 if args.quick else 16384
    print(
        "\n| packed rows | mode | causal s | packed s | separate rows s | "
        "causal/packed | packed/separate |\n|---|---|---|---|---|---|---|",
        flush=True,
    )
    for mode in MODES:
        packed_table(mode, args.runs, length, length // 1024, summary)
    quiet.check("after packed")
    print(
        "\n| dense mask | mode | Keras s | ours s | Keras/ours |\n"
        "|---|---|---|---|---|",
        flush=True,
    )
    for mode in MODES:
        dense_table(mode, args.runs, 4096, 4)
    quiet.check("after dense")
    print(
        "\n| pattern | mode | baseline s | pattern s | baseline/pattern |\n"
        "|---|---|---|---|---|",
        flush=True,
    )
    chunk_length = 8192 if args.quick else 32768
    for mode in MODES:
        versus_table(
            mode,
            max(3, args.runs - 2),
            f"chunks of {chunk_length // 4} vs causal, T={chunk_length}",
            chunk_length,
            {"causal": True},
            {"causal": True, "chunk_size": chunk_length // 4},
            3.0,
            summary,
        )
    quiet.check("after chunks")
    for mode in MODES:
        versus_table(
            mode,
            args.runs,
            f"window 512 + 16 global vs full, T={length}",
            length,
            {},
            {"sliding_window": 512, "global_tokens": 16},
            4.0,
            summary,
        )
    quiet.check("after window")
    if args.memory:
        print(
            "\n| memory, forward+backward | peak-RSS increase |\n|---|---|", flush=True
        )
        memory_table(summary)
        quiet.check("after memory")
    quiet.check("end")
    verdict, line = quiet.verdict()
    _measure.write_summary(f"patterns-{BACKEND}", [line, *summary])


if __name__ == "__main__":
    if ARGS.child:
        child(ARGS.child)
    else:
        main(ARGS)

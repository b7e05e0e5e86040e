"""Training on varying lengths with a padding mask: `fit` over batches of 20
different lengths, ours against `keras.layers.MultiHeadAttention`.

Method: each case runs in its own subprocess (this script with `--child`),
so that no compilation of one case serves another. The model:
`Embedding(1000, 128, mask_zero=True)` (the padding mask Keras propagates)
-> self-attention with 4 heads of 32 -> `Dense(1000)`, built on
`keras.Input((None,))`, Adam, sparse cross-entropy. The data: 20 batches of
16 sequences whose lengths are 64, 84, ..., 444 (the last 8 tokens of each
row are padding), fed by a Python generator, one epoch. The figure is the
wall time of that `fit` (its tracing and compilation included: that is
what a new length costs), median of `--runs` subprocesses per case,
alternating ours and Keras'. Modes: `jit_compile=False` (graph mode,
Keras' default on CPU) and `jit_compile=True` (XLA), causal; with XLA
only the time of the first step (`train_on_batch` on the first batch):
XLA compiles every new shape, so each new length costs a first step.

    python benchmarks/varying_lengths.py [--runs 5]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import _measure

LENGTHS = list(range(64, 464, 20))  # 20 lengths
BATCH, VOCAB, DIM, HEADS, KEY_DIM = 16, 1000, 128, 4, 32
TARGET = 1.5  # ours / Keras' fit time, graph mode, at most


def child(layer_kind, jit_compile):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import keras_attention

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True)(inputs)
    kind = (
        keras_attention.MultiHeadAttention
        if layer_kind == "ours"
        else keras.layers.MultiHeadAttention
    )
    x = kind(HEADS, KEY_DIM)(x, x, use_causal_mask=True)
    model = keras.Model(inputs, keras.layers.Dense(VOCAB)(x))
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(0)
    batches = []
    for length in LENGTHS:
        tokens = rng.integers(1, VOCAB, (BATCH, length)).astype("int32")
        tokens[:, -8:] = 0
        batches.append((tokens, np.roll(tokens, -1, axis=1)))
    start = time.perf_counter()
    if jit_compile:
        # XLA compiles each new shape: the first step is what it costs.
        model.train_on_batch(*batches[0])
    else:
        model.fit((b for b in batches), steps_per_epoch=len(batches), verbose=0)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def measure(layer_kind, jit_compile):
    result = subprocess.run(
        [sys.executable, __file__, "--child", layer_kind, str(int(jit_compile))],
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "1")
        return
    print(f"Machine: {_measure.machine_without_keras()}; backend tensorflow")
    quiet = _measure.Quiet(_measure.numpy_matmul_gflops)
    quiet.check("start")
    print(
        f"fit over {len(LENGTHS)} lengths ({LENGTHS[0]}..{LENGTHS[-1]}), batch "
        f"{BATCH}, Embedding(mask_zero=True) -> causal self-attention "
        f"({HEADS} heads of {KEY_DIM}) -> Dense({VOCAB}); median of {args.runs} "
        "fresh processes (min-max)"
    )
    print("| mode | Keras' layer | ours | ours / Keras' |")
    print("|---|---|---|---|")
    summary = []
    for jit_compile in (False, True):
        times = {"keras": [], "ours": []}
        for _ in range(args.runs):
            for kind in ("ours", "keras"):
                times[kind].append(measure(kind, jit_compile)["seconds"])
        (ours, *ours_range), (theirs, *theirs_range) = (
            _measure.spread(times[k]) for k in ("ours", "keras")
        )
        mode = (
            "XLA (jit_compile=True): the first step"
            if jit_compile
            else "graph (jit_compile=False): fit over 20 lengths"
        )
        print(
            f"| {mode} | {theirs:.2f} s ({theirs_range[0]:.2f}-"
            f"{theirs_range[1]:.2f}) | {ours:.2f} s ({ours_range[0]:.2f}-"
            f"{ours_range[1]:.2f}) | {ours / theirs:.2f}x |",
            flush=True,
        )
        if not jit_compile:
            summary.append(
                _measure.target_line(
                    "varying lengths, graph-mode fit, ours / Keras' time",
                    ours / theirs,
                    TARGET,
                    lower=True,
                )
            )
        quiet.check(f"after {mode}")
    quiet.check("end")
    print(quiet.verdict()[1])
    _measure.write_summary("varying-lengths", summary)


if __name__ == "__main__":
    main()

"""Memory: the peak-RSS increase of one attention call, in fresh processes.

Method: each (implementation, T, pass) runs in its own subprocess (this
script with `--child`), which builds the layer, traces and runs a warm-up
call on a short input (T=256), resets the high-water mark
(`/proc/self/clear_refs`), reads VmRSS, makes the measured call and reads
VmHWM. Cases measured one after another in one process would under-report,
because freed pages stay with the allocator. A case whose estimated peak
cannot fit in this machine's memory is recorded as "does not fit" and never
started: there is no swap, and an OOM kill would take the run down.

    python benchmarks/memory.py [--lengths 4096 8192 ...]
"""

import argparse
import json
import os
import subprocess
import sys

import _measure

B, DIM, HEADS = 1, 256, 8
GIB = 2**30
# Peak / one fp32 (B, H, T, T) score tensor, from Keras MHA measured this way
# on a 2-core, 24 GiB machine: 8.3 GiB forward at T=16384, 6.3 GiB
# forward+backward at T=8192.
KERAS_FACTOR = {"fwd": 1.1, "fwd+bwd": 3.3}
LIMIT = 0.8  # of MemTotal: what a case may be expected to use


def child(impl, length, mode):
    """Prints `{"increase": bytes}`: the peak-RSS increase of one call."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_attention

    if impl == "keras":
        layer = keras.layers.MultiHeadAttention(num_heads=HEADS, key_dim=DIM // HEADS)

        def forward(x):
            return layer(x, x)

    else:
        layer = keras_attention.MultiHeadAttention(
            num_heads=HEADS, key_dim=DIM // HEADS
        )

        def forward(x):
            return layer(x)

    def step(x):
        if mode == "fwd":
            return forward(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(forward(x))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    step = tf.function(step)
    np.asarray(tf.nest.flatten(step(tf.random.normal((B, 256, DIM))))[0])
    x = tf.random.normal((B, length, DIM))
    _measure.reset_peak()
    before = _measure.status("VmRSS")
    result = step(x)
    for t in tf.nest.flatten(result):
        np.asarray(t)
    print(json.dumps({"increase": _measure.status("VmHWM") - before}))


def estimate(impl, length, mode):
    """A generous estimate of the peak, to decide whether to start a case."""
    scores = 4 * B * HEADS * length * length
    if impl == "keras":
        return KERAS_FACTOR[mode] * scores
    return 64 * B * length * DIM * 4 + GIB  # activations and tiles, linear in T


def measure(impl, length, mode):
    if estimate(impl, length, mode) > LIMIT * _measure.memory_total():
        return None
    result = subprocess.run(
        [sys.executable, __file__, "--child", impl, str(length), mode],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        return f"failed: {result.stderr.strip().splitlines()[-1][:120]}"
    return json.loads(result.stdout.strip().splitlines()[-1])["increase"]


def show(value):
    if value is None:
        return "does not fit"
    if isinstance(value, str):
        return value
    return f"{value / GIB:.2f} GiB"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[4096, 8192, 16384, 32768, 65536]
    )
    parser.add_argument(
        "--child",
        nargs=3,
        metavar=("IMPL", "T", "PASS"),
        help="measure one case in this process (what each subprocess runs)",
    )
    args = parser.parse_args()
    if args.child:
        impl, length, mode = args.child
        child(impl, int(length), mode)
        return
    print(f"B={B}, d={DIM}, h={HEADS}, fp32, self-attention, graph mode")
    print("| T | pass | keras MHA | ours | ours / keras | fp32 scores (B·H·T²·4) |")
    print("|---|---|---|---|---|---|")
    for length in args.lengths:
        for mode in ("fwd", "fwd+bwd"):
            theirs = measure("keras", length, mode)
            ours = measure("ours", length, mode)
            ratio = (
                f"{100 * ours / theirs:.1f} %"
                if isinstance(theirs, int) and isinstance(ours, int)
                else "-"
            )
            scores = 4 * B * HEADS * length * length / GIB
            print(
                f"| {length} | {mode} | {show(theirs)} | {show(ours)} | {ratio} | "
                f"{scores:.1f} GiB |",
                flush=True,
            )


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    main()

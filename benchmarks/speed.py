"""Speed: our MultiHeadAttention against keras.layers.MultiHeadAttention.

Method: one process, same weights (`set_weights`), graph mode
(`tf.function`) with and without XLA, two warm-up calls each, then A, B, A,
B ... interleaved; medians; `np.asarray` on every output forces completion.
Ratios measured side by side are the figures to read: on a shared machine
absolute times move with the load, so run it on a quiet one and keep the
plain matmul figure with the table. Prints Markdown tables; `--quick` runs a
subset.

    python benchmarks/speed.py [--quick] [--runs 5]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _measure import machine  # noqa: E402

import keras_attention  # noqa: E402

# (batch, seq_len, model dim, heads)
CONFIGS = [
    (32, 128, 256, 4),
    (8, 512, 256, 8),
    (1, 2048, 256, 8),
    (1, 4096, 256, 8),
    (1, 2048, 512, 8),
    (1, 4096, 512, 8),
]
QUICK = [(8, 512, 256, 8), (1, 4096, 256, 8)]


def _force(result):
    for x in tf.nest.flatten(result):
        np.asarray(x)


def make_step(layer, *, causal, backward, jit_compile, keras_layer):
    """A `tf.function` of one call of `layer` on `x` (forward, or forward and
    the gradients of every input and weight). Keras' layer is called on
    `(x, x)`, ours on `x` alone (self-attention)."""

    def forward(x):
        if keras_layer:
            return layer(x, x, use_causal_mask=causal)
        return layer(x, use_causal_mask=causal)

    def step(x):
        if not backward:
            return forward(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(forward(x))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return tf.function(step, jit_compile=jit_compile)


def compare(fns, x, runs):
    """Median seconds of each function, interleaved after two warm-ups each."""
    for fn in fns:
        for _ in range(2):
            _force(fn(x))
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            _force(fn(x))
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def layers_for(dim, heads, x, **ours_kwargs):
    theirs = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=dim // heads)
    theirs(x, x)
    ours = keras_attention.MultiHeadAttention(
        num_heads=heads, key_dim=dim // heads, **ours_kwargs
    )
    ours(x)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def matmul_gflops(runs):
    a = tf.random.normal((2048, 2048))
    fn = tf.function(lambda a: tf.matmul(a, a))
    (seconds,) = compare([fn], a, runs)
    return 2 * 2048**3 / seconds / 1e9


def mha_table(configs, runs):
    for batch, length, dim, heads in configs:
        x = tf.random.normal((batch, length, dim))
        theirs, ours = layers_for(dim, heads, x)
        for causal in (False, True):
            for backward in (False, True):
                for jit in (False, True):
                    fns = [
                        make_step(
                            layer,
                            causal=causal,
                            backward=backward,
                            jit_compile=jit,
                            keras_layer=layer is theirs,
                        )
                        for layer in (theirs, ours)
                    ]
                    keras_s, ours_s = compare(fns, x, runs)
                    print(
                        f"| {batch} | {length} | {dim} | {heads} | "
                        f"{'causal' if causal else 'full'} | "
                        f"{'fwd+bwd' if backward else 'fwd'} | "
                        f"{'XLA' if jit else 'graph'} | {1e3 * keras_s:.1f} | "
                        f"{1e3 * ours_s:.1f} | {keras_s / ours_s:.2f}x |",
                        flush=True,
                    )


def sliding_window_table(runs, length=16384, window=256, dim=256, heads=8):
    x = tf.random.normal((1, length, dim))
    results = {}
    for name, kwargs in (
        ("full causal", {"causal": True}),
        (
            f"causal, sliding_window={window}",
            {"causal": True, "sliding_window": window},
        ),
    ):
        layer = keras_attention.MultiHeadAttention(
            num_heads=heads, key_dim=dim // heads, **kwargs
        )
        layer(x[:, :8])
        for backward in (False, True):
            fn = make_step(
                layer,
                causal=False,
                backward=backward,
                jit_compile=False,
                keras_layer=False,
            )
            (results[name, backward],) = compare([fn], x, runs)
    for backward in (False, True):
        full = results["full causal", backward]
        windowed = results[f"causal, sliding_window={window}", backward]
        print(
            f"| {length} | {window} | {'fwd+bwd' if backward else 'fwd'} | "
            f"{1e3 * full:.0f} | {1e3 * windowed:.0f} | {full / windowed:.1f}x |",
            flush=True,
        )


def core_table(runs, peak):
    """GFLOP/s of scaled_dot_product_attention alone, vs. the matmul."""
    for length, head_dim in ((2048, 32), (2048, 64), (4096, 32), (4096, 64)):
        heads = 8
        q = tf.random.normal((1, heads, length, head_dim))

        def core(q):
            return keras_attention.scaled_dot_product_attention(q, q, q)

        def keras_core(q):
            t = tf.transpose(q, (0, 2, 1, 3))
            return keras.ops.dot_product_attention(t, t, t)

        ours_s, keras_s = compare([tf.function(core), tf.function(keras_core)], q, runs)
        flops = 4 * heads * length * length * head_dim
        for name, seconds in (
            ("ours", ours_s),
            ("keras.ops.dot_product_attention", keras_s),
        ):
            gflops = flops / seconds / 1e9
            print(
                f"| {name} | {length} | {head_dim} | {1e3 * seconds:.0f} | "
                f"{gflops:.1f} | {100 * gflops / peak:.0f} % |",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a subset of configs")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    peak = matmul_gflops(args.runs)
    print(f"Plain fp32 matmul 2048x2048: {peak:.1f} GFLOP/s\n")
    print("| B | T | d | h | mask | pass | mode | keras ms | ours ms | keras/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    mha_table(QUICK if args.quick else CONFIGS, args.runs)
    print(
        "\n| T | window | pass | our full causal ms | our sliding window ms | ratio |"
    )
    print("|---|---|---|---|---|---|")
    sliding_window_table(args.runs)
    print("\n| implementation | T | head_dim | ms | GFLOP/s | of matmul |")
    print("|---|---|---|---|---|---|")
    core_table(args.runs, peak)


if __name__ == "__main__":
    main()

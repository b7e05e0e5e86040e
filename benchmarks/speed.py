"""Speed: our MultiHeadAttention against keras.layers.MultiHeadAttention.

Method (summarised in RESULTS.md, "How to read these figures"): one process,
same weights (`set_weights`), each compiled step warmed up twice, then A, B,
A, B ... interleaved for `--runs` runs (at least 7); every output forced to
NumPy. Each ratio is the median of the per-run ratios keras/ours, with their
range as its spread. Modes: TensorFlow `tf.function` without ("graph") and
with XLA ("XLA"); JAX `jax.jit` ("jit"); PyTorch eager ("eager").

The run records the evidence that nothing else ran (`_measure.Quiet`): the
plain 2048² fp32 matmul at the start, between sections and at the end, and
the CPU time other processes used. A run that is not quiet says so at the
top of its summary; its figures are not results.

    python benchmarks/speed.py [--backend tensorflow|jax|torch] [--quick] [--runs 7]
"""

import argparse
import os
import sys
import time


def _parse():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
    )
    parser.add_argument("--quick", action="store_true", help="a subset of configs")
    parser.add_argument("--runs", type=int, default=7)
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
MODES = {"tensorflow": ("graph", "XLA"), "jax": ("jit",), "torch": ("eager",)}[BACKEND]

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

# The speed the package aims for, as (batch, T, mask, pass, mode): minimum
# keras/ours; the summary reports each as met, not shown or MISSED.
TARGETS = {
    "tensorflow": {
        (8, 512, "full", "fwd", "graph"): 1.0,
        (8, 512, "full", "fwd+bwd", "graph"): 1.0,
        (32, 128, "full", "fwd", "graph"): 1.0,
        (32, 128, "full", "fwd+bwd", "graph"): 1.0,
        (1, 4096, "full", "fwd+bwd", "graph"): 1.25,
        (8, 512, "full", "fwd", "XLA"): 1.25,
        (8, 512, "full", "fwd+bwd", "XLA"): 1.25,
        (1, 4096, "full", "fwd", "XLA"): 2.0,
        (1, 4096, "full", "fwd+bwd", "XLA"): 2.0,
    },
    "jax": {(1, 4096, "causal", "fwd+bwd", "jit"): 2.0},
    "torch": {
        (batch, length, mask, step, "eager"): 0.8
        for batch, length in ((8, 512), (1, 4096))
        for mask in ("full", "causal")
        for step in ("fwd", "fwd+bwd")
    },
}[BACKEND]


def compile_fn(fn, mode):
    """`fn` compiled as `mode` says."""
    if mode in ("graph", "XLA"):
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # each step is traced once, on purpose

        return tf.function(fn, jit_compile=mode == "XLA")
    if mode == "jit":
        import jax

        return jax.jit(fn)
    return fn


def force(result):
    """Waits for every array of `result` by converting it to NumPy."""
    if isinstance(result, (list, tuple)):
        for x in result:
            force(x)
    else:
        np.asarray(keras.ops.convert_to_numpy(result))


def make_step(layer, *, causal, backward, mode, keras_layer):
    """One compiled call of `layer` on `x`: forward, or forward and the
    gradients of `sum(output)` with respect to `x` and every weight. Keras'
    layer is called on `(x, x)`, ours on `x` alone (self-attention)."""

    def forward(x):
        args = (x, x) if keras_layer else (x,)
        return layer(*args, use_causal_mask=causal)

    if BACKEND == "jax":
        return _JaxStep(
            layer, causal=causal, backward=backward, keras_layer=keras_layer
        )
    if not backward:
        if BACKEND == "torch":
            import torch

            def step(x):
                with torch.no_grad():
                    return forward(x)

            return step
        return compile_fn(forward, mode)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(forward(x))
            return tape.gradient(loss, [x, *layer.trainable_variables])

        return compile_fn(step, mode)
    import torch

    def step(x):
        x = x.detach().requires_grad_(True)
        weights = [v.value for v in layer.trainable_variables]
        return torch.autograd.grad(forward(x).sum(), [x, *weights])

    return step


class _JaxStep:
    """A `jax.jit` step of a layer's `stateless_call`, the weights passed as
    arguments (not baked into the program as constants)."""

    def __init__(self, layer, *, causal, backward, keras_layer):
        import jax

        self.weights = [v.value for v in layer.trainable_variables]
        others = [v.value for v in layer.non_trainable_variables]

        def forward(weights, x):
            args = (x, x) if keras_layer else (x,)
            y, _ = layer.stateless_call(weights, others, *args, use_causal_mask=causal)
            return y

        def loss(weights, x):
            return keras.ops.sum(forward(weights, x))

        self.fn = jax.jit(jax.grad(loss, argnums=(0, 1)) if backward else forward)

    def __call__(self, x):
        return self.fn(self.weights, x)

    def compiled(self, x):
        """The step compiled for `x`'s shape without running it (so that
        compiling is not part of a measured call)."""
        executable = self.fn.lower(self.weights, x).compile()
        return lambda x: executable(self.weights, x)


def compare(fns, x, runs):
    """Per-run seconds of each function, interleaved after two warm-ups each."""
    for fn in fns:
        for _ in range(2):
            force(fn(x))
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            force(fn(x))
            bucket.append(time.perf_counter() - start)
    return times


def ratio(numerators, denominators):
    """(median, low, high) of the per-run ratios."""
    return _measure.spread(
        [a / b for a, b in zip(numerators, denominators, strict=True)]
    )


def matmul_gflops(runs):
    a = keras.random.normal((2048, 2048), seed=0)
    fn = compile_fn(lambda a: keras.ops.matmul(a, a), MODES[0])
    (times,) = compare([fn], a, runs)
    return 2 * 2048**3 / _measure.spread(times)[0] / 1e9


def layers_for(dim, heads, x, **ours_kwargs):
    theirs = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=dim // heads)
    theirs(x, x)
    ours = keras_attention.MultiHeadAttention(
        num_heads=heads, key_dim=dim // heads, **ours_kwargs
    )
    ours(x)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def mha_table(configs, runs, summary):
    print("| B | T | d | h | mask | pass | mode | keras ms | ours ms | keras/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for batch, length, dim, heads in configs:
        x = keras.random.normal((batch, length, dim), seed=1)
        theirs, ours = layers_for(dim, heads, x)
        for mask in ("full", "causal"):
            for step in ("fwd", "fwd+bwd"):
                for mode in MODES:
                    fns = [
                        make_step(
                            layer,
                            causal=mask == "causal",
                            backward=step == "fwd+bwd",
                            mode=mode,
                            keras_layer=layer is theirs,
                        )
                        for layer in (theirs, ours)
                    ]
                    keras_s, ours_s = compare(fns, x, runs)
                    median, low, high = ratio(keras_s, ours_s)
                    print(
                        f"| {batch} | {length} | {dim} | {heads} | {mask} | "
                        f"{step} | {mode} | "
                        f"{1e3 * _measure.spread(keras_s)[0]:.1f} | "
                        f"{1e3 * _measure.spread(ours_s)[0]:.1f} | "
                        f"{median:.2f}x ({low:.2f}-{high:.2f}) |",
                        flush=True,
                    )
                    target = TARGETS.get((batch, length, mask, step, mode))
                    if target is not None and dim == 256:
                        summary.append(
                            _measure.target_line(
                                f"{BACKEND} {mode} B={batch} T={length} {mask} "
                                f"{step}, keras/ours",
                                median,
                                target,
                                low=low,
                                high=high,
                            )
                        )


def sliding_window_table(runs, length=16384, window=256, dim=256, heads=8):
    print(
        "\n| T | window | pass | our full causal ms | our sliding window ms | ratio |"
    )
    print("|---|---|---|---|---|---|")
    x = keras.random.normal((1, length, dim), seed=2)
    layers = []
    for kwargs in ({"causal": True}, {"causal": True, "sliding_window": window}):
        layer = keras_attention.MultiHeadAttention(
            num_heads=heads, key_dim=dim // heads, **kwargs
        )
        layer(x[:, :8])
        layers.append(layer)
    layers[1].set_weights(layers[0].get_weights())
    for backward in (False, True):
        fns = [
            make_step(
                layer, causal=None, backward=backward, mode=MODES[0], keras_layer=False
            )
            for layer in layers
        ]
        full_s, window_s = compare(fns, x, runs)
        median, low, high = ratio(full_s, window_s)
        print(
            f"| {length} | {window} | {'fwd+bwd' if backward else 'fwd'} | "
            f"{1e3 * _measure.spread(full_s)[0]:.0f} | "
            f"{1e3 * _measure.spread(window_s)[0]:.0f} | "
            f"{median:.1f}x ({low:.1f}-{high:.1f}) |",
            flush=True,
        )


def core_table(runs, peak, summary):
    """scaled_dot_product_attention alone against keras.ops.dot_product_attention
    (same inputs; Keras' takes `(batch, len, heads, depth)`)."""
    print(
        "\n| T | head_dim | ours ms | keras.ops ms | ours of matmul "
        "| keras.ops of matmul | keras.ops/ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for length, head_dim in ((2048, 32), (2048, 64), (4096, 32), (4096, 64)):
        heads = 8
        q = keras.random.normal((1, heads, length, head_dim), seed=3)

        def core(q):
            return keras_attention.scaled_dot_product_attention(q, q, q)

        def keras_core(q):
            t = keras.ops.transpose(q, (0, 2, 1, 3))
            return keras.ops.dot_product_attention(t, t, t)

        fns = [compile_fn(core, MODES[0]), compile_fn(keras_core, MODES[0])]
        ours_s, keras_s = compare(fns, q, runs)
        median, low, high = ratio(keras_s, ours_s)
        flops = 4 * heads * length * length * head_dim

        def of_matmul(times, flops=flops):
            return 100 * flops / _measure.spread(times)[0] / 1e9 / peak

        print(
            f"| {length} | {head_dim} | {1e3 * _measure.spread(ours_s)[0]:.0f} | "
            f"{1e3 * _measure.spread(keras_s)[0]:.0f} | {of_matmul(ours_s):.0f} % | "
            f"{of_matmul(keras_s):.0f} % | {median:.2f}x ({low:.2f}-{high:.2f}) |",
            flush=True,
        )
        if BACKEND == "tensorflow":
            summary.append(
                _measure.target_line(
                    f"{BACKEND} core T={length} head_dim={head_dim}, keras.ops/ours",
                    median,
                    1.3 if length == 4096 else 1.0,
                    low=low,
                    high=high,
                )
            )


def main(args):
    print(f"Machine: {_measure.machine()}")
    print(f"Command: python benchmarks/speed.py {' '.join(sys.argv[1:])}\n", flush=True)
    quiet = _measure.Quiet(lambda: matmul_gflops(args.runs))
    peak = quiet.check("start")
    summary = []
    mha_table(QUICK if args.quick else CONFIGS, args.runs, summary)
    quiet.check("after the layer table")
    if BACKEND != "torch" or not args.quick:
        sliding_window_table(args.runs)
        quiet.check("after the sliding-window table")
    core_table(args.runs, peak, summary)
    quiet.check("end")
    _, evidence = quiet.verdict()
    _measure.write_summary(
        f"speed-{BACKEND}", [f"speed ({BACKEND}) {evidence}", *summary]
    )


if __name__ == "__main__":
    main(ARGS)

"""Where the tiled attention starts to pay: full against tiled, side by side.

For each shape, `scaled_dot_product_attention` is compiled twice, once with
the automatic thresholds (`keras_attention.ops.TILED_FROM_LOGITS`, and on
TensorFlow outside XLA `OUTSIDE_XLA_TILED_FROM_LOGITS` of
`keras_attention/_backend/tensorflow.py`) set so that it always tiles and
once so that it never does, then both run interleaved (speed.py's method:
two warm-ups, `--runs` runs, medians and the range of the per-run ratios).
Forward, and forward+backward (the gradient of `sum(output)` with respect to
query, key and value), fp32, head_dim 32, 8 heads, self-attention;
TensorFlow graph mode (or XLA with `--xla`) or `jax.jit`. The ratio
full/tiled above 1 means the tiles are faster. On TensorFlow outside XLA,
forward+backward rows also time the full path with `tile_size=0`, the same
forward differentiated by TensorFlow's autodiff rather than by the
backend's hand-written `full` kernel: autodiff/full above 1 means the hand-
written gradient is faster. Quiet-machine evidence as in speed.py.

    python benchmarks/threshold.py [--backend tensorflow|jax] [--xla] [--runs 7]
        [--shapes 8,512 1,4096]
"""

import argparse
import os

if __name__ == "__main__":
    _parser = argparse.ArgumentParser()
    _parser.add_argument(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
    )
    _parser.add_argument("--runs", type=int, default=7)
    _parser.add_argument(
        "--xla", action="store_true", help="TensorFlow: jit_compile=True"
    )
    _parser.add_argument(
        "--shapes", nargs="+", help="batch,seq_len pairs (default: all of SHAPES)"
    )
    ARGS = _parser.parse_args()
    os.environ["KERAS_BACKEND"] = ARGS.backend

import _measure  # noqa: E402
import keras  # noqa: E402
import speed  # noqa: E402

import keras_attention  # noqa: E402
from keras_attention import ops as attention_ops  # noqa: E402

HEADS, HEAD_DIM = 8, 32
# (batch, seq_len): logits per call B·H·T² from 2**22 to 2**28 (2**28 holds
# 1 GiB per (q_len, k_len) float32 tensor; the full forward+backward about
# three of them).
SHAPES = [
    (32, 128),
    (8, 256),
    (1, 1024),
    (8, 512),
    (2, 1024),
    (1, 2048),
    (4, 1024),
    (1, 4096),
    (2, 4096),
]


def attention_step(backward, tile_size=None):
    def forward(q):
        return keras_attention.scaled_dot_product_attention(
            q, q, q, tile_size=tile_size
        )

    if not backward:
        return forward
    if speed.BACKEND == "tensorflow":
        import tensorflow as tf

        def step(q):
            with tf.GradientTape() as tape:
                tape.watch(q)
                loss = tf.reduce_sum(forward(q))
            return tape.gradient(loss, q)

        return step
    if speed.BACKEND == "jax":
        import jax

        return jax.grad(lambda q: keras.ops.sum(forward(q)))
    import torch

    def torch_step(q):
        q = q.detach().requires_grad_(True)
        return torch.autograd.grad(forward(q).sum(), [q])

    return torch_step


def thresholds():
    """(module, name) of every automatic threshold of this backend."""
    names = [(attention_ops, "TILED_FROM_LOGITS")]
    if speed.BACKEND == "tensorflow":
        from keras_attention._backend import tensorflow

        names.append((tensorflow, "OUTSIDE_XLA_TILED_FROM_LOGITS"))
    return names


def compiled(backward, threshold, q, mode):
    """The step compiled (traced) with the thresholds set to `threshold`."""
    saved = [getattr(module, name) for module, name in thresholds()]
    for module, name in thresholds():
        setattr(module, name, threshold)
    try:
        fn = speed.compile_fn(attention_step(backward), mode)
        speed.force(fn(q))  # traced now, with this threshold
    finally:
        for (module, name), value in zip(thresholds(), saved, strict=True):
            setattr(module, name, value)
    return fn


def main(runs, xla=False, shapes=None):
    mode = "XLA" if xla and speed.BACKEND == "tensorflow" else speed.MODES[0]
    print(f"Machine: {_measure.machine()}")
    print(
        f"Command: python benchmarks/threshold.py --backend {speed.BACKEND}"
        f"{' --xla' if mode == 'XLA' else ''}\n"
    )
    quiet = _measure.Quiet(lambda: speed.matmul_gflops(runs))
    quiet.check("start")
    autodiff = mode == "graph"  # where TensorFlow's `full` kernel runs
    print(
        "| B | T | logits B·H·T² | pass | full ms | tiled ms | full/tiled "
        + ("| autodiff ms | autodiff/full |" if autodiff else "|")
    )
    print("|---|---|---|---|---|---|---|" + ("---|---|" if autodiff else ""))
    for batch, length in shapes or SHAPES:
        q = keras.random.normal((batch, HEADS, length, HEAD_DIM), seed=0)
        for backward in (False, True):
            fns = [compiled(backward, t, q, mode) for t in (1 << 62, 0)]
            if autodiff and backward:
                fns.append(speed.compile_fn(attention_step(True, tile_size=0), mode))
            times = speed.compare(fns, q, runs)
            median, low, high = speed.ratio(times[0], times[1])
            logits = batch * HEADS * length * length
            row = (
                f"| {batch} | {length} | 2^{logits.bit_length() - 1} | "
                f"{'fwd+bwd' if backward else 'fwd'} | "
                f"{1e3 * _measure.spread(times[0])[0]:.1f} | "
                f"{1e3 * _measure.spread(times[1])[0]:.1f} | "
                f"{median:.2f}x ({low:.2f}-{high:.2f}) |"
            )
            if autodiff:
                if backward:
                    median, low, high = speed.ratio(times[2], times[0])
                    row += (
                        f" {1e3 * _measure.spread(times[2])[0]:.1f} | "
                        f"{median:.2f}x ({low:.2f}-{high:.2f}) |"
                    )
                else:
                    row += " - | - |"
            print(row, flush=True)
    quiet.check("end")
    print("\n" + quiet.verdict()[1])


if __name__ == "__main__":
    main(
        ARGS.runs,
        ARGS.xla,
        [tuple(int(n) for n in pair.split(",")) for pair in ARGS.shapes or []],
    )

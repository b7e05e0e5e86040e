"""Soak: 1,000 training steps of the toy model on random lengths and padding.

Not a unit test: run it with `make soak` (a minute or two on 2 cores). Every
step trains `build_toy_model` on a fresh batch of the reversal task whose
padded width, real lengths and padding (so the Keras masks, including rows
with no real token at all) are drawn at random. The run fails, with exit
status 1, if any loss is not finite, or if the resident memory after the
last step differs by more than 5 % from the one after step 100 (after
warm-up: by then every shape has been traced).

    python benchmarks/soak.py [--steps 1000] [--seed 0] [--encoding learned]

Memory is `VmRSS` from `/proc/self/status` (Linux), read after
`gc.collect()`.
"""

import argparse
import gc
import sys
import time

import _measure
import keras
import numpy as np

import keras_attention

VOCAB_SIZE = 16
MAX_LENGTH = 24
BATCH_SIZE = 32
WARM_UP_STEP = 100
TOLERANCE = 0.05
REPORT_AT = (1, 100, 250, 500, 750, 1000)
MIB = 2**20


def rss_mib():
    gc.collect()
    return _measure.status("VmRSS") / MIB


def random_batch(rng, seed):
    """Tokens and targets `(BATCH_SIZE, width)`, width and lengths random;
    about one row in ten is all padding (its loss weight is zero)."""
    width = int(rng.integers(2, MAX_LENGTH + 1))
    tokens, targets = keras_attention.make_reversal_data(
        BATCH_SIZE, width, VOCAB_SIZE, min_length=1, seed=seed
    )
    empty = rng.random(BATCH_SIZE) < 0.1
    empty[0] = False  # at least one real token in the batch
    tokens[empty] = 0
    targets[empty] = 0
    return tokens, targets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--encoding", choices=["sinusoidal", "learned", "none"], default="sinusoidal"
    )
    args = parser.parse_args(argv)
    if args.steps < WARM_UP_STEP:
        parser.error(f"--steps must be at least {WARM_UP_STEP}")

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = keras_attention.build_toy_model(
        VOCAB_SIZE,
        MAX_LENGTH,
        encoding=None if args.encoding == "none" else args.encoding,
        dropout=0.1,
    )
    print(f"# soak: {args.steps} steps, batch {BATCH_SIZE}, widths 2..{MAX_LENGTH}")
    print(f"# {_measure.machine()}")
    print(f"{'step':>6} {'loss':>9} {'RSS MiB':>9} {'seconds':>8}")

    start = time.perf_counter()
    losses, rss, failures = [], {}, []
    for step in range(1, args.steps + 1):
        tokens, targets = random_batch(rng, args.seed * 1_000_003 + step)
        loss = float(model.train_on_batch(tokens, targets))
        losses.append(loss)
        if not np.isfinite(loss):
            failures.append(f"loss {loss} at step {step}")
            break
        if step in (WARM_UP_STEP, args.steps):
            rss[step] = rss_mib()
        if step in REPORT_AT or step == args.steps:
            print(
                f"{step:>6} {loss:>9.4f} {rss.get(step, rss_mib()):>9.1f} "
                f"{time.perf_counter() - start:>8.1f}"
            )
    duration = time.perf_counter() - start

    print(f"steps: {len(losses)}, duration: {duration:.1f} s")
    print(
        f"loss: first {losses[0]:.4f}, last {losses[-1]:.4f}; mean of the first "
        f"100 steps {np.mean(losses[:100]):.4f}, of the last 100 "
        f"{np.mean(losses[-100:]):.4f}"
    )
    if len(rss) == 2:
        ratio = rss[args.steps] / rss[WARM_UP_STEP]
        print(
            f"RSS: step {WARM_UP_STEP} {rss[WARM_UP_STEP]:.1f} MiB, step "
            f"{args.steps} {rss[args.steps]:.1f} MiB, ratio {ratio:.3f} "
            f"(limit 1 ± {TOLERANCE})"
        )
        print(f"peak RSS (VmHWM): {_measure.status('VmHWM') / MIB:.1f} MiB")
        if abs(ratio - 1) > TOLERANCE:
            failures.append(f"RSS ratio {ratio:.3f} outside 1 ± {TOLERANCE}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

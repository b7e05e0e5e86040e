"""Memory: the peak-RSS increase of one attention call, in fresh processes.

Method: each (implementation, T, pass) runs in its own subprocess (this
script with `--child`), which builds the layer, traces and runs a warm-up
call on a short input (T=256), resets the high-water mark
(`/proc/self/clear_refs`), reads VmRSS, makes the measured call and reads
VmHWM. Cases measured one after another in one process would under-report,
because freed pages stay with the allocator. A case whose estimated peak
cannot fit in this machine's memory is recorded as "does not fit" and never
started: there is no swap, and an OOM kill would take the run down.
Implementations: Keras' layer, ours, and ours with `alibi=True` (the bias is
computed tile by tile, so it should cost no memory). Steps as in speed.py:
TensorFlow graph mode, `jax.jit` (compiled for the measured length before
the high-water mark is reset), PyTorch eager. The run records the quiet
evidence of `_measure.Quiet` (NumPy's matmul at the start and the end, the
CPU other processes used) and ends with the memory targets.

    python benchmarks/memory.py [--backend tensorflow|jax|torch]
        [--lengths 4096 8192 ...]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import _measure

B, DIM, HEADS = 1, 256, 8
GIB = 2**30
# Peak / one fp32 (B, H, T, T) score tensor, from Keras MHA measured this way
# on a 2-core, 24 GiB machine: 8.3 GiB forward at T=16384, 6.3 GiB
# forward+backward at T=8192.
KERAS_FACTOR = {"fwd": 1.1, "fwd+bwd": 3.3}
LIMIT = 0.8  # of MemTotal: what a case may be expected to use


def child(impl, length, mode):
    """Prints `{"increase": bytes}`: the peak-RSS increase of one call, on
    the backend of `KERAS_BACKEND` (speed.py's steps: TensorFlow graph mode,
    `jax.jit`, PyTorch eager)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import speed

    import keras_attention

    # "ours-kv<n>", "keras-gqa-kv<n>": grouped-query attention, n key/value
    # heads for the HEADS query heads.
    kv_heads = int(impl.rsplit("kv", 1)[1]) if "-kv" in impl else None
    if impl == "keras":
        layer = keras.layers.MultiHeadAttention(num_heads=HEADS, key_dim=DIM // HEADS)
    elif impl.startswith("keras-gqa"):
        layer = keras.layers.GroupQueryAttention(
            head_dim=DIM // HEADS, num_query_heads=HEADS, num_key_value_heads=kv_heads
        )
    else:
        layer = keras_attention.MultiHeadAttention(
            num_heads=HEADS,
            key_dim=DIM // HEADS,
            alibi=impl == "ours-alibi",
            num_key_value_heads=kv_heads,
        )
    keras_layer = impl.startswith("keras")
    short = keras.random.normal((B, 256, DIM), seed=0)
    layer(*(short, short) if keras_layer else (short,))
    step = speed.make_step(
        layer,
        causal=False,
        backward=mode == "fwd+bwd",
        mode=speed.MODES[0],
        keras_layer=keras_layer,
    )
    speed.force(step(short))  # traced (and run) on a short input
    x = keras.random.normal((B, length, DIM), seed=1)
    if speed.BACKEND == "jax":
        step = step.compiled(x)  # compiled for this length, not run
    _measure.reset_peak()
    before = _measure.status("VmRSS")
    speed.force(step(x))
    print(json.dumps({"increase": _measure.status("VmHWM") - before}))


def estimate(impl, length, mode):
    """A generous estimate of the peak, to decide whether to start a case."""
    scores = 4 * B * HEADS * length * length
    if impl.startswith("keras"):
        return KERAS_FACTOR[mode] * scores
    return 64 * B * length * DIM * 4 + GIB  # activations and tiles, linear in T


def measure(impl, length, mode, backend):
    if estimate(impl, length, mode) > LIMIT * _measure.memory_total():
        return None
    result = subprocess.run(
        [sys.executable, __file__, "--child", impl, str(length), mode],
        env={**os.environ, "KERAS_BACKEND": backend},
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


# The memory the package aims for: (T, pass) -> GiB of ours at most, per backend;
# TensorFlow's are fractions of Keras' figure ("of keras").
TARGETS = {
    "tensorflow": {(16384, "fwd"): 0.10, (8192, "fwd+bwd"): 0.20, (32768, "fwd"): 2.0},
    "jax": {(16384, "fwd"): 0.5, (32768, "fwd+bwd"): 1.0},
    "torch": {(16384, "fwd"): 0.5, (32768, "fwd+bwd"): 1.0},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[4096, 8192, 16384, 32768, 65536]
    )
    parser.add_argument(
        "--backend",
        choices=("tensorflow", "jax", "torch"),
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
    )
    parser.add_argument(
        "--gqa",
        type=int,
        metavar="T",
        help="instead: grouped-query attention at length T, 8 query heads "
        "and 8, 4, 2, 1 key/value heads (ours, and Keras' GroupQueryAttention)",
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
    backend = args.backend
    print(f"Machine: {_measure.machine_without_keras()}; backend {backend}")
    print(f"Command: python benchmarks/memory.py {' '.join(sys.argv[1:])}\n")
    quiet = _measure.Quiet(_measure.numpy_matmul_gflops)
    quiet.check("start (NumPy)")
    step = {"tensorflow": "graph mode", "jax": "jax.jit", "torch": "eager"}[backend]
    if args.gqa:
        grouped(args.gqa, backend, step, quiet)
        return
    print(f"\nB={B}, d={DIM}, h={HEADS}, fp32, self-attention, {step}")
    print(
        "| T | pass | keras MHA | ours | ours / keras | ours, alibi=True "
        "| fp32 scores (B·H·T²·4) |"
    )
    print("|---|---|---|---|---|---|---|")
    figures, alibis = {}, {}
    for length in args.lengths:
        for mode in ("fwd", "fwd+bwd"):
            theirs = measure("keras", length, mode, backend)
            ours = measure("ours", length, mode, backend)
            alibi = measure("ours-alibi", length, mode, backend)
            figures[length, mode] = theirs, ours
            alibis[length, mode] = alibi
            ratio = (
                f"{100 * ours / theirs:.1f} %"
                if isinstance(theirs, int) and isinstance(ours, int)
                else "-"
            )
            scores = 4 * B * HEADS * length * length / GIB
            print(
                f"| {length} | {mode} | {show(theirs)} | {show(ours)} | {ratio} | "
                f"{show(alibi)} | {scores:.1f} GiB |",
                flush=True,
            )
    quiet.check("end (NumPy)")
    _, evidence = quiet.verdict()
    summary = [f"memory ({backend}) {evidence}"]
    for (length, mode), limit in TARGETS[backend].items():
        if (length, mode) not in figures:
            continue
        theirs, ours = figures[length, mode]
        if not isinstance(ours, int):
            figure = None
        elif backend == "tensorflow" and length < 32768:
            figure = ours / theirs if isinstance(theirs, int) else None
        else:
            figure = ours / GIB
        unit = " of keras" if backend == "tensorflow" and length < 32768 else " GiB"
        summary.append(
            _measure.target_line(
                f"{backend} ours T={length} {mode}",
                figure,
                limit,
                unit=unit,
                lower=True,
            )
        )
    for (length, mode), alibi in alibis.items():
        ours = figures[length, mode][1]
        if length >= 32768 and mode == "fwd":
            figure = (
                alibi / ours
                if isinstance(alibi, int) and isinstance(ours, int)
                else None
            )
            summary.append(
                _measure.target_line(
                    f"{backend} alibi=True T={length} {mode}, of no bias",
                    figure,
                    1.1,
                    unit="x",
                    lower=True,
                )
            )
    for length in args.lengths:
        if length >= 65536:
            ours = figures[length, "fwd+bwd"][1]
            done = "completes" if isinstance(ours, int) else f"does not: {show(ours)}"
            summary.append(f"{backend} ours T={length} fwd+bwd {done}")
    _measure.write_summary(f"memory-{backend}", summary)


def grouped(length, backend, step, quiet):
    """The GQA table: the peak of 8 query heads does not grow as the
    key/value heads go from 8 to 1 (no copy per group)."""
    print(f"\nB={B}, d={DIM}, {HEADS} query heads, T={length}, fp32, {step}")
    print("| key/value heads | pass | ours | Keras GroupQueryAttention |")
    print("|---|---|---|---|")
    ours = {}
    for mode in ("fwd", "fwd+bwd"):
        for kv in (8, 4, 2, 1):
            ours[kv, mode] = measure(f"ours-kv{kv}", length, mode, backend)
            theirs = measure(f"keras-gqa-kv{kv}", length, mode, backend)
            print(
                f"| {kv} | {mode} | {show(ours[kv, mode])} | {show(theirs)} |",
                flush=True,
            )
    # The last child freed GiBs (Keras' fwd+bwd): let the kernel take them
    # back before the end's matmul, which that work slowed by 20 %.
    time.sleep(10)
    quiet.check("end (NumPy)")
    _, evidence = quiet.verdict()
    summary = [f"memory, grouped-query ({backend}) {evidence}"]
    for mode in ("fwd", "fwd+bwd"):
        one, eight = ours[1, mode], ours[8, mode]
        figure = (
            one / eight if isinstance(one, int) and isinstance(eight, int) else None
        )
        summary.append(
            _measure.target_line(
                f"{backend} ours T={length} {mode}, 1 key/value head of 8",
                figure,
                1.05,  # does not grow, within the method's few per cent
                lower=True,
            )
        )
    _measure.write_summary(f"memory-gqa-{backend}", summary)


if __name__ == "__main__":
    main()

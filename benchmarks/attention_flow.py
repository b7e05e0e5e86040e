"""`attention_flow` against the networkx formulation of Abnar & Zuidema (2020).

Not a test: run it on a quiet machine. The model has 2 `TransformerBlock`s
of 4 heads over 32 tokens (batch 1), untrained (the flow's cost does not
depend on the weights' values). Both sides get the same per-layer maps
(`keras_attention.explain.rollout._layer_maps`: heads averaged, residual 0.5), so
the timing compares the max-flow part only, and the flows must agree within
the stated tolerance (1e-5). The reference is the paper's code: a networkx
`DiGraph` of the stacked maps, one `maximum_flow_value` (Edmonds-Karp) per
(output, input) pair, each row divided by its sum. Target: ours >= 10x
faster.

networkx is a benchmark-only dependency (the `bench` extra, which `make
bench` installs; 3.6.1 is the newest for Python 3.11):

    .venv/bin/python -m pip install -c constraints.txt -e ".[bench]"
    .venv/bin/python benchmarks/attention_flow.py [--tokens 32] [--repeats 3]

`--tokens 8 --repeats 1` is a smoke run of a few seconds.
"""

import argparse
import statistics
import sys
import time

import _measure
import keras
import numpy as np

import keras_attention
from keras_attention.explain.rollout import _layer_maps, _max_flows

TARGET = 10.0


def build_model(tokens, blocks=2, heads=4, dim=32):
    model = keras.Sequential([keras.Input((tokens,), dtype="int32")])
    model.add(keras.layers.Embedding(100, dim))
    for _ in range(blocks):
        model.add(keras_attention.TransformerBlock(heads, 2 * dim))
    return model


def reference_flow(maps, networkx):
    """The paper's formulation: node `l * n + j` is position `j` before
    layer `l`; an edge from each node of layer `l + 1` to each of layer `l`
    with the attention as capacity; flows from the last layer's nodes to
    the inputs, each row normalized."""
    layers, n, _ = maps.shape
    graph = networkx.DiGraph()
    for layer in range(layers):
        for i in range(n):
            for j in range(n):
                if maps[layer, i, j] > 0:
                    graph.add_edge(
                        (layer + 1) * n + i, layer * n + j, capacity=maps[layer, i, j]
                    )
    flow = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            flow[i, j] = networkx.maximum_flow_value(
                graph,
                layers * n + i,
                j,
                flow_func=networkx.algorithms.flow.edmonds_karp,
            )
    return flow / flow.sum(axis=-1, keepdims=True)


def ours(maps):
    flow = _max_flows(maps)
    return flow / flow.sum(axis=-1, keepdims=True)


def timed(function, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        import networkx
    except ImportError:
        print(
            "benchmarks/attention_flow.py needs networkx (benchmark only):\n"
            '    .venv/bin/python -m pip install -c constraints.txt -e ".[bench]"',
            file=sys.stderr,
        )
        return 2

    quiet = _measure.Quiet(_measure.numpy_matmul_gflops)
    quiet.check("start")
    model = build_model(args.tokens)
    inputs = np.random.default_rng(0).integers(1, 100, size=(1, args.tokens))
    steps = _layer_maps(model, inputs, None, "mean", "benchmark")
    maps = np.stack([step[0, 0] for step in steps])  # (layers, n, n)
    # The public function once, end to end (forward pass included).
    start = time.perf_counter()
    public = keras_attention.attention_flow(model, inputs)[0]
    end_to_end = time.perf_counter() - start

    ours_s, ours_all, flow = timed(lambda: ours(maps), args.repeats)
    ref_s, ref_all, expected = timed(
        lambda: reference_flow(maps, networkx), args.repeats
    )
    quiet.check("end")
    difference = float(np.abs(flow - expected).max())
    public_difference = float(np.abs(public - expected).max())
    ratio = ref_s / ours_s
    print(
        f"attention_flow, {len(maps)} attention calls, {args.tokens} tokens, "
        f"batch 1, {args.repeats} repeats (median; all: ours "
        f"{[round(t, 3) for t in ours_all]} s, networkx "
        f"{[round(t, 3) for t in ref_all]} s)"
    )
    print(f"  ours (scipy maximum_flow): {ours_s:.3f} s")
    print(f"  networkx (Edmonds-Karp):   {ref_s:.3f} s")
    print(f"  attention_flow end to end: {end_to_end:.3f} s (forward pass included)")
    print(
        f"  largest difference: {difference:.2e} "
        f"(public function: {public_difference:.2e}; tolerance 1e-5)"
    )
    met = "met" if ratio >= TARGET else "missed"
    print(
        f"Target attention_flow >= {TARGET:g}x faster than networkx: {met}, "
        f"{ratio:.1f}x"
    )
    print(quiet.verdict()[1])
    return 0 if difference <= 1e-5 and public_difference <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())

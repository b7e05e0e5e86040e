"""The generation demo (`keras_attention/demo/generation_demo.py`,
`keras-attention demo --task generate`): a causal model trained to answer
prompts, decoded with `generate` with and without the key/value cache. It
trains a model, so it runs in the oldest-versions session only (`make
test-oldest` passes `--trains generate-demo`)."""

import re

import pytest

from keras_attention import __main__


@pytest.mark.trains("generate-demo")
def test_generation_demo_quick_preset(capsys):
    # `demo --task generate --quick`, in this process: too little training
    # for the accuracy to mean anything; the format, and the cache changes
    # no token. In the oldest-versions session only (`--trains
    # generate-demo`): each session trains at most one model (TensorFlow the
    # walkthrough notebook's, JAX the translation notebook's, PyTorch the
    # reversal demo's).
    __main__.main(["demo", "--task", "generate", "--quick"])
    out = capsys.readouterr().out
    assert re.search(r"^exact match: \d+\.\d%$", out, re.MULTILINE)
    assert "cached and uncached outputs identical: yes" in out
    assert re.search(
        r"^tokens per second \(one generate call each, compilation included\): "
        r"cached \d+, uncached \d+$",
        out,
        re.MULTILINE,
    )

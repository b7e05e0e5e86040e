"""`make demo`'s training run, end to end, in a fresh process.

It runs in the PyTorch session only (`make test-torch` passes `--trains
reversal-demo`): each test session trains at most one model, and the
TensorFlow and JAX sessions train their notebook's.
The demo's code is the same on every backend (`keras.ops`); the rest of its
behaviour is tested on TensorFlow in `demo_test.py`.
"""

import re

import pytest

from keras_attention import __main__ as command_line
from tests.demo.reversal_demo_test import LINE, _run


@pytest.mark.trains("reversal-demo")
def test_demo_trains_reports_saves_and_draws(tmp_path):
    # The --quick preset in a fresh process, as `make demo` runs, with one
    # encoding: the session's one trained model. That an encoding-free model
    # cannot reverse holds by construction (toy_model_test: it is
    # permutation-equivariant); README shows the full demo's table.
    result = _run(
        "demo",
        "--quick",
        "--encodings",
        "sinusoidal",
        "--output",
        str(tmp_path),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "encoding    accuracy  longer (11-20 tokens)\n" in result.stdout
    rows = LINE.findall(result.stdout)
    assert [name for name, _, _ in rows] == ["sinusoidal"]
    ((_, accuracy, longer),) = rows
    assert float(accuracy) >= 99.0
    # The second column (longer sequences) is reported, not asserted.
    assert 0.0 <= float(longer) <= 100.0
    assert "reloaded in safe mode, same predictions" in result.stdout
    for name in (
        "best_model.keras",
        "position_encoding.png",
        "attention_layer_0.png",
        "attention_layer_1.png",
        "accuracy_by_length.png",
    ):
        assert (tmp_path / name).stat().st_size > 1000
    # Not a terminal: one line per epoch, no progress bars, no retrace warning.
    assert "\x1b[" not in result.stdout and "\r" not in result.stdout
    assert (
        len(re.findall(r"^\d+/\d+ - ", result.stdout, re.MULTILINE))
        == command_line.QUICK["epochs"]
    )
    assert "retracing" not in result.stderr

    # A second run into the folder is refused before training, naming the
    # files the first one wrote.
    again = _run("demo", "--output", str(tmp_path))
    assert again.returncode == 2
    assert again.stderr.endswith(
        f"keras-attention demo: error: argument --output: {str(tmp_path)!r} "
        "already holds the files of a demo (accuracy_by_length.png, "
        "attention_layer_0.png, attention_layer_1.png, best_model.keras, "
        "position_encoding.png); "
        "pass --overwrite to replace them, or choose another folder\n"
    )

"""The reversal demo (`keras_attention/demo/reversal_demo.py`, `make demo`).

Its run is deterministic for a seed and its bad inputs are refused; those
tests run once per run (`end_to_end`), on TensorFlow. Its training run end
to end, in a fresh process through the command line, runs in the PyTorch
session only (`make test-torch` passes `--trains reversal-demo`): each test
session trains at most one model, and the TensorFlow and JAX sessions train
their notebook's. The demo's code is the same on every backend
(`keras.ops`).
"""

import re

import pytest

from keras_attention import __main__ as command_line
from keras_attention.demo.reversal_demo import run_demo
from tests.layer_test_case import assert_raises_with
from tests.main_test import _run

LINE = re.compile(
    r"^(none|sinusoidal|learned|rotary|alibi)\s+(\d+(?:\.\d+)?)%"
    r"\s+(\d+(?:\.\d+)?)%$",
    re.MULTILINE,
)


@pytest.mark.end_to_end
def test_demo_is_deterministic_for_a_seed(tmp_path):
    # One training step twice: the seed fixes data, weights and shuffling.
    options = dict(epochs=1, seed=3, train_size=64, encodings=["learned"])
    first = run_demo(output=str(tmp_path / "a"), **options)
    second = run_demo(output=str(tmp_path / "b"), **options)
    assert list(first) == ["learned"]
    assert first == second


ENCODINGS = "run_demo: `encodings` must be a list of some of ['none', 'sinusoidal', 'learned', 'rotary', 'alibi']. Received: encodings="
BAD_INPUTS = [
    pytest.param(
        lambda: run_demo(output="unused", encodings=[]),
        ValueError,
        ENCODINGS + "[]",
        id="run-demo-no-encoding",
    ),
    pytest.param(
        lambda: run_demo(output="unused", encodings=["rope"]),
        ValueError,
        ENCODINGS + "['rope']",
        id="run-demo-unknown-encoding",
    ),
    pytest.param(
        lambda: run_demo(output="unused", encodings="learned"),
        ValueError,
        ENCODINGS + "'learned'",
        id="run-demo-encodings-string",
    ),
]


@pytest.mark.end_to_end
@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


@pytest.mark.trains("reversal-demo")
def test_demo_trains_reports_saves_and_draws(tmp_path):
    # The --quick preset in a fresh process, as `make demo` runs, with one
    # encoding: the session's one trained model. That an encoding-free model
    # cannot reverse holds by construction (tests/demo/toy_model_test.py: it
    # is permutation-equivariant); README shows the full demo's table.
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

import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_attention.demo import run_demo

pytestmark = pytest.mark.end_to_end
LINE = re.compile(r"^(none|sinusoidal|learned)\s+(\d+(?:\.\d+)?)%$", re.MULTILINE)


def test_demo_proves_position_matters(tmp_path):
    # What `make demo` runs, with its defaults, in a fresh process.
    result = subprocess.run(
        [sys.executable, "-m", "keras_attention", "demo", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = LINE.findall(result.stdout)
    assert sorted(name for name, _ in rows) == ["learned", "none", "sinusoidal"]
    accuracy = {name: float(value) for name, value in rows}
    assert accuracy["sinusoidal"] >= 99.0
    assert accuracy["learned"] >= 99.0
    assert accuracy["none"] < 50.0
    assert "reloaded in safe mode, same predictions" in result.stdout
    for name in (
        "best_model.keras",
        "position_encoding.png",
        "attention_layer_0.png",
        "attention_layer_1.png",
    ):
        assert (tmp_path / name).stat().st_size > 1000


def test_demo_is_deterministic_for_a_seed(tmp_path):
    first = run_demo(output=str(tmp_path / "a"), epochs=1, seed=3, train_size=640)
    second = run_demo(output=str(tmp_path / "b"), epochs=1, seed=3, train_size=640)
    assert first == second


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "keras-attention"
    result = subprocess.run(
        [str(script), "demo", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert "--epochs" in result.stdout and "--output" in result.stdout
    bad = subprocess.run(
        [str(script), "demo", "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "must be a positive integer, got 0" in bad.stderr

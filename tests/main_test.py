"""The command line, `python -m keras_attention` (`keras_attention/__main__.py`,
also installed as `keras-attention`): help and version without importing
Keras, the arguments and the output folder checked before training, and
its presets against the demo's defaults. Each test runs a fresh process,
once per run (`end_to_end`). The demos themselves are tested in
`tests/demo/`.
"""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_attention
from keras_attention import __main__ as command_line
from keras_attention.demo.reversal_demo import run_demo

pytestmark = pytest.mark.end_to_end
USAGE = "usage: keras-attention demo "


def _run(*arguments, timeout=30):
    """`python -m keras_attention ...` in a fresh process, as `make demo`."""
    return subprocess.run(
        [sys.executable, "-m", "keras_attention", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_console_script_is_installed():
    # The venv's script; it imports this checkout's package when PYTHONPATH
    # names it (the editable install's finder comes after PYTHONPATH).
    script = Path(sys.executable).parent / "keras-attention"
    bad = subprocess.run(
        [str(script), "demo", "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert f"{USAGE}[-h] [--task {{table,generate}}] [--output DIR]" in bad.stderr
    assert bad.stderr.endswith(
        "error: argument --epochs: must be a positive integer, got '0'\n"
    )


@pytest.mark.parametrize("entry", ["module", "console-script"])
def test_help_and_version_answer_without_importing_keras(entry):
    # Both entry points: `python -m keras_attention` and the console script
    # (whose wrapper imports the package before `main`).
    script = Path(sys.executable).parent / "keras-attention"
    command = (
        [str(script)]
        if entry == "console-script"
        else [sys.executable, "-m", "keras_attention"]
    )
    result = subprocess.run(
        [*command, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert result.returncode == 0
    assert "demo" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "keras" not in imported and "tensorflow" not in imported
    if entry == "console-script":
        return
    demo_help = " ".join(_run("demo", "--help").stdout.split())  # unwrapped
    for text in (
        "--output DIR",
        "(default: demo-output)",
        "--epochs N",
        "(default: 12, or 10 with --quick)",
        "--encodings NAME [NAME ...]",
        "--seed S",
        "(default: 0)",
        "--quick",
        "--overwrite",
    ):
        assert text in demo_help
    version = _run("--version")
    assert version.stdout == f"keras-attention {keras_attention.__version__}\n"


@pytest.mark.parametrize(
    "arguments,message",
    [
        pytest.param(
            ["--epochs", "abc"],
            "argument --epochs: must be a positive integer, got 'abc'",
            id="epochs-not-a-number",
        ),
        pytest.param(
            ["--epochs", "-2"],
            "argument --epochs: must be a positive integer, got '-2'",
            id="epochs-negative",
        ),
        pytest.param(
            ["--seed", "x"],
            "argument --seed: invalid int value: 'x'",
            id="seed-not-a-number",
        ),
        pytest.param(
            ["--epoch", "3"],
            "unrecognized arguments: --epoch 3",
            id="no-abbreviations",
        ),
        pytest.param(
            ["--output", "{file}"],
            "argument --output: '{file}' exists and is not a folder",
            id="output-is-a-file",
        ),
        pytest.param(
            ["--output", "{file}/demo"],
            "argument --output: cannot create the folder '{file}/demo': "
            "Not a directory",
            id="output-cannot-be-created",
        ),
    ],
)
def test_bad_arguments_exit_2_before_training(tmp_path, arguments, message):
    file = tmp_path / "file.txt"
    file.write_text("not a folder")
    arguments = [a.replace("{file}", str(file)) for a in arguments]
    result = _run("demo", *arguments)
    assert result.returncode == 2
    assert result.stderr.endswith(f"error: {message.replace('{file}', str(file))}\n")
    assert result.stdout == ""


def test_output_folder_checks(tmp_path):
    assert command_line._prepare_output(str(tmp_path / "new"), False) == []
    assert (tmp_path / "new").is_dir()
    for name in ("best_model.keras", "attention_layer_0.png", "notes.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(
        FileExistsError,
        match=r"already holds the files of a demo \(attention_layer_0\.png, "
        r"best_model\.keras\); pass --overwrite to replace them, or choose "
        r"another folder",
    ):
        command_line._prepare_output(str(tmp_path), False)
    found = command_line._prepare_output(str(tmp_path), True)
    assert found == ["attention_layer_0.png", "best_model.keras"]


def test_full_preset_is_run_demos_default():
    parameters = inspect.signature(run_demo).parameters
    assert command_line.FULL == {
        name: parameters[name].default for name in ("train_size", "epochs")
    }


def test_command_line_names_the_demos_rows():
    from keras_attention.demo.reversal_demo import ROWS

    assert command_line.ENCODINGS == tuple(ROWS)


def test_generation_demo_bad_task_exits_2():
    result = _run("demo", "--task", "translate")
    assert result.returncode == 2
    assert "argument --task: invalid choice: 'translate'" in result.stderr

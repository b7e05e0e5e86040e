"""The sdist and wheel build, and the wheel installs and imports in a fresh venv."""

import configparser
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.end_to_end
ROOT = Path(__file__).resolve().parents[2]


def _run(*command, **kwargs):
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, **kwargs
    )
    assert result.returncode == 0, (
        command,
        result.stdout[-2000:],
        result.stderr[-4000:],
    )
    return result.stdout


def test_wheel_excludes_tests_installs_and_imports(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT))
    (wheel,) = dist.glob("keras_attention_layers-*.whl")
    (sdist,) = dist.glob("keras_attention_layers-*.tar.gz")

    names = zipfile.ZipFile(wheel).namelist()
    assert "keras_attention/__init__.py" in names
    assert "keras_attention/layers/multi_head_attention.py" in names
    assert not [n for n in names if n.startswith("tests/")]
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = {
        str(Requirement(line)) for line in config["options"]["install_requires"].split()
    }
    required = {
        str(Requirement(line.removeprefix("Requires-Dist: ")))
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    }
    assert required == declared
    assert "Provides-Extra: plot" in metadata
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("/setup.cfg") for n in archive.getnames())

    # A fresh venv gets the wheel alone; the already-installed dependencies
    # are made visible with a .pth file instead of downloading them again.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    target = Path(
        _run(
            str(python),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ).strip()
    )
    (target / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--target",
        str(target),
        str(wheel),
    )
    imported = _run(
        str(python),
        "-c",
        "import keras_attention, keras; print(keras_attention.__file__); "
        "print(keras_attention.__version__); "
        "print(keras_attention.MultiHeadAttention(2, 4)(keras.ops.ones((1, 3, 8))).shape)",
        cwd=tmp_path,  # not the source tree, which would shadow the install
    )
    location, version, shape = imported.split("\n")[:3]
    assert location.startswith(str(target))
    assert (
        version
        == _run(
            sys.executable,
            "-c",
            "import keras_attention; print(keras_attention.__version__)",
        ).strip()
    )
    assert shape == "(1, 3, 8)"

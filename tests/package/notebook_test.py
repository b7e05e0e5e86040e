"""The committed notebooks carry the outputs of one clean run each.

`make test` also executes them (`pytest --nbmake`: the walkthrough on
TensorFlow, the translation notebook on JAX); this file checks what is
committed, which is what readers see on GitHub.
"""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.end_to_end
FOLDER = Path(__file__).parents[2] / "notebooks"
# Each notebook, and the figures it shows at least.
NOTEBOOKS = {
    # The sentence, the encoding, two attention blocks.
    "walkthrough.ipynb": 4,
    # The alignment, the encoder's rollout, the alignment through it.
    "translation.ipynb": 3,
}
each_notebook = pytest.mark.parametrize("name", sorted(NOTEBOOKS))


def _code_cells(name):
    notebook = json.loads((FOLDER / name).read_text(encoding="utf-8"))
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _texts(output):
    if output["output_type"] == "stream":
        yield "".join(output["text"])
    elif output["output_type"] == "error":
        yield "\n".join([output["ename"], output["evalue"], *output["traceback"]])
    else:
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/"):
                yield "".join(value)


def test_every_notebook_in_the_folder_is_checked():
    assert sorted(path.name for path in FOLDER.glob("*.ipynb")) == sorted(NOTEBOOKS)


@each_notebook
def test_notebook_is_small(name):
    assert (FOLDER / name).stat().st_size < 1_000_000


@each_notebook
def test_every_code_cell_ran_once_in_order_and_has_output(name):
    cells = _code_cells(name)
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        "re-run the notebook top to bottom in a fresh kernel and commit it with "
        f"its outputs; execution counts: {counts}"
    )
    empty = [cell["source"][:80] for cell in cells if not cell["outputs"]]
    assert not empty, f"code cells without output: {empty}"


@each_notebook
def test_outputs_hold_no_error_glyph_warning_or_progress_bar(name):
    outputs = [output for cell in _code_cells(name) for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr"]
    text = "\n".join(piece for output in outputs for piece in _texts(output))
    assert "Glyph" not in text  # matplotlib: "Glyph ... missing from font(s)"
    assert "━" not in text  # Keras' progress bar
    assert "Traceback" not in text


@each_notebook
def test_figures_are_shown_inline(name):
    images = [
        output
        for cell in _code_cells(name)
        for output in cell["outputs"]
        if "image/png" in output.get("data", {})
    ]
    assert len(images) >= NOTEBOOKS[name]

"""The committed walkthrough notebook carries the outputs of one clean run.

`make test` also executes the notebook itself (`pytest --nbmake`); this file
checks what is committed, which is what readers see on GitHub.
"""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.end_to_end
NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "walkthrough.ipynb"


def _code_cells():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
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


def test_notebook_is_small():
    assert NOTEBOOK.stat().st_size < 1_000_000


def test_every_code_cell_ran_once_in_order_and_has_output():
    cells = _code_cells()
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        "re-run the notebook top to bottom in a fresh kernel and commit it with "
        f"its outputs; execution counts: {counts}"
    )
    empty = [cell["source"][:80] for cell in cells if not cell["outputs"]]
    assert not empty, f"code cells without output: {empty}"


def test_outputs_hold_no_error_glyph_warning_or_progress_bar():
    outputs = [output for cell in _code_cells() for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = "\n".join(piece for output in outputs for piece in _texts(output))
    assert "Glyph" not in text  # matplotlib: "Glyph ... missing from font(s)"
    assert "━" not in text  # Keras' progress bar
    assert "Traceback" not in text


def test_figures_are_shown_inline():
    images = [
        output
        for cell in _code_cells()
        for output in cell["outputs"]
        if "image/png" in output.get("data", {})
    ]
    assert len(images) >= 4  # the sentence, the encoding, two attention blocks

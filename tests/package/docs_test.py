"""The documentation site's sources: every public name has an API page, and
the hooks that read the docstrings and the notebooks do what they say.

`make test` builds the site strictly (`make docs`); this file builds nothing.
Once per run: the hooks need the `docs` extra, installed in .venv only.
"""

import importlib.util
import re
from pathlib import Path

import pytest

import keras_attention
from tests.package.notebook_test import NOTEBOOKS

pytestmark = pytest.mark.end_to_end
ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^::: keras_attention\.(\w+)\s*$", re.M)


def _hook(name):
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_guide_has_its_place_in_the_reading_order():
    # The nav lists docs/guides/ in the hook's order (others after them, by
    # name): a guide added or renamed takes its place there too.
    guides = {path.name for path in (DOCS / "guides").glob("*.md")}
    assert guides == set(_hook("guides_nav").ORDER)


def test_every_public_name_has_an_api_page_under_its_public_name():
    pages = {}
    for path in sorted(DOCS.rglob("*.md")):
        for name in DIRECTIVE.findall(path.read_text(encoding="utf-8")):
            pages.setdefault(name, []).append(path.relative_to(DOCS).as_posix())
    public = set(keras_attention.__all__)
    assert sorted(public - set(pages)) == [], "public names without a page"
    assert sorted(set(pages) - public) == [], "pages of names not in __all__"
    assert {name: where for name, where in pages.items() if len(where) > 1} == {}


def test_keras_sections_become_griffe_sections():
    docstring = (
        "Summary.\n\nArgs:\n    units: width.\n\n"
        "Call arguments (in Keras' order):\n"
        "    inputs: `(batch, dim)`.\n"
        "    mask, training: what Keras\n        passes.\n\n"
        "Returns:\n    A dict `{name: array}`: one\n    per layer.\n\n"
        "Example:\n\n>>> layer(x).shape\n(2, 3)\n\n>>> 1 + 1\n2\n\n"
        'References:\n    Su et al., "RoFormer: Enhanced Transformer with Rotary\n'
        '    Position Embedding", 2021.\n    Vaswani et al., 2017.\n'
    )
    assert _hook("keras_docstrings").keras_to_google(docstring) == (
        "Summary.\n\nArgs:\n    units: width.\n\n"
        "**Call arguments (in Keras' order):**\n\n"
        "- **`inputs`** – `(batch, dim)`.\n"
        "- **`mask`**, **`training`** – what Keras\n  passes.\n\n"
        "**Returns:**\n\nA dict `{name: array}`: one\nper layer.\n\n"
        "Examples:\n    >>> layer(x).shape\n    (2, 3)\n\n    >>> 1 + 1\n    2\n\n"
        "References:\n"
        '    - Su et al., "RoFormer: Enhanced Transformer with Rotary Position '
        'Embedding", 2021.\n    - Vaswani et al., 2017.'
    )


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_page_has_every_cell_and_figure(name):
    hook = _hook("notebooks")
    path = ROOT / "notebooks" / name
    markdown, images = hook.notebook_markdown(
        path, [p.stem for p in path.parent.glob("*.ipynb")]
    )
    assert markdown.startswith("# ")
    assert len(images) >= NOTEBOOKS[name]
    # Each figure is shown by the page, and no link points to a notebook file.
    shown = re.findall(rf"\]\({path.stem}/(cell[\w-]+\.\w+)\)", markdown)
    assert sorted(shown) == sorted(images)
    assert ".ipynb)" not in markdown
    assert all(content.startswith(b"\x89PNG") for content in images.values())

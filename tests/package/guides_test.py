"""The Python examples of the guides (docs/guides/*.md), the site's home page
(docs/index.md) and README.md run.

Each file's ```python blocks run in order, as written, in one namespace (a
guide reads top to bottom), in a temporary working folder. An HTML comment on
the line just before a block's fence changes that, and says why:

    <!-- no-run: REASON -->    the block is not run (pseudo-code, or work the
                                suite does elsewhere); REASON says which.
    <!-- backend: NAME -->     the block runs only on Keras backend NAME and is
                                skipped, with a reason, on the others; later
                                blocks must not need its names.

A failure names the file, the line of the block's fence and its first line;
the traceback's line numbers are the file's. Every block must compile, the
`no-run` ones too. On a backend that some `backend:` block does not run on,
the other blocks run and the test then reports itself skipped, naming the
blocks it left out.

The links of these files but the home page, and of CONTRIBUTING.md
(relative paths, anchors between guides, images) are checked too: mkdocs
builds its site and nav from the guides' file names.
"""

import re
import traceback
import unicodedata
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs" / "guides"
FILES = [f"docs/guides/{path.name}" for path in sorted(GUIDES.glob("*.md"))] + [
    "docs/index.md",
    "README.md",
]
# The home page links pages the site generates (the notebooks): its links are
# checked by the strict build of the site (`make docs`) instead.
LINKED = [name for name in FILES if name != "docs/index.md"]
FENCE = re.compile(r"^```(\S*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(no-run|backend):\s*(.*?)\s*-->$")
BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")

# Once per run of `make test`, in the TensorFlow session, like the notebooks:
# the examples cost seconds, and outside `backend:` blocks they are
# backend-agnostic code that the layer tests check on every backend.
pytestmark = pytest.mark.end_to_end


def code_blocks(text):
    """`(line, info, directive, source)` for each fenced block of `text`.

    `line` is the 1-based line of the opening fence, `info` its info string
    (`python`, `sh`, ``), `directive` a `(kind, value)` pair from the comment
    on the line before, or None.
    """
    lines = text.splitlines()
    blocks = []
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        end = number + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"line {number + 1}: a fence that never closes")
        before = lines[number - 1].strip() if number else ""
        directive = DIRECTIVE.match(before)
        blocks.append(
            (
                number + 1,
                opening.group(1),
                directive.groups() if directive else None,
                "\n".join(lines[number + 1 : end]) + "\n",
            )
        )
        number = end + 1
    return blocks


def _python_blocks(name):
    return [b for b in code_blocks((ROOT / name).read_text()) if b[1] == "python"]


@pytest.mark.parametrize("name", FILES)
def test_directives_are_well_formed(name):
    text = (ROOT / name).read_text()
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("<!--") and re.search(r"no-run|backend", line):
            match = DIRECTIVE.match(line.strip())
            assert match, f"{name}:{number}: malformed directive {line!r}"
            kind, value = match.groups()
            assert value, f"{name}:{number}: `{kind}:` needs a value"
            if kind == "backend":
                assert value in BACKENDS, f"{name}:{number}: unknown backend"
    directed = [b for b in code_blocks(text) if b[2]]
    for number, info, _, _ in directed:
        assert info == "python", f"{name}:{number}: a directive on a non-python block"
    # Nearly every example runs.
    blocks = _python_blocks(name)
    skipped = [b for b in blocks if b[2] and b[2][0] == "no-run"]
    assert len(skipped) <= 1 and len(blocks) > len(skipped), name


@pytest.mark.parametrize("name", FILES)
def test_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"guide:{name}"}
    other_backend = []
    for number, _, directive, source in _python_blocks(name):
        # Padded so that the traceback's line numbers are the file's; a block
        # that does not run still has to compile.
        code = compile("\n" * number + source, str(ROOT / name), "exec")
        kind, value = directive or (None, None)
        if kind == "no-run":
            continue
        if kind == "backend" and value != keras.backend.backend():
            other_backend.append(f"line {number} needs the {value} backend")
            continue
        first = source.strip().splitlines()[0] if source.strip() else ""
        try:
            exec(code, namespace)
        except Exception:
            failure = traceback.format_exc()
        else:
            continue
        pytest.fail(
            f"{name}, the block at line {number} ({first!r}) failed:\n{failure}",
            pytrace=False,
        )
    if other_backend:
        pytest.skip(f"{name}: the other blocks ran; {', '.join(other_backend)}")


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")


def slug(heading):
    """The anchor Python-Markdown's `toc` extension gives a heading."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path):
    text = path.read_text()
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line) or line.rstrip() == "```":
            fenced = not fenced
            continue
        heading = HEADING.match(line)
        if heading and not fenced:
            anchors.add(slug(heading.group(1)))
    return anchors


@pytest.mark.parametrize("name", [*LINKED, "CONTRIBUTING.md"])
def test_links_resolve(name):
    path = ROOT / name
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{name}: {target} does not exist"
        if anchor:
            assert linked.suffix == ".md", f"{name}: {target}"
            assert "benchmarks" not in linked.parts, (
                f"{name}: {target}: link benchmarks/RESULTS.md as a file, "
                "its sections move"
            )
            assert anchor in _anchors(linked), f"{name}: no heading for {target}"

"""Renders notebooks/*.ipynb as pages of the site, with their committed outputs.

Each notebook becomes `notebooks/<name>.md` (markdown cells as written, code
cells as Python blocks, their outputs after them) and its images
`notebooks/<name>/cell<i>-<j>.<ext>`, generated in the build: nothing is
written into docs/ and nothing is executed. Links between notebooks
(`[...](translation.ipynb)`) point to the rendered pages.
"""

import base64
import re
from pathlib import Path

import nbformat
from mkdocs.structure.files import File

# ANSI colour codes of tracebacks.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
IMAGES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}


def _notebooks(config):
    return sorted((Path(config.config_file_path).parent / "notebooks").glob("*.ipynb"))


def _fenced(text, language):
    """A fenced block longer than any backtick run in the text."""
    fence = "`" * max([3] + [len(run) + 1 for run in re.findall(r"`+", text)])
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _output(text):
    """A text output: a block styled apart from the code
    (docs/stylesheets/notebooks.css)."""
    return _fenced(text, "{ .text .nb-output }")


def _outputs(cell, index, name, images):
    """The Markdown of a code cell's outputs; adds each image's bytes to
    `images` under its file name."""
    blocks = []
    for number, output in enumerate(cell.get("outputs", [])):
        kind = output["output_type"]
        if kind == "stream":
            blocks.append(_output(output["text"]))
        elif kind == "error":
            traceback = ANSI.sub("", "\n".join(output["traceback"]))
            blocks.append(_output(traceback))
        else:
            data = output.get("data", {})
            mime = next((m for m in IMAGES if m in data), None)
            if mime is not None:
                file_name = f"cell{index}-{number}.{IMAGES[mime]}"
                value = data[mime]
                svg = mime == "image/svg+xml"
                images[file_name] = value.encode() if svg else base64.b64decode(value)
                image = f"![output of cell {index}]({name}/{file_name})"
                blocks.append(image + "{ .nb-output }")
            elif "text/plain" in data:
                blocks.append(_output(data["text/plain"]))
    return blocks


def notebook_markdown(path, rendered):
    """`(markdown, {image file name: bytes})` of the notebook at `path`;
    `rendered` are the names of the notebooks that have pages."""
    notebook = nbformat.read(path, as_version=4)
    name = path.stem
    language = notebook.metadata.get("language_info", {}).get("name", "python")
    links = re.compile(r"\]\((" + "|".join(map(re.escape, rendered)) + r")\.ipynb\b")
    blocks, images = [], {}
    for index, cell in enumerate(notebook.cells):
        source = cell.source.strip()
        if cell.cell_type == "markdown":
            blocks.append(links.sub(r"](\1.md", source))
        elif cell.cell_type == "code" and source:
            blocks.append(_fenced(source, language))
            blocks.extend(_outputs(cell, index, name, images))
    note = (
        f"*Rendered from `notebooks/{path.name}` with the outputs of its "
        "committed run.*"
    )
    # The note after the notebook's title, when it starts with one.
    if blocks and blocks[0].startswith("# "):
        title, _, rest = blocks[0].partition("\n")
        blocks[0:1] = [title, note] + ([rest.strip()] if rest.strip() else [])
    else:
        blocks.insert(0, note)
    return "\n\n".join(blocks) + "\n", images


def on_files(files, config):
    paths = _notebooks(config)
    rendered = [path.stem for path in paths]
    for path in paths:
        markdown, images = notebook_markdown(path, rendered)
        files.append(
            File.generated(config, f"notebooks/{path.stem}.md", content=markdown)
        )
        for file_name, content in images.items():
            files.append(
                File.generated(
                    config, f"notebooks/{path.stem}/{file_name}", content=content
                )
            )
    return files


def on_serve(server, config, builder):
    # `mkdocs serve` rebuilds when a notebook changes.
    for path in _notebooks(config):
        server.watch(str(path))
    return server

"""Lists the guides in docs/guides/: in the nav and on the home page.

The nav's `Guides: guides/` entry becomes the guides' pages, and a
`<!-- guides -->` line of a page a list of links to them, in reading order
(`ORDER`), then any other guide by file name; each one's title is its first
heading. Without guides, the nav section is left out, so the strict build
passes in a checkout that has none.
"""

import posixpath
from pathlib import Path

FOLDER = "guides/"
MARKER = "<!-- guides -->"
ORDER = (
    "position-encodings.md",
    "masks-and-grouped-queries.md",
    "attention-patterns.md",
    "rotary-and-alibi.md",
    "long-sequences.md",
    "decoding.md",
    "explaining-attention.md",
    "serving-and-export.md",
    "migrating-from-keras.md",
    "backends-and-mixed-precision.md",
)


def guide_pages(docs_dir):
    """The guides' paths relative to `docs_dir`, in reading order."""
    names = {path.name for path in (Path(docs_dir) / FOLDER).glob("*.md")}
    ordered = [name for name in ORDER if name in names]
    ordered += sorted(names - set(ORDER))
    return [FOLDER + name for name in ordered]


def on_config(config):
    pages = guide_pages(config.docs_dir)
    nav = []
    for entry in config.nav or []:
        if isinstance(entry, dict) and list(entry.values()) == [FOLDER]:
            if pages:
                nav.append({next(iter(entry)): pages})
        else:
            nav.append(entry)
    config.nav = nav
    return config


def _title(path):
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    here = posixpath.dirname(page.file.src_uri)
    links = [
        f"- [{_title(Path(config.docs_dir) / guide)}]"
        f"({posixpath.relpath(guide, here or '.')})"
        for guide in guide_pages(config.docs_dir)
    ]
    return markdown.replace(
        MARKER, "\n".join(links) or "(No guide in this checkout yet.)"
    )

"""Puts benchmarks/RESULTS.md on the site, with what it links.

The site's `benchmarks/` is the repository's: `RESULTS.md`, the history of
its tables (`evidence/history.md`) and the evidence files they cite, read
in the build (nothing is written into docs/). A guide links RESULTS.md as
the repository lays it out (`../../benchmarks/RESULTS.md`, which works
where the Markdown is read as files); on the site the same link points one
folder up less, because docs/ is the site's root.
"""

from pathlib import Path

from mkdocs.structure.files import File

FOLDER = "benchmarks"
PAGES = ("RESULTS.md", "evidence/history.md")
OUTSIDE = "](../../benchmarks/"


def _folder(config):
    return Path(config.config_file_path).parent / FOLDER


def on_files(files, config):
    folder = _folder(config)
    for name in PAGES:
        text = (folder / name).read_text(encoding="utf-8")
        files.append(File.generated(config, f"{FOLDER}/{name}", content=text))
    for path in sorted((folder / "evidence").glob("*.txt")):
        files.append(
            File.generated(
                config, f"{FOLDER}/evidence/{path.name}", content=path.read_bytes()
            )
        )
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri.startswith("guides/"):
        return markdown.replace(OUTSIDE, "](../benchmarks/")
    return markdown


def on_serve(server, config, builder):
    server.watch(str(_folder(config)))
    return server

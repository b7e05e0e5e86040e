"""A griffe extension: reads the docstring sections written the Keras way.

The docstrings follow Keras (`keras/src/layers/attention/`): an `Example:`
title, a blank line, then unindented `>>>` lines; and a `Call arguments:`
section listing the arguments of `call`. Griffe's Google parser knows
neither: it would render the `>>>` lines as Markdown quotes and the call
arguments as one paragraph. Before griffe parses a docstring, this rewrites
the first into its `Examples:` section (rendered as highlighted Python
sessions) and the second into a Markdown list under a bold title. The
references of a `References:` section, one after the other in the
docstring, become a list too. A `Returns:` section is prose (shapes, "a
tuple ..."), where griffe would read the text before the first colon as the
returned value's type: it stays prose, under a bold title.
"""

import re

import griffe

TITLE = re.compile(r"^(?P<name>[A-Z][\w' ]*?)(?P<note>\s*\(.*\))?:$")
ITEM = re.compile(r"^(?P<names>\w+(?:, \w+)*): (?P<text>.*)$")
EXAMPLE_TITLES = ("Example", "Examples")
REWRITTEN = ("Call arguments", "References", "Returns")
YEAR = re.compile(r"\b(19|20)\d\d\b")


def _title(lines, index):
    """The title's match if `lines[index]` starts a section: unindented,
    `Name:` or `Name (note):`, after a blank line or at the start."""
    if index > 0 and lines[index - 1].strip():
        return None
    return TITLE.match(lines[index])


def _section_end(lines, start, examples):
    """The index of the line after the body that starts at `start`: an
    example runs to the next section title; any other section to its first
    unindented line."""
    for index in range(start, len(lines)):
        line = lines[index]
        if not line.strip() or line.startswith(" "):
            continue
        if not examples or _title(lines, index):
            return index
    return len(lines)


def _examples(body):
    lines = list(body)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return ["Examples:"] + [f"    {line}" if line.strip() else "" for line in lines]


def _call_arguments(title, body):
    lines = [f"**{title}:**", ""]
    for line in body:
        item = ITEM.match(line.strip()) if not line.startswith(" " * 8) else None
        if item:
            names = ", ".join(f"**`{name}`**" for name in item["names"].split(", "))
            lines.append(f"- {names} – {item['text']}")
        elif line.strip():
            lines.append(f"  {line.strip()}")
    return lines


def _prose(title, body):
    """A section written as prose, as a bold title over its text."""
    text = [line[4:] if line.startswith("    ") else line.lstrip() for line in body]
    while text and not text[-1].strip():
        text.pop()
    return [f"**{title}:**", ""] + text


def _references(body):
    """One list item per reference: a reference ends with the line that
    ends with a full stop or a semicolon once it has named its year."""
    lines, reference = ["References:"], []
    for line in body:
        if not line.strip():
            continue
        reference.append(line.strip())
        text = " ".join(reference)
        if text.endswith((".", ";")) and YEAR.search(text):
            lines.append(f"    - {text}")
            reference = []
    if reference:
        lines.append(f"    - {' '.join(reference)}")
    return lines


def keras_to_google(docstring):
    """The docstring with its `Example:` and `Call arguments:` sections in
    the form griffe's Google parser reads."""
    lines = docstring.split("\n")
    output, index = [], 0
    while index < len(lines):
        title = _title(lines, index)
        name = title and title["name"]
        if name in EXAMPLE_TITLES or name in REWRITTEN:
            end = _section_end(lines, index + 1, name in EXAMPLE_TITLES)
            body = lines[index + 1 : end]
            if name in EXAMPLE_TITLES:
                output += _examples(body)
            elif name == "References":
                output += _references(body)
            elif name == "Returns":
                output += _prose(name, body)
            else:
                output += _call_arguments(lines[index][:-1], body)
            if end < len(lines):
                output.append("")
            index = end
        else:
            output.append(lines[index])
            index += 1
    return "\n".join(output)


class KerasDocstrings(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = keras_to_google(obj.docstring.value)

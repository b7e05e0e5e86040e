"""Every public name has bad inputs, in the test file of its module.

Each test file keeps its module's bad inputs in `BAD_INPUTS`, rows
`pytest.param(call, error_type, message, id=...)` whose message starts with
the owner's name; this test reads those tables, in every folder of `tests/`.
"""

import importlib
import re
from pathlib import Path

import keras_attention

TESTS = Path(__file__).resolve().parents[1]


def module_name(path):
    """`tests/layers/x_test.py` -> `tests.layers.x_test`: the name pytest
    imports it under (`tests/` and its folders are packages)."""
    return ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)


def bad_input_tables():
    """`{test module name: BAD_INPUTS}` of every test file that has one."""
    tables = {}
    for path in sorted(TESTS.rglob("*_test.py")):
        if re.search(r"^BAD_INPUTS = ", path.read_text(), re.M):
            # The module pytest imported, or imported now when this test runs
            # alone.
            name = module_name(path)
            tables[name] = importlib.import_module(name).BAD_INPUTS
    return tables


def test_every_public_name_has_named_bad_input_rows():
    owners = set()
    for name, rows in bad_input_tables().items():
        for row in rows:
            assert row.id, f"{name}: a row of BAD_INPUTS has no id: {row.values}"
            owners.add(re.search(r"\w+", row.values[2]).group())
    public = set(keras_attention.__all__)
    assert public <= owners, sorted(public - owners)

"""Every `>>>` example in the package's docstrings runs, as written.

Examples use full names (`keras_attention.MultiHeadAttention(...)`); the only
names they get for free are `keras`, `np` and `keras_attention`.
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_attention

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(
        keras_attention.__path__, prefix="keras_attention."
    )
    # Backend modules (`_backend.*`) import their backend; `__main__` runs
    # the CLI.
    if not info.name.startswith("keras_attention._backend.")
    and ".__main__" not in info.name
)
FINDER = doctest.DocTestFinder()


def _examples(module_name):
    module = importlib.import_module(module_name)
    return [test for test in FINDER.find(module) if test.examples]


CASES = [
    pytest.param(test, id=test.name) for name in MODULES for test in _examples(name)
]


def test_there_are_examples_to_run():
    names = {case.values[0].name for case in CASES}
    assert "keras_attention.ops.scaled_dot_product_attention" in names
    assert "keras_attention.layers.multi_head_attention.MultiHeadAttention" in names


@pytest.mark.parametrize("test", CASES)
def test_docstring_example_runs(test):
    test.globs = {"keras": keras, "np": np, "keras_attention": keras_attention}
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=report.append)
    if runner.summarize(verbose=False).failed:
        pytest.fail("".join(report))

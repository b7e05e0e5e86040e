"""`--trains NAME` and the `trains(name)` marker of `conftest.py`: a test
that trains a model runs only in the session that names it."""

import re

import pytest

from tests import conftest


class _Config:
    def __init__(self, trains):
        self.trains = trains

    def getoption(self, name):
        assert name == "trains"
        return self.trains


class _Item:
    def __init__(self, *marks):
        self.nodeid = "tests/x_test.py::test_x"
        self.keywords = {}
        self.marks = list(marks)
        self.added = []

    def get_closest_marker(self, name):
        return next((mark.mark for mark in self.marks if mark.name == name), None)

    def add_marker(self, marker):
        self.added.append(marker.mark)


def _skips(item):
    return [mark.kwargs["reason"] for mark in item.added if mark.name == "skip"]


def test_a_training_test_runs_only_in_the_session_that_names_it():
    generate, reversal, other = (
        _Item(pytest.mark.trains("generate-demo")),
        _Item(pytest.mark.trains("reversal-demo")),
        _Item(),
    )
    conftest.pytest_collection_modifyitems(
        _Config("generate-demo"), [generate, reversal, other]
    )
    assert _skips(generate) == []
    assert _skips(reversal) == [
        "trains a model: runs only with `--trains reversal-demo` (make test-torch)"
    ]
    assert _skips(other) == []


def test_without_the_option_every_training_test_is_skipped():
    items = [_Item(pytest.mark.trains(name)) for name in conftest.TRAINING_RUNS]
    conftest.pytest_collection_modifyitems(_Config(None), items)
    assert [len(_skips(item)) for item in items] == [1] * len(items)


@pytest.mark.parametrize(
    "mark,received",
    [
        pytest.param(
            pytest.mark.trains("translation"), "('translation',)", id="unknown"
        ),
        pytest.param(pytest.mark.trains, "()", id="no-name"),
    ],
)
def test_a_marker_that_names_no_training_run_is_refused(mark, received):
    message = (
        "tests/x_test.py::test_x: `trains` must name one training run of "
        f"['generate-demo', 'reversal-demo']. Received: args={received}"
    )
    with pytest.raises(pytest.UsageError, match=f"^{re.escape(message)}$"):
        conftest.pytest_collection_modifyitems(_Config(None), [_Item(mark)])

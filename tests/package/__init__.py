"""Checks of the package as a whole: export, saved files, backends,
distribution, packaging, public API, docstrings, notebooks, training end to
end, and the test session's own configuration (`tests/conftest.py`)."""

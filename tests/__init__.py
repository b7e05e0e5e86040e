"""The test suite: one folder per package folder, one file per module.

`tests/<module>_test.py` tests `keras_attention/<module>.py`;
`tests/layers/`, `tests/backend/`, `tests/explain/` and `tests/demo/` mirror
the package's folders, and `tests/package/` holds the checks of the package
as a whole (export, saved files, packaging, public API, ...). The helper
modules (`layer_test_case.py`, `gradients.py`, `properties.py`) sit here.
These are packages so that two folders may hold test files of the same
name, and pytest imports each as `tests.<folder>.<name>`.
"""

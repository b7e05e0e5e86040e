"""The PyTorch backend's pieces (see `keras_attention/_backend/__init__.py`).

No tiled kernel yet: `attention` is None, so the full computation runs.
PyTorch runs eagerly, so every value is known when it is checked
(`static_value`), and `assert_that` has nothing left to check.
"""

from keras import ops

attention = None


def static_value(x):
    """The value of `x` as a NumPy array: PyTorch tensors are concrete."""
    return ops.convert_to_numpy(x)


def assert_that(check, template, guarded):
    """`guarded` as it is: its values were checked when known."""
    del check, template
    return guarded

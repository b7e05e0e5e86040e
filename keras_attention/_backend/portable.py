"""Any other backend (NumPy, OpenVINO): the full computation, values known
now (see `keras_attention/_backend/__init__.py`)."""

from keras import ops

attention = None
fused = None
full = None


def static_value(x):
    """The value of `x` as a NumPy array."""
    return ops.convert_to_numpy(x)


def assert_that(check, template, guarded):
    """`guarded` as it is: no run-time checks on this backend."""
    del check, template
    return guarded


def compiled_loop(function, owner, key):
    """`function` as it is: run as it is."""
    del owner, key
    return function


def tiled_from_logits(default, *, every_tile):
    """`default` (unused: no tiled kernel here)."""
    del every_tile
    return default

"""The PyTorch backend's pieces (see `keras_attention/_backend/__init__.py`).

`fused` is `torch.nn.functional.scaled_dot_product_attention` where its
result is ours (tried first), `attention` the tiled kernel for the rest
(dropout, ALiBi, sink logits, windows, chunks, soft-capping, per-row
patterns): both in `_torch_tiled.py`. PyTorch runs
eagerly, so every value is known when it is checked (`static_value`), and
`assert_that` has nothing left to check.
"""

from keras import ops

from keras_attention._backend._torch_tiled import attention, fused

full = None

__all__ = [
    "assert_that",
    "attention",
    "compiled_loop",
    "fused",
    "full",
    "static_value",
    "tiled_from_logits",
]


def static_value(x):
    """The value of `x` as a NumPy array: PyTorch tensors are concrete."""
    return ops.convert_to_numpy(x)


def assert_that(check, template, guarded):
    """`guarded` as it is: its values were checked when known."""
    del check, template
    return guarded


def compiled_loop(function, owner, key):
    """`function` as it is: PyTorch runs it eagerly."""
    del owner, key
    return function


def tiled_from_logits(default, *, every_tile):
    """`default`: the tiles from `ops.TILED_FROM_LOGITS` logits (after
    `fused`, which runs first)."""
    del every_tile
    return default

"""The JAX backend's pieces (see `keras_attention/_backend/__init__.py`).

`attention` is the tiled kernel of `_jax_tiled.py` (`jax.custom_vjp`);
JAX has no fused kernel that is linear in memory on CPU, so `fused` is
None. JAX has no run-time assertion that survives `jax.jit`, so `assert_that`
returns its tensor unchecked; the layers mark values they could not check
(out-of-range positions give NaN rows).
"""

import weakref

import jax
import keras
import numpy as np

from keras_attention._backend._jax_tiled import attention

__all__ = [
    "assert_that",
    "attention",
    "compiled_loop",
    "fused",
    "full",
    "static_value",
    "tiled_from_logits",
]

fused = None
full = None


def static_value(x):
    """The value of `x` as a NumPy array, or None inside `jax.jit`."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def assert_that(check, template, guarded):
    """`guarded` as it is: nothing to check at run time under JAX."""
    del check, template
    return guarded


# owner -> {key: jitted function}: compiled loops, reused while the owner lives.
_LOOPS = weakref.WeakKeyDictionary()


def compiled_loop(function, owner, key):
    """`function` under `jax.jit`, reused for the same `owner` (a Keras
    model or layer, held weakly) and hashable `key`. The owner's variables
    are arguments of the jitted function, read through a
    `keras.StatelessScope`, not constants of its trace, so later calls with
    other weights reuse the compilation."""
    loops = _LOOPS.setdefault(owner, {})
    if key not in loops:
        owner_ref = weakref.ref(owner)

        def stateless(values, *args):
            mapping = list(zip(owner_ref().variables, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return function(*args)

        loops[key] = jax.jit(stateless)
    jitted = loops[key]
    return lambda *args: jitted([v.value for v in owner.variables], *args)


def tiled_from_logits(default, *, every_tile):
    """`default`: the tiles from `ops.TILED_FROM_LOGITS` logits."""
    del every_tile
    return default

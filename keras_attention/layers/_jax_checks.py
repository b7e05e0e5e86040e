"""JAX-only piece of the position layers' checks.

Imported only when `keras.backend.backend() == "jax"`.
"""

import jax
import numpy as np


def static_value(x):
    """The value of `x` as a NumPy array, or None inside `jax.jit`."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)

"""`value_and_gradient(fn, *arrays)` on whichever backend Keras runs."""

import keras
import numpy as np


def value_and_gradient(fn, *arrays):
    """Returns `fn(*arrays)` (a scalar) and its gradients, as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors)
        return value.numpy(), [g.numpy() for g in grads]
    if backend == "jax":
        import jax

        # Compiled: op by op, JAX compiles a program for every op and shape.
        value, grads = jax.jit(
            jax.value_and_grad(fn, argnums=tuple(range(len(arrays))))
        )(*arrays)
        return np.asarray(value), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        value = fn(*tensors)
        value.backward()
        return value.detach().numpy(), [t.grad.numpy() for t in tensors]
    raise NotImplementedError(f"no gradient helper for the {backend} backend")

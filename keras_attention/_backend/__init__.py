"""Backend-specific code: all of it lives in this package, nowhere else.

The rest of the package is written with `keras.ops` and never asks which
backend runs. Where a backend needs code of its own, that code goes in this
package, one module per backend (`tensorflow.py`, `jax.py`, `torch.py`, and
`portable.py` for any other backend), as Keras does with
`keras/src/backend/<name>/`. Each module implements the same names:

- `attention(query, key, value, mask, *, slopes, causal, sliding_window,
  bottom_right, dropout, seed, tiles)`: exact attention in tiles, in memory
  linear in the length, or `None` where the backend has no tiled kernel (then
  `ops.py` runs the full computation).
- `fused(query, key, value, mask, *, slopes, causal, sliding_window,
  bottom_right, dropout, seed)`: the backend's own fused attention where its
  result is exactly ours, else `None` (the caller goes on to `attention`);
  `fused` itself is `None` where the backend has no such kernel.
- `full(forward, query, key, value, *, dropout)`: the full computation's
  context where the backend differentiates it faster by hand than its
  autodiff does, else `None` (as `full` itself is where it never does):
  `forward` is `ops._full` on the call's options, run as it is; only the
  gradient is the backend's (TensorFlow outside XLA).
- `tiled_from_logits(default, *, every_tile)`: from how many logits per
  call (batch entries · q_len · k_len) `tile_size=None` runs `attention`
  rather than the full computation, in the trace being made now; `default`
  is `ops.TILED_FROM_LOGITS`, `every_tile` False when causal attention or a
  sliding window lets the tiles skip work. Other than `default` where the
  backend's own full computation is faster than its tiles (TensorFlow
  outside XLA, where every tile is visited).
- `compiled_loop(function, owner, key)`: `function` compiled whole, as
  `generate` runs its decoding loop, reused per `owner` and `key` (XLA on
  TensorFlow; `jax.jit` on JAX, the owner's variables as arguments; as it
  is elsewhere).
- `static_value(x)`: the value of tensor `x` as a NumPy array when it is
  known now, else None (inside `tf.function`, `jax.jit`, ...).
- `assert_that(check, template, guarded)`: `guarded`, checked at run time
  where the backend can (TensorFlow); `check()` gives `(condition, values)`
  and is only called there, so other backends build nothing.

`current()` is the one place that chooses the module, from
`keras.backend.backend()`. Modules are imported lazily, when first chosen:
importing `keras_attention` never imports TensorFlow, JAX or PyTorch beyond
what Keras itself imports. No module outside this package compares
`keras.backend.backend()` with a name.
"""

import importlib

import keras

_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def current():
    """The module of this package for the backend Keras runs now."""
    name = _MODULES.get(keras.backend.backend(), "portable")
    return importlib.import_module(f"{__name__}.{name}")

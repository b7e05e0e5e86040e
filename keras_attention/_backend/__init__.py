"""Backend-specific code: all of it lives in this package, nowhere else.

The rest of the package is written with `keras.ops` and never asks which
backend runs. Where a backend needs code of its own, that code goes in this
package, one module per backend (`tensorflow.py`, `jax.py`, `torch.py`, and
`portable.py` for any other backend), as Keras does with
`keras/src/backend/<name>/`, each backend's tiled kernel beside it
(`_tf_tiled.py`, `_jax_tiled.py`, `_torch_tiled.py`). Each module implements
the same names:

- `attention(query, key, value, mask, *, slopes, sinks, spec, data,
  query_start, dropout, seed, tiles)`: exact attention in tiles, in memory
  linear in the length (the kernels' contract, below), or `None` where the
  backend has no tiled kernel (then `ops.py` runs the full computation).
- `fused(query, key, value, mask, *, slopes, sinks, spec, data,
  query_start, dropout, seed)`: the backend's own fused attention where its
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
  is `ops.TILED_FROM_LOGITS`, `every_tile` False when the pattern (causal
  attention, a window, chunks, segment ids) lets the tiles skip work. Other
  than `default` where the backend's own full computation is faster than its
  tiles (TensorFlow outside XLA, where every tile is visited).
- `compiled_loop(function, owner, key)`: `function` compiled whole, as
  `generate` runs its decoding loop, reused per `owner` and `key` (XLA on
  TensorFlow; `jax.jit` on JAX, the owner's variables as arguments; as it
  is elsewhere).
- `static_value(x)`: the value of tensor `x` as a NumPy array when it is
  known now, else None (inside `tf.function`, `jax.jit`, ...).
- `assert_that(check, template, guarded)`: `guarded`, checked at run time
  where the backend can (TensorFlow); `check()` gives `(condition, values)`
  and is only called there, so other backends build nothing.

The tiled kernels (`_tf_tiled.py`, `_jax_tiled.py`, `_torch_tiled.py`)
keep one contract. Inputs: float32 `query` `(..., q_len, depth)`, already
multiplied by the scale, `key` `(..., k_len, depth)` and `value` `(..., k_len,
value_depth)`, whose leading axes broadcast against the query's (a key head
shared by a group of query heads: its gradient is summed over the group);
`mask` None or boolean, broadcastable to `(..., q_len, k_len)`, True where a
query may attend to a key; `slopes` None or ALiBi slopes `(..., 1, 1)`;
`sinks` None or the sinks' logits `(..., 1, 1)`, laid out like the slopes
(they need a gradient); `spec` the static pattern
(`_attention_pattern.Pattern`: causal, a window pair, chunks, the
soft-cap) and `data` its per-row part (`_attention_pattern.Rows`: segment
ids, global positions, sink keys, a prefix, each laid out to broadcast
against the logits and sliced tile by tile like the mask); `query_start`, query `i`'s
position among the keys being `query_start + i` (an int, or an int32 scalar
known at run time); `dropout` the rate and `seed` the int32 seed of the
dropout hash; `tiles` `(query_tile, key_tile)`. Result: float32 `(...,
q_len, value_depth)`, the full path's `softmax(q · kᵀ) · v` up to float
rounding, without ever holding a `(q_len, k_len)` array:

- Forward: for each query tile, a loop over the key tiles it may see keeps a
  running row maximum `m`, a running sum `l` of `exp(logit - m)` and a
  running weighted sum of values, rescaled whenever `m` grows ("online
  softmax", Milakov & Gimelshein 2018; FlashAttention, Dao et al. 2022). It
  saves the output and the per-row log-sum-exp `lse = m + log(l)`. A sink
  seeds `m` with its logit and `l` with 1 (it has no value). A tile's scores
  are `_attention_pattern.scores` (soft-cap, then ALiBi).
- Backward (the backend's custom gradient): for each key tile, a loop over
  the query tiles that may see it recomputes the weights `p = exp(logit -
  lse)` and accumulates `dv = pᵀ · do`, `dk = dsᵀ · q` and, tile by tile,
  `dq = ds · k`, where `ds = p * (do · vᵀ - rowsum(do * o))`
  (FlashAttention-2, Dao 2023), `ds` times the soft-cap's derivative `1 -
  tanh²` where there is one; the sinks' gradient is `-Σ exp(sink - lse) ·
  rowsum(do * o)`. Only q, k, v, the output and `lse` are kept from the
  forward. A second derivative is not supported.
- Which tiles are visited: the map of `_attention_pattern.tile_map`,
  listed per query tile (and, transposed, per key tile) by `visit_order`,
  so tiles that the pattern leaves empty are skipped (causal attention costs
  half, a window `w` O(len · w), packed documents the sum of their squares).
  Which pairs attend, which weights dropout drops and the scores of each
  pair: `_attention_pattern` too, on absolute positions, as on the full
  path, so the paths agree pair by pair.
- A query that may attend to no key gets a zero output (and zero
  gradients), never NaN. Masks are sliced tile by tile, never broadcast to
  `(q_len, k_len)`; the lengths may be padded to whole tiles inside a kernel
  (the padded keys masked, the padded queries dropped).

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

"""Exact attention in tiles, for the JAX backend: linear memory.

The kernels' shared contract (inputs, what is tiled and skipped, zero rows,
dropout and ALiBi from `_attention_pattern` on absolute positions) is the
docstring of `keras_attention/_backend/__init__.py`. In short, `attention`
computes the full path's `softmax(q · kᵀ) · v` without ever holding a
`(q_len, k_len)` array:

- Forward: `lax.map` over the query tiles; for each, a `lax.fori_loop` over
  the key tiles it may see keeps the online-softmax running max, sum and
  weighted sum of values. It saves the inputs, the output and one
  log-sum-exp per query.
- Backward (`jax.custom_vjp`, FlashAttention-2): `lax.scan` over the key
  tiles; for each, a `lax.fori_loop` over the query tiles that may see it
  recomputes the weights from the log-sum-exp and accumulates `dk`, `dv`
  and, into a buffer of query tiles updated in place, `dq`.

The inner loops visit the tiles of `_attention_pattern.tile_map`, in lists
computed once per call, so tiles that the pattern leaves empty (above a
causal diagonal, outside a window's band or a chunk, between packed
documents) are never visited. The
lengths are zero-padded to whole tiles, the padded keys masked. The whole
kernel is one `jax.jit` function per set of options: compiled once per
shape, inlined when the caller is jitted. A second derivative through the
kernel is not supported.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from keras_attention import _attention_pattern as pattern


def attention(
    query,
    key,
    value,
    mask,
    *,
    slopes,
    sinks,
    spec,
    data,
    query_start,
    dropout,
    seed,
    tiles,
):
    """Tiled attention of float32 arrays; the query is already scaled.

    The arguments are those of the contract in
    `keras_attention/_backend/__init__.py`, with `tiles` Python ints (JAX
    always knows the lengths) and `query_start` a run-time value. A key,
    value, mask or slopes axis of size 1 broadcasts against the query
    (grouped-query attention); the gradients of the key and value are summed
    back to their shapes.

    Returns:
        float32 `(..., q_len, value_depth)`.
    """
    config = _Config(
        pattern=spec,
        dropout=float(dropout),
        tiles=(int(tiles[0]), int(tiles[1])),
    )
    if mask is not None:
        mask = jnp.asarray(mask, bool)
    if config.dropout <= 0:
        seed = None
    first = jnp.asarray(query_start, jnp.int32)
    data = pattern.Rows(*(None if x is None else jnp.asarray(x) for x in data))
    return _tiled(query, key, value, mask, seed, slopes, sinks, first, data, config)


class _Config(NamedTuple):
    """The static options: hashable, one compilation per distinct value."""

    pattern: pattern.Pattern
    dropout: float
    tiles: tuple


class _Spec:
    """Sizes and per-tile helpers shared by the forward and backward pass."""

    def __init__(self, query, key, value, mask, seed, slopes, data, first, config):
        *self.leading, self.q_len, _ = query.shape
        self.k_len = key.shape[-2]
        # The leading shape of every tile product, query, key and value
        # broadcast together.
        self.lead = tuple(
            jnp.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
        )
        # The position of query 0 among the keys.
        self.first = first
        # A tile never longer than its sequence: no tile is mostly padding,
        # and a mask axis is never shorter than its tile.
        self.q_tile = max(1, min(config.tiles[0], self.q_len))
        self.k_tile = max(1, min(config.tiles[1], self.k_len))
        self.q_tiles = -(-self.q_len // self.q_tile)
        self.k_tiles = -(-self.k_len // self.k_tile)
        self.pattern = config.pattern
        self.dropout = config.dropout
        self.seed = seed
        self.slopes = slopes
        self.batch = (
            pattern.batch_index(tuple(self.leading)) if self.dropout > 0 else None
        )
        self.padded_keys = self.k_len % self.k_tile != 0
        self.mask = None if mask is None else _MaskTiles(self, mask, query.ndim)
        self.data = [
            None if x is None else _MaskTiles(self, x, query.ndim) for x in data
        ]
        self.visit = pattern.tile_map(
            self.pattern,
            data,
            q_tile=self.q_tile,
            k_tile=self.k_tile,
            q_len=self.q_len,
            k_len=self.k_len,
            query_start=self.first,
        )

    def data_tiles(self, i, j, transposed):
        """The `Rows` of tile `(i, j)`."""
        return pattern.Rows(
            *(None if x is None else x.tile(i, j, transposed) for x in self.data)
        )

    def logits(self, a, b, i, j, transposed=False):
        """Scores `a · b` `(..., q_tile, k_tile)` of tile `(i, j)`
        (`pattern.scores`), -inf where a pair may not attend; the dropout
        keep-pattern in the same layout (None without dropout); and the
        soft-cap's derivative (None without a cap).

        `a` is a query tile and `b` a transposed key tile `(..., depth,
        k_tile)`; with `transposed`, `a` is a key tile and `b` a transposed
        query tile, and both results are `(..., k_tile, q_tile)`.
        """
        rows = i * self.q_tile + jnp.arange(self.q_tile, dtype=jnp.int32)
        rows = rows + self.first
        cols = j * self.k_tile + jnp.arange(self.k_tile, dtype=jnp.int32)
        if transposed:
            rows, cols = rows[None, :], cols[:, None]
        else:
            rows, cols = rows[:, None], cols[None, :]
        logits, slope = pattern.scores(
            jnp.matmul(a, b), self.pattern.softcap, self.slopes, rows, cols
        )
        mask = None if self.mask is None else self.mask.tile(i, j, transposed)
        data = self.data_tiles(i, j, transposed)
        allowed = pattern.allowed(mask, self.pattern, rows, cols, data)
        if self.padded_keys:
            allowed = pattern.combine(allowed, cols < self.k_len)
        if allowed is not None:
            logits = jnp.where(allowed, logits, -jnp.inf)
        keep = None
        if self.dropout > 0:
            keep = pattern.dropout_keep(self.seed, self.batch, rows, cols, self.dropout)
        return logits, keep, slope

    def drop(self, x, keep):
        """Dropout of `x` (weights or their gradient) with a given pattern."""
        if keep is None:
            return x
        return jnp.where(keep, x * (1.0 / (1.0 - self.dropout)), 0.0)


class _MaskTiles:
    """Cuts tiles out of a boolean mask without copying or broadcasting it.

    As in the TensorFlow kernel: an axis of size 1 stays of size 1 in every
    tile (a padding mask `(..., 1, k_len)` stays linear); on a full-length
    axis the last tile, which runs past the end, is read from the last whole
    tile's start (where `lax.dynamic_slice` clamps it) and rolled into place,
    the positions past the end getting stale values that do not matter.
    """

    def __init__(self, spec, mask, rank):
        mask = jnp.asarray(mask)
        mask = jnp.reshape(mask, (1,) * (rank - mask.ndim) + mask.shape)
        self.mask = mask
        self.axes = []
        sizes = mask.shape[-2:]
        for size, tile in zip(sizes, (spec.q_tile, spec.k_tile), strict=True):
            full = size != 1
            self.axes.append((full, size, tile, full and size % tile != 0))

    def tile(self, i, j, transposed):
        starts, sizes, shifts = [], [], []
        for index, (full, size, tile, rolls) in zip((i, j), self.axes, strict=True):
            if full:
                start = jnp.minimum(index * tile, size - tile)
                starts.append(start)
                sizes.append(tile)
                shifts.append(index * tile - start if rolls else None)
            else:
                starts.append(0)
                sizes.append(1)
                shifts.append(None)
        leading = self.mask.shape[:-2]
        tile = lax.dynamic_slice(
            self.mask, [0] * len(leading) + starts, (*leading, *sizes)
        )
        for axis, shift in zip((-2, -1), shifts, strict=True):
            if shift is not None:
                tile = jnp.roll(tile, -shift, axis)
        return jnp.swapaxes(tile, -1, -2) if transposed else tile


def _to_tiles(x, tile, count):
    """`(..., len, dim)` -> `(count, ..., tile, dim)`, zero-padded."""
    *leading, length, dim = x.shape
    pad = [(0, 0)] * len(leading) + [(0, count * tile - length), (0, 0)]
    x = jnp.reshape(jnp.pad(x, pad), (*leading, count, tile, dim))
    return jnp.moveaxis(x, -3, 0)


def _from_tiles(x, length):
    """`(count, ..., tile, dim)` -> `(..., len, dim)`, the padding removed."""
    x = jnp.moveaxis(x, 0, -3)
    *leading, count, tile, dim = x.shape
    return jnp.reshape(x, (*leading, count * tile, dim))[..., :length, :]


def _sum_to(x, shape):
    """`x` summed down to `shape` (which broadcasts to `x.shape`): the
    gradient of a key or value shared by a group of query heads."""
    extra = x.ndim - len(shape)
    if extra:
        x = jnp.sum(x, axis=tuple(range(extra)))
    axes = tuple(
        a for a, (n, m) in enumerate(zip(x.shape, shape, strict=True)) if m == 1 != n
    )
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _swap(x):
    """`(..., a, b)` -> `(..., b, a)`."""
    return jnp.swapaxes(x, -1, -2)


def _tile(tiles, index):
    return lax.dynamic_index_in_dim(tiles, index, keepdims=False)


def _forward(query, key, value, mask, seed, slopes, sinks, first, data, config):
    spec = _Spec(query, key, value, mask, seed, slopes, data, first, config)
    order, count = pattern.visit_order(spec.visit)
    # Transposed once here rather than in every iteration.
    k_tiles = _swap(_to_tiles(key, spec.k_tile, spec.k_tiles))
    v_tiles = _to_tiles(value, spec.k_tile, spec.k_tiles)
    row_shape = (*spec.lead, spec.q_tile, 1)
    out_shape = (*spec.lead, spec.q_tile, value.shape[-1])

    def query_tile(inputs):
        i, q_i = inputs  # q_i: (..., q_tile, depth)

        def key_tile(j, carry):
            row_max, total, acc = carry
            logits, keep, _ = spec.logits(q_i, _tile(k_tiles, j), i, j)
            new_max = jnp.maximum(row_max, jnp.max(logits, -1, keepdims=True))
            # Rows with no allowed key so far keep a max of -inf; shift by 0.
            shift = jnp.where(new_max == -jnp.inf, 0.0, new_max)
            weights = jnp.exp(logits - shift)  # (..., q_tile, k_tile)
            rescale = jnp.exp(row_max - shift)
            total = total * rescale + jnp.sum(weights, -1, keepdims=True)
            acc = acc * rescale + jnp.matmul(
                spec.drop(weights, keep), _tile(v_tiles, j)
            )
            return new_max, total, acc

        init = (
            jnp.full(row_shape, -jnp.inf, jnp.float32),
            jnp.zeros(row_shape, jnp.float32),
            jnp.zeros(out_shape, jnp.float32),
        )
        if sinks is not None:
            # A sink is one more logit in the denominator, with no value: it
            # seeds the running maximum and sum.
            init = (jnp.broadcast_to(sinks, row_shape), init[1] + 1.0, init[2])
        visits = lax.dynamic_index_in_dim(order, i, keepdims=False)
        row_max, total, acc = lax.fori_loop(
            0, count[i], lambda n, carry: key_tile(visits[n], carry), init
        )
        # A row with no allowed key has total 0 and acc 0: output 0.
        has_keys = total > 0
        total = jnp.where(has_keys, total, 1.0)
        output = acc / total
        lse = jnp.where(has_keys, row_max + jnp.log(total), 0.0)
        return output, lse

    indices = jnp.arange(spec.q_tiles, dtype=jnp.int32)
    q_tiles = _to_tiles(query, spec.q_tile, spec.q_tiles)
    outputs, lses = lax.map(query_tile, (indices, q_tiles))
    # (..., q_len, value_depth) and (q_tiles, ..., q_tile, 1)
    return _from_tiles(outputs, spec.q_len), lses


def _backward(config, residuals, d_output):
    query, key, value, mask, seed, slopes, sinks, first, data, output, lse_tiles = (
        residuals
    )
    spec = _Spec(query, key, value, mask, seed, slopes, data, first, config)
    order, count = pattern.visit_order(jnp.transpose(spec.visit))
    # Each key tile meets the query tiles that see it as transposed tiles,
    # (..., k_tile, q_tile): every product is then a plain matmul or one that
    # transposes a small operand, never a (k_tile, q_tile) one, which XLA
    # would copy; the small operands are transposed once, before the loops.
    # `dq` is accumulated transposed, (..., depth, q_tile).
    q_tiles = _to_tiles(query, spec.q_tile, spec.q_tiles)
    q_tiles_t = _swap(q_tiles)
    k_tiles = _to_tiles(key, spec.k_tile, spec.k_tiles)
    v_tiles = _to_tiles(value, spec.k_tile, spec.k_tiles)
    do_tiles = _to_tiles(d_output, spec.q_tile, spec.q_tiles)
    do_tiles_t = _swap(do_tiles)
    # rowsum(do * o) equals rowsum(p * dp), with dropout too: one per query.
    delta = jnp.sum(d_output * output, -1, keepdims=True)
    # (q_tiles, ..., 1, q_tile)
    delta_tiles = _to_tiles(delta, spec.q_tile, spec.q_tiles)
    d_sinks = None
    if sinks is not None:
        # The sink's weight per query is exp(sink - lse); its gradient is
        # -sum(p_sink * rowsum(do * o)) (padded queries have do = 0).
        p_sinks = jnp.exp(sinks - lse_tiles) * delta_tiles
        d_sinks = _sum_to(-jnp.sum(p_sinks, 0), sinks.shape)
    delta_tiles = _swap(delta_tiles)
    lse_tiles = _swap(lse_tiles)
    k_shape, v_shape = k_tiles.shape[1:], v_tiles.shape[1:]

    def key_tile(d_queries, inputs):
        j, k_j, v_j = inputs
        k_j_t = _swap(k_j)

        def query_tile(i, carry):
            d_key, d_value, d_queries = carry
            q_i, do_i = _tile(q_tiles, i), _tile(do_tiles, i)
            logits, keep, slope = spec.logits(
                k_j, _tile(q_tiles_t, i), i, j, transposed=True
            )
            weights = jnp.exp(logits - _tile(lse_tiles, i))  # (..., k_tile, q_tile)
            d_value += _sum_to(jnp.matmul(spec.drop(weights, keep), do_i), v_shape)
            d_weights = jnp.matmul(v_j, _tile(do_tiles_t, i))
            d_weights = spec.drop(d_weights, keep)
            d_logits = weights * (d_weights - _tile(delta_tiles, i))
            if slope is not None:
                d_logits = d_logits * slope
            d_key += _sum_to(jnp.matmul(d_logits, q_i), k_shape)
            d_query = jnp.matmul(k_j_t, d_logits)
            d_queries = lax.dynamic_update_index_in_dim(
                d_queries, _tile(d_queries, i) + d_query, i, 0
            )
            return d_key, d_value, d_queries

        init = (jnp.zeros(k_shape, jnp.float32), jnp.zeros(v_shape, jnp.float32))
        visits = lax.dynamic_index_in_dim(order, j, keepdims=False)
        d_key, d_value, d_queries = lax.fori_loop(
            0,
            count[j],
            lambda n, carry: query_tile(visits[n], carry),
            (*init, d_queries),
        )
        return d_queries, (d_key, d_value)

    indices = jnp.arange(spec.k_tiles, dtype=jnp.int32)
    d_queries = jnp.zeros(
        (spec.q_tiles, *spec.lead, query.shape[-1], spec.q_tile), jnp.float32
    )
    d_queries, (d_keys, d_values) = lax.scan(
        key_tile, d_queries, (indices, k_tiles, v_tiles)
    )
    d_queries = _swap(d_queries)
    return (
        _sum_to(_from_tiles(d_queries, spec.q_len), query.shape),
        _from_tiles(d_keys, spec.k_len),
        _from_tiles(d_values, spec.k_len),
        None,  # mask
        None,  # seed
        None,  # slopes: constants (ops.py stops their gradient)
        d_sinks,
        None,  # the first query's position
        None,  # the per-row pattern
    )


def _primal(*args):
    return _forward(*args)[0]


def _primal_forward(*args):
    output, lse = _forward(*args)
    return output, (*args[:-1], output, lse)


_custom = jax.custom_vjp(_primal, nondiff_argnums=(9,))
_custom.defvjp(_primal_forward, _backward)
# Jitted whatever the caller does: an eager call compiles the kernel once per
# shape and options instead of dispatching its ops one by one.
_tiled = jax.jit(_custom, static_argnums=(9,))

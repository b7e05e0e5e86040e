"""Exact attention in tiles, for the TensorFlow backend: linear memory.

The kernels' shared contract is the docstring of
`keras_attention/_backend/__init__.py`. Here, the loops are `tf.while_loop`s
over fixed-size tiles, compiled by XLA whether or not the caller is: eagerly,
in `tf.function` and inside an XLA function alike. Lengths known when traced
that are whole tiles reach the loops as Python ints; other lengths are
zero-padded to whole tiles and passed at run time, so that varying lengths
share a few compilations.

The inner loops visit the tiles of `_attention_pattern.tile_map`, in lists
computed once per call, so tiles that the pattern leaves empty (above a
causal diagonal, outside a window's band or a chunk, between packed
documents) are never visited. The map is computed outside the compiled
kernels (`_tile_map`) and passed to them as a boolean tensor: it needs the
true lengths, and a length that reached XLA as a run-time value would have
to be a compile-time constant there, one compilation per length.
"""

import tensorflow as tf

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
    """Tiled attention of float32 tensors; the query is already scaled (the
    contract: `keras_attention/_backend/__init__.py`).

    Args:
        query: float32 `(..., q_len, depth)`, already multiplied by the scale.
        key: float32 `(..., k_len, depth)`.
        value: float32 `(..., k_len, value_depth)`.
        mask: None or a boolean tensor broadcastable to `(..., q_len, k_len)`,
            True where a query may attend to a key.
        slopes: None or float32 ALiBi slopes `(..., 1, 1)`, broadcastable to
            the logits; their bias is added tile by tile.
        sinks: None or float32 sink logits `(..., 1, 1)`, laid out as the
            slopes: one more logit in each row's softmax, with no value.
            Differentiable.
        spec: the static part of the pattern, a `pattern.Pattern`.
        data: the per-row part, a `pattern.Rows` laid out against the logits.
        query_start: Python int or int32 scalar tensor: query `i` sits at
            key position `query_start + i` for the pattern, ALiBi and
            dropout.
        dropout: Python float, the rate (0 for none).
        seed: int32 scalar tensor, used when `dropout > 0`.
        tiles: `(query_tile, key_tile)`: Python ints, or int32 scalar
            tensors when a length is only known at run time.

    Returns:
        float32 `(..., q_len, value_depth)`.
    """
    config = dict(spec=spec, dropout=dropout)
    q_len, k_len = known_dims(query)[-2], known_dims(key)[-2]
    data = pattern.Rows(*(None if x is None else tf.convert_to_tensor(x) for x in data))
    # A run-time value: queries at any offset share one compilation.
    first = tf.convert_to_tensor(query_start, tf.int32)
    if _whole(q_len, tiles[0]) and _whole(k_len, tiles[1]):
        # Lengths known now that are whole tiles: the kernels see them as
        # Python ints, so no tile masks keys past the end or computes a
        # bound at run time (each such pair of lengths compiles once).
        lengths = [q_len, k_len]
    else:
        # The lengths are padded to whole tiles here, outside the compiled
        # kernels, and passed to them as run-time values: the kernels'
        # shapes, hence their traces and XLA compilations, depend on the
        # number and size of the tiles, not on the lengths. The padded keys
        # are masked in every tile, the padded queries' outputs dropped (and
        # their gradients are zero).
        q_padded, k_padded = (
            _whole_tiles(n, t) for n, t in zip((q_len, k_len), tiles, strict=True)
        )
        query = _pad_length(query, q_padded - q_len)
        key, value = (_pad_length(x, k_padded - k_len) for x in (key, value))
        mask = _pad_mask(mask, q_padded, k_padded)
        # The per-row tensors as the mask, for the same reason.
        data = pattern.Rows(*(_pad_mask(x, q_padded, k_padded) for x in data))
        lengths = [tf.convert_to_tensor(n, tf.int32) for n in (q_len, k_len)]
    # From the true lengths, not the padded ones: no padded position makes a
    # tile visited.
    visit = _tile_map(spec, data, tiles, (q_len, k_len), first)
    shared = (mask, seed, slopes, data, visit, *lengths, *tiles, first)
    # The sinks are differentiated with the query, key and value.
    differentiable = [query, key, value] + ([] if sinks is None else [sinks])

    @tf.custom_gradient
    def tiled(*tensors):
        # Hidden from any gradient tape: the custom gradient below is the
        # only way back, and a tape watching the loops would keep (eagerly)
        # or accumulate (in tf.function) every tile of them.
        inputs = [tf.stop_gradient(x) for x in tensors]
        if sinks is None:
            inputs.append(None)  # the kernels' `sinks`
        output, lse = _compiled_forward(*inputs, *shared, **config)

        def grad(d_output):
            grads = _compiled_backward(
                *inputs, *shared, output, lse, tf.stop_gradient(d_output), **config
            )
            return list(grads[: len(tensors)])

        return output, grad

    output = tiled(*differentiable)
    return output if _whole(q_len, tiles[0]) else output[..., :q_len, :]


def _tile_map(spec, data, tiles, lengths, first):
    """`pattern.tile_map` of the call, or None when every tile holds a pair
    (then the kernels visit all of them, with no map to compute).

    Eagerly, it runs as one graph function (`_traced_tile_map`): dozens of
    small ops, which one by one took about 6 ms with segment ids (T=1024 in
    tiles of 128, 2 CPU cores), 0.6 ms as a graph. In a graph (a
    `tf.function`, an XLA function) its ops join the caller's: lengths known
    when traced stay Python ints, so that its shapes are static, and under
    XLA the others come from shapes, which are constants when it compiles."""
    if spec.every_tile and data.query_segment is None:
        return None
    if tf.executing_eagerly():
        lengths = [tf.convert_to_tensor(n, tf.int32) for n in lengths]
        return _traced_tile_map(spec, data, *tiles, *lengths, first)
    return _visits(spec, data, *tiles, *lengths, first)


def _visits(spec, data, q_tile, k_tile, q_len, k_len, query_start):
    return pattern.tile_map(
        spec,
        data,
        q_tile=q_tile,
        k_tile=k_tile,
        q_len=q_len,
        k_len=k_len,
        query_start=query_start,
    )


def _whole(length, tile):
    """Whether `length` is known now and a multiple of `tile`, known too."""
    return isinstance(length, int) and isinstance(tile, int) and length % tile == 0


def _whole_tiles(length, tile):
    """`length` rounded up to a multiple of `tile` (ints or tensors)."""
    return (length + tile - 1) // tile * tile


def _pad_length(x, extra):
    """`x` `(..., len, dim)` with `extra` zero positions appended."""
    if isinstance(extra, int) and extra == 0:
        return x
    paddings = [[0, 0]] * (len(x.shape) - 2) + [[0, extra], [0, 0]]
    return tf.pad(x, paddings)


def _pad_mask(mask, q_padded, k_padded):
    """A mask whose size is linear in the lengths (a padding mask
    `(..., 1, k_len)`, a query mask `(..., q_len, 1)`, a tensor of
    `pattern.Rows`), padded with zeros (False, or segment id 0) to whole
    tiles, so that its shape depends on the tiles too: this holds for a
    length unknown when traced (`fit` on sequences of varying lengths, with
    `Embedding(mask_zero=True)`), whose XLA kernels would otherwise compile
    anew for every length. A `(q_len, k_len)` mask is left as it is, never
    copied: `_MaskTiles` reads its last tiles past the end (and each new
    length then compiles anew), as is a mask neither of whose last two axes
    is known to be 1."""
    if mask is None:
        return None
    mask = tf.convert_to_tensor(mask)
    shape = mask.shape.as_list()
    if len(shape) < 2:
        shape = [1] * (2 - len(shape)) + shape
        mask = tf.reshape(mask, shape)
    rows, cols = shape[-2:]
    if rows != 1 and cols != 1:
        return mask
    extra = []
    for axis, (n, padded) in enumerate(
        zip((rows, cols), (q_padded, k_padded), strict=True)
    ):
        if n is None:
            # Known at run time: an axis of size 1 broadcasts, unpadded.
            n = tf.shape(mask)[len(shape) - 2 + axis]
            extra.append((padded - n) * tf.cast(n != 1, tf.int32))
        else:
            extra.append(0 if n == 1 else padded - n)
    if all(isinstance(n, int) and n == 0 for n in extra):
        return mask
    paddings = [[0, 0]] * (len(shape) - 2) + [[0, extra[0]], [0, extra[1]]]
    return tf.pad(mask, paddings)


class _Spec:
    """Sizes and options shared by the forward and the backward pass.

    Sizes are Python ints where the static shapes know them (then every
    tensor of the kernel has a fully known static shape), tensors otherwise.
    """

    def __init__(
        self,
        query,
        key,
        mask,
        spec,
        query_start,
        dropout,
        seed,
        tiles,
        slopes=None,
        data=pattern.NO_ROWS,
        lengths=None,
    ):
        self.rank = len(query.shape)
        # The arrays' lengths (whole tiles when padded) and the sequences'.
        *self.leading, self.q_padded, _ = known_dims(query)
        self.k_padded = known_dims(key)[-2]
        self.q_len, self.k_len = lengths or (self.q_padded, self.k_padded)
        # The position of query 0 among the keys.
        self.first = query_start
        self.q_tile, self.k_tile = tiles
        self.q_tiles = -(-self.q_padded // self.q_tile)
        self.k_tiles = -(-self.k_padded // self.k_tile)
        self.pattern = spec
        self.dropout = dropout
        self.seed = seed
        self.slopes = slopes
        self.batch = pattern.batch_index(self.leading) if dropout > 0 else None
        self.padded_keys = not (
            isinstance(self.k_len, int) and self.k_len % self.k_tile == 0
        )
        self.mask = None if mask is None else _MaskTiles(self, mask)
        self.data = [None if x is None else _MaskTiles(self, x) for x in data]

    def visit_order(self, visit, transposed=False):
        """`pattern.visit_order` of the tile map `visit` `(q_tiles, k_tiles)`
        (None: every tile), or of its transpose: the key tiles that each
        query tile visits, or with `transposed` the query tiles that visit
        each key tile."""
        if visit is None:
            visit = tf.ones([self.q_tiles, self.k_tiles], tf.bool)
        if transposed:
            visit = tf.transpose(visit)
        return pattern.visit_order(visit)

    def logits(self, q_tile, k_tile, i, j, transposed=False):
        """Scores of tile `(i, j)` (`pattern.scores`), -inf where a pair may
        not attend.

        `(..., q_tile, k_tile)`, or `(..., k_tile, q_tile)` when `transposed`.
        Also returns the dropout keep-pattern in the same layout (None without
        dropout), since both come from the same positions, and the
        soft-cap's derivative in that layout too (None without a cap).
        """
        rows = i * self.q_tile + tf.range(self.q_tile) + self.first
        cols = j * self.k_tile + tf.range(self.k_tile)
        if transposed:
            rows, cols = rows[None, :], cols[:, None]
            logits = tf.matmul(k_tile, q_tile, transpose_b=True)
        else:
            rows, cols = rows[:, None], cols[None, :]
            logits = tf.matmul(q_tile, k_tile, transpose_b=True)
        logits, slope = pattern.scores(
            logits, self.pattern.softcap, self.slopes, rows, cols
        )
        mask = None if self.mask is None else self.mask.tile(i, j, transposed)
        data = pattern.Rows(
            *(None if x is None else x.tile(i, j, transposed) for x in self.data)
        )
        allowed = pattern.allowed(mask, self.pattern, rows, cols, data)
        if self.padded_keys:
            allowed = pattern.combine(allowed, cols < self.k_len)
        if allowed is not None:
            logits = tf.where(allowed, logits, float("-inf"))
        keep = None
        if self.dropout > 0:
            keep = pattern.dropout_keep(self.seed, self.batch, rows, cols, self.dropout)
        return logits, keep, slope

    def drop(self, x, keep):
        """Dropout of `x` (weights or their gradient) with a given pattern."""
        if keep is None:
            return x
        return tf.where(keep, x * (1.0 / (1.0 - self.dropout)), 0.0)


class _MaskTiles:
    """Cuts tiles out of a boolean mask (or a tensor of `pattern.Rows`, laid
    out as one) without copying or broadcasting it.

    A mask axis of size 1 (a padding mask `(..., 1, k_len)`, say) stays of
    size 1 in every tile. On a full-length axis, the last tile, which runs
    past the end, is read from the last whole tile's start and rolled into
    place: the positions past the end get stale values, which do not matter
    (those queries are dropped, those keys masked). Only an axis shorter than
    one tile is padded.
    """

    def __init__(self, spec, mask):
        mask = tf.convert_to_tensor(mask)
        dims = known_dims(mask)
        dims = [1] * (spec.rank - len(dims)) + dims
        mask = tf.reshape(mask, dims)
        self.axes = []
        paddings = [[0, 0]] * (spec.rank - 2)
        for size, tile in ((dims[-2], spec.q_tile), (dims[-1], spec.k_tile)):
            static = isinstance(size, int) and isinstance(tile, int)
            if static:
                # full: 1 where the mask spans the whole length on this axis,
                # 0 where it has size 1 and broadcasts.
                full = int(size != 1)
                short = max(tile - size, 0) * full
                rolls = full and size % tile != 0
            else:
                full = tf.cast(size != 1, tf.int32)
                short = tf.maximum(tile - size, 0) * full
                rolls = True
            paddings.append([0, short])
            self.axes.append((full, size + short, tile, rolls))
        if any(not isinstance(n, int) or n for pair in paddings for n in pair):
            mask = tf.pad(mask, paddings)
        self.mask = mask
        self.leading = dims[:-2]

    def tile(self, i, j, transposed):
        begins, sizes, shifts = [], [], []
        for index, (full, size, tile, rolls) in zip((i, j), self.axes, strict=True):
            begin = tf.minimum(index * tile, size - tile) * full
            begins.append(begin)
            sizes.append(1 + (tile - 1) * full)
            shifts.append(index * tile * full - begin if rolls else None)
        rank = len(self.leading) + 2
        tile = tf.slice(self.mask, [0] * (rank - 2) + begins, self.leading + sizes)
        for axis, shift in zip((rank - 2, rank - 1), shifts, strict=True):
            if shift is not None:
                tile = tf.roll(tile, -shift, axis)
        if transposed:
            tile = tf.linalg.matrix_transpose(tile)
        return tile


def _loop(cond, body, loop_vars):
    # One iteration at a time: tiles in flight multiply the memory, and each
    # op of an iteration already uses every core.
    return tf.while_loop(cond, body, loop_vars, parallel_iterations=PARALLEL)


PARALLEL = 1


def known_dims(x):
    """The shape of `x`: Python ints where static, scalar tensors elsewhere."""
    dynamic = tf.shape(x)
    return [dynamic[a] if n is None else n for a, n in enumerate(x.shape)]


def _to_tiles(x, tile, count):
    """`(..., len, dim)` -> `(count, ..., tile, dim)`, zero-padded."""
    rank = len(x.shape)
    *leading, length, dim = known_dims(x)
    paddings = [[0, 0]] * (rank - 2) + [[0, count * tile - length], [0, 0]]
    x = tf.reshape(tf.pad(x, paddings), [*leading, count, tile, dim])
    # (..., count, tile, dim) -> (count, ..., tile, dim)
    return tf.transpose(x, [rank - 2, *range(rank - 2), rank - 1, rank])


def _from_tiles(x, length):
    """`(count, ..., tile, dim)` -> `(..., len, dim)`, the padding removed."""
    rank = len(x.shape) - 1
    x = tf.transpose(x, [*range(1, rank - 1), 0, rank - 1, rank])
    *leading, count, tile, dim = known_dims(x)
    x = tf.reshape(x, [*leading, count * tile, dim])
    return x[..., :length, :]


def _sum_to(x, like):
    """`x` summed over the axes where `like` has size 1 and `x` does not, and
    over the leading axes that `like` lacks: the gradient of a key or value
    shared by a group of query heads, or of the sinks `(..., 1, 1)`."""
    extra = len(x.shape) - len(like.shape)
    if extra:
        x = tf.reduce_sum(x, list(range(extra)))
    axes = [
        a
        for a, (n, m) in enumerate(zip(x.shape, like.shape, strict=True))
        if m == 1 and n != 1
    ]
    return tf.reduce_sum(x, axes, keepdims=True) if axes else x


def swap_last(x):
    """`(count, ..., a, b)` -> `(count, ..., b, a)`."""
    return tf.linalg.matrix_transpose(x)


def _forward(
    query,
    key,
    value,
    sinks,
    mask,
    seed,
    slopes,
    data,
    visit,
    q_len,
    k_len,
    q_tile,
    k_tile,
    query_start,
    **config,
):
    spec = _Spec(
        query,
        key,
        mask,
        seed=seed,
        tiles=(q_tile, k_tile),
        slopes=slopes,
        data=data,
        lengths=(q_len, k_len),
        query_start=query_start,
        **config,
    )
    order, count = spec.visit_order(visit)
    q_tiles = _to_tiles(query, spec.q_tile, spec.q_tiles)
    k_tiles = _to_tiles(key, spec.k_tile, spec.k_tiles)
    v_tiles = _to_tiles(value, spec.k_tile, spec.k_tiles)
    row_shape = [*spec.leading, spec.q_tile, 1]
    out_shape = [*spec.leading, spec.q_tile, known_dims(value)[-1]]

    def query_tile(i, outputs, lses):
        q_i = q_tiles[i]  # (..., q_tile, depth)
        visits = order[i]  # the key tiles to visit, the first `count[i]`

        def key_tile(n, row_max, total, acc):
            j = visits[n]
            logits, keep, _ = spec.logits(q_i, k_tiles[j], i, j)
            new_max = tf.maximum(row_max, tf.reduce_max(logits, -1, keepdims=True))
            # Rows with no allowed key so far keep a max of -inf; shift by 0.
            shift = tf.where(new_max == float("-inf"), 0.0, new_max)
            weights = tf.exp(logits - shift)  # (..., q_tile, k_tile)
            rescale = tf.exp(row_max - shift)
            total = total * rescale + tf.reduce_sum(weights, -1, keepdims=True)
            acc = acc * rescale + tf.matmul(spec.drop(weights, keep), v_tiles[j])
            return n + 1, new_max, total, acc

        if sinks is None:
            row_max, total = tf.fill(row_shape, float("-inf")), tf.zeros(row_shape)
        else:
            # A sink is one more logit in the denominator, with no value: it
            # seeds the running maximum and sum.
            row_max, total = tf.broadcast_to(sinks, row_shape), tf.ones(row_shape)
        stop = count[i]
        _, row_max, total, acc = _loop(
            lambda n, *_: n < stop,
            key_tile,
            [0, row_max, total, tf.zeros(out_shape)],
        )
        # A row with no allowed key has total 0 and acc 0: output 0.
        has_keys = total > 0
        output = acc / tf.where(has_keys, total, 1.0)
        lse = tf.where(has_keys, row_max + tf.math.log(total), 0.0)
        return i + 1, outputs.write(i, output), lses.write(i, lse)

    _, outputs, lses = _loop(
        lambda i, *_: i < spec.q_tiles,
        query_tile,
        [0, _tile_array(spec.q_tiles, out_shape), _tile_array(spec.q_tiles, row_shape)],
    )
    # (..., padded q_len, value_depth) and (q_tiles, ..., q_tile, 1)
    return _from_tiles(outputs.stack(), spec.q_padded), lses.stack()


def _tile_array(size, element_shape):
    static = [n if isinstance(n, int) else None for n in element_shape]
    return tf.TensorArray(tf.float32, size=size, element_shape=static)


def _backward(
    query,
    key,
    value,
    sinks,
    mask,
    seed,
    slopes,
    data,
    visit,
    q_len,
    k_len,
    q_tile,
    k_tile,
    query_start,
    output,
    lse_tiles,
    d_output,
    **config,
):
    spec = _Spec(
        query,
        key,
        mask,
        seed=seed,
        tiles=(q_tile, k_tile),
        slopes=slopes,
        data=data,
        lengths=(q_len, k_len),
        query_start=query_start,
        **config,
    )
    order, count = spec.visit_order(visit, transposed=True)
    # Each key tile meets the query tiles that see it as transposed tiles,
    # (..., k_tile, q_tile): every product is then a plain matmul or one that
    # transposes its small operand, which TensorFlow runs faster than one that
    # transposes a large operand.
    q_tiles = _to_tiles(query, spec.q_tile, spec.q_tiles)
    k_tiles = _to_tiles(key, spec.k_tile, spec.k_tiles)
    v_tiles = _to_tiles(value, spec.k_tile, spec.k_tiles)
    do_tiles = _to_tiles(d_output, spec.q_tile, spec.q_tiles)
    # rowsum(do * o) equals rowsum(p * dp), with dropout too: one per query.
    delta = tf.reduce_sum(d_output * output, -1, keepdims=True)
    delta_tiles = _to_tiles(delta, spec.q_tile, spec.q_tiles)
    d_sinks = None
    if sinks is not None:
        # The sink's weight per query is exp(sink - lse); its gradient is
        # -sum(p_sink * rowsum(do * o)) (padded queries have do = 0, and
        # lse >= sink, so their terms are 0, never inf * 0).
        p_sinks = tf.exp(sinks - lse_tiles) * delta_tiles
        d_sinks = _sum_to(-tf.reduce_sum(p_sinks, 0), sinks)
    delta_tiles = swap_last(delta_tiles)  # (q_tiles, ..., 1, q_tile)
    lse_tiles = swap_last(lse_tiles)  # (q_tiles, ..., 1, q_tile)
    # dqᵀ per query tile, (..., depth, q_tile), summed over the key tiles.
    d_queries = tf.TensorArray(tf.float32, size=spec.q_tiles).unstack(
        tf.zeros_like(swap_last(q_tiles))
    )

    def key_tile(j, d_keys, d_values, d_queries):
        k_j, v_j = k_tiles[j], v_tiles[j]
        visits = order[j]  # the query tiles to visit, the first `count[j]`

        def query_tile(n, d_key, d_value, d_queries):
            i = visits[n]
            q_i, do_i = q_tiles[i], do_tiles[i]
            logits, keep, slope = spec.logits(q_i, k_j, i, j, transposed=True)
            weights = tf.exp(logits - lse_tiles[i])  # (..., k_tile, q_tile)
            d_value += _sum_to(tf.matmul(spec.drop(weights, keep), do_i), d_value)
            d_weights = spec.drop(tf.matmul(v_j, do_i, transpose_b=True), keep)
            d_logits = weights * (d_weights - delta_tiles[i])
            if slope is not None:
                d_logits *= slope  # through the soft-cap
            d_key += _sum_to(tf.matmul(d_logits, q_i), d_key)
            d_query = tf.matmul(k_j, d_logits, transpose_a=True)
            d_queries = d_queries.write(i, d_queries.read(i) + d_query)
            return n + 1, d_key, d_value, d_queries

        stop = count[j]
        _, d_key, d_value, d_queries = _loop(
            lambda n, *_: n < stop,
            query_tile,
            [0, tf.zeros_like(k_j), tf.zeros_like(v_j), d_queries],
        )
        return j + 1, d_keys.write(j, d_key), d_values.write(j, d_value), d_queries

    _, d_keys, d_values, d_queries = _loop(
        lambda j, *_: j < spec.k_tiles,
        key_tile,
        [
            0,
            _tile_array(spec.k_tiles, k_tiles.shape[1:]),
            _tile_array(spec.k_tiles, v_tiles.shape[1:]),
            d_queries,
        ],
    )
    grads = (
        _from_tiles(swap_last(d_queries.stack()), spec.q_padded),
        _from_tiles(d_keys.stack(), spec.k_padded),
        _from_tiles(d_values.stack(), spec.k_padded),
    )
    return grads if d_sinks is None else (*grads, d_sinks)


# Compiled by XLA whatever the caller does: XLA fuses the elementwise work of
# a tile into a few loops over memory where TensorFlow's executor runs one op
# after another (measured 1.5-2x faster forward on 2 CPU cores). Each new set
# of static shapes, static lengths and options compiles once; `attention`
# pads other lengths to whole tiles, so that their shapes change with the
# tiles, not every length.
# Such traces are by design, so TensorFlow's warning about frequent retracing
# ("5 out of the last 5 calls ... triggered tf.function retracing"), printed
# for eager calls of a few shapes, is turned off for these two functions
# (the attribute TensorFlow sets for its own restored functions).
_compiled_forward = tf.function(_forward, jit_compile=True)
_compiled_backward = tf.function(_backward, jit_compile=True)
# The eager tile map (`_tile_map`) as a graph, not XLA: its run-time lengths
# would be compile-time constants there. Traced once per pattern and tile
# size: the lengths are tensors, and the per-row tensors' shapes, whole
# tiles, relax to unknown ones after a second shape.
_traced_tile_map = tf.function(_visits)
for _function in (_compiled_forward, _compiled_backward, _traced_tile_map):
    _function._omit_frequent_tracing_warning = True

"""The key/value cache of decoding: how it is stored, written and read.

`MultiHeadAttention.init_cache` makes a cache, a cached call asks this
module to write a step's keys and values and to choose what the step's
queries attend to; the attention itself is the layer's, one call of
`scaled_dot_product_attention` with the pattern stated as options
(`causal`, `sliding_window`, ALiBi) on absolute positions (`query_start`),
never as a dense mask or bias. So a long prompt prefilled through a cache
runs in tiles, in linear memory, like an uncached call.

The storage policy:

- **Segments.** A cache is the pair `(key_segments, value_segments)`, each
  a tuple of arrays `(batch, kv_heads, n, dim)` in the layer's compute
  dtype that hold consecutive positions: the first `segment_length` (512 by
  default), the next `segment_length`, then twice as many as all before
  (1024, 2048, ...), the last one cut at `max_length`. A pair of single
  arrays `(batch, kv_heads, max_length, dim)` is a cache of one segment, and
  a call returns the cache in the form it was given.
- **What a step reads.** A step attends to the fewest segments that hold
  every row's filled positions (a switch over those counts, so a step's
  cost follows the filled length, not `max_length`): the first segment is
  read in place, where a slice of one long array would be a copy under XLA;
  more than one are concatenated (a copy of those, not of the whole cache).
  With dropout in training it reads the whole cache (the dropout seed is
  drawn once per call, not per branch).
- **Writes.** A step's keys and values are written from `cache_index` on,
  each segment updated over a window of `min(q_len, n)` slots whose other
  slots keep their values: a step touches a few rows per segment.
  `cache_index` is a scalar, or `(batch,)` for a position per row (prompts
  of different lengths, right-padded); then rows are scattered.
- **Ring.** With a `sliding_window` no longer than `max_length`, the cache
  is one segment of `sliding_window` slots, a ring: position `p` lives in
  slot `p % sliding_window`, so memory follows the window and decoding may
  go past `max_length`. A step reads the ring in position order (a gather
  of its slots, oldest first) followed by its own keys, so the positions are
  consecutive again and the window and causality need no mask; slots that
  hold no position yet are masked. A ring must be written in order, each
  call starting where the previous one ended, and it keeps no weights by
  position.
- **Positions.** A cached call's query `t` sits at position
  `cache_index + t`; keys sit at their positions. A call writes past
  `max_length` only in a ring; elsewhere that is an error: a `ValueError`
  when `cache_index` and `q_len` are known as the call is traced, else a
  run-time check of the step's output (see `_backend.assert_that`):
  TensorFlow raises when the graph runs, and where no assertion can run
  (`jax.jit`, XLA) the output of an overflowing row is NaN, never a
  plausible value.
"""

import functools

import keras
from keras import ops

from keras_attention import _backend
from keras_attention import _checks as checks

# The first segment's length when `init_cache` is given none.
SEGMENT_LENGTH = 512


def segment_sizes(max_length, segment_length=SEGMENT_LENGTH):
    """The lengths of a cache's segments (see the module docstring)."""
    ends = [segment_length]
    while ends[-1] < max_length:
        ends.append(2 * ends[-1])
    ends = ends[:-1] + [max_length]
    return [b - a for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def init(
    batch_size,
    max_length,
    *,
    heads,
    key_dim,
    value_dim,
    dtype,
    window,
    owner,
    segment_length=SEGMENT_LENGTH,
):
    """An empty cache (see the module docstring), zeros of `dtype`."""
    batch_size = checks.positive_int(batch_size, "batch_size", owner)
    max_length = checks.positive_int(max_length, "max_length", owner)
    segment_length = checks.positive_int(segment_length, "segment_length", owner)
    if window is not None and window <= max_length:
        sizes = [window]
    else:
        sizes = segment_sizes(max_length, segment_length)
    shape = (batch_size, heads)
    return tuple(
        tuple(ops.zeros(shape + (size, dim), dtype=dtype) for size in sizes)
        for dim in (key_dim, value_dim)
    )


def is_ring(max_length, window):
    """Whether a one-segment cache of `max_length` positions is a ring."""
    return isinstance(max_length, int) and window is not None and max_length >= window


class Parts:
    """A checked cache: its segments, `cache_index` and what they imply."""

    def __init__(self, owner, keys, values, index, bare, window):
        self.owner = owner
        self.keys, self.values = keys, values
        self.index = index  # int32 () or (batch,)
        self.per_row = len(index.shape) == 1
        self.bare = bare  # given as two arrays, returned as two arrays
        self.sizes = [part.shape[2] for part in keys]
        self.max_length = None if None in self.sizes else sum(self.sizes)
        self.ring = len(keys) == 1 and is_ring(self.max_length, window)
        # Whether `cache_index` and q_len were known, hence checked, now.
        self.checked = False

    def returned(self, keys, values):
        """The cache in the form it was given."""
        return (keys[0], values[0]) if self.bare else (keys, values)


def check(
    owner, cache, cache_index, query_shape, *, heads, key_dim, value_dim, dtype, window
):
    """The cache and `cache_index` checked against the call, as `Parts`."""
    if cache is None:
        raise ValueError(
            f"{owner}: `cache_index` needs a `cache` (see `init_cache`). "
            f"Received: cache=None, cache_index={cache_index!r}"
        )
    if cache_index is None:
        raise ValueError(
            f"{owner}: a `cache` needs `cache_index`, the number of "
            "positions already in it (an int, or a `(batch,)` integer "
            "tensor for one per row). Received: cache_index=None"
        )
    if not isinstance(cache, (tuple, list)) or len(cache) != 2:
        raise ValueError(
            f"{owner}: `cache` must be the pair (key_cache, value_cache) "
            "that `init_cache` returns. Received: cache of type "
            f"{type(cache).__name__}"
            + (f" and length {len(cache)}" if isinstance(cache, tuple) else "")
        )
    bare = not any(isinstance(part, (tuple, list)) for part in cache)
    keys, values = (
        tuple(part) if isinstance(part, (tuple, list)) else (part,) for part in cache
    )
    batch = query_shape[0]
    expected = ((batch, heads, None, key_dim), (batch, heads, None, value_dim))
    for part in keys + values:
        checks.tensor(part, "cache", owner)
    shapes = [[tuple(x.shape) for x in part] for part in (keys, values)]
    fits = (
        len(keys) == len(values) > 0
        and all(
            len(shape) == 4
            and all(
                e is None or s is None or s == e
                for s, e in zip(shape, expect, strict=False)
            )
            for part, expect in zip(shapes, expected, strict=True)
            for shape in part
        )
        and all(k[2] == v[2] for k, v in zip(shapes[0], shapes[1], strict=True))
        and (len(keys) == 1 or None not in (k[2] for k in shapes[0]))
    )
    if not fits:
        described = [
            "(" + ", ".join("max_length" if e is None else str(e) for e in x) + ")"
            for x in expected
        ]
        received = [part[0] if len(part) == 1 else part for part in shapes]
        raise ValueError(
            f"{owner}: `cache` must be (key_cache, value_cache) of shapes "
            f"{described[0]} and {described[1]} (or tuples of such "
            "segments, of the same lengths), as `init_cache(batch_size, "
            f"max_length)` makes them. Received: shapes {received[0]} and "
            f"{received[1]}"
        )
    dtypes = sorted({keras.backend.standardize_dtype(x.dtype) for x in keys + values})
    # (Keras' call casts a floating cache to the compute dtype first.)
    if dtypes != [dtype]:
        raise ValueError(
            f"{owner}: `cache` must hold the layer's compute dtype {dtype}. "
            f"Received: cache dtypes {', '.join(dtypes)}"
        )
    parts = Parts(
        owner, keys, values, _check_index(owner, cache_index, batch), bare, window
    )
    known = _static_value(parts.index)
    q_len = query_shape[1]
    parts.checked = known is not None and None not in (parts.max_length, q_len)
    if parts.checked:
        if (known < 0).any():
            raise ValueError(
                f"{owner}: `cache_index` must be >= 0. "
                f"Received: cache_index={known.tolist()}"
            )
        if not parts.ring and (known + q_len > parts.max_length).any():
            raise ValueError(
                overflow_message(owner, parts.max_length, known.tolist(), q_len)
            )
    return parts


def overflow_message(owner, max_length, index, q_len):
    return (
        f"{owner}: the cache overflows: `cache_index` + q_len must be at most "
        f"max_length={max_length}, the length of the cache. Received: "
        f"cache_index={index}, q_len={q_len}"
    )


def _fits(parts, q_len, size):
    """Whether each row's step ends within the cache's `size` positions, a
    boolean `()` or `(batch,)`, for a step whose `cache_index` or `q_len`
    was not known when traced; on TensorFlow the step's writes wait for an
    assertion of it (see `_backend.assert_that`)."""
    fits = ops.less_equal(parts.index + q_len, size)
    shown_q_len = q_len if isinstance(q_len, int) else "{}"
    values = [ops.max(parts.index)] + ([] if isinstance(q_len, int) else [q_len])
    parts.index = _backend.current().assert_that(
        lambda: (ops.all(fits), values),
        overflow_message(parts.owner, size, "{}", shown_q_len),
        parts.index,
    )
    return fits


def _nan_unless(fits, result, with_weights):
    """`result` with NaN in the context of the rows that do not fit, where
    no assertion ran (`jax.jit`, XLA)."""
    context = result[0] if with_weights else result
    context = ops.where(
        ops.reshape(fits, (-1, 1, 1, 1)), context, ops.cast(float("nan"), context.dtype)
    )
    return (context, result[1]) if with_weights else context


def _check_index(owner, cache_index, batch):
    if checks.is_integer(cache_index):
        return ops.convert_to_tensor(int(cache_index), dtype="int32")
    if not (hasattr(cache_index, "shape") and hasattr(cache_index, "dtype")):
        raise TypeError(
            f"{owner}: `cache_index` must be an int or an integer tensor of "
            f"shape () or (batch,). Received: cache_index of type "
            f"{type(cache_index).__name__}"
        )
    dtype = keras.backend.standardize_dtype(cache_index.dtype)
    shape = tuple(cache_index.shape)
    if "int" not in dtype:
        raise TypeError(
            f"{owner}: `cache_index` must be an int or an integer tensor of "
            f"shape () or (batch,). Received: cache_index with dtype {dtype}"
        )
    if shape != () and (
        len(shape) != 1 or None not in (shape[0], batch) and shape[0] != batch
    ):
        raise ValueError(
            f"{owner}: `cache_index` must have shape () or (batch,)="
            f"({batch},). Received: cache_index.shape={shape}"
        )
    return ops.cast(cache_index, "int32")


def _static_value(x):
    return _backend.current().static_value(x)


def step(parts, new_key, new_value, attend, *, causal, with_weights, whole):
    """Writes a step's keys and values and attends to what it reads.

    Args:
        parts: the checked cache (`check`).
        new_key, new_value: `(batch, kv_heads, q_len, dim)`, the step's.
        attend: `attend(keys, values, query_start, key_mask)` runs the
            attention of the step's queries to `keys` `(batch, kv_heads,
            k_len, dim)` whose key `j` sits at position `j`, query `t` at
            `query_start + t` (an int32 `()` or `(batch,)`); `key_mask` is
            None or a boolean `(batch or 1, 1, 1, k_len)`, False for slots
            that hold no position. It returns the context, or `(context,
            weights)` when `with_weights`.
        causal: whether the queries see only keys up to their positions
            (then the filled part needs no mask).
        with_weights: whether `attend` returns the weights too; they are
            padded to the cache's `max_length` keys.
        whole: read the whole cache rather than the fewest segments that
            hold every filled position (dropout in training).

    Returns:
        `(result, new_cache)`, the cache in the form it was given.
    """
    if parts.ring:
        return _ring_step(parts, new_key, new_value, attend)
    q_len = ops.shape(new_key)[2]
    size = ops.shape(parts.keys[0])[2] if parts.max_length is None else parts.max_length
    fits = None if parts.checked else _fits(parts, q_len, size)
    index = parts.index
    keys = _write_segments(parts.keys, new_key, index, parts.per_row)
    values = _write_segments(parts.values, new_value, index, parts.per_row)
    sizes = parts.sizes
    # The positions the first `count` segments hold.
    bounds = [sum(sizes[:count]) for count in range(1, len(sizes))] + [size]

    def prefix(count):
        # Attention to the first `count` segments, read in place when it is
        # one. Causal queries see no key past their own position; others
        # see the filled positions.
        length = bounds[count - 1]
        filled = None
        if not causal:
            cols = ops.arange(length, dtype="int32")
            filled = ops.less(cols, ops.reshape(index + q_len, (-1, 1, 1, 1)))
        result = attend(
            *(
                part[0] if count == 1 else ops.concatenate(part[:count], 2)
                for part in (keys, values)
            ),
            index,
            filled,
        )
        if not with_weights or count == len(sizes):
            return result
        context, weights = result
        # (batch, heads, q_len, max_length): no weight past `length`.
        return context, ops.pad(weights, [[0, 0]] * 3 + [[0, size - length]])

    if len(sizes) == 1 or whole:
        result = prefix(len(sizes))
    else:
        filled = ops.max(index) + q_len
        held = ops.convert_to_tensor(bounds[:-1], dtype="int32")
        branch = ops.sum(ops.cast(ops.greater(filled, held), "int32"))
        result = ops.switch(
            branch, [functools.partial(prefix, n) for n in range(1, len(sizes) + 1)]
        )
    if fits is not None:
        result = _nan_unless(fits, result, with_weights)
    return result, parts.returned(keys, values)


def _ring_step(parts, new_key, new_value, attend):
    (key_ring,), (value_ring,) = parts.keys, parts.values
    window, index = parts.max_length, parts.index
    q_len = ops.shape(new_key)[2]
    # The positions `index - window .. index - 1`, oldest first, then the
    # step's own: key `j` sits at `index - window + j`, query `t` at
    # `window + t` counted the same way.
    first = ops.reshape(index, (-1, 1)) - window  # (batch or 1, 1)
    held = first + ops.arange(window, dtype="int32")  # (batch or 1, window)
    slots = ops.mod(held, window)
    if parts.per_row:
        shape = ops.shape(key_ring)

        def ordered(ring):
            at = ops.broadcast_to(
                slots[:, None, :, None], (*shape[:3], ops.shape(ring)[3])
            )
            return ops.take_along_axis(ring, at, axis=2)
    else:

        def ordered(ring):
            return ops.take(ring, slots[0], axis=2)

    keys, values = (
        ops.concatenate([ordered(ring), ops.cast(new, ring.dtype)], 2)
        for ring, new in ((key_ring, new_key), (value_ring, new_value))
    )
    # Slots that hold no position yet (before position 0) are masked.
    valid = ops.concatenate(
        [ops.greater_equal(held, 0), ops.ones((ops.shape(held)[0], q_len), "bool")],
        1,
    )  # (batch or 1, window + q_len)
    result = attend(keys, values, window, valid[:, None, None, :])
    index = parts.index
    if isinstance(new_key.shape[2], int) and new_key.shape[2] > window:
        # Only the last `window` new steps stay.
        skip = new_key.shape[2] - window
        new_key, new_value = new_key[:, :, skip:], new_value[:, :, skip:]
        index = index + skip
    key_ring = _write(key_ring, new_key, index, parts.per_row, ring=True)
    value_ring = _write(value_ring, new_value, index, parts.per_row, ring=True)
    return result, parts.returned((key_ring,), (value_ring,))


def _write(cache, new, index, per_row, ring=False):
    """`cache` `(batch, heads, max_length, dim)` with `new` `(batch, heads,
    q_len, dim)` written from position `index` (int32 `()`, or `(batch,)`
    for a position per row); with `ring`, position `p` in slot
    `p % max_length`."""
    new = ops.cast(new, cache.dtype)
    if not (per_row or ring):
        return ops.slice_update(cache, (0, 0, index, 0), new)
    # A position per row, or a ring: scatter the (batch * heads * q_len)
    # vectors.
    batch, heads, q_len, dim = ops.shape(new)
    shape = (batch, heads, q_len)
    rows = ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1))
    head = ops.reshape(ops.arange(heads, dtype="int32"), (1, -1, 1))
    step = ops.reshape(index, (-1, 1, 1)) + ops.arange(q_len, dtype="int32")
    if ring:
        step = ops.mod(step, ops.shape(cache)[2])
    at = ops.stack([ops.broadcast_to(x, shape) for x in (rows, head, step)], -1)
    return ops.scatter_update(
        cache, ops.reshape(at, (-1, 3)), ops.reshape(new, (-1, dim))
    )


def _write_segments(segments, new, index, per_row):
    """`segments` with `new` `(batch, heads, q_len, dim)` written from
    position `index` (int32 `()` or `(batch,)`): each segment is updated in
    place over a window of `min(q_len, n)` slots, where the slots outside
    the new positions keep their values."""
    if len(segments) == 1:
        return (_write(segments[0], new, index, per_row),)
    new = ops.cast(new, segments[0].dtype)
    batch, heads, q_len, dim = ops.shape(new)
    written, offset = [], 0
    for segment in segments:
        size = segment.shape[2]
        width = min(q_len, size) if isinstance(q_len, int) else ops.minimum(q_len, size)
        start = ops.clip(index - offset, 0, size - width)  # () or (batch,)
        # The new step that lands in each slot of the window, if any.
        step = ops.reshape(start + offset - index, (-1, 1)) + ops.arange(
            width, dtype="int32"
        )  # (1 or batch, width)
        kept = ops.logical_or(ops.less(step, 0), ops.greater_equal(step, q_len))
        step = ops.clip(step, 0, q_len - 1)
        if per_row:
            shape = (batch, heads, width, dim)
            slots = ops.expand_dims(start, -1) + ops.arange(width, dtype="int32")
            old = ops.take_along_axis(
                segment, ops.broadcast_to(slots[:, None, :, None], shape), axis=2
            )
            picked = ops.take_along_axis(
                new, ops.broadcast_to(step[:, None, :, None], shape), axis=2
            )
        else:
            old = ops.slice(segment, (0, 0, start, 0), (batch, heads, width, dim))
            picked = ops.take(new, step[0], axis=2)
        rows = ops.where(kept[:, None, :, None], old, picked)
        written.append(_write(segment, rows, start, per_row))
        offset += size
    return tuple(written)

"""Attention for the PyTorch backend in memory linear in the sequence length.

Two functions, each for the float32 tensors `ops.py` prepares (the query
already scaled, the mask boolean, grouped-query heads either as
`(..., heads, len, depth)` with fewer key heads or grouped as
`(..., kv_heads, groups, len, depth)` with keys `(..., kv_heads, 1, len,
depth)`):

- `attention`: the tiled kernel, a `torch.autograd.Function`. It keeps the
  contract of `keras_attention/_backend/__init__.py` (online
  softmax forward, FlashAttention-2 backward keeping only q, k, v, the output
  and one log-sum-exp per query, masks and per-row patterns sliced tile by
  tile, pairs, scores, dropout and ALiBi from `_attention_pattern` on
  absolute positions). The tiles it visits are those of
  `_attention_pattern.tile_map`, computed once per call, so tiles that the
  pattern leaves empty (above a causal diagonal, outside a window's band or
  a chunk, between packed documents) are never visited. Lengths are always
  concrete on PyTorch, so the loops are Python loops over slices and the last
  tile is simply shorter: nothing is padded.
- `fused`: `torch.nn.functional.scaled_dot_product_attention` where its
  result is exactly ours (plain, causal or masked attention: no window,
  chunks, soft-cap, sinks, per-row pattern, ALiBi or dropout), else None.

Imported only when the PyTorch backend runs.
"""

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.attention import SDPBackend

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
    """Tiled attention of float32 tensors; the query is already scaled.

    The arguments and the result are those of the contract in
    `keras_attention/_backend/__init__.py`, with torch tensors; `tiles` are
    Python ints, `query_start` an int (or a tensor holding one). `sinks`
    (None or float `(..., 1, 1)`) gets a gradient; a second derivative
    through the kernel is not supported.
    """
    if mask is not None:
        mask = _at_least_2d(mask)
    data = pattern.Rows(*(None if x is None else _at_least_2d(x) for x in data))
    plan = _Spec(
        query,
        key,
        value,
        static=spec,
        data=data,
        query_start=int(query_start),
        dropout=dropout,
        tiles=tiles,
    )
    return _Tiled.apply(query, key, value, sinks, mask, slopes, seed, plan)


def _at_least_2d(x):
    """`x` with leading axes of size 1 up to rank 2, so that a tile is cut
    from its last two axes (a scalar prefix length, say)."""
    x = torch.as_tensor(x)
    return x.reshape((1,) * (2 - x.dim()) + tuple(x.shape)) if x.dim() < 2 else x


class _Spec:
    """Sizes, options and the tiles to visit, shared by the forward and the
    backward pass."""

    def __init__(self, query, key, value, static, data, query_start, dropout, tiles):
        self.q_len, self.k_len = query.shape[-2], key.shape[-2]
        # The leading shape of the logits and of the output.
        self.leading = tuple(
            torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
        )
        # The position of query 0 among the keys.
        self.first = query_start
        self.q_tile, self.k_tile = (int(t) for t in tiles)
        self.pattern = static  # a `pattern.Pattern`
        # The per-row pattern: not differentiable, so kept here rather than
        # passed through autograd.
        self.data = data
        self.dropout = dropout
        self.batch = pattern.batch_index(self.leading) if dropout > 0 else None
        self.keys_of, self.queries_of = self._visits()

    def _visits(self):
        """The key tiles each query tile visits and the query tiles each key
        tile visits (the transpose, for the backward pass), as Python lists
        of tile indices in increasing order."""
        q_count = -(-self.q_len // self.q_tile)
        k_count = -(-self.k_len // self.k_tile)
        if self.pattern.every_tile and self.data.empty:
            # Nothing to skip: the map would be all True.
            visit = [[True] * k_count for _ in range(q_count)]
        else:
            # Once per call, on the few numbers per tile the map needs; the
            # loops below then read plain Python lists.
            visit = pattern.tile_map(
                self.pattern,
                self.data,
                q_tile=self.q_tile,
                k_tile=self.k_tile,
                q_len=self.q_len,
                k_len=self.k_len,
                query_start=self.first,
            ).tolist()
        keys_of = [[j for j, seen in enumerate(row) if seen] for row in visit]
        queries_of = [
            [i for i, row in enumerate(visit) if row[j]] for j in range(k_count)
        ]
        return keys_of, queries_of

    def query_tiles(self):
        """Every query tile as `(start, stop)`."""
        return _spans(0, self.q_len, self.q_tile)

    def key_tiles_for(self, i):
        """The key tiles that query tile `i` visits, as `(start, stop)`."""
        return [_span(j, self.k_tile, self.k_len) for j in self.keys_of[i]]

    def key_tiles(self):
        return _spans(0, self.k_len, self.k_tile)

    def query_tiles_for(self, j):
        """The query tiles that visit key tile `j`, as `(start, stop)`."""
        return [_span(i, self.q_tile, self.q_len) for i in self.queries_of[j]]

    def logits(self, q_tile, k_tile, rows, cols, inputs, transposed=False):
        """Scores of the tile of queries `rows` and keys `cols` (slices)
        (`pattern.scores`), -inf where a pair may not attend: `(..., rows,
        cols)`, or `(..., cols, rows)` when `transposed`. Also returns the
        dropout keep-pattern (None without dropout) and the soft-cap's
        derivative (None without a cap), in the same layout."""
        mask, slopes, seed = inputs
        positions_r = _positions(rows, self.first, q_tile.device)
        positions_c = _positions(cols, 0, q_tile.device)
        if transposed:
            positions_r, positions_c = positions_r[None, :], positions_c[:, None]
            logits = torch.matmul(k_tile, q_tile.transpose(-1, -2))
        else:
            positions_r, positions_c = positions_r[:, None], positions_c[None, :]
            logits = torch.matmul(q_tile, k_tile.transpose(-1, -2))
        logits, slope = pattern.scores(
            logits, self.pattern.softcap, slopes, positions_r, positions_c
        )
        mask_tile = None if mask is None else _cut(mask, rows, cols, transposed)
        data = pattern.Rows(
            *(None if x is None else _cut(x, rows, cols, transposed) for x in self.data)
        )
        allowed = pattern.allowed(
            mask_tile, self.pattern, positions_r, positions_c, data
        )
        if allowed is not None:
            logits = logits.masked_fill(torch.logical_not(allowed), -math.inf)
        keep = None
        if self.dropout > 0:
            keep = pattern.dropout_keep(
                seed, self.batch, positions_r, positions_c, self.dropout
            )
        return logits, keep, slope

    def drop(self, x, keep):
        """Dropout of `x` (weights or their gradient) with a given pattern."""
        if keep is None:
            return x
        return torch.where(keep, x * (1.0 / (1.0 - self.dropout)), 0.0)


def _spans(start, stop, tile):
    return [(s, min(s + tile, stop)) for s in range(start, stop, tile)]


def _span(index, tile, length):
    """`(start, stop)` of tile `index`, the last one cut at `length`."""
    return index * tile, min(index * tile + tile, length)


def _positions(span, offset, device):
    start, stop = span
    return torch.arange(start + offset, stop + offset, dtype=torch.int32, device=device)


def _cut(x, rows, cols, transposed):
    """The tile of a mask (or a per-row tensor) `x` for the queries `rows`
    and keys `cols`, an axis of size 1 left whole (it broadcasts); swapped
    to `(..., cols, rows)` when `transposed`."""
    tile = x[..., _along(x, -2, rows), _along(x, -1, cols)]
    return tile.transpose(-1, -2) if transposed else tile


def _along(x, axis, span):
    """A slice of `x` along `axis`, or all of it where it broadcasts."""
    return slice(None) if x.shape[axis] == 1 else slice(*span)


def _sum_to(x, shape):
    """`x` summed down to `shape` (which broadcasts to `x.shape`): the
    gradient of a key or value shared by a group of query heads, or of sink
    logits shared by the batch."""
    extra = x.dim() - len(shape)
    if extra:
        x = x.sum(tuple(range(extra)))
    axes = [
        a for a, (n, m) in enumerate(zip(x.shape, shape, strict=True)) if m == 1 != n
    ]
    return x.sum(axes, keepdim=True) if axes else x


class _Tiled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, sinks, mask, slopes, seed, spec):
        inputs = (mask, slopes, seed)
        rows_shape = (*spec.leading, spec.q_len, 1)
        output = query.new_empty((*spec.leading, spec.q_len, value.shape[-1]))
        lse = query.new_empty(rows_shape)
        for i, rows in enumerate(spec.query_tiles()):
            q_i = query[..., slice(*rows), :]
            size = rows[1] - rows[0]
            row_shape = (*spec.leading, size, 1)
            if sinks is None:
                row_max = query.new_full(row_shape, -math.inf)
                total = query.new_zeros(row_shape)
            else:
                # A sink is one more logit in the denominator, with no value:
                # it seeds the running maximum and sum (acc stays 0).
                row_max = sinks.expand(row_shape)
                total = query.new_ones(row_shape)
            acc = query.new_zeros((*spec.leading, size, value.shape[-1]))
            for cols in spec.key_tiles_for(i):
                k_j, v_j = key[..., slice(*cols), :], value[..., slice(*cols), :]
                logits, keep, _ = spec.logits(q_i, k_j, rows, cols, inputs)
                new_max = torch.maximum(row_max, logits.amax(-1, keepdim=True))
                # Rows with no allowed key so far keep a max of -inf; shift by 0.
                shift = torch.where(new_max == -math.inf, 0.0, new_max)
                # In place where a tensor is this loop's own: a tile's worth
                # of allocation and memory traffic less per step.
                weights = logits.sub_(shift).exp_()
                rescale = torch.exp(row_max - shift)
                total.mul_(rescale).add_(weights.sum(-1, keepdim=True))
                acc.mul_(rescale).add_(torch.matmul(spec.drop(weights, keep), v_j))
                row_max = new_max
            # A row with no allowed key (and no sink) has total 0 and acc 0:
            # output 0.
            has_keys = total > 0
            output[..., slice(*rows), :] = acc / torch.where(has_keys, total, 1.0)
            lse[..., slice(*rows), :] = torch.where(
                has_keys, row_max + torch.log(total), 0.0
            )
        ctx.spec = spec
        ctx.save_for_backward(query, key, value, sinks, mask, slopes, seed, output, lse)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, d_output):
        query, key, value, sinks, mask, slopes, seed, output, lse = ctx.saved_tensors
        spec = ctx.spec
        inputs = (mask, slopes, seed)
        # rowsum(do * o) equals rowsum(p * dp), with dropout too: one per query.
        delta = (d_output * output).sum(-1, keepdim=True)  # (..., q_len, 1)
        d_sinks = None
        if sinks is not None:
            # The sink's weight per query is exp(sink - lse) (the saved lse
            # includes the sink); its gradient is -sum(p_sink * delta).
            p_sinks = torch.exp(sinks - lse) * delta
            d_sinks = _sum_to(-p_sinks.sum(-2, keepdim=True), sinks.shape)
        delta = delta.transpose(-1, -2)  # (..., 1, q_len)
        lse = lse.transpose(-1, -2)
        d_query = query.new_zeros((*spec.leading, *query.shape[-2:]))
        d_key, d_value = torch.zeros_like(key), torch.zeros_like(value)
        # Each key tile meets the query tiles that see it as transposed tiles,
        # (..., k_tile, q_tile), as in the TensorFlow kernel.
        for j, cols in enumerate(spec.key_tiles()):
            k_j, v_j = key[..., slice(*cols), :], value[..., slice(*cols), :]
            d_k, d_v = torch.zeros_like(k_j), torch.zeros_like(v_j)
            for rows in spec.query_tiles_for(j):
                q_i = query[..., slice(*rows), :]
                do_i = d_output[..., slice(*rows), :]
                logits, keep, slope = spec.logits(
                    q_i, k_j, rows, cols, inputs, transposed=True
                )
                weights = logits.sub_(lse[..., slice(*rows)]).exp_()
                d_v += _sum_to(torch.matmul(spec.drop(weights, keep), do_i), d_v.shape)
                d_weights = spec.drop(torch.matmul(v_j, do_i.transpose(-1, -2)), keep)
                d_logits = d_weights.sub_(delta[..., slice(*rows)]).mul_(weights)
                if slope is not None:
                    d_logits.mul_(slope)  # through the soft-cap's tanh
                d_k += _sum_to(torch.matmul(d_logits, q_i), d_k.shape)
                d_query[..., slice(*rows), :] += torch.matmul(
                    d_logits.transpose(-1, -2), k_j
                )
            d_key[..., slice(*cols), :] = d_k
            d_value[..., slice(*cols), :] = d_v
        return (
            _sum_to(d_query, query.shape),
            d_key,
            d_value,
            d_sinks,
            None,  # mask
            None,  # slopes: constants (ops.py stops their gradient)
            None,  # seed
            None,  # the sizes, options and tiles
        )


# `fused` builds a boolean mask of the positions (causal with a mask, or
# bottom-right causal with 1 < q_len < k_len) only up to this many entries
# (1 MiB; PyTorch turns it into a float32 bias of 4 MiB): past it, it returns
# None and the caller tiles.
DENSE_MASK_LIMIT = 1 << 20


def fused(
    query,
    key,
    value,
    mask,
    *,
    spec,
    query_start,
    slopes=None,
    sinks=None,
    data=pattern.NO_ROWS,
    dropout=0.0,
    seed=None,
):
    """`torch.nn.functional.scaled_dot_product_attention`, where its result is
    exactly ours; None where it is not.

    Takes the arguments of `attention` but `tiles`, so a caller can try this
    first with the same options and tile when it returns None, as it does
    with anything of the pattern beyond `spec.causal` (a window, chunks, the
    soft-cap, a per-row pattern in `data`), `sinks`, ALiBi `slopes` or
    `dropout > 0`: PyTorch's kernel takes a mask and `is_causal` only, and
    its dropout draws from its own generator, ours from a hash (`seed` is
    not used).
    PyTorch's fused CPU kernel is linear in memory, forward and backward,
    for grouped-query heads too (`enable_gqa`: keys are never copied). On
    top of it:

    - a query with no allowed key gets zeros (PyTorch's math kernel gives NaN,
      its fused one zeros): such rows attend to every key inside the kernel,
      so that its backward stays finite, and their output is replaced by 0;
    - `spec.causal` is PyTorch's `is_causal` (top-left, `query_start=0`) without
      a mask. Bottom-right (`query_start = k_len - q_len`) with `q_len >
      k_len`, the first `q_len - k_len` queries
      see no key (zeros) and the rest are top-left causal; `q_len == 1` sees
      every key; other values of `query_start` are left to the tiles. Causal
      with a mask, and bottom-right causal with
      `1 < q_len < k_len`, need a boolean mask of the positions: built when
      it has at most `DENSE_MASK_LIMIT` entries, else None is returned;
    - where PyTorch would not fuse (on CPU: query and value depths that
      differ, say), its unfused kernel would hold the whole weights: None.

    Returns:
        float32 `(..., q_len, value_depth)`, or None.
    """
    beyond = (
        spec.window is not None
        or spec.chunk_size is not None
        or spec.softcap is not None
        or not data.empty
    )
    if beyond or sinks is not None or slopes is not None or dropout > 0:
        return None
    causal = spec.causal
    q_len, k_len = query.shape[-2], key.shape[-2]
    first = int(query_start)
    if causal and first not in (0, k_len - q_len):
        return None  # causal queries elsewhere among the keys: the tiles
    bottom_right = first != 0
    if mask is not None:
        mask = _at_least_2d(mask)
    if causal and bottom_right and q_len > k_len:
        skip = q_len - k_len
        if mask is not None and mask.shape[-2] != 1:
            mask = mask[..., skip:, :]
        rest = fused(query[..., skip:, :], key, value, mask, spec=spec, query_start=0)
        if rest is None:
            return None
        return torch.cat(
            [rest.new_zeros((*rest.shape[:-2], skip, rest.shape[-1])), rest], -2
        )
    if causal and bottom_right and q_len == 1:
        causal = False
    if causal and (mask is not None or (bottom_right and q_len != k_len)):
        first = k_len - q_len if bottom_right else 0
        positions = dict(dtype=torch.int32, device=query.device)
        rows = torch.arange(first, first + q_len, **positions)[:, None]
        cols = torch.arange(k_len, **positions)[None, :]
        dense = (q_len, k_len)
        if mask is not None:
            dense = torch.broadcast_shapes(mask.shape, dense)
        if math.prod(dense) > DENSE_MASK_LIMIT:
            return None
        mask = pattern.allowed(mask, spec, rows, cols)
        causal = False
    return _sdpa(query, key, value, mask, causal)


def _sdpa(query, key, value, mask, causal):
    """PyTorch's kernel on `(batch, heads, len, depth)` views of the inputs,
    axis -3 being the heads (fewer for the key and value: grouped-query)."""
    shape = (*query.shape[:-1], value.shape[-1])
    rank = max(query.dim(), 4)
    query, key, value = (_rank(x, rank) for x in (query, key, value))
    leading = query.shape[:-3]
    query, key, value = (
        x.expand(*leading, *x.shape[-3:]).reshape(-1, *x.shape[-3:])
        for x in (query, key, value)
    )
    has_keys = None
    if mask is not None:
        mask = _rank(mask, rank)
        if math.prod(mask.shape[:-3]) != 1:
            mask = mask.expand(*leading, *mask.shape[-3:])
        mask = mask.reshape(-1, *mask.shape[-3:])
        # Rows with no allowed key attend to all of them, then give zeros.
        has_keys = mask.any(-1, keepdim=True)
        mask = torch.logical_or(mask, torch.logical_not(has_keys))
    options = dict(attn_mask=mask, is_causal=causal, scale=1.0)
    if query.shape[-3] != key.shape[-3]:
        options["enable_gqa"] = True  # PyTorch 2.5 and later
    if _math_kernel(query, key, value, **options):
        return None
    output = F.scaled_dot_product_attention(query, key, value, **options)
    if has_keys is not None:
        output = torch.where(has_keys, output, 0.0)
    return output.reshape(shape)


def _math_kernel(query, key, value, attn_mask, is_causal, **options):
    """Whether PyTorch would run its unfused kernel, which holds the whole
    `(..., q_len, k_len)` weights (on CPU: different query and value
    depths, say), or cannot run the case at all (grouped-query heads before
    PyTorch 2.5). `torch._fused_sdp_choice` is what the function itself
    asks; a PyTorch without it is assumed to fuse."""
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return False
    try:
        choice = choose(query, key, value, attn_mask, 0.0, is_causal, **options)
    except TypeError:
        return True
    return SDPBackend(choice) == SDPBackend.MATH


def _rank(x, rank):
    """`x` with leading axes of size 1 up to `rank`."""
    return x.reshape((1,) * (rank - x.dim()) + tuple(x.shape))

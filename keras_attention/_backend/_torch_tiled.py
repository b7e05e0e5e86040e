"""Attention for the PyTorch backend in memory linear in the sequence length.

Two functions, each for the float32 tensors `ops.py` prepares (the query
already scaled, the mask boolean, grouped-query heads either as
`(..., heads, len, depth)` with fewer key heads or grouped as
`(..., kv_heads, groups, len, depth)` with keys `(..., kv_heads, 1, len,
depth)`):

- `attention`: the tiled kernel, a `torch.autograd.Function`. It keeps the
  contract of `keras_attention/_backend/__init__.py` (online
  softmax forward, FlashAttention-2 backward keeping only q, k, v, the output
  and one log-sum-exp per query, causal and sliding-window tiles never
  visited, masks sliced tile by tile, pairs, dropout and ALiBi from
  `_attention_pattern` on absolute positions). Lengths are always concrete on
  PyTorch, so the loops are Python loops over slices and the last tile is
  simply shorter: nothing is padded.
- `fused`: `torch.nn.functional.scaled_dot_product_attention` where its
  result is exactly ours (no dropout, no sliding window, no ALiBi), else None.

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
    causal,
    sliding_window,
    query_start,
    dropout,
    seed,
    tiles,
):
    """Tiled attention of float32 tensors; the query is already scaled.

    The arguments and the result are those of the contract in
    `keras_attention/_backend/__init__.py`, with torch tensors; `tiles` are
    Python ints, `query_start` an int (or a tensor holding one). A second
    derivative through the kernel is not supported.
    """
    spec = _Spec(
        query,
        key,
        value,
        causal=causal,
        sliding_window=sliding_window,
        query_start=int(query_start),
        dropout=dropout,
        tiles=tiles,
    )
    if mask is not None and mask.dim() < 2:
        mask = mask.reshape((1,) * (2 - mask.dim()) + tuple(mask.shape))
    return _Tiled.apply(query, key, value, mask, slopes, seed, spec)


class _Spec:
    """Sizes and options shared by the forward and the backward pass."""

    def __init__(
        self, query, key, value, causal, sliding_window, query_start, dropout, tiles
    ):
        self.q_len, self.k_len = query.shape[-2], key.shape[-2]
        # The leading shape of the logits and of the output.
        self.leading = tuple(
            torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
        )
        # The position of query 0 among the keys.
        self.first = query_start
        self.q_tile, self.k_tile = (int(t) for t in tiles)
        self.causal = causal
        self.sliding_window = sliding_window
        self.dropout = dropout
        self.batch = pattern.batch_index(self.leading) if dropout > 0 else None
        self.tiling = dict(
            q_tile=self.q_tile,
            k_tile=self.k_tile,
            q_len=self.q_len,
            k_len=self.k_len,
            query_start=self.first,
            causal=causal,
            sliding_window=sliding_window,
        )

    def query_tiles(self):
        """Every query tile as `(start, stop)`."""
        return _spans(0, self.q_len, self.q_tile)

    def key_tiles_for(self, start, stop):
        """The key tiles that the query tile `start..stop-1` may see."""
        lo, hi = pattern.key_tiles(
            start // self.q_tile, **self.tiling, xp=pattern.PYTHON
        )
        return [_span(j, self.k_tile, self.k_len) for j in range(lo, hi)]

    def key_tiles(self):
        return _spans(0, self.k_len, self.k_tile)

    def query_tiles_for(self, start, stop):
        """The query tiles that may see the key tile `start..stop-1`."""
        lo, hi = pattern.query_tiles(
            start // self.k_tile, **self.tiling, xp=pattern.PYTHON
        )
        return [_span(i, self.q_tile, self.q_len) for i in range(lo, hi)]

    def logits(self, q_tile, k_tile, rows, cols, inputs, transposed=False):
        """Logits of the tile of queries `rows` and keys `cols` (slices), ALiBi's
        bias added, -inf where a pair may not attend: `(..., rows, cols)`, or
        `(..., cols, rows)` when `transposed`. Also returns the dropout
        keep-pattern in the same layout (None without dropout)."""
        mask, slopes, seed = inputs
        positions_r = _positions(rows, self.first, q_tile.device)
        positions_c = _positions(cols, 0, q_tile.device)
        if transposed:
            positions_r, positions_c = positions_r[None, :], positions_c[:, None]
            logits = torch.matmul(k_tile, q_tile.transpose(-1, -2))
        else:
            positions_r, positions_c = positions_r[:, None], positions_c[None, :]
            logits = torch.matmul(q_tile, k_tile.transpose(-1, -2))
        if slopes is not None:
            logits = logits + pattern.alibi_bias(slopes, positions_r, positions_c)
        mask_tile = None
        if mask is not None:
            mask_tile = mask[..., _cut(mask, -2, rows), _cut(mask, -1, cols)]
            if transposed:
                mask_tile = mask_tile.transpose(-1, -2)
        allowed = pattern.allowed(
            mask_tile, self.causal, self.sliding_window, positions_r, positions_c
        )
        if allowed is not None:
            logits = logits.masked_fill(torch.logical_not(allowed), -math.inf)
        keep = None
        if self.dropout > 0:
            keep = pattern.dropout_keep(
                seed, self.batch, positions_r, positions_c, self.dropout
            )
        return logits, keep

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


def _cut(mask, axis, span):
    """A slice of `mask` along `axis`, or all of it where it broadcasts."""
    return slice(None) if mask.shape[axis] == 1 else slice(*span)


def _sum_to(x, shape):
    """`x` summed over the axes where `shape` has size 1 and `x` does not:
    the gradient of a key or value shared by a group of query heads."""
    axes = [
        a for a, (n, m) in enumerate(zip(x.shape, shape, strict=True)) if m == 1 != n
    ]
    return x.sum(axes, keepdim=True) if axes else x


class _Tiled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, mask, slopes, seed, spec):
        inputs = (mask, slopes, seed)
        rows_shape = (*spec.leading, spec.q_len, 1)
        output = query.new_empty((*spec.leading, spec.q_len, value.shape[-1]))
        lse = query.new_empty(rows_shape)
        for rows in spec.query_tiles():
            q_i = query[..., slice(*rows), :]
            size = rows[1] - rows[0]
            row_max = query.new_full((*spec.leading, size, 1), -math.inf)
            total = query.new_zeros((*spec.leading, size, 1))
            acc = query.new_zeros((*spec.leading, size, value.shape[-1]))
            for cols in spec.key_tiles_for(*rows):
                k_j, v_j = key[..., slice(*cols), :], value[..., slice(*cols), :]
                logits, keep = spec.logits(q_i, k_j, rows, cols, inputs)
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
            # A row with no allowed key has total 0 and acc 0: output 0.
            has_keys = total > 0
            output[..., slice(*rows), :] = acc / torch.where(has_keys, total, 1.0)
            lse[..., slice(*rows), :] = torch.where(
                has_keys, row_max + torch.log(total), 0.0
            )
        ctx.spec = spec
        ctx.save_for_backward(query, key, value, mask, slopes, seed, output, lse)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, d_output):
        query, key, value, mask, slopes, seed, output, lse = ctx.saved_tensors
        spec = ctx.spec
        inputs = (mask, slopes, seed)
        # rowsum(do * o) equals rowsum(p * dp), with dropout too: one per query.
        delta = (d_output * output).sum(-1, keepdim=True).transpose(-1, -2)
        lse = lse.transpose(-1, -2)  # (..., 1, q_len)
        d_query = query.new_zeros((*spec.leading, *query.shape[-2:]))
        d_key, d_value = torch.zeros_like(key), torch.zeros_like(value)
        # Each key tile meets the query tiles that see it as transposed tiles,
        # (..., k_tile, q_tile), as in the TensorFlow kernel.
        for cols in spec.key_tiles():
            k_j, v_j = key[..., slice(*cols), :], value[..., slice(*cols), :]
            d_k, d_v = torch.zeros_like(k_j), torch.zeros_like(v_j)
            for rows in spec.query_tiles_for(*cols):
                q_i = query[..., slice(*rows), :]
                do_i = d_output[..., slice(*rows), :]
                logits, keep = spec.logits(
                    q_i, k_j, rows, cols, inputs, transposed=True
                )
                weights = logits.sub_(lse[..., slice(*rows)]).exp_()
                d_v += _sum_to(torch.matmul(spec.drop(weights, keep), do_i), d_v.shape)
                d_weights = spec.drop(torch.matmul(v_j, do_i.transpose(-1, -2)), keep)
                d_logits = d_weights.sub_(delta[..., slice(*rows)]).mul_(weights)
                d_k += _sum_to(torch.matmul(d_logits, q_i), d_k.shape)
                d_query[..., slice(*rows), :] += torch.matmul(
                    d_logits.transpose(-1, -2), k_j
                )
            d_key[..., slice(*cols), :] = d_k
            d_value[..., slice(*cols), :] = d_v
        return _sum_to(d_query, query.shape), d_key, d_value, None, None, None, None


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
    causal,
    query_start,
    slopes=None,
    sliding_window=None,
    dropout=0.0,
    seed=None,
):
    """`torch.nn.functional.scaled_dot_product_attention`, where its result is
    exactly ours; None where it is not.

    Takes the arguments of `attention` but `tiles`, so a caller can try this
    first with the same options and tile when it returns None, as it does with
    ALiBi `slopes`, a `sliding_window` or `dropout > 0` (PyTorch's dropout
    draws from its own generator, ours from a hash; `seed` is not used).
    PyTorch's fused CPU kernel is linear in memory, forward and backward,
    for grouped-query heads too (`enable_gqa`: keys are never copied). On
    top of it:

    - a query with no allowed key gets zeros (PyTorch's math kernel gives NaN,
      its fused one zeros): such rows attend to every key inside the kernel,
      so that its backward stays finite, and their output is replaced by 0;
    - `causal` is PyTorch's `is_causal` (top-left, `query_start=0`) without
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
    if slopes is not None or sliding_window is not None or dropout > 0:
        return None
    q_len, k_len = query.shape[-2], key.shape[-2]
    first = int(query_start)
    if causal and first not in (0, k_len - q_len):
        return None  # causal queries elsewhere among the keys: the tiles
    bottom_right = first != 0
    if mask is not None and mask.dim() < 2:
        mask = mask.reshape((1,) * (2 - mask.dim()) + tuple(mask.shape))
    if causal and bottom_right and q_len > k_len:
        skip = q_len - k_len
        if mask is not None and mask.shape[-2] != 1:
            mask = mask[..., skip:, :]
        rest = fused(query[..., skip:, :], key, value, mask, causal=True, query_start=0)
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
        mask = pattern.allowed(mask, True, None, rows, cols)
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

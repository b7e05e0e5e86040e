"""The PyTorch kernels (`_backend/_torch_tiled.py`) against the full path.

`tiled` and `fused` are called directly on the float32 tensors `ops.py`
prepares (query scaled, mask boolean, grouped-query heads grouped), and
compared with `ops._full` on the same tensors: values within 1e-5, gradients
(torch autograd) within 1e-4. Small tiles, so that short sequences already
span several tiles, lengths are not multiples of the tile, and the tiles
that a pattern leaves empty (causal, windows, chunks, packed documents) get
skipped.

PyTorch is only installed in the PyTorch venv: the whole module is skipped on
the other backends, before anything imports torch.
"""

import keras
import numpy as np
import pytest

if keras.backend.backend() != "torch":
    pytest.skip("needs the PyTorch backend", allow_module_level=True)

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from keras_attention import _attention_pattern as pattern  # noqa: E402
from keras_attention import alibi_slopes  # noqa: E402
from keras_attention import ops as attention_ops  # noqa: E402
from keras_attention._backend import _torch_tiled  # noqa: E402
from tests.layer_test_case import RNG, normal  # noqa: E402

TILES = (8, 8)
DEFAULTS = dict(
    slopes=None,
    sinks=None,
    spec=pattern.Pattern(),
    data=pattern.NO_ROWS,
    query_start=0,
    dropout=0.0,
    seed=None,
)


def placed(q, k, options):
    """The kernels' options from a case's: `bottom_right=True` read as query
    0 sitting at key position `k_len - q_len` (`query_start`); the fields of
    a `pattern.Pattern` (`causal`, `window`, `chunk_size`, `softcap`) and
    `sliding_window=w` (keys `|i - j| < w`) gathered into `spec`."""
    options = {**DEFAULTS, **options}
    if options.pop("bottom_right", False):
        options["query_start"] = k.shape[-2] - q.shape[-2]
    static = {f: options.pop(f) for f in pattern.Pattern._fields if f in options}
    width = options.pop("sliding_window", None)
    if width is not None:
        static["window"] = (width - 1, width - 1)
    if static:
        options["spec"] = pattern.Pattern(**static)
    return options


def full(q, k, v, mask=None, **options):
    options = placed(q, k, options)
    return attention_ops._full(q, k, v, mask, None, **options)[0]


def tiled(q, k, v, mask=None, tiles=TILES, **options):
    options = placed(q, k, options)
    return _torch_tiled.attention(q, k, v, mask, tiles=tiles, **options)


def fused(q, k, v, mask=None, causal=False, bottom_right=False):
    options = placed(q, k, dict(causal=causal, bottom_right=bottom_right))
    result = _torch_tiled.fused(q, k, v, mask, **options)
    assert result is not None
    return result


def value_and_grads(attention, q, k, v, **options):
    """The output and the gradients of `sum(output * cotangent)`: of q, k, v
    and, when given, of the sink logits."""
    leaves = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    if options.get("sinks") is not None:
        options["sinks"] = torch.tensor(options["sinks"], requires_grad=True)
        leaves.append(options["sinks"])
    output = attention(*leaves[:3], **options)
    cotangent = torch.cos(torch.arange(output.numel(), dtype=torch.float32))
    (output * cotangent.reshape(output.shape)).sum().backward()
    return [x.detach().numpy() for x in (output, *(x.grad for x in leaves))]


def assert_same(got, expected):
    """Outputs within 1e-5, gradients within 1e-4."""
    np.testing.assert_allclose(got[0], expected[0], atol=1e-5)
    for g, e in zip(got[1:], expected[1:], strict=True):
        np.testing.assert_allclose(g, e, atol=1e-4)


def with_empty_rows(shape, rows):
    mask = RNG.random(shape) > 0.3
    mask[..., rows, :] = False
    return torch.tensor(mask)


def slopes(heads):
    return torch.tensor(alibi_slopes(heads).reshape(heads, 1, 1))


def seed(value):
    return torch.tensor(value, dtype=torch.int32)


def packed(lengths, q_len=None):
    """The segment ids of documents of `lengths` packed in rows `(batch,
    k_len)`, as a `pattern.Rows` laid out against logits `(batch, heads,
    q_len, k_len)`: each document's first position is global and its first
    two are sink keys; the queries are the last `q_len` positions. Row 0 has
    a prefix of 4 positions, row 1 none."""
    ids = torch.tensor(np.stack([np.repeat(np.arange(len(n)), n) for n in lengths]))
    q_ids = ids[:, -q_len:] if q_len else ids
    first = torch.cat([torch.ones_like(ids[:, :1]), ids[:, 1:] != ids[:, :-1]], 1)
    second = torch.cat([torch.zeros_like(first[:, :1]), first[:, :-1]], 1)
    q_first = first[:, -q_len:] if q_len else first
    return pattern.Rows(
        query_segment=q_ids[:, None, :, None].int(),
        key_segment=ids[:, None, None, :].int(),
        query_global=q_first[:, None, :, None].bool(),
        key_global=first[:, None, None, :].bool(),
        key_sink=(first | second)[:, None, None, :].bool(),
        prefix=torch.tensor([4, 0], dtype=torch.int32).reshape(2, 1, 1, 1),
    )


def sinks(*values):
    return np.array(values, "float32").reshape(-1, 1, 1)


# lead: the leading shape of the query; key_lead: of the key and value
# (grouped-query heads: `(..., kv_heads, 1)` against `(..., kv_heads, groups)`).
CASES = {
    "unmasked": dict(lead=(2, 3), q_len=21, k_len=21),
    "padding mask": dict(
        lead=(2, 3),
        q_len=19,
        k_len=21,
        mask=torch.tensor(RNG.random((2, 1, 1, 21)) > 0.4),
    ),
    "full mask, q_len < k_len": dict(
        lead=(2, 3),
        q_len=13,
        k_len=29,
        mask=torch.tensor(RNG.random((2, 3, 13, 29)) > 0.3),
    ),
    "causal top-left, q_len > k_len": dict(
        lead=(2, 3), q_len=29, k_len=13, causal=True
    ),
    "causal bottom-right, q_len < k_len, ALiBi": dict(
        lead=(2, 3),
        q_len=13,
        k_len=29,
        causal=True,
        bottom_right=True,
        slopes=slopes(3),
    ),
    "causal bottom-right, q_len > k_len, mask": dict(
        lead=(2, 3),
        q_len=29,
        k_len=13,
        causal=True,
        bottom_right=True,
        mask=torch.tensor(RNG.random((29, 13)) > 0.2),
    ),
    "causal window, ALiBi per entry": dict(
        lead=(2,),
        q_len=37,
        k_len=30,
        causal=True,
        sliding_window=6,
        slopes=torch.tensor([[[0.7]], [[0.05]]]),
    ),
    # Queries 20 and beyond have no key within the window: zero rows.
    "window past the keys": dict(lead=(2,), q_len=40, k_len=17, sliding_window=4),
    "bottom-right window": dict(
        lead=(2,), q_len=22, k_len=35, sliding_window=5, bottom_right=True
    ),
    "mask with empty rows, ALiBi": dict(
        lead=(2, 3),
        q_len=21,
        k_len=27,
        mask=with_empty_rows((2, 1, 21, 27), [0, 9]),
        slopes=slopes(3),
    ),
    "query mask, causal": dict(
        lead=(2, 3),
        q_len=21,
        k_len=18,
        mask=torch.tensor(RNG.random((21, 1)) > 0.3),
        causal=True,
    ),
    "unbatched, mask and window": dict(
        lead=(),
        q_len=25,
        k_len=23,
        mask=torch.tensor(RNG.random((25, 23)) > 0.3),
        sliding_window=9,
    ),
    "dropout, mask": dict(
        lead=(2, 3),
        q_len=21,
        k_len=19,
        mask=torch.tensor(RNG.random((2, 1, 21, 19)) > 0.2),
        dropout=0.3,
        seed=seed(5),
    ),
    "dropout, causal window": dict(
        lead=(2,),
        q_len=30,
        k_len=30,
        causal=True,
        sliding_window=7,
        dropout=0.5,
        seed=seed(123),
    ),
    # 2 key heads shared by groups of 3 query heads, as ops.py passes them.
    "grouped-query, causal, dropout, ALiBi": dict(
        lead=(2, 2, 3),
        key_lead=(2, 2, 1),
        q_len=20,
        k_len=20,
        causal=True,
        dropout=0.2,
        seed=seed(9),
        slopes=slopes(6).reshape(2, 3, 1, 1),
    ),
    "multi-query, padding mask": dict(
        lead=(2, 1, 4),
        key_lead=(2, 1, 1),
        q_len=17,
        k_len=26,
        mask=torch.tensor(RNG.random((2, 1, 1, 1, 26)) > 0.3),
    ),
    "chunks, soft-cap, causal window pair": dict(
        lead=(2, 3),
        q_len=27,
        k_len=27,
        causal=True,
        window=(9, 0),
        chunk_size=7,
        softcap=0.6,
    ),
    "uneven window pair, sink logits": dict(
        lead=(2, 3),
        q_len=21,
        k_len=25,
        window=(3, 6),
        bottom_right=True,
        sinks=sinks(0.5, -1.0, 2.0),
    ),
    "packed documents, globals, sink tokens, prefix": dict(
        lead=(2, 3),
        q_len=29,
        k_len=29,
        causal=True,
        window=(4, 0),
        data=packed([(5, 11, 9, 4), (20, 9)]),
        sinks=sinks(0.3, -0.2, 1.0),
    ),
    "packed documents, bottom-right, mask with empty rows": dict(
        lead=(2, 3),
        q_len=13,
        k_len=31,
        causal=True,
        bottom_right=True,
        data=packed([(12, 6, 13), (3, 28)], q_len=13),
        mask=with_empty_rows((2, 1, 13, 31), [2]),
        sinks=sinks(0.0, 1.5, -3.0),
        softcap=1.5,
    ),
    "grouped-query, packed documents, chunks": dict(
        lead=(2, 2, 3),
        key_lead=(2, 2, 1),
        q_len=22,
        k_len=22,
        chunk_size=5,
        data=pattern.Rows(
            *(None if x is None else x[:, None] for x in packed([(7, 15), (11, 11)]))
        ),
        sinks=sinks(0.5, -0.5).reshape(2, 1, 1, 1),
    ),
}


def inputs(case, value_depth=3):
    case = dict(case)
    lead, q_len, k_len = case.pop("lead"), case.pop("q_len"), case.pop("k_len")
    key_lead = case.pop("key_lead", lead)
    q = normal(*lead, q_len, 4) * 0.5
    k, v = normal(*key_lead, k_len, 4), normal(*key_lead, k_len, value_depth)
    return (q, k, v), case


@pytest.mark.parametrize("tiles", [TILES, (5, 11)], ids=["square", "oblong"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_tiled_equals_full_values_and_gradients(case, tiles):
    (q, k, v), options = inputs(case)
    expected = value_and_grads(full, q, k, v, **options)
    got = value_and_grads(tiled, q, k, v, tiles=tiles, **options)
    assert len(got) == len(expected)
    assert_same(got, expected)
    for grad in got[1:]:
        assert np.all(np.isfinite(grad))


def test_rows_that_see_nothing_are_zero_with_finite_gradients():
    q, k, v = normal(2, 3, 21, 4), normal(2, 3, 27, 4), normal(2, 3, 27, 4)
    mask = with_empty_rows((2, 1, 21, 27), [3, 17])
    for attention in (tiled, fused):
        output, *grads = value_and_grads(attention, q, k, v, mask=mask)
        assert np.all(output[..., [3, 17], :] == 0)
        assert np.any(output[..., 4, :] != 0)
        for grad in grads:
            assert np.all(np.isfinite(grad))
        assert np.all(grads[0][..., [3, 17], :] == 0)


def test_dropout_drops_the_same_weights_as_the_full_path():
    """With a value of one-hot rows the output is the kept weights
    themselves, so equal outputs mean equal patterns; another seed or no
    dropout gives other outputs."""
    q, k = normal(2, 3, 21, 4), normal(2, 3, 19, 4)
    v = np.broadcast_to(np.eye(19, dtype="float32"), (2, 3, 19, 19)).copy()
    q, k, v = (torch.tensor(x) for x in (q, k, v))
    options = dict(dropout=0.4, seed=seed(5))
    got = tiled(q, k, v, **options)
    np.testing.assert_allclose(got, full(q, k, v, **options), atol=1e-5)
    assert torch.equal(got == 0, full(q, k, v, **options) == 0)
    assert 0.3 < float((got == 0).float().mean()) < 0.5
    assert not torch.equal(got == 0, tiled(q, k, v, dropout=0.4, seed=seed(6)) == 0)


FUSED_CASES = {
    "unmasked": dict(lead=(2, 3), q_len=21, k_len=27),
    "padding mask, an entry without keys": dict(
        lead=(2, 3),
        q_len=19,
        k_len=21,
        mask=torch.tensor(np.array([True, False])[:, None, None, None])
        & torch.tensor(RNG.random((2, 1, 1, 21)) > 0.4),
    ),
    "mask with empty rows": dict(
        lead=(2, 3), q_len=21, k_len=27, mask=with_empty_rows((2, 3, 21, 27), [0, 9])
    ),
    "causal, q_len < k_len": dict(lead=(2, 3), q_len=13, k_len=29, causal=True),
    "causal, q_len > k_len": dict(lead=(2, 3), q_len=29, k_len=13, causal=True),
    "causal with a mask": dict(
        lead=(2, 3),
        q_len=21,
        k_len=21,
        causal=True,
        mask=torch.tensor(RNG.random((2, 1, 1, 21)) > 0.3),
    ),
    "bottom-right causal, q_len < k_len": dict(
        lead=(2, 3), q_len=13, k_len=29, causal=True, bottom_right=True
    ),
    "bottom-right causal, q_len > k_len, mask": dict(
        lead=(2, 3),
        q_len=29,
        k_len=13,
        causal=True,
        bottom_right=True,
        mask=with_empty_rows((2, 1, 29, 13), [20]),
    ),
    "bottom-right causal, one query": dict(
        lead=(2, 3), q_len=1, k_len=13, causal=True, bottom_right=True
    ),
    "unbatched, causal": dict(lead=(), q_len=15, k_len=15, causal=True),
    "grouped-query (grouped), padding mask": dict(
        lead=(2, 2, 3),
        key_lead=(2, 2, 1),
        q_len=17,
        k_len=26,
        mask=torch.tensor(RNG.random((2, 1, 1, 1, 26)) > 0.3),
    ),
}


@pytest.mark.parametrize("case", FUSED_CASES.values(), ids=FUSED_CASES.keys())
def test_fused_equals_full_values_and_gradients(case):
    # PyTorch fuses on CPU only with equal query and value depths.
    (q, k, v), options = inputs(case, value_depth=4)
    expected = value_and_grads(full, q, k, v, **options)
    got = value_and_grads(fused, q, k, v, **options)
    assert_same(got, expected)


def test_fused_takes_grouped_query_heads_ungrouped_without_copying_keys():
    """`(batch, 6 heads, len, depth)` with 2 key heads: PyTorch's `enable_gqa`,
    equal to the full path on the grouped layout, and no op output as large
    as the keys repeated per group."""
    q, k, v = normal(2, 6, 17, 4), normal(2, 2, 26, 4), normal(2, 2, 26, 4)
    causal = dict(causal=True)
    with Recorder() as recorder:
        got = value_and_grads(fused, q, k, v, **causal)
    grouped = (q.reshape(2, 2, 3, 17, 4), k[:, :, None], v[:, :, None])
    expected = value_and_grads(full, *grouped, **causal)
    # The grouped results in the ungrouped layout (the same memory order).
    assert_same(got, [x.reshape(y.shape) for x, y in zip(expected, got, strict=True)])
    logits, repeated_keys = 2 * 6 * 17 * 26, 2 * 6 * 26 * 4
    assert max(recorder.sizes) < logits
    assert repeated_keys not in recorder.sizes


@pytest.mark.parametrize(
    "options",
    [
        dict(dropout=0.1, seed=seed(1)),
        dict(sliding_window=3),
        dict(slopes=slopes(3)),
        dict(causal=True, chunk_size=4),
        dict(causal=True, softcap=30.0),
        dict(sinks=torch.zeros(3, 1, 1)),
        dict(data=pattern.Rows(prefix=torch.tensor(3, dtype=torch.int32))),
        dict(data=pattern.Rows(key_sink=torch.ones(9, dtype=bool)[None])),
    ],
    ids=[
        "dropout",
        "sliding window",
        "ALiBi",
        "chunks",
        "soft-cap",
        "sink logits",
        "prefix",
        "sink tokens",
    ],
)
def test_fused_declines_what_pytorch_does_not_compute_as_we_do(options):
    q = torch.zeros(2, 3, 9, 4)
    assert _torch_tiled.fused(q, q, q, None, **placed(q, q, options)) is None
    assert _torch_tiled.fused(q, q, q, None, **placed(q, q, {})) is not None


def test_fused_declines_where_pytorch_would_not_fuse():
    """Query and value depths that differ run PyTorch's unfused kernel on
    CPU, which holds the whole weights: the caller tiles instead."""
    q, k, v = torch.zeros(2, 3, 9, 4), torch.zeros(2, 3, 9, 4), torch.zeros(2, 3, 9, 3)
    assert _torch_tiled.fused(q, k, v, None, **placed(q, k, {})) is None


def test_fused_declines_a_large_dense_mask():
    # Bottom-right causal with 1 < q_len < k_len needs a (q_len, k_len) mask
    # of the positions: built up to DENSE_MASK_LIMIT entries, else declined.
    limit = _torch_tiled.DENSE_MASK_LIMIT
    for q_len, k_len, fuses in (
        (512, limit // 512, True),
        (512, limit // 512 + 1, False),
    ):
        q, k = torch.zeros(q_len, 4), torch.zeros(k_len, 4)
        options = placed(q, k, dict(causal=True, bottom_right=True))
        result = _torch_tiled.fused(q, k, k, None, **options)
        assert (result is not None) == fuses, (q_len, k_len)


class Recorder(TorchDispatchMode):
    """The element count of every tensor an op outputs, and of every tensor
    autograd saves for the backward pass."""

    def __init__(self):
        super().__init__()
        self.sizes, self.saved = [], []
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda x: x)

    def pack(self, tensor):
        self.saved.append(tensor.numel())
        return tensor

    def __enter__(self):
        self.hooks.__enter__()
        return super().__enter__()

    def __exit__(self, *args):
        super().__exit__(*args)
        self.hooks.__exit__(*args)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        outputs = output if isinstance(output, (tuple, list)) else [output]
        self.sizes += [x.numel() for x in outputs if isinstance(x, torch.Tensor)]
        return output


@pytest.mark.parametrize(
    "options",
    [
        dict(mask=torch.tensor(RNG.random((2, 1, 1, 48)) > 0.3)),
        dict(causal=True, dropout=0.3, seed=seed(1), slopes=slopes(2)),
        dict(
            causal=True,
            window=(20, 0),
            softcap=1.0,
            data=packed([(30, 18), (48,)]),
            sinks=sinks(0.5, -0.5),
        ),
    ],
    ids=["padding mask", "causal, dropout, ALiBi", "patterns, sink logits"],
)
def test_no_tensor_as_large_as_the_logits_in_forward_and_backward(options):
    """Lengths of 6 tiles, depth 4: the logits `(2, 2, 48, 48)` are 12 times
    any input. No op output or saved tensor of the tiled forward and backward
    reaches a quarter of them; on the full path, some reach all of them."""
    shape, logits = (2, 2, 48, 4), 2 * 2 * 48 * 48
    q, k, v = normal(*shape), normal(*shape), normal(*shape)
    results = {}
    for name, attention in (("tiled", tiled), ("full", full)):
        with Recorder() as recorder:
            value_and_grads(attention, q, k, v, **options)
        results[name] = max(recorder.sizes), max(recorder.saved)
    assert max(results["tiled"]) < logits / 4, results
    assert min(results["full"]) >= logits, results


@pytest.mark.parametrize(
    "options",
    [
        dict(mask=torch.tensor([True, False]).reshape(2, 1, 1, 1)),
        dict(causal=True),
        dict(causal=True, bottom_right=True, mask=torch.ones(48, 1, dtype=bool)),
    ],
    ids=["padding mask, an entry without keys", "causal", "causal with a mask"],
)
def test_fused_holds_no_tensor_as_large_as_the_logits(options):
    """PyTorch's fused kernel, with the zero-row fix and the position mask
    (only `(q_len, k_len)`, shared by the batch): nothing as large as the
    logits `(2, 2, 48, 48)`."""
    shape, logits = (2, 2, 48, 4), 2 * 2 * 48 * 48
    q, k, v = normal(*shape), normal(*shape), normal(*shape)
    with Recorder() as recorder:
        value_and_grads(fused, q, k, v, **options)
    assert max(*recorder.sizes, *recorder.saved) <= logits / 4

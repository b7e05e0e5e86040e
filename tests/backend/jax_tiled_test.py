"""The tiled JAX kernel (`_backend/_jax_tiled.py`) against the full path.

The kernel is called directly, with the arguments `ops.py` would give it,
and compared with `ops._full` on the same arguments: values within 1e-5,
gradients (`jax.grad`) within 1e-4. Tiles of 8 make short sequences span
several tiles, with lengths that are not tile multiples and causal and
window tiles skipped. Each case compiles the kernel once, at a small shape.
"""

import functools

import keras
import numpy as np
import pytest

from keras_attention import alibi_slopes
from tests.layer_test_case import RNG, jax_only, normal

if keras.backend.backend() != "jax":
    pytest.skip("needs the JAX backend", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from keras_attention import _attention_pattern as pattern  # noqa: E402
from keras_attention import ops as attention_ops  # noqa: E402
from keras_attention._backend import _jax_tiled  # noqa: E402

pytestmark = jax_only

TILES = (8, 8)
OPTIONS = dict(
    slopes=None,
    sinks=None,
    spec=pattern.Pattern(),
    data=pattern.NO_ROWS,
    query_start=0,
    dropout=0.0,
    seed=None,
)


def placed(q, k, options):
    """The kernels' options, `bottom_right=True` read as query 0 sitting at
    key position `k_len - q_len` (`query_start`); `causal` and
    `sliding_window=w` (keys `|i - j| < w`) gathered into `spec`."""
    options = dict(options)
    if options.pop("bottom_right", False):
        options["query_start"] = k.shape[-2] - q.shape[-2]
    static = {}
    if "causal" in options:
        static["causal"] = options.pop("causal")
    width = options.pop("sliding_window", None)
    if width is not None:
        static["window"] = (width - 1, width - 1)
    if static:
        options["spec"] = pattern.Pattern(**static)
    return options


def full(q, k, v, mask, **options):
    return attention_ops._full(q, k, v, mask, None, **placed(q, k, options))[0]


def tiled(q, k, v, mask, tiles=TILES, **options):
    return _jax_tiled.attention(q, k, v, mask, tiles=tiles, **placed(q, k, options))


def value_and_grads(attention, q, k, v, mask, options):
    """The output and the gradients of `sum(output * cotangent)`, compiled
    as one function; also its jaxpr and the compiled HLO text."""

    def loss(q, k, v):
        output = attention(q, k, v, mask, **options)
        cotangent = jnp.cos(jnp.arange(output.size, dtype="float32"))
        return jnp.sum(output * cotangent.reshape(output.shape)), output

    gradient = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)
    compiled = jax.jit(gradient).lower(q, k, v).compile()
    grads, output = compiled(q, k, v)
    values = [np.asarray(output), *(np.asarray(g) for g in grads)]
    return values, jax.make_jaxpr(gradient)(q, k, v).jaxpr, compiled.as_text()


def assert_same(got, expected):
    """Outputs within 1e-5, gradients within 1e-4."""
    np.testing.assert_allclose(got[0], expected[0], atol=1e-5)
    for g, e in zip(got[1:], expected[1:], strict=True):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=1e-4)


def with_empty_rows(shape, rows):
    mask = RNG.random(shape) > 0.3
    mask[..., rows, :] = False
    return mask


def inputs(q_shape, k_shape, value_depth=3):
    return (
        jnp.asarray(normal(*q_shape)),
        jnp.asarray(normal(*k_shape)),
        jnp.asarray(normal(*k_shape[:-1], value_depth)),
    )


# (query shape, key shape, mask, options); lengths are rarely tile multiples.
CASES = {
    "padding mask, ALiBi": (
        (2, 3, 21, 4),
        (2, 3, 27, 4),
        RNG.random((2, 1, 1, 27)) > 0.4,
        dict(slopes=alibi_slopes(3).reshape(3, 1, 1)),
    ),
    "full mask with empty rows, causal top-left, q_len < k_len": (
        (2, 3, 21, 4),
        (2, 3, 27, 4),
        with_empty_rows((2, 1, 21, 27), [0, 9, 20]),
        dict(causal=True),
    ),
    # Queries 0 to 22 sit before the first key: zero rows.
    "causal bottom-right window, q_len > k_len, ALiBi": (
        (2, 40, 4),
        (2, 17, 4),
        None,
        dict(
            causal=True,
            bottom_right=True,
            sliding_window=6,
            slopes=np.array([[[0.7]], [[0.05]]], "float32"),
        ),
    ),
    "window, q_len < k_len": ((2, 19, 4), (2, 37, 4), None, dict(sliding_window=5)),
    # As ops.py calls it: (batch, kv_heads, groups, len, depth) queries, keys
    # with a group axis of 1 whose gradients are summed over the group. Whole
    # tiles; the lengths exceed every other axis (see `quadratic_arrays`).
    "grouped-query, causal bottom-right, dropout, ALiBi, padding mask": (
        (2, 2, 3, 16, 4),
        (2, 2, 1, 24, 4),
        RNG.random((2, 1, 1, 1, 24)) > 0.3,
        dict(
            causal=True,
            bottom_right=True,
            dropout=0.25,
            seed=11,
            slopes=alibi_slopes(6).reshape(2, 3, 1, 1),
        ),
    ),
}
GROUPED = "grouped-query, causal bottom-right, dropout, ALiBi, padding mask"


@functools.cache
def case_results(case_id):
    """`value_and_grads` of the full and the tiled path, computed once."""
    q_shape, k_shape, mask, extra = CASES[case_id]
    options = dict(OPTIONS, **extra)
    if options["seed"] is not None:
        options["seed"] = jnp.int32(options["seed"])
    if options["slopes"] is not None:
        options["slopes"] = jnp.asarray(options["slopes"])
    mask = None if mask is None else jnp.asarray(mask)
    arguments = (*inputs(q_shape, k_shape), mask, options)
    return value_and_grads(full, *arguments), value_and_grads(tiled, *arguments)


@pytest.mark.parametrize("case_id", CASES.keys())
def test_tiled_equals_full_values_and_gradients(case_id):
    (expected, _, _), (got, _, _) = case_results(case_id)
    assert_same(got, expected)


def test_dropout_drops_the_same_weights_as_the_full_path():
    (expected, _, _), (got, _, _) = case_results(GROUPED)
    assert_same(got, expected)  # as above: the same pattern for the seed
    q_shape, k_shape, mask, extra = CASES[GROUPED]
    q, k, v = (np.asarray(x) for x in inputs(q_shape, k_shape))
    # Not a pattern that keeps everything: the outputs differ without it.
    options = dict(OPTIONS, **dict(extra, dropout=0.0, seed=None))
    options["slopes"] = jnp.asarray(options["slopes"])
    undropped = full(q, k, v, jnp.asarray(mask), **options)
    assert np.abs(got[0] - np.asarray(undropped)).max() > 0.1


def test_rows_that_see_nothing_are_zero_with_finite_gradients():
    for case_id, rows in (
        ("full mask with empty rows, causal top-left, q_len < k_len", [0, 9, 20]),
        ("causal bottom-right window, q_len > k_len, ALiBi", list(range(23))),
    ):
        _, (got, _, _) = case_results(case_id)
        output, *grads = got
        assert np.all(output[..., rows, :] == 0)
        assert np.all(np.any(np.delete(output, rows, axis=-2) != 0, axis=-2))
        for grad in grads:
            assert np.all(np.isfinite(grad))
        assert np.all(grads[0][..., rows, :] == 0)


def quadratic_arrays(jaxpr, q_len, k_len):
    """The shapes of the values of `jaxpr` (its nested jaxprs too) that have
    two axes at least `min(q_len, k_len)` long: a `(q_len, k_len)` block."""
    least = min(q_len, k_len)
    found = []
    stack = [jaxpr]
    while stack:
        jaxpr = stack.pop()
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                shape = getattr(var.aval, "shape", ())
                if sum(n >= least for n in shape) >= 2:
                    found.append(shape)
            for param in eqn.params.values():
                for sub in param if isinstance(param, tuple | list) else [param]:
                    sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                    if hasattr(sub, "eqns"):
                        stack.append(sub)
    return found


def test_no_quadratic_array_in_forward_or_backward():
    # Every option that adds work per tile; q_len 16, k_len 24.
    (_, full_jaxpr, _), (_, jaxpr, hlo) = case_results(GROUPED)
    assert quadratic_arrays(jaxpr, 16, 24) == []
    # The check sees the full path's (q_len, k_len) logits.
    assert (2, 2, 3, 16, 24) in quadratic_arrays(full_jaxpr, 16, 24)
    # Nor does XLA build one when it compiles the kernel.
    assert "16,24]" not in hlo and "24,16]" not in hlo


def test_compiled_once_per_shape_and_options():
    q, k, v = inputs((1, 2, 12, 4), (1, 2, 12, 4))
    options = dict(OPTIONS, dropout=0.5)
    before = _jax_tiled._tiled._cache_size()
    for seed in (1, 2, 3):
        mask = jnp.asarray(RNG.random((1, 1, 12)) > 0.5)
        tiled(q * seed, k, v, mask, **dict(options, seed=jnp.int32(seed)))
    assert _jax_tiled._tiled._cache_size() == before + 1


@pytest.mark.parametrize(
    "q_len, k_len, options",
    [
        (21, 37, dict(causal=True)),
        (37, 21, dict(causal=True, bottom_right=True)),
        (37, 30, dict(sliding_window=6)),
        (19, 40, dict(sliding_window=9, causal=True, bottom_right=True)),
        (40, 17, dict(sliding_window=4)),
    ],
)
def test_loops_visit_exactly_the_tiles_that_hold_an_attending_pair(
    q_len, k_len, options
):
    # Tiles above the causal diagonal or outside the window's band are never
    # visited: the kernel's map of tiles is exactly those that hold a pair.
    options = placed(np.zeros((q_len, 4)), np.zeros((k_len, 4)), {**OPTIONS, **options})
    config = _jax_tiled._Config(pattern=options["spec"], dropout=0.0, tiles=TILES)
    spec = _jax_tiled._Spec(
        np.zeros((q_len, 4)),
        np.zeros((k_len, 4)),
        np.zeros((k_len, 3)),
        None,
        None,
        None,
        pattern.NO_ROWS,
        options["query_start"],
        config,
    )
    rows = np.arange(q_len)[:, None] + spec.first
    cols = np.arange(k_len)[None, :]
    allowed = np.ones((q_len, k_len), bool)
    if config.pattern.causal:
        allowed &= cols <= rows
    if config.pattern.window:
        allowed &= np.abs(rows - cols) <= config.pattern.window[0]
    q_tile, k_tile = TILES
    blocks = np.zeros((spec.q_tiles, spec.k_tiles), bool)
    for i, j in zip(*np.nonzero(allowed), strict=True):
        blocks[i // q_tile, j // k_tile] = True
    np.testing.assert_array_equal(np.asarray(spec.visit), blocks)

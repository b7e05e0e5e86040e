"""The TensorFlow backend's pieces (see `keras_attention/_backend/__init__.py`):
the tiled kernel `attention` (in `_tf_tiled.py`), the full computation's
hand-written gradient outside XLA (`full`), the threshold of the tiles
outside XLA, the compiled decoding loop, and the position layers'
`static_value` and run-time `assert_that`.

Like every backend module of the package, it is imported only when its
backend runs.
"""

import tensorflow as tf

from keras_attention._backend._tf_tiled import attention, known_dims, swap_last

__all__ = [
    "assert_that",
    "attention",
    "compiled_loop",
    "fused",
    "full",
    "static_value",
    "tiled_from_logits",
]

# TensorFlow's fused attention is GPU-only; on CPU the tiles are the kernel.
fused = None


def full(forward, query, key, value, *, dropout):
    """The full computation's context with a hand-written gradient, outside
    XLA; None under XLA (there `ops.py` differentiates `forward` itself).

    `forward(query, key, value)` is `ops._full`: `(context, weights, keep)`.
    Its forward runs as it is; the backward is FlashAttention-2's formula on
    the whole matrix, from the weights the forward kept (Dao 2023, as
    `_backward` below does tile by tile): with `delta = rowsum(do * o)`,
    `ds = p * (dp - delta)`, `dq = ds · k`, `dk = dsᵀ · q`, `dv = aᵀ · do`
    (`a` the weights after dropout). TensorFlow's autodiff of the same
    forward goes through the softmax's gradient (more passes over the
    `(q_len, k_len)` weights) and computes `dk` and `dv` with matmuls that
    transpose the `(q_len, k_len)` operand, which TensorFlow runs slowly;
    here they transpose the thin one (`transposed_product`). The difference
    is in benchmarks/RESULTS.md ("Full or tiled", autodiff/full). Masked
    pairs and the rows of a query that may see no key have zero weights,
    hence zero gradients, as autodiff gives them.
    """
    if tf.__internal__.get_enclosing_xla_context() is not None:
        return None

    @tf.custom_gradient
    def attend(query, key, value):
        # Hidden from any gradient tape (see `attention`).
        inputs = [tf.stop_gradient(x) for x in (query, key, value)]
        context, weights, keep = forward(*inputs)

        def grad(d_context):
            return _full_backward(
                *inputs, context, weights, keep, tf.stop_gradient(d_context), dropout
            )

        return context, grad

    return attend(query, key, value)


def _full_backward(query, key, value, context, weights, keep, d_context, dropout):
    """The gradients of `full` (its docstring has the formulas)."""
    # A key and value shared by a group of query heads (`(..., 1, len, depth)`
    # against the query's `(..., group, len, depth)`, see `ops._split_heads`):
    # the group is folded into the rows of each product, so that the shared
    # tensors' gradients are summed over the group by the matmuls themselves,
    # never held once per query head.
    grouped = len(key.shape) > 3 and key.shape[-3] == 1 and query.shape[-3] != 1

    def rows(x):
        return (
            tf.reshape(x, [*known_dims(x)[:-3], -1, known_dims(x)[-1]])
            if grouped
            else x
        )

    def shared(x):
        return tf.squeeze(x, -3) if grouped else x

    def like(x, target):
        return tf.reshape(x, known_dims(target)) if grouped else x

    delta = tf.reduce_sum(d_context * context, -1, keepdims=True)
    d_attended = like(
        tf.matmul(rows(d_context), shared(value), transpose_b=True), weights
    )
    if keep is None:
        attended, d_weights = weights, d_attended
    else:
        scale = 1.0 / (1.0 - dropout)
        attended = tf.where(keep, weights * scale, 0.0)
        d_weights = tf.where(keep, d_attended * scale, 0.0)
    d_logits = weights * (d_weights - delta)
    d_logits_rows = rows(d_logits)

    def transposed_product(small, large):
        # `largeᵀ · small` as `(smallᵀ · large)ᵀ`: TensorFlow's matmul
        # transposing the `(q_len, k_len)` operand runs about 3x slower (B=1
        # T=4096, 8 heads of 32) than one transposing the thin operand, whose
        # result is thin too.
        return swap_last(tf.matmul(rows(small), rows(large), transpose_a=True))

    return (
        like(tf.matmul(d_logits_rows, shared(key)), query),
        like(transposed_product(query, d_logits), key),
        like(transposed_product(d_context, attended), value),
    )


# Outside XLA (eagerly, `tf.function` without `jit_compile`), `tile_size=None`
# runs the full computation below this many logits per call (batch entries ·
# q_len · k_len), not below `ops.TILED_FROM_LOGITS`, when the tiles would
# visit every tile (neither causal nor a sliding window): there TensorFlow's own
# kernels (oneDNN matmuls, one fused softmax) run it faster than the tiles,
# whose backward computes the logits a second time: forward+backward, head_dim
# 32, 8 heads, 1.4x less CPU time at 2**27 logits (B=1 T=4096) and 1.3x at
# B=8 T=512 (side by side under load: indicative; quiet figures by
# benchmarks/threshold.py). It holds about three `(q_len, k_len)` float32
# tensors for the backward, as `keras.layers.MultiHeadAttention` does (1.6 GiB
# at 2**27 logits); longer calls, from T=8192 at B=1 with 8 heads, keep linear
# memory. Under XLA the tiles are the faster (1.5x at 2**27 logits, 1.6x at
# B=8 T=512), so the threshold stays `ops.TILED_FROM_LOGITS` there, as it
# does for causal attention and windows, whose tiles skip work (causal
# forward+backward at B=1 T=4096: 1.9x Keras' layer in tiles, about 1.0x in
# full: 2026-12-01's quiet run, benchmarks/evidence/history.md, and a run
# under load).
# On a slower machine (2026-12-06, matmul 85-140 GFLOP/s against 207-217,
# large new tensors slow to fill) the tiles were the faster outside XLA too,
# from 2**22 logits (benchmarks/RESULTS.md, "Full or tiled"): the faster path
# depends on the machine; this threshold follows the faster machine's table.
OUTSIDE_XLA_TILED_FROM_LOGITS = 1 << 28


def tiled_from_logits(default, *, every_tile):
    """`OUTSIDE_XLA_TILED_FROM_LOGITS` when the tiles would visit
    `every_tile` and XLA does not compile the function being traced, else
    `default` (`ops.TILED_FROM_LOGITS`)."""
    if not every_tile or tf.__internal__.get_enclosing_xla_context() is not None:
        return default
    return OUTSIDE_XLA_TILED_FROM_LOGITS


def compiled_loop(function, owner, key):
    """`function` as one XLA-compiled `tf.function`, reused for the same
    `owner` and hashable `key` while the owner's variables are the same ones:
    a `tf.function` reads the variables' values when it runs, so later calls
    with other weights reuse the compilation, while LoRA or quantization,
    which add or replace variables and change the call path, trace anew.

    The table lives on the owner itself (not tracked by Keras), so the
    compiled loops, which refer to the owner's layers, die with it."""
    loops = vars(owner).get(_TABLE)
    if loops is None:
        loops = {}
        object.__setattr__(owner, _TABLE, loops)
    key = (key, tuple(variable.path for variable in owner.variables))
    if key not in loops:
        loops[key] = tf.function(function, jit_compile=True)
    return loops[key]


_TABLE = "_keras_attention_compiled_loops"


def static_value(x):
    """The value of `x` as a NumPy array when known now (eagerly, or a
    constant in a graph), else None."""
    return tf.get_static_value(x)


def assert_that(check, template, guarded):
    """Returns `guarded`, made to depend on a run-time check.

    `check()` gives `(condition, values)`. When `condition` is False at run
    time, TensorFlow raises `InvalidArgumentError` with `template`, whose
    `{}` stand for `values` in order. TensorFlow prints every piece of text
    and every value in brackets, so the text next to a value is trimmed to
    read as its label: `... length = {} exceeds ... Received: start_index={},
    length=3` prints as `assertion failed: [... length] [12] [exceeds ...
    Received: start_index] [9] [length=3]`. The message is not formatted
    with `tf.strings.format`, because XLA cannot compile string ops; XLA
    drops the check instead (see the layers' docstrings).
    """
    condition, values = check()
    pieces = template.split("{}")
    data = []
    for index, piece in enumerate(pieces):
        if index > 0:  # after a value
            piece = piece.lstrip(" ,")
        if index < len(values):  # before a value
            piece = piece.rstrip(" =")
        if piece:
            data.append(piece)
        if index < len(values):
            data.append(values[index])
    assertion = tf.debugging.Assert(condition, data)
    with tf.control_dependencies([assertion]):
        return tf.identity(guarded)

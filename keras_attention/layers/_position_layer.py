"""What `SinusoidalPositionEncoding` and `LearnedPositionEmbedding` share.

Both add an encoding of the positions to inputs `(batch, ..., seq_len,
dim)`, pass the Keras mask through, and check the positions as early as
their values are known. The positions are `start_index, ..., start_index +
seq_len - 1`, or given explicitly (`positions`, `(seq_len,)` or `(batch,
seq_len)`); either way they must lie in `[0, max_length)` (in `[0, 2**31)`,
as they are int32, on a layer without `max_length`):

- a Python int, a NumPy integer, or a tensor whose value is known now (eager
  execution, a constant): checked when the layer is called or traced, and a
  static sequence length with it (always the case under XLA and JAX);
- a tensor traced by `tf.function`: checked when the graph runs, with a
  TensorFlow assertion carrying the same message;
- a tensor traced by `jax.jit` or compiled by XLA (`jit_compile=True`),
  where assertions cannot run: an out-of-range position gets a NaN encoding,
  never a clamped, wrapped or zero one.

Not checked, on a layer without `max_length`: a known `start_index` less
than a run-time length below 2**31; the positions past 2**31 wrap.

`check_positions` (the type and shape of `positions`) and
`static_start_index` also serve `RotaryEmbedding`.
"""

import keras
import numpy as np
from keras import ops

from keras_attention import _backend
from keras_attention import _checks as checks

# The positions are int32: `start_index + seq_len` may not exceed this.
INT32_POSITIONS = 2**31
INPUTS_EXPECTED = "a floating-point tensor (vectors, such as the output of `Embedding`)"


class PositionLayer(keras.layers.Layer):
    """Base of the position layers (private; not exported).

    Subclasses implement `_encode(positions, dim)`, returning the
    `(*positions.shape, dim)` encoding of int32 `positions` (of any shape),
    and may override `_max_length` and extend `_check_input_shape`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _max_length(self):
        """The number of positions the layer can encode, or None."""
        return None

    def __call__(self, *args, **kwargs):
        # Keras converts NumPy arguments to tensors before `call` and fails
        # on strings with a backend's error ("could not convert string to
        # float" on JAX): check them first.
        owner = type(self).__name__
        inputs = args[0] if args else kwargs.get("inputs")
        checks.not_strings(inputs, "inputs", owner, INPUTS_EXPECTED)
        positions = kwargs.get("positions")
        checks.not_strings(positions, "positions", owner, "an integer tensor")
        return super().__call__(*args, **kwargs)

    def call(self, inputs, start_index=0, positions=None):
        shape = self._check_inputs(inputs)
        positions, valid = self._positions(inputs, start_index, positions)
        # (seq_len, dim), or (batch, seq_len, dim) for positions per row.
        encoding = self._encode(positions, shape[-1])
        if valid is not None:
            encoding = ops.where(ops.expand_dims(valid, -1), encoding, float("nan"))
        if len(positions.shape) == 2:
            for _ in range(len(shape) - 3):
                encoding = ops.expand_dims(encoding, 1)  # (batch, 1, seq_len, dim)
        # Add in float32 (or wider), so the output is rounded once.
        wide = keras.backend.result_type(self.compute_dtype, "float32")
        outputs = ops.cast(inputs, wide) + ops.cast(encoding, wide)
        return ops.cast(outputs, self.compute_dtype)

    def _positions(self, inputs, start_index, positions):
        """Returns `(positions, valid)`.

        `positions` is int32: the given `positions`, or the `(seq_len,)`
        range from `start_index`. `valid` is None when the positions were
        checked now (a ValueError was raised if they do not fit), else a
        boolean tensor of their shape, False at positions out of range.
        """
        owner = type(self).__name__
        max_length = self._max_length()
        start = self._check_arguments(tuple(inputs.shape), start_index, positions)
        if positions is not None:
            return checked_positions(positions, max_length, owner)

        length = ops.shape(inputs)[-2]
        positions = ops.arange(length, dtype="int32") + ops.cast(start_index, "int32")
        if start is not None and (isinstance(length, int) or max_length is None):
            return positions, None

        valid = ops.greater_equal(positions, 0)
        if max_length is not None:
            valid = ops.logical_and(valid, ops.less(positions, max_length))
        positions = _assert_fits(
            owner, start_index, start, length, max_length, positions
        )
        return positions, valid

    def _check_arguments(self, shape, start_index, positions):
        """Checks `start_index` and `positions` (but not the values of
        `positions`) for inputs of static `shape`, and the fit of a known
        `start_index` and length. Returns `start_index` as an int, or None
        when it is a tensor whose value is only known when the graph runs."""
        owner = type(self).__name__
        start = static_start_index(start_index, owner)
        if positions is not None:
            check_positions(positions, start, shape[0], shape[-2], owner)
        elif start is not None and shape[-2] is not None:
            check_fits(owner, start, shape[-2], self._max_length())
        return start

    def _check_inputs(self, inputs):
        owner = type(self).__name__
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if "float" not in dtype:
            raise TypeError(
                f"{owner}: `inputs` must be {INPUTS_EXPECTED}. "
                f"Received: inputs with dtype {dtype}"
            )
        return self._check_input_shape(inputs.shape)

    def _check_input_shape(self, shape):
        """Raises unless `shape` is `(batch, ..., seq_len, dim)` with a known
        `dim`. Returns it as a tuple."""
        owner = type(self).__name__
        shape = tuple(shape)
        if len(shape) < 3:
            raise ValueError(
                f"{owner}: `inputs` must have rank >= 3, (batch, ..., seq_len, "
                f"dim). Received: inputs.shape={shape}"
            )
        if shape[-1] is None:
            raise ValueError(
                f"{owner}: the last dimension of `inputs` must be known. "
                f"Received: inputs.shape={shape}"
            )
        return shape

    def compute_output_shape(self, input_shape):
        return self._check_input_shape(input_shape)

    def compute_output_spec(self, inputs, start_index=0, positions=None):
        shape = self._check_inputs(inputs)
        self._check_arguments(shape, start_index, positions)
        if positions is not None:
            check_known_positions(positions, self._max_length(), type(self).__name__)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)


def _assert_fits(owner, start_index, start, length, max_length, positions):
    """Returns `positions`, guarded by run-time checks (where the backend
    has them, see `_backend.assert_that`) of a `start_index` traced by
    `tf.function` (`start` is None) or of a run-time `length` (not an int)."""
    backend = _backend.current()
    if start is None:
        positions = backend.assert_that(
            lambda: (ops.greater_equal(start_index, 0), [start_index]),
            negative_start_message(owner, "{}"),
            positions,
        )
    limit, limit_text = _limit(max_length)
    # Values known now are written into the message, the others filled in
    # when the check fails.
    shown_start = "{}" if start is None else start
    shown_length = length if isinstance(length, int) else "{}"

    def check():
        # In int64, so that the sum cannot wrap; a negative start is
        # reported above, not here as well.
        start_64 = ops.cast(start_index, "int64")
        end = start_64 + ops.cast(length, "int64")
        values = [end]
        if start is None:
            values.append(start_index)
        if not isinstance(length, int):
            values.append(length)
        condition = ops.logical_or(ops.less(start_64, 0), ops.less_equal(end, limit))
        return condition, values

    return backend.assert_that(
        check,
        fit_message(owner, "{}", shown_start, shown_length, limit_text),
        positions,
    )


def _limit(max_length):
    """`(limit, text)`: the largest `start_index + seq_len`, and its name in
    the messages."""
    if max_length is not None and max_length <= INT32_POSITIONS:
        return max_length, f"`max_length` = {max_length}"
    return INT32_POSITIONS, f"2**31 = {INT32_POSITIONS} (positions are int32)"


def negative_start_message(owner, start):
    return f"{owner}: `start_index` must be >= 0. Received: start_index={start}"


def fit_message(owner, end, start, length, limit_text):
    return (
        f"{owner}: the positions do not fit: `start_index` + length = {end} "
        f"exceeds {limit_text}. Received: start_index={start}, length={length}"
    )


def check_fits(owner, start, length, max_length):
    limit, limit_text = _limit(max_length)
    if start + length > limit:
        raise ValueError(fit_message(owner, start + length, start, length, limit_text))


def check_positions(positions, start, batch, length, owner):
    """Raises unless `positions` is an integer tensor or array `(length,)`
    or `(batch, length)` (a None size matches any), given with a
    `start_index` of 0 (`start`, from `static_start_index`)."""
    shape = checks.tensor(positions, "positions", owner)
    dtype = keras.backend.standardize_dtype(positions.dtype)
    if "int" not in dtype:
        raise TypeError(
            f"{owner}: `positions` must be an integer tensor. "
            f"Received: positions with dtype {dtype}"
        )
    expected = [(length,), (batch, length)]
    if not any(
        len(shape) == len(e)
        and all(a is None or b is None or a == b for a, b in zip(shape, e, strict=True))
        for e in expected
    ):
        raise ValueError(
            f"{owner}: `positions` must have shape (seq_len,)={expected[0]} or "
            f"(batch, seq_len)={expected[1]}. Received: positions.shape={shape}"
        )
    if start != 0:
        shown = "a tensor" if start is None else start
        raise ValueError(
            f"{owner}: pass `positions` or `start_index`, not both. "
            f"Received: start_index={shown} and positions"
        )


def checked_positions(positions, max_length, owner):
    """Returns `(positions, valid)` for integer `positions` of any shape.

    `positions` comes back as int32. `valid` is None when their values are
    known now (checked: a ValueError if one is out of range), else a boolean
    tensor of their shape, False where out of range; TensorFlow then also
    checks them when the graph runs (see `_backend.assert_that`).
    """
    if check_known_positions(positions, max_length, owner):
        return ops.cast(positions, "int32"), None
    limit, _ = _limit(max_length)
    valid = ops.greater_equal(positions, 0)
    dtype = keras.backend.standardize_dtype(positions.dtype)
    if limit < INT32_POSITIONS or dtype in ("int64", "uint32", "uint64"):
        valid = ops.logical_and(valid, ops.less(positions, limit))
    unchecked = positions
    positions = _backend.current().assert_that(
        lambda: (ops.all(valid), [ops.min(unchecked), ops.max(unchecked)]),
        out_of_range_message(owner, max_length, "{}", "{}"),
        positions,
    )
    return ops.cast(positions, "int32"), valid


def check_known_positions(positions, max_length, owner):
    """Raises a ValueError if the values of `positions` are known now and
    one is out of range; returns whether they were known."""
    known = static_value(positions)
    if known is None:
        return False
    limit, _ = _limit(max_length)
    if known.size and (known.min() < 0 or known.max() >= limit):
        raise ValueError(
            out_of_range_message(owner, max_length, known.min(), known.max())
        )
    return True


def out_of_range_message(owner, max_length, low, high):
    if max_length is not None and max_length <= INT32_POSITIONS:
        allowed = f"[0, `max_length`={max_length})"
    else:
        allowed = "[0, 2**31) (positions are int32)"
    return (
        f"{owner}: `positions` must be in {allowed}. "
        f"Received: positions from {low} to {high}"
    )


def static_start_index(start_index, owner):
    """Checks `start_index`; returns its value as an int, or None when it is
    a tensor whose value is only known when the graph runs."""
    if isinstance(start_index, (int, np.integer)) and not isinstance(start_index, bool):
        value = int(start_index)
    elif hasattr(start_index, "shape") and hasattr(start_index, "dtype"):
        dtype = keras.backend.standardize_dtype(start_index.dtype)
        if "int" not in dtype:
            raise TypeError(
                f"{owner}: `start_index` must be an int or a scalar integer "
                f"tensor. Received: start_index with dtype {dtype}"
            )
        if tuple(start_index.shape) != ():
            raise ValueError(
                f"{owner}: `start_index` must be a scalar. "
                f"Received: start_index.shape={tuple(start_index.shape)}"
            )
        value = static_value(start_index)
        value = None if value is None else int(value)
    else:
        raise TypeError(
            f"{owner}: `start_index` must be an int or a scalar integer tensor. "
            f"Received: start_index={start_index!r} of type "
            f"{type(start_index).__name__}"
        )
    if value is not None and value < 0:
        raise ValueError(negative_start_message(owner, value))
    if value is not None and value >= INT32_POSITIONS:
        raise ValueError(
            f"{owner}: `start_index` must be < 2**31 = {INT32_POSITIONS} "
            f"(positions are int32). Received: start_index={value}"
        )
    return value


def static_value(x):
    """The value of tensor `x` as a NumPy array when it is known now, else
    None (a symbolic tensor, or one traced by `tf.function` or `jax.jit`)."""
    if keras.utils.is_keras_tensor(x):
        return None
    return _backend.current().static_value(x)

"""Checks of constructor, function and call arguments shared by several owners.

Each takes the value and the name of its owner (a layer or function), and
raises a `ValueError`, or a `TypeError` for a value of the wrong type, that
names the argument, says what was expected and shows what was received.
"""

import math

import keras
import numpy as np


def _is_number(value):
    """A Python or NumPy real number, not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, (bool, np.bool_))
    )


def is_integer(value):
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_scalar_bool_tensor(value):
    return (
        hasattr(value, "dtype")
        and tuple(getattr(value, "shape", (None,))) == ()
        and keras.backend.standardize_dtype(value.dtype) == "bool"
    )


def number_type(value, argument, owner, expected):
    """Raises a `TypeError` unless `value` is a Python or NumPy real number
    (not a bool); `expected` ends the message "`argument` must be ...", as
    in the `ValueError` of the caller's range check that follows."""
    if not _is_number(value):
        raise TypeError(
            f"{owner}: `{argument}` must be {expected}. "
            f"Received: {argument}={value!r} of type {type(value).__name__}"
        )


def positive_int(value, argument, owner, allow_none=False):
    """Returns `value` as a Python int (NumPy integers are accepted), or None.

    A value that is not a number is a `TypeError`; a number that is not a
    positive whole number (`0`, `-2`, `1.5`) a `ValueError`, as in Keras.
    """
    if value is None and allow_none:
        return None
    expected = "None or a positive integer" if allow_none else "a positive integer"
    number_type(value, argument, owner, expected)
    if not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(
            f"{owner}: `{argument}` must be {expected}. Received: {argument}={value!r}"
        )
    return int(value)


TILE_SIZE_EXPECTED = "None, 0 (the full computation) or a positive integer"


def tile_size(value, owner):
    """`tile_size`: None (choose), 0 (the full computation) or a positive
    int, returned as a Python int (NumPy integers accepted) or None."""
    if value is None:
        return None
    number_type(value, "tile_size", owner, TILE_SIZE_EXPECTED)
    if not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            f"{owner}: `tile_size` must be {TILE_SIZE_EXPECTED}. "
            f"Received: tile_size={value!r}"
        )
    return int(value)


def boolean(value, argument, owner, allow_none=False):
    """Returns `value` as a Python bool.

    Accepts what Keras reads as a flag: a Python or NumPy bool, or the
    integers 0 and 1 (and None, read as False, where `allow_none`).
    """
    if value is None and allow_none:
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if _is_scalar_bool_tensor(value):
        # Keras turns a NumPy bool call argument into a tensor; its value is
        # known eagerly (in a traced function it is not, and is refused).
        try:
            return bool(value)
        except Exception:
            pass
    expected = "a bool (or None)" if allow_none else "a bool"
    raise TypeError(
        f"{owner}: `{argument}` must be {expected}. Received: {argument}={value!r}"
    )


def dropout(value, owner):
    """Returns `value` as a Python float."""
    expected = "a number in [0, 1)"
    number_type(value, "dropout", owner, expected)
    if not 0 <= value < 1:
        raise ValueError(
            f"{owner}: `dropout` must be {expected}. Received: dropout={value!r}"
        )
    return float(value)


def scale(value, owner):
    """Returns `value` as a Python float, or None."""
    if value is None:
        return None
    expected = "None or a positive finite number"
    number_type(value, "scale", owner, expected)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{owner}: `scale` must be {expected}. Received: scale={value!r}"
        )
    return float(value)


def seed(value, owner):
    """Returns `value` with a NumPy integer as a Python int."""
    if value is not None and (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer, keras.random.SeedGenerator))
    ):
        raise TypeError(
            f"{owner}: `seed` must be None, an int or a "
            f"keras.random.SeedGenerator. Received: seed={value!r}"
        )
    return int(value) if isinstance(value, np.integer) else value


def layer_seed(value, owner):
    """A layer's `seed`: None or an int (NumPy integers as Python ints)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{owner}: `seed` must be None or an int. "
            f"Received: seed={value!r} of type {type(value).__name__}"
        )
    return int(value)


def positive_number(value, argument, owner):
    """Returns `value` as a Python float."""
    expected = "a positive finite number"
    number_type(value, argument, owner, expected)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"{owner}: `{argument}` must be {expected}. Received: {argument}={value!r}"
        )
    return float(value)


def keras_identifier(get, value, argument, owner, kind):
    """Returns `get(value)` (`keras.activations.get`, `keras.initializers.get`)
    or raises an error naming `argument` instead of Keras' bare one."""
    if not (value is None or isinstance(value, (str, dict)) or callable(value)):
        raise TypeError(
            f"{owner}: `{argument}` must be the name, config or instance of a "
            f"Keras {kind}. Received: {argument}={value!r} of type "
            f"{type(value).__name__}"
        )
    try:
        return get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{owner}: `{argument}` must be the name, config or instance of a "
            f"Keras {kind}. Received: {argument}={value!r}"
        ) from error


def tensor(value, argument, owner):
    """Raises unless `value` is a tensor or array; returns its static shape."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(
            f"{owner}: `{argument}` must be a tensor or array. "
            f"Received: {argument} of type {type(value).__name__}"
        )
    return tuple(value.shape)


def not_strings(value, argument, owner, expected="a floating-point tensor"):
    """Raises a TypeError for a NumPy array of strings or bytes.

    Keras' `Layer.__call__` converts NumPy inputs to tensors before a
    layer's `call` runs, and on strings fails with a backend's own error
    ("could not convert string to float" on JAX). A layer's `__call__` runs
    this check on its tensor arguments before `super().__call__`. `expected`
    ends "`{argument}` must be ..." as in the layer's dtype check in `call`.
    """
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "US":
        raise TypeError(
            f"{owner}: `{argument}` must be {expected}. "
            f"Received: {argument} with dtype {dtype.name}"
        )


def floating(value, argument, owner):
    """Raises unless `value` is a floating-point tensor; returns its shape."""
    shape = tensor(value, argument, owner)
    dtype = keras.backend.standardize_dtype(value.dtype)
    if "float" not in dtype:
        raise TypeError(
            f"{owner}: `{argument}` must be a floating-point tensor. "
            f"Received: {argument} with dtype {dtype}"
        )
    return shape


def mask(value, argument, owner, axes, expected_shape, meaning):
    """Checks a boolean or integer mask of the layers' call arguments.

    `axes` names the expected axes, e.g. `"(batch, q_len, k_len)"`, and
    `expected_shape` gives them (None where unknown); a mask must have as
    many axes, each equal to the expected one or 1. `meaning` says what a
    non-zero entry means. A float mask is refused: additive masks (0 to keep)
    and multiplicative ones (1 to keep) are easy to confuse.
    """
    if value is None:
        return
    shape = tensor(value, argument, owner)
    dtype = keras.backend.standardize_dtype(value.dtype)
    if dtype != "bool" and "int" not in dtype:
        raise TypeError(
            f"{owner}: `{argument}` must be boolean or integer, {meaning} "
            f"(Keras' convention). Received: {argument} with dtype {dtype}"
        )
    if len(shape) != len(expected_shape) or any(
        not (m is None or e is None or m == 1 or m == e)
        for m, e in zip(shape, expected_shape, strict=False)
    ):
        raise ValueError(
            f"{owner}: `{argument}` must have shape {axes}={tuple(expected_shape)} "
            f"or broadcast to it. Received: {argument}.shape={shape}"
        )


WINDOW_EXPECTED = (
    "None, a positive integer w (keys |i - j| < w) or a pair (left, right) "
    "of integers >= 0 (keys i - left <= j <= i + right)"
)


def window(value, argument, owner):
    """`sliding_window`: None, a positive int `w` or a pair `(left, right)`
    of ints >= 0; returned as None or the pair `(left, right)` of Python
    ints (`w` is `(w - 1, w - 1)`)."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(is_integer(side) and side >= 0 for side in value):
            return int(value[0]), int(value[1])
        raise ValueError(
            f"{owner}: `{argument}` must be {WINDOW_EXPECTED}. "
            f"Received: {argument}={value!r}"
        )
    number_type(value, argument, owner, WINDOW_EXPECTED)
    if not is_integer(value) or value <= 0:
        raise ValueError(
            f"{owner}: `{argument}` must be {WINDOW_EXPECTED}. "
            f"Received: {argument}={value!r}"
        )
    return int(value) - 1, int(value) - 1


def window_config(sides):
    """A window pair as a layer's `get_config` saves it: the int `w` where
    both sides are `w - 1` (as Keras saves `sliding_window`), else a list."""
    if sides is None:
        return None
    left, right = sides
    return left + 1 if left == right else [left, right]


def count(value, argument, owner):
    """An int >= 0 (NumPy integers accepted) or None, as a Python int or
    None (0 reads as None: no positions)."""
    if value is None:
        return None
    number_type(value, argument, owner, "None or an integer >= 0")
    if not is_integer(value) or value < 0:
        raise ValueError(
            f"{owner}: `{argument}` must be None or an integer >= 0. "
            f"Received: {argument}={value!r}"
        )
    return int(value) or None

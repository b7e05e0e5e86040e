"""Checks of constructor and function arguments shared by several owners.

Each takes the value and the name of its owner (a layer or function), and
raises a `ValueError` or `TypeError` that names the argument, says what was
expected and shows what was received.
"""

import math

import keras


def positive_int(value, argument, owner, allow_none=False):
    if value is None and allow_none:
        return
    expected = "None or a positive integer" if allow_none else "a positive integer"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{owner}: `{argument}` must be {expected}. "
            f"Received: {argument}={value!r} of type {type(value).__name__}"
        )
    if value <= 0:
        raise ValueError(
            f"{owner}: `{argument}` must be {expected}. Received: {argument}={value!r}"
        )


def boolean(value, argument, owner):
    if not isinstance(value, bool):
        raise TypeError(
            f"{owner}: `{argument}` must be a bool. Received: {argument}={value!r}"
        )


def dropout(value, owner):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"{owner}: `dropout` must be a number in [0, 1). "
            f"Received: dropout={value!r}"
        )


def scale(value, owner):
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"{owner}: `scale` must be None or a positive finite number. "
            f"Received: scale={value!r}"
        )


def seed(value, owner):
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, keras.random.SeedGenerator))
    ):
        raise TypeError(
            f"{owner}: `seed` must be None, an int or a "
            f"keras.random.SeedGenerator. Received: seed={value!r}"
        )

"""TensorFlow-only pieces of the position layers' checks.

Imported only when `keras.backend.backend() == "tensorflow"`.
"""

import tensorflow as tf


def static_value(x):
    """The value of `x` as a NumPy array when known now (eagerly, or a
    constant in a graph), else None."""
    return tf.get_static_value(x)


def assert_that(condition, template, values, guarded):
    """Returns `guarded`, made to depend on a run-time check of `condition`.

    When the check fails, TensorFlow raises `InvalidArgumentError` with
    `template`, whose `{}` stand for `values` in order. TensorFlow prints
    every piece of text and every value in brackets, so the text next to a
    value is trimmed to read as its label: `... length = {} exceeds ...
    Received: start_index={}, length=3` prints as
    `assertion failed: [... length] [12] [exceeds ... Received: start_index]
    [9] [length=3]`. The message is not formatted with `tf.strings.format`,
    because XLA cannot compile string ops; XLA drops the check instead (see
    the layers' docstrings).
    """
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
    check = tf.debugging.Assert(condition, data)
    with tf.control_dependencies([check]):
        return tf.identity(guarded)

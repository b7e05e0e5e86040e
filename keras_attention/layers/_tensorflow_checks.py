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
    `template`, whose `{}` are filled with `values` in order; TensorFlow
    prints each piece and value in brackets:
    `assertion failed: [... (length ] [600] [, start_index ] [3] [) ...]`.
    The message is not formatted with `tf.strings.format`, because XLA cannot
    compile string ops; XLA drops the check instead (see the layers'
    docstrings).
    """
    pieces = template.split("{}")
    data = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        data += [value, piece]
    check = tf.debugging.Assert(condition, [d for d in data if not _empty(d)])
    with tf.control_dependencies([check]):
        return tf.identity(guarded)


def _empty(piece):
    return isinstance(piece, str) and not piece

"""The fixed sinusoidal position encoding of Vaswani et al. (2017).

    PE[pos, 2i]     = sin(pos / max_wavelength^(2i / depth))
    PE[pos, 2i + 1] = cos(pos / max_wavelength^(2i / depth))

`_sinusoids` is the only place the formula lives; the layer and
`sinusoidal_table` both call it.
"""

import keras
from keras import ops

from keras_attention import _checks as checks
from keras_attention.layers._position_layer import PositionLayer


def _sinusoids(positions, depth, max_wavelength):
    """The encoding of float32 `positions` `(n,)`: float32 `(n, depth)`.

    Sines and cosines interleaved; for an odd `depth` the last column is a
    sine. Everything runs in float32.
    """
    half = (depth + 1) // 2
    exponents = ops.arange(0, 2 * half, 2, dtype="float32") / depth  # 2i / depth
    frequencies = ops.power(ops.cast(max_wavelength, "float32"), -exponents)
    angles = ops.expand_dims(positions, -1) * frequencies  # (n, half)
    pairs = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)  # (n, half, 2)
    return ops.reshape(pairs, (-1, 2 * half))[:, :depth]  # (n, depth)


def sinusoidal_table(length: int, depth: int, max_wavelength: float = 10000):
    """The sinusoidal encodings of positions `0 .. length - 1`.

    The same values `SinusoidalPositionEncoding` adds, as a table to index
    with explicit positions (`table[[0, 1, 2]]`, or `keras.ops.take`).

    Args:
        length: number of positions, a positive int.
        depth: size of each encoding, a positive int (odd is fine).
        max_wavelength: positive number, the longest wavelength.

    Returns:
        A float32 tensor `(length, depth)` with
        `[pos, 2i] = sin(pos / max_wavelength^(2i / depth))` and
        `[pos, 2i + 1] = cos(pos / max_wavelength^(2i / depth))`.

    Example:

    >>> table = keras_attention.sinusoidal_table(16, 10)
    >>> tuple(keras.ops.take(table, [0, 1, 2], axis=0).shape)
    (3, 10)
    """
    checks.positive_int(length, "length", "sinusoidal_table")
    checks.positive_int(depth, "depth", "sinusoidal_table")
    checks.positive_number(max_wavelength, "max_wavelength", "sinusoidal_table")
    return _sinusoids(ops.arange(length, dtype="float32"), depth, max_wavelength)


@keras.saving.register_keras_serializable(package="keras_attention")
class SinusoidalPositionEncoding(PositionLayer):
    """Adds the fixed sinusoidal position encoding to its inputs. No weights.

    Returns `inputs + PE`, where for the position `pos` of each step along
    axis -2 and `i` in `0 .. dim // 2`:
    `PE[pos, 2i] = sin(pos / max_wavelength^(2i / dim))` and
    `PE[pos, 2i + 1] = cos(pos / max_wavelength^(2i / dim))` (sines and
    cosines interleaved; an odd `dim` ends with a sine). The positions are
    `start_index, ..., start_index + seq_len - 1`, so a sequence encoded one
    step at a time with `start_index=t` gets what it gets encoded whole; or
    they are given, one per step (`positions`), the same for every row or
    per row (decoding rows at different positions).

    Precision: the angles are computed in float32 whatever the compute dtype,
    the sum `inputs + PE` too, and the result is cast to the compute dtype
    once. So under `mixed_bfloat16` the output is right to its bfloat16
    rounding at positions up to 4096 and beyond, whereas positions computed
    in bfloat16 (8 significant bits) are already wrong above 256. The float32
    encoding is within 4e-4 of the exact one at positions up to 4096 (depths
    up to 512), within 2e-3 up to 20000.

    The Keras mask (from `Embedding(mask_zero=True)` or `Masking`) passes
    through unchanged. The sequence length may be known only at run time.

    Args:
        max_wavelength: positive number, the longest wavelength.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, ..., seq_len, dim)`, rank >= 3, `dim`
            known.
        start_index: position of the first step, an int or a scalar integer
            tensor >= 0; defaults to 0. The positions are int32:
            `start_index + seq_len` may not exceed 2**31.
        positions: optional integer tensor `(seq_len,)` (for every row) or
            `(batch, seq_len)` (per row; broadcast over the axes between
            batch and seq_len), the position of each step, each in
            `[0, 2**31)`, instead of `start_index` (which must then stay 0).
            `layer(x, positions=p)` adds the encoding of `p[..., t]` at step
            `t`.

        A `start_index` or `positions` out of range raises a `ValueError`
        when its value is known at call or trace time; a tensor traced by
        `tf.function` is checked when the graph runs (`InvalidArgumentError`,
        same message). Under `jax.jit` and XLA (`jit_compile=True`) a traced
        tensor cannot be checked: the positions out of range give NaN
        outputs.

    Returns:
        `inputs + PE`, same shape as `inputs`, in the compute dtype.

    Example:

    >>> model = keras.Sequential([keras.Input((None,), dtype="int32")])
    >>> model.add(keras.layers.Embedding(100, 16, mask_zero=True))
    >>> model.add(keras_attention.SinusoidalPositionEncoding())
    >>> tuple(model.output_shape)
    (None, None, 16)

    References:
        Vaswani et al., "Attention Is All You Need", 2017, section 3.5.
    """

    def __init__(self, max_wavelength: float = 10000, **kwargs):
        checks.positive_number(max_wavelength, "max_wavelength", type(self).__name__)
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def _encode(self, positions, dim):
        flat = ops.cast(ops.reshape(positions, (-1,)), "float32")
        encoding = _sinusoids(flat, dim, self.max_wavelength)  # (n, dim)
        return ops.reshape(encoding, (*ops.shape(positions), dim))

    def get_config(self):
        config = super().get_config()
        config.update(max_wavelength=self.max_wavelength)
        return config

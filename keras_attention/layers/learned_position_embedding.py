import keras
from keras import ops

from keras_attention import _checks as checks
from keras_attention.layers._position_layer import PositionLayer, checked_positions


@keras.saving.register_keras_serializable(package="keras_attention")
class LearnedPositionEmbedding(PositionLayer):
    """Adds a trainable embedding of each position to its inputs.

    Holds one trainable table `(max_length, dim)`, created in `build` from
    the inputs' last dimension, and returns
    `inputs + table[start_index : start_index + seq_len]`, the positions
    running along axis -2. A sequence encoded one step at a time with
    `start_index=t` gets what it gets encoded whole. With explicit
    `positions` `(seq_len,)` or `(batch, seq_len)` it returns
    `inputs + table[positions]` instead (per row: rows decoded at different
    positions). `lookup(positions)` returns the rows of explicit positions.

    A sequence that does not fit (`start_index + seq_len > max_length`)
    raises a `ValueError` naming `max_length`, the length and the start
    index whenever both are known when the layer is called or traced: always
    for a Python-int `start_index` (and for the length under XLA and JAX),
    and for a tensor whose value is known (eager execution); so do
    `positions` outside `[0, max_length)` whose values are known. A tensor
    `start_index` or `positions` traced by `tf.function`, or a length known
    only at run time, is checked when the graph runs: TensorFlow raises
    `InvalidArgumentError` with the same message, the run-time values in
    brackets. **Not checked:** a `start_index` or `positions` traced by
    `jax.jit` or compiled by XLA (`jit_compile=True`, Keras' default for
    TensorFlow on a GPU), where no assertion can run. There an out-of-range
    position gets a NaN row, so the mistake shows in the outputs and the
    loss; never a clamped, wrapped or zero row.

    The Keras mask (from `Embedding(mask_zero=True)` or `Masking`) passes
    through unchanged.

    Args:
        max_length: positive int, the number of positions in the table.
        embeddings_initializer: initializer of the table.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, ..., seq_len, dim)`, rank >= 3, `dim`
            known.
        start_index: position of the first step, an int or a scalar integer
            tensor >= 0; defaults to 0.
        positions: optional integer tensor `(seq_len,)` (for every row) or
            `(batch, seq_len)` (per row; broadcast over the axes between
            batch and seq_len), the position of each step, each in
            `[0, max_length)`, instead of `start_index` (which must then
            stay 0).

    Returns:
        `inputs + table[start_index : start_index + seq_len]` (or
        `inputs + table[positions]`), same shape as `inputs`, in the compute
        dtype.

    Example:

    >>> model = keras.Sequential([keras.Input((None,), dtype="int32")])
    >>> model.add(keras.layers.Embedding(100, 16, mask_zero=True))
    >>> model.add(keras_attention.LearnedPositionEmbedding(max_length=64))
    >>> tuple(model.output_shape)
    (None, None, 16)
    >>> tuple(model.layers[-1].lookup([0, 1, 2]).shape)
    (3, 16)

    References:
        Gehring et al., "Convolutional Sequence to Sequence Learning", 2017;
        Devlin et al., "BERT", 2019.
    """

    def __init__(
        self,
        max_length: int,
        embeddings_initializer="glorot_uniform",
        **kwargs,
    ):
        owner = type(self).__name__
        checks.positive_int(max_length, "max_length", owner)
        initializer = checks.keras_identifier(
            keras.initializers.get,
            embeddings_initializer,
            "embeddings_initializer",
            owner,
            "initializer",
        )
        super().__init__(**kwargs)
        self.max_length = max_length
        self.embeddings_initializer = initializer

    def _max_length(self):
        return self.max_length

    def build(self, input_shape):
        input_shape = self._check_input_shape(input_shape)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_length, input_shape[-1]),
            initializer=self.embeddings_initializer,
        )

    def _check_input_shape(self, shape):
        shape = super()._check_input_shape(shape)
        if self.built and shape[-1] != self.embeddings.shape[-1]:
            raise ValueError(
                f"{type(self).__name__}: the last dimension of `inputs` must "
                f"be {self.embeddings.shape[-1]}, the depth of the table. "
                f"Received: inputs.shape={shape}"
            )
        return shape

    def _encode(self, positions, dim):
        # Positions out of range are replaced by NaN rows by the caller; the
        # clip only keeps the gather itself in bounds.
        return ops.take(
            self.embeddings, ops.clip(positions, 0, self.max_length - 1), axis=0
        )

    def lookup(self, positions):
        """The table's rows for explicit integer positions.

        Args:
            positions: integer tensor, array or list of any shape, each entry
                in `[0, max_length)`.

        Returns:
            `positions.shape + (dim,)`, in the compute dtype.

        An entry out of range raises a `ValueError` when the values are
        known now, and an `InvalidArgumentError` with the same message in a
        `tf.function`; under `jax.jit` and XLA it gives a NaN row.
        """
        owner = type(self).__name__
        if not self.built:
            raise ValueError(
                f"{owner}: `lookup` needs the table, which `build` creates from "
                "the inputs' last dimension. Call the layer, or "
                "`build((batch, seq_len, dim))`, first."
            )
        positions = ops.convert_to_tensor(positions)
        dtype = keras.backend.standardize_dtype(positions.dtype)
        if "int" not in dtype:
            raise TypeError(
                f"{owner}: `positions` must be integers. "
                f"Received: positions with dtype {dtype}"
            )
        positions, valid = checked_positions(positions, self.max_length, owner)
        rows = self._encode(positions, None)  # positions.shape + (dim,)
        if valid is not None:
            rows = ops.where(ops.expand_dims(valid, -1), rows, float("nan"))
        return ops.cast(rows, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            max_length=self.max_length,
            embeddings_initializer=keras.initializers.serialize(
                self.embeddings_initializer
            ),
        )
        return config

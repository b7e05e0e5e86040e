"""Rotary position embedding (Su et al., RoFormer) and Hugging Face's scalings.

A pair of features `(a, b)` at position `p` is rotated by the angle `p · θ_i`:

    a' = a · cos(p θ_i) - b · sin(p θ_i)
    b' = b · cos(p θ_i) + a · sin(p θ_i)
    θ_i = max_wavelength^(-2i / d),  i = 0 .. d/2 - 1,  d = rotary_dim

so the dot product of a rotated query at `p` and a rotated key at `q` depends
on the positions only through `p - q`. The pairs are `(2i, 2i + 1)` in the
"interleaved" layout and `(i, i + d/2)` in the "half" layout. A scaling
(Hugging Face's `rope_type`) changes the `θ_i`, and YaRN also multiplies
`cos` and `sin` by an attention factor.

`_frequencies` is the only place the `θ_i` are computed and `_rotate` the
only place the rotation is applied. Hugging Face's formats (a scaling dict, a
model's `config.json`) are read beside the layer, in `_rotary_hf_config.py`.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_attention import _checks as checks
from keras_attention.layers import _rotary_hf_config
from keras_attention.layers._position_layer import (
    check_positions,
    static_start_index,
)

LAYOUTS = ("half", "interleaved")


def _frequencies(rotary_dim, max_wavelength, scaling, length):
    """The angular frequencies `θ_i` and the factor multiplying cos and sin.

    Args:
        rotary_dim: even Python int `d`.
        max_wavelength: Python float, the base `b`.
        scaling: a dict from `_rotary_hf_config.read_scaling`.
        length: int32 scalar tensor, the largest position + 1 (used by
            "dynamic" only).

    Returns:
        float32 `(d // 2,)` and a Python float.
    """
    d, base, kind = rotary_dim, max_wavelength, scaling["type"]
    exponents = ops.arange(0, d, 2, dtype="float32") / d  # 2i / d
    if kind == "dynamic":
        # NTK-aware base, grown with the length seen (Hugging Face's rule).
        factor = scaling["factor"]
        original = scaling["original_max_position_embeddings"]
        seen = ops.maximum(ops.cast(length, "float32"), float(original))
        base = base * ops.power(factor * seen / original - (factor - 1), d / (d - 2))
    theta = 1.0 / ops.power(ops.cast(base, "float32"), exponents)
    if kind == "linear":
        return theta / scaling["factor"], 1.0
    if kind == "llama3":
        # Wavelengths longer than the original context over `low_freq_factor`
        # are interpolated by `factor`, shorter than it over
        # `high_freq_factor` kept, those in between blended.
        factor = scaling["factor"]
        original = scaling["original_max_position_embeddings"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        wavelength = 2 * math.pi / theta
        smooth = ops.clip((original / wavelength - low) / (high - low), 0.0, 1.0)
        return (1 - smooth) * theta / factor + smooth * theta, 1.0
    if kind == "yarn":
        return _yarn(theta, d, base, scaling)
    return theta, 1.0


def _yarn(theta, d, base, scaling):
    """YaRN's "NTK-by-parts" frequencies and attention factor (Peng et al.).

    Dimensions that turn more than `beta_fast` times over the original context
    keep their frequency, those that turn less than `beta_slow` times are
    interpolated by `factor`, with a linear ramp over the dimension index in
    between (rounded outward with `truncate`), as the authors' code and
    Hugging Face compute it.
    """
    factor = scaling["factor"]
    original = scaling["original_max_position_embeddings"]
    beta_fast = scaling["beta_fast"] or 32.0
    beta_slow = scaling["beta_slow"] or 1.0

    def dimension(turns):
        # The index i at which θ_i · original = 2π · turns.
        return d * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(base))

    low, high = dimension(beta_fast), dimension(beta_slow)
    if scaling["truncate"] is not False:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001
    index = ops.arange(d // 2, dtype="float32")
    interpolated = ops.clip((index - low) / (high - low), 0.0, 1.0)
    theta = interpolated * (theta / factor) + (1 - interpolated) * theta

    attention_factor = scaling["attention_factor"]
    if attention_factor is None:
        mscale, mscale_all_dim = scaling["mscale"], scaling["mscale_all_dim"]
        if mscale and mscale_all_dim:
            attention_factor = _mscale(factor, mscale) / _mscale(factor, mscale_all_dim)
        else:
            attention_factor = _mscale(factor, 1.0)
    return theta, attention_factor


def _mscale(factor, mscale):
    """YaRN's `0.1 · mscale · ln(factor) + 1` (1 for factors up to 1)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _rotate(x, cos, sin, layout):
    """Rotates the pairs of `x` `(..., d)` by the angles of `cos`, `sin`
    `(..., d // 2)` (broadcast against `x`'s leading axes)."""
    half = x.shape[-1] // 2
    if layout == "half":
        a, b = x[..., :half], x[..., half:]
        return ops.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    pairs = ops.stack([a * cos - b * sin, b * cos + a * sin], axis=-1)
    return ops.reshape(pairs, ops.shape(x))  # (..., d / 2, 2) -> (..., d)


def rope_permutation(num_heads: int, head_dim: int, rotary_dim=None, *, to="half"):
    """Reorders projection outputs between the interleaved and half layouts.

    A query or key projection trained with one layout gives the same attention
    with the other layout once its output features are permuted: per head,
    the pair `(2i, 2i + 1)` of the interleaved layout is the pair
    `(i, i + d/2)` of the half layout. This is how Hugging Face's conversion
    of Meta's Llama checkpoints (interleaved) to its `rotate_half` code works.

    Args:
        num_heads: number of heads in the projection.
        head_dim: features per head.
        rotary_dim: the rotated features of each head (even); defaults to
            `head_dim`. The features after them stay in place.
        to: the layout to convert to, `"half"` (from interleaved) or
            `"interleaved"` (from half).

    Returns:
        An int NumPy array `perm` of length `num_heads * head_dim`: the
        converted kernel is `kernel[..., perm]` for a kernel whose last axis
        holds the heads' features one head after another (a `Dense` kernel
        `(dim, heads * head_dim)`), `weight[perm]` for a PyTorch
        `(heads * head_dim, dim)` weight, and the same for biases.
        For `MultiHeadAttention`'s kernels `(dim, heads, head_dim)`, reshape
        to `(dim, heads * head_dim)` first.

    Example:

    >>> keras_attention.rope_permutation(1, 6).tolist()
    [0, 2, 4, 1, 3, 5]
    >>> keras_attention.rope_permutation(1, 6, rotary_dim=4, to="interleaved").tolist()
    [0, 2, 1, 3, 4, 5]
    """
    owner = "rope_permutation"
    num_heads = checks.positive_int(num_heads, "num_heads", owner)
    head_dim = checks.positive_int(head_dim, "head_dim", owner)
    rotary_dim = _check_rotary_dim(rotary_dim, owner)
    rotary_dim = head_dim if rotary_dim is None else rotary_dim
    if rotary_dim > head_dim:
        raise ValueError(
            f"{owner}: `rotary_dim` must be at most `head_dim`. Received: "
            f"rotary_dim={rotary_dim}, head_dim={head_dim}"
        )
    if to not in LAYOUTS:
        raise ValueError(
            f"{owner}: `to` must be one of {list(LAYOUTS)}. Received: to={to!r}"
        )
    half = np.arange(rotary_dim).reshape(2, -1).T.reshape(-1)  # 0, d/2, 1, ...
    head = np.arange(head_dim)
    # Interleaved position 2i holds half position i, 2i + 1 holds d/2 + i.
    head[:rotary_dim] = np.argsort(half) if to == "half" else half
    return (np.arange(num_heads)[:, None] * head_dim + head).reshape(-1)


def _check_rotary_dim(rotary_dim, owner):
    rotary_dim = checks.positive_int(rotary_dim, "rotary_dim", owner, allow_none=True)
    if rotary_dim is not None and rotary_dim % 2:
        raise ValueError(
            f"{owner}: `rotary_dim` must be even (the features are rotated in "
            f"pairs). Received: rotary_dim={rotary_dim}"
        )
    return rotary_dim


@keras.saving.register_keras_serializable(package="keras_attention")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding (RoPE), with Hugging Face's scalings. No weights.

    Rotates each pair of features of the input at position `p` by the angle
    `p · θ_i`, with `θ_i = max_wavelength^(-2i / d)` for the `d = rotary_dim`
    rotated features. Applied to a query and a key, their dot product then
    depends on the positions only through their difference (Su et al.).
    Meant for the projected query and key of each head: pass it to
    `MultiHeadAttention(rotary_embedding=...)`, or call it on
    `(batch, seq_len, heads, head_dim)` tensors.

    Layouts: which features form a pair is fixed by the checkpoint, and the
    wrong one gives a model that runs and then produces gibberish after a
    few tokens. `"half"` pairs feature `i` with feature `i + d/2`: Hugging
    Face's Llama, Mistral, Qwen, GPT-NeoX, Phi and keras-hub. `"interleaved"`
    pairs `2i` with `2i + 1`: RoFormer, GPT-J and Meta's original Llama
    checkpoints. `keras_attention.rope_permutation` converts projection
    kernels between them.

    Scaling, a dict as in a model's `config.json`: transformers 4's
    `rope_scaling` (type under `"rope_type"`, or the older `"type"`) or
    transformers 5's `rope_parameters` (which may also hold `"rope_theta"`,
    which must then equal `max_wavelength`, and `"partial_rotary_factor"`,
    which must then give `rotary_dim` from the feature size). Types, with
    Hugging Face's keys:

    - `"default"`: no scaling.
    - `"linear"` (`factor`): positions divided by `factor`.
    - `"dynamic"` (`factor`, `original_max_position_embeddings`): dynamic
      NTK scaling. The base grows with the length `L` the call sees, the
      largest position + 1 (`start_index + seq_len`):
      `base · (factor · L / original - (factor - 1))^(d / (d - 2))` once `L`
      exceeds the original context. So, unlike every other type, a sequence
      rotated step by step differs from the same sequence rotated in one
      call: each step uses the base of its own length, as in Hugging Face,
      whose cached keys keep the rotation they were written with. Hugging
      Face reads the original length from the config's top-level
      `max_position_embeddings`; `from_hf_config` copies it in.
    - `"llama3"` (`factor`, `low_freq_factor`, `high_freq_factor`,
      `original_max_position_embeddings`): Llama 3.1's frequency-dependent
      interpolation.
    - `"yarn"` (`factor`, `original_max_position_embeddings`; optional
      `attention_factor`, `beta_fast`, `beta_slow`, `mscale`,
      `mscale_all_dim`, `truncate`): YaRN (Peng et al.). Its attention factor
      (by default `0.1 · ln(factor) + 1`) multiplies both `cos` and `sin`, so
      the attention logits scale by its square, as in Hugging Face.

    An unknown type or key, a missing key, a `rope_theta` or
    `partial_rotary_factor` that disagrees with `max_wavelength` /
    `rotary_dim`, and a dict with one entry per layer type (transformers 5
    writes those for Gemma 3) raise a `ValueError`.

    Precision: the angles, `cos`, `sin` and the rotation are computed in
    float32 whatever the dtype policy, and the result is cast to the input's
    dtype once, so bfloat16 inputs are right to bfloat16 rounding at
    position 131072 (an angle computed in bfloat16 is off by up to 512
    radians there).

    Args:
        max_wavelength: positive number, the base `b` of the frequencies
            (Hugging Face's `rope_theta`).
        layout: `"half"` or `"interleaved"`, see above.
        rotary_dim: even int: rotate only the first `rotary_dim` features of
            each vector, the rest pass through (partial rotary, as in
            GPT-NeoX, GPT-J and Phi). Defaults to every feature (then the
            feature size must be even).
        scaling: None or a dict, see above.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: float tensor `(batch, seq_len, features)` or
            `(batch, seq_len, heads, features)`.
        start_index: keyword-only; position of the first step, an int or a
            scalar integer tensor >= 0; defaults to 0. `layer(x[:, t:t + 1],
            start_index=t)` equals step `t` of `layer(x)` (except for
            "dynamic" scaling, see above).
        positions: keyword-only; optional integer tensor `(seq_len,)` or
            `(batch, seq_len)`, the position of every step, instead of
            `start_index` (which must then stay 0).

    Returns:
        The rotated inputs: same shape, in the input's dtype. A Keras mask
        on the inputs passes through unchanged.

    Example:

    >>> rope = keras_attention.RotaryEmbedding(max_wavelength=500000.0)
    >>> x = keras.random.normal((2, 10, 4, 16))  # (batch, seq_len, heads, head_dim)
    >>> tuple(rope(x, start_index=3).shape)
    (2, 10, 4, 16)
    >>> config = {"hidden_size": 64, "num_attention_heads": 4,
    ...           "max_position_embeddings": 8192, "rope_theta": 500000.0,
    ...           "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
    ...                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    ...                            "original_max_position_embeddings": 8192}}
    >>> keras_attention.RotaryEmbedding.from_hf_config(config).scaling["rope_type"]
    'llama3'

    References:
        Su et al., "RoFormer: Enhanced Transformer with Rotary Position
        Embedding", 2021.
        Peng et al., "YaRN: Efficient Context Window Extension of Large
        Language Models", 2023.
        Llama Team, "The Llama 3 Herd of Models", 2024.
    """

    def __init__(
        self,
        max_wavelength: float = 10000,
        layout: str = "half",
        rotary_dim: int | None = None,
        scaling: dict | None = None,
        **kwargs,
    ):
        owner = type(self).__name__
        checks.positive_number(max_wavelength, "max_wavelength", owner)
        if max_wavelength == 1:
            raise ValueError(
                f"{owner}: `max_wavelength` must not be 1 (every frequency would "
                f"be 1). Received: max_wavelength={max_wavelength!r}"
            )
        if layout not in LAYOUTS:
            raise ValueError(
                f"{owner}: `layout` must be one of {list(LAYOUTS)}. "
                f"Received: layout={layout!r}"
            )
        rotary_dim = _check_rotary_dim(rotary_dim, owner)
        read = _rotary_hf_config.read_scaling(
            scaling, max_wavelength, rotary_dim, owner
        )
        if read["type"] == "dynamic" and rotary_dim == 2:
            raise ValueError(
                f"{owner}: dynamic scaling needs `rotary_dim` > 2 (its base grows "
                f"as a power d / (d - 2)). Received: rotary_dim={rotary_dim}"
            )
        super().__init__(**kwargs)
        self.supports_masking = True
        self.max_wavelength = max_wavelength
        self.layout = layout
        self.rotary_dim = rotary_dim
        self.scaling = None if scaling is None else dict(scaling)
        self._scaling = read

    @classmethod
    def from_hf_config(cls, config: dict, layer_type: str | None = None, **kwargs):
        """A `RotaryEmbedding` from a Hugging Face model's `config.json` dict.

        Reads either version's layout of the file: the head size (`head_dim`,
        or `hidden_size / num_attention_heads`), `max_position_embeddings`,
        the base (`rope_theta`), `partial_rotary_factor` and the scaling
        entry (transformers 5's `rope_parameters`, which also holds the base
        and the factor, or transformers 4's `rope_scaling`), and GPT-J's and
        GPT-NeoX's own names (`n_embd`, `n_head`, `n_positions`,
        `rotary_dim`, `rotary_emb_base`, `rotary_pct`). The original context
        length of "dynamic" scaling is the top-level
        `max_position_embeddings`, as in Hugging Face; "llama3" and "yarn"
        take it from the scaling entry, else from the top-level
        `original_max_position_embeddings` or `max_position_embeddings`.

        The layout is `"interleaved"` for the model types whose Hugging Face
        code rotates interleaved pairs (`gptj`, `codegen`) and `"half"` for
        every other; pass `layout=` to override it.

        Args:
            config: the `config.json` contents as a dict.
            layer_type: for a `rope_parameters` dict with one entry per layer
                type (`"full_attention"`, `"sliding_attention"`, ...), the
                entry to use.
            **kwargs: other constructor arguments (`layout`, `name`, ...).

        Returns:
            A `RotaryEmbedding`, applied to vectors of the head size.
        """
        arguments = _rotary_hf_config.layer_arguments(config, layer_type)
        kwargs.setdefault("layout", arguments.pop("layout"))
        return cls(**arguments, **kwargs)

    def rotary_dim_for(self, features: int) -> int:
        """The number of features rotated in vectors of size `features`.

        `rotary_dim`, or `features` when it is None. A layer that holds a
        `RotaryEmbedding` (`MultiHeadAttention`) asks it of its head size
        when it is built, to fail early.

        Args:
            features: the size of the vectors to rotate (the head size).

        Returns:
            A Python int. Raises a `ValueError` when the layer cannot rotate
            vectors of that size: an odd size with every feature rotated, a
            `rotary_dim` larger than it, or a `partial_rotary_factor` that
            gives another number of features.

        Example:

        >>> rope = keras_attention.RotaryEmbedding(rotary_dim=16)
        >>> rope.rotary_dim_for(64)
        16
        """
        owner = type(self).__name__
        rotary_dim = features if self.rotary_dim is None else self.rotary_dim
        if self.rotary_dim is None and features % 2:
            raise ValueError(
                f"{owner}: the last dimension of `inputs` must be even to rotate "
                "every feature in pairs; set `rotary_dim` to rotate fewer. "
                f"Received: inputs with last dimension {features}"
            )
        if rotary_dim > features:
            raise ValueError(
                f"{owner}: `rotary_dim` must be at most the last dimension of "
                f"`inputs`. Received: rotary_dim={rotary_dim}, inputs with last "
                f"dimension {features}"
            )
        fraction = self._scaling["partial_rotary_factor"]
        if fraction is not None and int(features * fraction) != rotary_dim:
            raise ValueError(
                f"{owner}: `scaling['partial_rotary_factor']`={fraction!r} of "
                f"{features} features is {int(features * fraction)}, which "
                f"disagrees with `rotary_dim`={self.rotary_dim}."
            )
        return rotary_dim

    def cos_sin(self, positions, features: int):
        """The `cos` and `sin` tables of the given positions.

        Args:
            positions: integer tensor or array of any shape, e.g. `(seq_len,)`.
            features: the size of the vectors to rotate (the head size).

        Returns:
            `(cos, sin)`, float32 tensors `(*positions.shape, rotary_dim // 2)`:
            entry `i` belongs to the pair `(i, i + d/2)` in the half layout and
            `(2i, 2i + 1)` in the interleaved one. They include YaRN's
            attention factor. With "dynamic" scaling the base follows the
            largest position + 1.

        Example:

        >>> rope = keras_attention.RotaryEmbedding(max_wavelength=100)
        >>> cos, sin = rope.cos_sin(np.arange(5), features=8)
        >>> tuple(cos.shape)
        (5, 4)
        """
        rotary_dim = self.rotary_dim_for(features)
        positions = ops.convert_to_tensor(positions)
        length = None
        if self._scaling["type"] == "dynamic":
            length = ops.max(ops.cast(positions, "int32")) + 1
        theta, factor = _frequencies(
            rotary_dim, float(self.max_wavelength), self._scaling, length
        )
        # (..., rotary_dim // 2), in float32 whatever the dtype policy.
        angles = ops.expand_dims(ops.cast(positions, "float32"), -1) * theta
        return ops.cos(angles) * factor, ops.sin(angles) * factor

    def call(self, inputs, *, start_index=0, positions=None):
        self._check_inputs(inputs, start_index, positions)
        if positions is None:
            start_index = ops.cast(start_index, "int32")
            positions = ops.arange(ops.shape(inputs)[1], dtype="int32") + start_index
        features = inputs.shape[-1]
        rotary_dim = self.rotary_dim_for(features)
        cos, sin = self.cos_sin(positions, features)  # (..., seq_len, d / 2)
        if len(inputs.shape) == 4:
            cos, sin = ops.expand_dims(cos, -2), ops.expand_dims(sin, -2)
        # In float32 (or wider), cast to the input's dtype once.
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, dtype)
        rotated = _rotate(
            x[..., :rotary_dim], ops.cast(cos, dtype), ops.cast(sin, dtype), self.layout
        )
        if rotary_dim < features:
            rotated = ops.concatenate([rotated, x[..., rotary_dim:]], axis=-1)
        return ops.cast(rotated, inputs.dtype)

    def _check_inputs(self, inputs, start_index, positions):
        """Checks the call's arguments; returns the inputs' shape."""
        owner = type(self).__name__
        shape = checks.floating(inputs, "inputs", owner)
        if len(shape) not in (3, 4) or shape[-1] is None:
            raise ValueError(
                f"{owner}: `inputs` must have shape (batch, seq_len, features) or "
                "(batch, seq_len, heads, features), with known features. "
                f"Received: inputs.shape={shape}"
            )
        self.rotary_dim_for(shape[-1])
        start = static_start_index(start_index, owner)
        if positions is not None:
            check_positions(positions, start, shape[0], shape[1], owner)
        return shape

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, *, start_index=0, positions=None):
        shape = self._check_inputs(inputs, start_index, positions)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            max_wavelength=self.max_wavelength,
            layout=self.layout,
            rotary_dim=self.rotary_dim,
            scaling=self.scaling,
        )
        return config


def as_rotary_embedding(value, owner):
    """A layer's `rotary_embedding` argument as a `RotaryEmbedding` or None,
    from an instance or its serialized config (as `get_config` saves it)."""
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not (value is None or isinstance(value, RotaryEmbedding)):
        raise TypeError(
            f"{owner}: `rotary_embedding` must be None or a "
            "keras_attention.RotaryEmbedding. Received: rotary_embedding of "
            f"type {type(value).__name__}"
        )
    return value

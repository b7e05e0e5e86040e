"""Hugging Face's RoPE configuration, read for `RotaryEmbedding`.

`read_scaling` checks a scaling dict (a model's `rope_scaling` or
`rope_parameters`, the layer's `scaling` argument) and returns it as the
plain values `rotary_embedding._frequencies` computes with; `layer_arguments`
reads a whole `config.json` for `RotaryEmbedding.from_hf_config`. What is
read, and what is refused, is documented once, in `RotaryEmbedding`'s
docstrings; the math stays in `rotary_embedding.py`.
"""

import math

import numpy as np

from keras_attention import _checks as checks

# For each scaling type: the keys it requires and those it may have, besides
# the type itself, `rope_theta` and `partial_rotary_factor`. As Hugging Face
# documents them (`RopeParameters`), except that "dynamic" also needs the
# model's original context length, which Hugging Face reads from the top
# level of the config (`from_hf_config` copies it in).
_SCALING_KEYS = {
    "default": ((), ()),
    "linear": (("factor",), ()),
    "dynamic": (("factor", "original_max_position_embeddings"), ()),
    "llama3": (
        (
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        ),
        (),
    ),
    "yarn": (
        ("factor", "original_max_position_embeddings"),
        (
            "attention_factor",
            "beta_fast",
            "beta_slow",
            "mscale",
            "mscale_all_dim",
            "truncate",
        ),
    ),
}
_EVERY_TYPE_KEYS = ("rope_type", "type", "rope_theta", "partial_rotary_factor")
# Model types whose Hugging Face code rotates interleaved pairs; every other
# Hugging Face model rotates halves (`rotate_half`).
_INTERLEAVED_MODEL_TYPES = ("gptj", "codegen")


def read_scaling(scaling, max_wavelength, rotary_dim, owner):
    """The checked scaling as a dict of Python values, type under "type".

    Raises a `ValueError` for an unknown type or key, a missing key, a value
    out of range, a `rope_theta` that is not `max_wavelength`, a
    `partial_rotary_factor` below 1 without a `rotary_dim`, and a dict nested
    by layer type.
    """
    if scaling is None:
        scaling = {}
    if not isinstance(scaling, dict):
        raise TypeError(
            f"{owner}: `scaling` must be None or a dict as Hugging Face writes it "
            f"in a model's config.json. Received: scaling={scaling!r} of type "
            f"{type(scaling).__name__}"
        )
    nested = [key for key, value in scaling.items() if isinstance(value, dict)]
    if nested:
        raise ValueError(
            f"{owner}: `scaling` holds one entry per layer type ({nested}); pass "
            f"one of them, e.g. scaling=rope_parameters[{nested[0]!r}], or use "
            f"`RotaryEmbedding.from_hf_config(config, layer_type={nested[0]!r})`. "
            f"Received: scaling={scaling!r}"
        )
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if "type" in scaling and "rope_type" in scaling and scaling["type"] != kind:
        raise ValueError(
            f"{owner}: `scaling` gives two different types, "
            f"rope_type={scaling['rope_type']!r} and type={scaling['type']!r}. "
            f"Received: scaling={scaling!r}"
        )
    if kind not in _SCALING_KEYS:
        raise ValueError(
            f"{owner}: the `scaling` type must be one of {list(_SCALING_KEYS)}. "
            f"Received: rope_type={kind!r}"
        )
    required, optional = _SCALING_KEYS[kind]
    unknown = sorted(
        set(scaling) - set(required) - set(optional) - set(_EVERY_TYPE_KEYS)
    )
    if unknown:
        allowed = sorted(set(required) | set(optional) | set(_EVERY_TYPE_KEYS))
        raise ValueError(
            f"{owner}: unknown key(s) {unknown} in a `scaling` of type {kind!r}, "
            f"which takes {allowed}. Received: scaling={scaling!r}"
        )
    missing = [key for key in required if scaling.get(key) is None]
    if missing == ["original_max_position_embeddings"] and kind == "dynamic":
        raise ValueError(
            f"{owner}: dynamic (NTK) scaling needs the model's original context "
            "length: add 'original_max_position_embeddings' to `scaling` (the "
            "`max_position_embeddings` of the model's config.json), or use "
            f"`RotaryEmbedding.from_hf_config(config)`. Received: scaling={scaling!r}"
        )
    if missing:
        raise ValueError(
            f"{owner}: a `scaling` of type {kind!r} needs the key(s) {missing}. "
            f"Received: scaling={scaling!r}"
        )

    theta = scaling.get("rope_theta")
    if theta is not None:
        _number(theta, "scaling['rope_theta']", owner, positive=True)
        if float(theta) != float(max_wavelength):
            raise ValueError(
                f"{owner}: `scaling['rope_theta']`={theta!r} disagrees with "
                f"`max_wavelength`={max_wavelength!r}; pass max_wavelength={theta!r} "
                "(or use `RotaryEmbedding.from_hf_config`)."
            )
    fraction = scaling.get("partial_rotary_factor")
    if fraction is not None:
        _number(fraction, "scaling['partial_rotary_factor']", owner, positive=True)
        if not fraction <= 1:
            raise ValueError(
                f"{owner}: `scaling['partial_rotary_factor']` must be in (0, 1]. "
                f"Received: partial_rotary_factor={fraction!r}"
            )
        if rotary_dim is None and fraction != 1:
            raise ValueError(
                f"{owner}: `scaling['partial_rotary_factor']`={fraction!r} disagrees "
                "with `rotary_dim`=None (every feature rotated); pass "
                "rotary_dim=int(head_dim * partial_rotary_factor) (or use "
                "`RotaryEmbedding.from_hf_config`)."
            )

    read = {"type": kind, "partial_rotary_factor": fraction}
    for key in required + optional:
        value = scaling.get(key)
        if value is None:
            read[key] = None
        elif key == "original_max_position_embeddings":
            read[key] = checks.positive_int(value, f"scaling[{key!r}]", owner)
        elif key == "truncate":
            read[key] = checks.boolean(value, f"scaling[{key!r}]", owner)
        else:
            positive = key not in ("mscale", "mscale_all_dim")
            read[key] = _number(value, f"scaling[{key!r}]", owner, positive=positive)
    if kind == "llama3" and not read["high_freq_factor"] > read["low_freq_factor"]:
        raise ValueError(
            f"{owner}: `scaling['high_freq_factor']` must be greater than "
            f"`scaling['low_freq_factor']`. Received: "
            f"high_freq_factor={read['high_freq_factor']!r}, "
            f"low_freq_factor={read['low_freq_factor']!r}"
        )
    return read


def _number(value, argument, owner, positive):
    """`value` as a Python float: finite, and > 0 if `positive`, else >= 0."""
    expected = "a positive finite number" if positive else "a finite number >= 0"
    if not checks.is_integer(value) and not isinstance(value, (float, np.floating)):
        raise TypeError(
            f"{owner}: `{argument}` must be {expected}. "
            f"Received: {argument}={value!r} of type {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(
            f"{owner}: `{argument}` must be {expected}. Received: {argument}={value!r}"
        )
    return float(value)


def layer_arguments(config, layer_type=None):
    """`RotaryEmbedding`'s constructor arguments read from a `config.json`
    dict: `max_wavelength`, `rotary_dim`, `scaling` and `layout` (see
    `RotaryEmbedding.from_hf_config`)."""
    owner = "RotaryEmbedding.from_hf_config"
    if not isinstance(config, dict):
        raise TypeError(
            f"{owner}: `config` must be a dict (the contents of config.json). "
            f"Received: config of type {type(config).__name__}"
        )

    def read(*names):
        found = [(n, config[n]) for n in names if config.get(n) is not None]
        return found[0] if found else (None, None)

    head_dim = read("head_dim")[1]
    _, hidden = read("hidden_size", "n_embd")
    _, heads = read("num_attention_heads", "n_head")
    if head_dim is None and (hidden is None or heads is None):
        raise ValueError(
            f"{owner}: `config` must give the head size: `head_dim`, or "
            "`hidden_size` and `num_attention_heads`. Received: config with "
            f"keys {sorted(config)}"
        )
    head_dim = head_dim if head_dim is not None else hidden // heads
    _, max_positions = read("max_position_embeddings", "n_positions")

    entry, entry_name = config.get("rope_parameters"), "rope_parameters"
    if entry is None:
        entry, entry_name = config.get("rope_scaling"), "rope_scaling"
    entry = dict(entry or {})
    nested = [key for key, value in entry.items() if isinstance(value, dict)]
    if nested:
        if layer_type not in nested:
            raise ValueError(
                f"{owner}: `config['{entry_name}']` holds one entry per layer "
                f"type; pass `layer_type`, one of {nested}. "
                f"Received: layer_type={layer_type!r}"
            )
        entry = dict(entry[layer_type])
    elif layer_type is not None and layer_type not in config.get(
        "layer_types", [layer_type]
    ):
        raise ValueError(
            f"{owner}: `layer_type` must be one of the config's "
            f"`layer_types` {sorted(set(config['layer_types']))}. "
            f"Received: layer_type={layer_type!r}"
        )

    theta = _agreeing(
        owner, entry, "rope_theta", config, "rope_theta", "rotary_emb_base"
    )
    fraction = _agreeing(
        owner,
        entry,
        "partial_rotary_factor",
        config,
        "partial_rotary_factor",
        "rotary_pct",
    )
    rotary_dim = config.get("rotary_dim")  # GPT-J: a number of features
    if rotary_dim is None and fraction is not None and fraction != 1:
        rotary_dim = int(head_dim * fraction)
    if rotary_dim == head_dim:
        rotary_dim = None

    kind = entry.get("rope_type", entry.get("type", "default"))
    if kind == "dynamic":
        if max_positions is None:
            raise ValueError(
                f"{owner}: dynamic scaling needs the config's "
                "`max_position_embeddings`. Received: config with keys "
                f"{sorted(config)}"
            )
        given = entry.get("original_max_position_embeddings")
        if given is not None and given != max_positions:
            raise ValueError(
                f"{owner}: dynamic scaling uses the config's "
                f"`max_position_embeddings`={max_positions}, which disagrees "
                f"with `{entry_name}['original_max_position_embeddings']`={given}."
            )
        entry["original_max_position_embeddings"] = max_positions
    elif kind in ("llama3", "yarn"):
        _, original = read("original_max_position_embeddings")
        entry.setdefault("original_max_position_embeddings", original or max_positions)
    interleaved = config.get("model_type") in _INTERLEAVED_MODEL_TYPES
    return {
        "max_wavelength": 10000.0 if theta is None else theta,
        "rotary_dim": rotary_dim,
        "scaling": entry or None,
        "layout": "interleaved" if interleaved else "half",
    }


def _agreeing(owner, entry, key, config, *names):
    """`entry[key]`, or the first of `config[names]`; raises when both are
    given and differ. Removes `key` from `entry`."""
    inner = entry.pop(key, None)
    outer = next((config[n] for n in names if config.get(n) is not None), None)
    if inner is not None and outer is not None and float(inner) != float(outer):
        raise ValueError(
            f"{owner}: the config gives two values of `{key}`: {inner!r} in its "
            f"RoPE entry and {outer!r} at the top level."
        )
    return inner if inner is not None else outer

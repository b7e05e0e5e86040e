import json
import math
import pathlib

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_attention
from keras_attention import MultiHeadAttention, RotaryEmbedding, rope_permutation
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(11)
DATA = pathlib.Path(__file__).parents[1] / "data"


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


# NumPy transcriptions of the papers, in float64, written without the layer's
# code: the frequencies θ_i of each scaling type and the factor on cos, sin.


def reference_frequencies(d, base, scaling=None, length=None):
    """(θ_i for i < d/2, factor multiplying cos and sin)."""
    scaling = scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    # RoFormer (Su et al. 2021), eq. 15: θ_i = base^(-2(i-1)/d), i = 1..d/2.
    theta = np.array([base ** (-2 * i / d) for i in range(d // 2)])
    if kind == "default":
        return theta, 1.0
    factor = scaling["factor"]
    if kind == "linear":
        # Position interpolation (Chen et al. 2023): position m -> m / factor.
        return theta / factor, 1.0
    original = scaling["original_max_position_embeddings"]
    if kind == "dynamic":
        # Dynamic NTK (bloc97, emozilla; Hugging Face's rule): a new base for
        # the length seen, once it exceeds the original context.
        seen = max(length, original)
        new_base = base * (factor * seen / original - (factor - 1)) ** (d / (d - 2))
        return np.array([new_base ** (-2 * i / d) for i in range(d // 2)]), 1.0
    if kind == "llama3":
        # Llama 3.1's frequency-dependent interpolation, as in Meta's
        # reference code (the Llama 3 report, section on long context).
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        out = []
        for t in theta:
            wavelength = 2 * math.pi / t
            if wavelength < original / high:
                out.append(t)
            elif wavelength > original / low:
                out.append(t / factor)
            else:
                smooth = (original / wavelength - low) / (high - low)
                out.append((1 - smooth) * t / factor + smooth * t)
        return np.array(out), 1.0
    assert kind == "yarn"
    # YaRN (Peng et al. 2023), "NTK-by-parts": dimension i turns
    # r_i = original · θ_i / 2π times over the original context. It keeps
    # θ_i where r_i > β_fast, interpolates (θ_i / factor) where r_i < β_slow.
    # The paper writes the ramp in between as linear in r; the authors' code,
    # which the checkpoints were trained with, and Hugging Face ramp linearly
    # in the index i between the boundary indices, rounded outward unless
    # `truncate` is False. The logits scale by (0.1 ln(factor) + 1)²: its
    # root multiplies cos and sin (DeepSeek's mscale ratio when given).
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def boundary(turns):  # the i with r_i = turns
        return d / 2 * math.log(original / (2 * math.pi * turns)) / math.log(base)

    lo, hi = boundary(beta_fast), boundary(beta_slow)
    if scaling.get("truncate", True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, d - 1)
    out = []
    for i, t in enumerate(theta):
        interpolated = min(max((i - lo) / (hi - lo), 0.0), 1.0)
        out.append(interpolated * t / factor + (1 - interpolated) * t)

    def mscale(m):
        return 0.1 * m * math.log(factor) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        if scaling.get("mscale") and scaling.get("mscale_all_dim"):
            attention_factor = mscale(scaling["mscale"]) / mscale(
                scaling["mscale_all_dim"]
            )
        else:
            attention_factor = mscale(1.0)
    return np.array(out), attention_factor


def reference_rotation(
    x,
    positions,
    base=10000.0,
    layout="half",
    rotary_dim=None,
    scaling=None,
    length=None,
):
    """RoPE of `x` `(batch, seq, [heads,] features)` at `positions` `(seq,)`,
    pair by pair, in float64."""
    x = np.asarray(x, "float64")
    d = rotary_dim or x.shape[-1]
    if length is None:
        length = max(positions) + 1
    theta, factor = reference_frequencies(d, base, scaling, length)
    out = x.copy()
    extra = (None,) * (x.ndim - 3)  # a heads axis
    for i, t in enumerate(theta):
        a, b = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, i + d // 2)
        angle = np.asarray(positions, "float64")[(slice(None), *extra)] * t
        cos, sin = np.cos(angle) * factor, np.sin(angle) * factor
        out[..., a] = x[..., a] * cos - x[..., b] * sin
        out[..., b] = x[..., b] * cos + x[..., a] * sin
    return out


SCALINGS = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 4.0},
    # Lengths 40 and more exceed the original context of 16.
    "dynamic": {
        "type": "dynamic",
        "factor": 3.0,
        "original_max_position_embeddings": 16,
    },
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
    "yarn": {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 512,
    },
    "yarn, mscale, no truncation": {
        "rope_type": "yarn",
        "factor": 16.0,
        "original_max_position_embeddings": 2048,
        "mscale": 0.707,
        "mscale_all_dim": 1.0,
        "beta_fast": 16,
        "beta_slow": 2,
        "truncate": False,
    },
    "yarn, attention_factor": {
        "rope_type": "yarn",
        "factor": 2.0,
        "original_max_position_embeddings": 300,
        "attention_factor": 1.5,
    },
}
NOT_DYNAMIC = [name for name in SCALINGS if name != "dynamic"]


def test_layer_behaviours(tmp_path):
    run_layer_test(
        RotaryEmbedding,
        init_kwargs={},
        input_data=normal(2, 5, 8),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=0,
        run_training=False,  # no weights to train
        tmp_path=tmp_path,
    )


def test_layer_behaviours_rank_4_interleaved_partial_yarn(tmp_path):
    run_layer_test(
        RotaryEmbedding,
        init_kwargs={
            "max_wavelength": 500.0,
            "layout": "interleaved",
            "rotary_dim": 4,
            "scaling": SCALINGS["yarn"],
        },
        input_data=normal(2, 5, 3, 6),
        expected_output_shape=(2, 5, 3, 6),
        expected_num_trainable_weights=0,
        run_training=False,  # no weights to train
        call_kwargs={"start_index": 7},
        tmp_path=tmp_path,
    )


def test_hand_computed_values():
    # Features (a, b) = (1, 0) at position 1, base 100, d = 2: θ_0 = 1.
    layer = RotaryEmbedding(max_wavelength=100)
    x = np.array([[[0.0, 0.0], [1.0, 0.0]]], "float32")
    np.testing.assert_allclose(
        to_numpy(layer(x))[0], [[0, 0], [math.cos(1), math.sin(1)]], atol=1e-7
    )
    # d = 4, base 100: θ = (1, 0.1). Half pairs (0, 2), (1, 3); interleaved
    # pairs (0, 1), (2, 3). Position 2.
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]], "float32")
    c1, s1, c2, s2 = math.cos(2), math.sin(2), math.cos(0.2), math.sin(0.2)
    half = [1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2]
    interleaved = [1 * c1 - 2 * s1, 2 * c1 + 1 * s1, 3 * c2 - 4 * s2, 4 * c2 + 3 * s2]
    np.testing.assert_allclose(to_numpy(layer(x, start_index=2))[0, 0], half, atol=1e-6)
    interleaved_layer = RotaryEmbedding(max_wavelength=100, layout="interleaved")
    np.testing.assert_allclose(
        to_numpy(interleaved_layer(x, start_index=2))[0, 0], interleaved, atol=1e-6
    )


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("name", SCALINGS)
def test_every_scaling_matches_the_numpy_transcription(name, layout):
    scaling = SCALINGS[name]
    # 10 features, 6 rotated (partial rotary), rank 4, from position 37.
    x = normal(2, 8, 3, 10)
    layer = RotaryEmbedding(
        max_wavelength=1000.0, layout=layout, rotary_dim=6, scaling=scaling
    )
    positions = np.arange(37, 45)
    expected = reference_rotation(x, positions, 1000.0, layout, 6, scaling)
    np.testing.assert_allclose(to_numpy(layer(x, start_index=37)), expected, atol=2e-5)
    # Every feature rotated, rank 3, explicit positions.
    x = normal(2, 8, 16)
    layer = RotaryEmbedding(max_wavelength=1000.0, layout=layout, scaling=scaling)
    positions = np.array([0, 3, 9, 40, 41, 2, 60, 7])
    expected = reference_rotation(x, positions, 1000.0, layout, None, scaling)
    np.testing.assert_allclose(
        to_numpy(layer(x, positions=positions)), expected, atol=2e-5
    )


def test_the_scalings_differ_from_each_other():
    # The transcriptions above would not catch a type read as another.
    x = normal(1, 8, 16)
    outputs = [
        to_numpy(RotaryEmbedding(max_wavelength=1000.0, scaling=s)(x, start_index=37))
        for s in SCALINGS.values()
    ]
    for i in range(len(outputs)):
        for j in range(i):
            assert not np.allclose(outputs[i], outputs[j], atol=1e-3), (i, j)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(NOT_DYNAMIC),
    layout=st.sampled_from(["half", "interleaved"]),
    i=st.integers(0, 3000),
    j=st.integers(0, 3000),
    shift=st.integers(-3000, 3000),
)
def test_rotated_dot_product_depends_only_on_the_distance(name, layout, i, j, shift):
    rng = np.random.default_rng(i + 7 * j)
    q, k = rng.normal(size=(2, 1, 1, 8)).astype("float32")
    layer = RotaryEmbedding(layout=layout, scaling=SCALINGS[name])

    def score(p, r):
        rq = to_numpy(layer(q, positions=np.array([p])))
        rk = to_numpy(layer(k, positions=np.array([r])))
        return float(np.sum(rq.astype("float64") * rk))

    shift = max(shift, -min(i, j))  # positions stay >= 0
    # float32 angles: about 2e-7 · position of error per radian.
    assert score(i, j) == pytest.approx(score(i + shift, j + shift), abs=5e-3)


@pytest.mark.parametrize("name", NOT_DYNAMIC)
def test_step_by_step_equals_one_call(name):
    x = normal(2, 7, 2, 8)
    layer = RotaryEmbedding(layout="interleaved", scaling=SCALINGS[name])
    whole = to_numpy(layer(x, start_index=3))
    steps = [to_numpy(layer(x[:, t : t + 1], start_index=3 + t)) for t in range(7)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, atol=1e-6)


def test_dynamic_step_by_step_follows_each_steps_length():
    # As Hugging Face decodes: step t is rotated with the base of length
    # t + 1, the whole sequence with the base of its full length.
    scaling = SCALINGS["dynamic"]
    x = normal(1, 40, 8)
    layer = RotaryEmbedding(scaling=scaling)
    whole = to_numpy(layer(x))
    np.testing.assert_allclose(
        whole, reference_rotation(x, np.arange(40), scaling=scaling), atol=2e-5
    )
    steps = np.concatenate(
        [to_numpy(layer(x[:, t : t + 1], start_index=t)) for t in range(40)], axis=1
    )
    expected = np.concatenate(
        [
            reference_rotation(x[:, t : t + 1], [t], scaling=scaling, length=t + 1)
            for t in range(40)
        ],
        axis=1,
    )
    np.testing.assert_allclose(steps, expected, atol=2e-5)
    # Up to the original context (16) each step is the plain RoPE; the one
    # call of 40 rotates every position, the first ones too, with the grown
    # base.
    plain = reference_rotation(x[:, :16], np.arange(16))
    np.testing.assert_allclose(steps[:, :16], plain, atol=1e-5)
    assert not np.allclose(steps[:, 1:16], whole[:, 1:16], atol=1e-3)


def test_positions_per_batch_entry_and_tensor_start_index():
    x = normal(2, 5, 8)
    layer = RotaryEmbedding()
    positions = np.array([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]], "int32")
    got = to_numpy(layer(x, positions=positions))
    np.testing.assert_allclose(got[0], to_numpy(layer(x[:1]))[0], atol=1e-6)
    start = keras.ops.convert_to_tensor(10, "int32")
    np.testing.assert_allclose(
        got[1], to_numpy(layer(x[1:], start_index=start))[0], atol=1e-6
    )


@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16"])
def test_bfloat16_inputs_are_right_at_position_131072(policy):
    x = keras.ops.cast(normal(1, 8, 2, 64), "bfloat16")
    start = 131072
    layer = RotaryEmbedding(max_wavelength=500000.0, dtype=policy)
    got = layer(x, start_index=start)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    float32 = RotaryEmbedding(max_wavelength=500000.0)(
        keras.ops.cast(x, "float32"), start_index=start
    )
    # The float32 result rounded once to bfloat16.
    np.testing.assert_array_equal(
        to_numpy(keras.ops.cast(got, "float32")),
        to_numpy(keras.ops.cast(keras.ops.cast(float32, "bfloat16"), "float32")),
    )
    # And the float32 result is right to float32 angles (131072 · 6e-8 rad).
    exact = reference_rotation(
        to_numpy(keras.ops.cast(x, "float32")), np.arange(start, start + 8), 500000.0
    )
    np.testing.assert_allclose(to_numpy(float32), exact, atol=3e-2)
    # Angles computed in bfloat16 would be far off: 131073 is not even a
    # bfloat16 number.
    assert (
        float(to_numpy(keras.ops.cast(keras.ops.cast(131073.0, "bfloat16"), "float32")))
        != 131073
    )


def test_cos_sin_tables():
    layer = RotaryEmbedding(
        max_wavelength=100.0, scaling=SCALINGS["yarn, attention_factor"]
    )
    cos, sin = layer.cos_sin(np.arange(6), features=8)
    assert keras.backend.standardize_dtype(cos.dtype) == "float32"
    theta, factor = reference_frequencies(8, 100.0, SCALINGS["yarn, attention_factor"])
    angles = np.arange(6)[:, None] * theta
    np.testing.assert_allclose(to_numpy(cos), factor * np.cos(angles), atol=1e-6)
    np.testing.assert_allclose(to_numpy(sin), factor * np.sin(angles), atol=1e-6)


def test_half_and_interleaved_agree_after_the_permutation():
    # Permuting the features then rotating halves equals rotating
    # interleaved pairs then permuting: the attention of a q/k projection
    # converted with `rope_permutation` is unchanged (a dot product does not
    # see a common permutation of both operands).
    heads, head_dim, rotary_dim = 3, 10, 6
    x = normal(2, 5, heads * head_dim)
    scaling = SCALINGS["llama3"]
    half = RotaryEmbedding(layout="half", rotary_dim=rotary_dim, scaling=scaling)
    interleaved = RotaryEmbedding(
        layout="interleaved", rotary_dim=rotary_dim, scaling=scaling
    )
    to_half = rope_permutation(heads, head_dim, rotary_dim)
    to_interleaved = rope_permutation(heads, head_dim, rotary_dim, to="interleaved")
    np.testing.assert_array_equal(to_half[to_interleaved], np.arange(heads * head_dim))

    def per_head(layer, x):
        y = layer(x.reshape(2, 5, heads, head_dim), start_index=9)
        return to_numpy(y).reshape(2, 5, heads * head_dim)

    np.testing.assert_allclose(
        per_head(half, x[..., to_half]),
        per_head(interleaved, x)[..., to_half],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        per_head(interleaved, x[..., to_interleaved]),
        per_head(half, x)[..., to_interleaved],
        atol=1e-6,
    )


# keras-hub's RotaryEmbedding, recorded by tests/data/make_keras_hub_rope_fixture.py.
KERAS_HUB = np.load(DATA / "keras_hub_rope.npz")
KERAS_HUB_CASES = sorted({key.split(".")[0] for key in KERAS_HUB.files if "." in key})


@pytest.mark.parametrize("case", KERAS_HUB_CASES)
def test_half_layout_equals_keras_hubs_rotary_embedding(case):
    init = json.loads(str(KERAS_HUB[f"{case}.init"]))
    call = json.loads(str(KERAS_HUB[f"{case}.call"]))
    factor = init.get("scaling_factor", 1.0)
    scaling = None
    if init.get("rope_type") == "yarn":
        scaling = {
            "rope_type": "yarn",
            "factor": factor,
            "original_max_position_embeddings": init[
                "original_max_position_embeddings"
            ],
        }
    elif factor != 1.0:
        scaling = {"rope_type": "linear", "factor": factor}
    layer = RotaryEmbedding(
        max_wavelength=init.get("max_wavelength", 10000), scaling=scaling
    )
    if "positions" in call:
        call["positions"] = np.array(call["positions"], "int32")
    np.testing.assert_allclose(
        to_numpy(layer(KERAS_HUB[f"{case}.x"], **call)),
        KERAS_HUB[f"{case}.output"],
        atol=1e-5,
    )


# Hugging Face's attention layers, recorded by tests/data/make_hf_rope_fixture.py.
HF = np.load(DATA / "hf_rope.npz")
HF_CASES = sorted({key.split(".")[0] for key in HF.files if "." in key})


def hf_case(case):
    config = json.loads(str(HF[f"{case}.config"]))
    heads = config.get("num_attention_heads") or config["n_head"]
    hidden = config.get("hidden_size") or config["n_embd"]
    head_dim = config.get("head_dim") or hidden // heads
    return config, heads, head_dim


@pytest.mark.parametrize("case", HF_CASES)
def test_cos_sin_equal_hugging_faces(case):
    config, _, head_dim = hf_case(case)
    cos, sin = RotaryEmbedding.from_hf_config(config).cos_sin(
        HF[f"{case}.positions"], head_dim
    )
    np.testing.assert_allclose(to_numpy(cos), HF[f"{case}.cos"], atol=1e-5)
    np.testing.assert_allclose(to_numpy(sin), HF[f"{case}.sin"], atol=1e-5)


@pytest.mark.parametrize("case", HF_CASES)
def test_attention_equals_hugging_faces(case):
    # The attention of a tiny random model, its weights moved over: Llama
    # (half layout, every scaling type), Qwen2 (biases), Phi-2 and GPT-NeoX
    # (partial, half), GPT-J (partial, interleaved).
    config, heads, head_dim = hf_case(case)
    x = HF[f"{case}.x"]
    start = int(HF[f"{case}.positions"][0, 0])
    assert (HF[f"{case}.positions"] == start + np.arange(x.shape[1])).all()
    layer = MultiHeadAttention(
        num_heads=heads,
        key_dim=head_dim,
        causal=True,
        rotary_embedding=RotaryEmbedding.from_hf_config(config),
    )
    layer(x)
    weights = []
    for name in "qkv":  # (heads * head_dim, dim) -> (dim, heads, head_dim)
        weights.append(HF[f"{case}.{name}_weight"].T.reshape(-1, heads, head_dim))
        weights.append(HF[f"{case}.{name}_bias"].reshape(heads, head_dim))
    weights.append(HF[f"{case}.o_weight"].T.reshape(heads, head_dim, -1))
    weights.append(HF[f"{case}.o_bias"])
    layer.set_weights(weights)
    np.testing.assert_allclose(
        to_numpy(layer(x, start_index=start)), HF[f"{case}.output"], atol=1e-5
    )


def test_attention_is_unchanged_when_kernels_are_permuted_to_the_other_layout():
    # A checkpoint trained with interleaved pairs (Meta's Llama, GPT-J) runs
    # with the half layout once its q/k kernels (and biases) are permuted.
    heads, head_dim = 2, 8
    x = normal(2, 9, 16)
    scaling = SCALINGS["yarn"]
    interleaved = MultiHeadAttention(
        num_heads=heads,
        key_dim=head_dim,
        causal=True,
        bias_initializer="random_normal",
        rotary_embedding=RotaryEmbedding(layout="interleaved", scaling=scaling),
    )
    half = MultiHeadAttention(
        num_heads=heads,
        key_dim=head_dim,
        causal=True,
        rotary_embedding=RotaryEmbedding(layout="half", scaling=scaling),
    )
    expected = to_numpy(interleaved(x, start_index=40))
    half(x)
    perm = rope_permutation(heads, head_dim)
    weights = []
    for dense in (interleaved.query_dense, interleaved.key_dense):
        kernel, bias = (to_numpy(w) for w in dense.weights)
        weights += [
            kernel.reshape(16, -1)[:, perm].reshape(kernel.shape),
            bias.reshape(-1)[perm].reshape(bias.shape),
        ]
    weights += [to_numpy(w) for w in interleaved.get_weights()[4:]]
    half.set_weights(weights)
    np.testing.assert_allclose(to_numpy(half(x, start_index=40)), expected, atol=1e-5)
    # Without the permutation: the classic porting bug, a different model.
    half.set_weights(interleaved.get_weights())
    assert not np.allclose(to_numpy(half(x, start_index=40)), expected, atol=1e-2)


# `from_hf_config` on committed config.json files of both transformers versions.
CONFIGS = {
    "llama3_1_transformers4.json": (500000.0, "half", None, "llama3"),
    "llama3_1_transformers5.json": (500000.0, "half", None, "llama3"),
    "qwen2_yarn_transformers4.json": (1000000.0, "half", None, "yarn"),
    "llama_yarn_mscale_transformers5.json": (10000.0, "half", None, "yarn"),
    "llama_dynamic_transformers4.json": (10000.0, "half", None, "dynamic"),
    "llama_linear_transformers4.json": (10000.0, "half", None, "linear"),
    "gptj_6b.json": (10000.0, "interleaved", 64, "default"),
    "gpt_neox_transformers4.json": (10000.0, "half", 24, "default"),
    "gpt_neox_transformers5.json": (10000.0, "half", 24, "default"),
    "phi_2_transformers4.json": (10000.0, "half", 32, "default"),
}


def read_config(name):
    return json.loads((DATA / "hf_configs" / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_from_hf_config_reads_both_transformers_versions(name):
    max_wavelength, layout, rotary_dim, kind = CONFIGS[name]
    layer = RotaryEmbedding.from_hf_config(read_config(name))
    assert (layer.max_wavelength, layer.layout, layer.rotary_dim) == (
        max_wavelength,
        layout,
        rotary_dim,
    )
    assert layer._scaling["type"] == kind
    revived = RotaryEmbedding.from_config(layer.get_config())
    assert revived.get_config() == layer.get_config()


@pytest.mark.parametrize("model", ["llama3_1", "gpt_neox"])
def test_both_versions_of_one_config_give_the_same_rotation(model):
    x = normal(1, 4, 3, 128)
    four, five = (
        RotaryEmbedding.from_hf_config(read_config(f"{model}_transformers{v}.json"))
        for v in (4, 5)
    )
    np.testing.assert_array_equal(
        to_numpy(four(x, start_index=9000)), to_numpy(five(x, start_index=9000))
    )


def test_from_hf_config_reads_the_original_context_of_dynamic_scaling():
    layer = RotaryEmbedding.from_hf_config(
        read_config("llama_dynamic_transformers4.json")
    )
    assert layer.scaling["original_max_position_embeddings"] == 4096


def test_from_hf_config_picks_one_layer_type():
    config = read_config("gemma3_transformers5.json")
    full = RotaryEmbedding.from_hf_config(config, layer_type="full_attention")
    sliding = RotaryEmbedding.from_hf_config(config, layer_type="sliding_attention")
    assert (full.max_wavelength, full._scaling["type"], full._scaling["factor"]) == (
        1000000.0,
        "linear",
        8.0,
    )
    assert (sliding.max_wavelength, sliding._scaling["type"]) == (10000.0, "default")
    assert full.rotary_dim is None and full.layout == "half"


def test_examples_run_with_every_name():
    assert keras_attention.RotaryEmbedding is RotaryEmbedding
    assert (
        keras.saving.get_registered_object("keras_attention>RotaryEmbedding")
        is RotaryEmbedding
    )


# Bad inputs: the exact error, the pattern spanning the whole message.

YARN_NO_FACTOR = {"rope_type": "yarn", "original_max_position_embeddings": 64}
GEMMA = {
    "full_attention": {"rope_type": "default"},
    "sliding_attention": {"rope_type": "default"},
}


def rotate(layer=None, x=None, **kwargs):
    layer = layer or RotaryEmbedding()
    return layer(normal(2, 5, 8) if x is None else x, **kwargs)


BAD_INPUTS = [
    pytest.param(
        lambda: RotaryEmbedding(layout="pairs"),
        ValueError,
        r"RotaryEmbedding: `layout` must be one of \['half', 'interleaved'\]\. Received: layout='pairs'",
        id="layout",
    ),
    pytest.param(
        lambda: RotaryEmbedding(rotary_dim=5),
        ValueError,
        r"RotaryEmbedding: `rotary_dim` must be even \(the features are rotated in pairs\)\. Received: rotary_dim=5",
        id="odd rotary_dim",
    ),
    pytest.param(
        lambda: RotaryEmbedding(rotary_dim=0),
        ValueError,
        r"RotaryEmbedding: `rotary_dim` must be None or a positive integer\. Received: rotary_dim=0",
        id="zero rotary_dim",
    ),
    pytest.param(
        lambda: rotate(RotaryEmbedding(rotary_dim=10)),
        ValueError,
        r"RotaryEmbedding: `rotary_dim` must be at most the last dimension of `inputs`\. Received: rotary_dim=10, inputs with last dimension 8",
        id="rotary_dim larger than the features",
    ),
    pytest.param(
        lambda: rotate(x=normal(2, 5, 7)),
        ValueError,
        r"RotaryEmbedding: the last dimension of `inputs` must be even to rotate every feature in pairs; set `rotary_dim` to rotate fewer\. Received: inputs with last dimension 7",
        id="odd feature size",
    ),
    pytest.param(
        lambda: RotaryEmbedding(max_wavelength=0),
        ValueError,
        r"RotaryEmbedding: `max_wavelength` must be a positive finite number\. Received: max_wavelength=0",
        id="max_wavelength",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling="linear"),
        TypeError,
        r"RotaryEmbedding: `scaling` must be None or a dict as Hugging Face writes it in a model's config\.json\. Received: scaling='linear' of type str",
        id="scaling not a dict",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling={"rope_type": "longrope", "factor": 2.0}),
        ValueError,
        r"RotaryEmbedding: the `scaling` type must be one of \['default', 'linear', 'dynamic', 'llama3', 'yarn'\]\. Received: rope_type='longrope'",
        id="unknown scaling type",
    ),
    pytest.param(
        lambda: RotaryEmbedding(
            scaling={"rope_type": "linear", "factor": 2.0, "beta_fast": 32}
        ),
        ValueError,
        r"RotaryEmbedding: unknown key\(s\) \['beta_fast'\] in a `scaling` of type 'linear', which takes \['factor', 'partial_rotary_factor', 'rope_theta', 'rope_type', 'type'\]\. Received: scaling=\{'rope_type': 'linear', 'factor': 2\.0, 'beta_fast': 32\}",
        id="unknown scaling key",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling=YARN_NO_FACTOR),
        ValueError,
        r"RotaryEmbedding: a `scaling` of type 'yarn' needs the key\(s\) \['factor'\]\. Received: scaling=\{'rope_type': 'yarn', 'original_max_position_embeddings': 64\}",
        id="missing scaling key",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling={"type": "dynamic", "factor": 2.0}),
        ValueError,
        r"RotaryEmbedding: dynamic \(NTK\) scaling needs the model's original context length: add 'original_max_position_embeddings' to `scaling` \(the `max_position_embeddings` of the model's config\.json\), or use `RotaryEmbedding\.from_hf_config\(config\)`\. Received: scaling=\{'type': 'dynamic', 'factor': 2\.0\}",
        id="dynamic without the original length",
    ),
    pytest.param(
        lambda: RotaryEmbedding(
            scaling={"rope_type": "linear", "type": "yarn", "factor": 2.0}
        ),
        ValueError,
        r"RotaryEmbedding: `scaling` gives two different types, rope_type='linear' and type='yarn'\. Received: scaling=\{'rope_type': 'linear', 'type': 'yarn', 'factor': 2\.0\}",
        id="two scaling types",
    ),
    pytest.param(
        lambda: RotaryEmbedding(
            scaling={"rope_type": "default", "rope_theta": 500000.0}
        ),
        ValueError,
        r"RotaryEmbedding: `scaling\['rope_theta'\]`=500000\.0 disagrees with `max_wavelength`=10000; pass max_wavelength=500000\.0 \(or use `RotaryEmbedding\.from_hf_config`\)\.",
        id="rope_theta disagrees",
    ),
    pytest.param(
        lambda: RotaryEmbedding(
            scaling={"rope_type": "default", "partial_rotary_factor": 0.5}
        ),
        ValueError,
        r"RotaryEmbedding: `scaling\['partial_rotary_factor'\]`=0\.5 disagrees with `rotary_dim`=None \(every feature rotated\); pass rotary_dim=int\(head_dim \* partial_rotary_factor\) \(or use `RotaryEmbedding\.from_hf_config`\)\.",
        id="partial_rotary_factor without rotary_dim",
    ),
    pytest.param(
        lambda: rotate(
            RotaryEmbedding(rotary_dim=2, scaling={"partial_rotary_factor": 0.5})
        ),
        ValueError,
        r"RotaryEmbedding: `scaling\['partial_rotary_factor'\]`=0\.5 of 8 features is 4, which disagrees with `rotary_dim`=2\.",
        id="partial_rotary_factor disagrees with rotary_dim",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling=GEMMA),
        ValueError,
        r"RotaryEmbedding: `scaling` holds one entry per layer type \(\['full_attention', 'sliding_attention'\]\); pass one of them, e\.g\. scaling=rope_parameters\['full_attention'\], or use `RotaryEmbedding\.from_hf_config\(config, layer_type='full_attention'\)`\. Received: scaling=\{.*\}",
        id="scaling nested by layer type",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling={"rope_type": "linear", "factor": -2.0}),
        ValueError,
        r"RotaryEmbedding: `scaling\['factor'\]` must be a positive finite number\. Received: scaling\['factor'\]=-2\.0",
        id="negative factor",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling={"rope_type": "linear", "factor": "2"}),
        TypeError,
        r"RotaryEmbedding: `scaling\['factor'\]` must be a positive finite number\. Received: scaling\['factor'\]='2' of type str",
        id="factor of the wrong type",
    ),
    pytest.param(
        lambda: RotaryEmbedding(
            scaling={
                **SCALINGS["llama3"],
                "low_freq_factor": 4.0,
                "high_freq_factor": 1.0,
            }
        ),
        ValueError,
        r"RotaryEmbedding: `scaling\['high_freq_factor'\]` must be greater than `scaling\['low_freq_factor'\]`\. Received: high_freq_factor=1\.0, low_freq_factor=4\.0",
        id="llama3 frequency factors",
    ),
    pytest.param(
        lambda: RotaryEmbedding(scaling={**SCALINGS["yarn"], "truncate": "no"}),
        TypeError,
        r"RotaryEmbedding: `scaling\['truncate'\]` must be a bool\. Received: scaling\['truncate'\]='no'",
        id="yarn truncate",
    ),
    pytest.param(
        lambda: RotaryEmbedding(rotary_dim=2, scaling=SCALINGS["dynamic"]),
        ValueError,
        r"RotaryEmbedding: dynamic scaling needs `rotary_dim` > 2 \(its base grows as a power d / \(d - 2\)\)\. Received: rotary_dim=2",
        id="dynamic with two rotated features",
    ),
    pytest.param(
        lambda: rotate(positions=np.arange(4)),
        ValueError,
        r"RotaryEmbedding: `positions` must have shape \(seq_len,\)=\(5,\) or \(batch, seq_len\)=\(2, 5\)\. Received: positions\.shape=\(4,\)",
        id="positions of the wrong length",
    ),
    pytest.param(
        lambda: rotate(positions=np.zeros((3, 5), "int32")),
        ValueError,
        r"RotaryEmbedding: `positions` must have shape \(seq_len,\)=\(5,\) or \(batch, seq_len\)=\(2, 5\)\. Received: positions\.shape=\(3, 5\)",
        id="positions of the wrong batch",
    ),
    pytest.param(
        lambda: rotate(positions=np.arange(5.0)),
        TypeError,
        r"RotaryEmbedding: `positions` must be an integer tensor\. Received: positions with dtype float32",
        id="float positions",
    ),
    pytest.param(
        lambda: rotate(positions=np.arange(5), start_index=2),
        ValueError,
        r"RotaryEmbedding: pass `positions` or `start_index`, not both\. Received: start_index=2 and positions",
        id="positions and start_index",
    ),
    pytest.param(
        lambda: rotate(start_index=-1),
        ValueError,
        r"RotaryEmbedding: `start_index` must be >= 0\. Received: start_index=-1",
        id="negative start_index",
    ),
    pytest.param(
        lambda: rotate(x=normal(2, 5)),
        ValueError,
        r"RotaryEmbedding: `inputs` must have shape \(batch, seq_len, features\) or \(batch, seq_len, heads, features\), with known features\. Received: inputs\.shape=\(2, 5\)",
        id="rank 2 inputs",
    ),
    pytest.param(
        lambda: rotate(x=np.ones((2, 5, 8), "int32")),
        TypeError,
        r"RotaryEmbedding: `inputs` must be a floating-point tensor\. Received: inputs with dtype int32",
        id="integer inputs",
    ),
    pytest.param(
        lambda: RotaryEmbedding.from_hf_config(
            read_config("gemma3_transformers5.json")
        ),
        ValueError,
        r"RotaryEmbedding\.from_hf_config: `config\['rope_parameters'\]` holds one entry per layer type; pass `layer_type`, one of \['full_attention', 'sliding_attention'\]\. Received: layer_type=None",
        id="from_hf_config without layer_type",
    ),
    pytest.param(
        lambda: RotaryEmbedding.from_hf_config({"rope_theta": 10000.0}),
        ValueError,
        r"RotaryEmbedding\.from_hf_config: `config` must give the head size: `head_dim`, or `hidden_size` and `num_attention_heads`\. Received: config with keys \['rope_theta'\]",
        id="from_hf_config without a head size",
    ),
    pytest.param(
        lambda: RotaryEmbedding.from_hf_config(
            {**read_config("llama3_1_transformers5.json"), "rope_theta": 10000.0}
        ),
        ValueError,
        r"RotaryEmbedding\.from_hf_config: the config gives two values of `rope_theta`: 500000\.0 in its RoPE entry and 10000\.0 at the top level\.",
        id="from_hf_config with two rope_theta",
    ),
    pytest.param(
        lambda: RotaryEmbedding.from_hf_config("config.json"),
        TypeError,
        r"RotaryEmbedding\.from_hf_config: `config` must be a dict \(the contents of config\.json\)\. Received: config of type str",
        id="from_hf_config on a path",
    ),
    pytest.param(
        lambda: rope_permutation(2, 8, rotary_dim=10),
        ValueError,
        r"rope_permutation: `rotary_dim` must be at most `head_dim`\. Received: rotary_dim=10, head_dim=8",
        id="rope_permutation rotary_dim",
    ),
    pytest.param(
        lambda: rope_permutation(2, 8, to="llama"),
        ValueError,
        r"rope_permutation: `to` must be one of \['half', 'interleaved'\]\. Received: to='llama'",
        id="rope_permutation layout",
    ),
    pytest.param(
        lambda: RotaryEmbedding().rotary_dim_for(7),
        ValueError,
        r"RotaryEmbedding: the last dimension of `inputs` must be even to rotate every feature in pairs; set `rotary_dim` to rotate fewer\. Received: inputs with last dimension 7",
        id="rotary_dim_for odd features",
    ),
    pytest.param(
        lambda: RotaryEmbedding(rotary_dim=10).rotary_dim_for(8),
        ValueError,
        r"RotaryEmbedding: `rotary_dim` must be at most the last dimension of `inputs`\. Received: rotary_dim=10, inputs with last dimension 8",
        id="rotary_dim_for fewer features",
    ),
    pytest.param(
        lambda: rotate(x=normal(2, 5, 3, 8), positions=np.zeros((2, 3), "int32")),
        ValueError,
        r"RotaryEmbedding: `positions` must have shape \(seq_len,\)=\(5,\) or \(batch, seq_len\)=\(2, 5\)\. Received: positions\.shape=\(2, 3\)",
        id="positions of the wrong length on heads",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message) as caught:
        call()
    assert type(caught.value) is error  # not a subclass, not a backend error


def test_rotary_dim_for_gives_the_rotated_features():
    assert RotaryEmbedding().rotary_dim_for(64) == 64
    assert RotaryEmbedding(rotary_dim=16).rotary_dim_for(64) == 16
    config = {"head_dim": 64, "num_attention_heads": 4, "partial_rotary_factor": 0.25}
    assert RotaryEmbedding.from_hf_config(config).rotary_dim_for(64) == 16


@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])
def test_heads_at_positions_equal_each_head_rotated_alone(per_row):
    # (batch, seq_len, heads, head_dim), as MultiHeadAttention's projected
    # heads, with positions (seq_len,) or (batch, seq_len).
    x = normal(2, 5, 3, 8)
    positions = np.array([[4, 0, 7, 7, 2], [9, 1, 3, 0, 6]], "int32")
    if not per_row:
        positions = positions[0]
    layer = RotaryEmbedding(layout="interleaved", rotary_dim=6)
    heads = to_numpy(layer(x, positions=positions))
    for head in range(3):
        alone = to_numpy(layer(x[:, :, head], positions=positions))
        np.testing.assert_allclose(heads[:, :, head], alone, atol=1e-6)
    for row in range(2):
        at = positions[row] if per_row else positions
        expected = reference_rotation(x[row : row + 1], at, 10000.0, "interleaved", 6)
        np.testing.assert_allclose(heads[row : row + 1], expected, atol=1e-5)


def test_a_keras_mask_passes_through():
    # As on the projected heads of a padded sequence in MultiHeadAttention:
    # no warning that the mask is lost (warnings are errors in the tests).
    tokens = np.array([[3, 4, 0], [5, 0, 0]])
    vectors = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    layer = RotaryEmbedding()
    layer(vectors)
    mask = keras.ops.convert_to_tensor(tokens != 0)
    np.testing.assert_array_equal(
        to_numpy(layer.compute_mask(vectors, mask)), tokens != 0
    )

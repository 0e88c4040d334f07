"""quantize's checkpoint check and the accuracy gate's config check judge RoPE the same way: one
normalising comparison (rotary_base 500000 = rope_theta 500000.0, `type` = `rope_type`)."""

from __future__ import annotations

import pytest

from bench.analysis import accuracy_metrics as am
from bench.stages.quantize import checkpoint_config_problems

SOURCE = {
    "architectures": ["LlamaForCausalLM"],
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
}
LLAMA3 = {"type": "llama3", "factor": 8.0}


def export(base=500000.0, **scaling):
    return {"architecture": "LlamaForCausalLM", "rotary_base": base, "rotary_scaling": scaling}


def verdicts(exported):
    kept_by_quantize = checkpoint_config_problems(SOURCE, exported, "tensorrt_llm") == []
    kept_by_gate = am.passed(am.config_checks(SOURCE, {"pretrained_config": exported}))
    return kept_by_quantize, kept_by_gate


@pytest.mark.parametrize(
    "exported,kept",
    [
        (export(**LLAMA3), True),
        (export(base=500000, **LLAMA3), True),  # an int base is the same base
        (export(rope_type="llama3", factor=8), True),  # rope_type, and an int factor
        (export(**SOURCE["rope_scaling"]), True),  # every key, exactly as the model's
        (export(type="linear", factor=8.0), False),
        (export(type="llama3", factor=4.0), False),
        (export(**LLAMA3, low_freq_factor=2.0), False),  # present and different
        (export(base=10000, **LLAMA3), False),
        ({"architecture": "LlamaForCausalLM", "rotary_base": 500000.0}, False),  # dropped
    ],
    ids=[
        "type",
        "int-base",
        "rope-type",
        "all-keys",
        "linear",
        "factor",
        "low-freq",
        "base",
        "drop",
    ],
)
def test_both_rope_checks_give_the_same_verdict(exported, kept):
    assert verdicts(exported) == (kept, kept)

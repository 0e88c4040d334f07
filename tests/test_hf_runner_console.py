"""The CPU runner's console report says what ran: the transformers runner, not TensorRT-LLM."""

from __future__ import annotations

from importlib.metadata import version

from bench.backends.hf_transformers import runner as hf_runner
from bench.backends.trtllm.parse import parse_console


def report() -> dict:
    requests = [{"input_ids": [1] * 32, "output_tokens": 16} for _ in range(4)]
    return hf_runner.build_report(
        model="trtllm-repro/tiny-llama-3.1",
        model_path="/m",
        dataset="/d.jsonl",
        requests=requests,
        latencies_ms=[100.0, 110.0, 120.0, 130.0],
        output_lens=[16, 16, 16, 16],
        total_s=0.5,
        max_batch=8,
        device="cpu",
        dtype="bfloat16",
    )


def test_the_header_names_the_runner_and_its_versions():
    text = hf_runner.console_report(report())
    assert "PYTORCH BACKEND" not in text and "TensorRT-LLM Version" not in text
    assert f"= {hf_runner.RUNNER_TITLE}" in text
    runner = next(line for line in text.splitlines() if line.startswith("Runner:"))
    assert f"transformers {version('transformers')}" in runner
    assert f"torch {version('torch')}" in runner and "cpu" in runner


def test_the_console_parser_still_reads_the_report():
    parsed = parse_console(hf_runner.console_report(report()), isl=32, osl=16, requests=4)
    assert parsed.identity.backend == hf_runner.BACKEND
    assert parsed.identity.model == "trtllm-repro/tiny-llama-3.1"
    assert parsed.metrics.output_tok_s == 128.0 and parsed.status == "ok"

"""The kit against TensorRT-LLM 1.0's real rules (issue 10), enforced by the fakes: the runtime's
prompt limit, trtllm-bench's own engine build settings, the strict LLM-arguments YAML, the
group options, the PyTorch token heuristic and the report order. Each test runs the command the
kit builds through the fake and, where a fix was made, the pre-fix command too, which must fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
import yaml
from test_trtllm_commands import (
    BIN,
    build_small_engine,
    dataset,
    manifest_with,
    run,
    tiny_checkpoint,
    tokenizer_dir,
)

from bench.backends.base import PointPaths
from bench.backends.trtllm import commands as trtllm
from bench.backends.trtllm import parse as parse_trtllm
from bench.core.manifest import load_manifest
from bench.schema import record
from bench.stages.sweep import extra_options_yaml

REPO = Path(__file__).resolve().parents[1]
H100 = REPO / "manifests" / "llama-3.1-8b-fp8-h100.toml"
NVIDIA = REPO / "manifests" / "nvidia-perf-overview-1.0.toml"


def h100_engine(tmp_path: Path) -> Path:
    """The fake trtllm-build run with exactly the H100 manifest's build argv."""
    manifest = load_manifest(H100)
    engine = tmp_path / "engine"
    argv = trtllm.build_argv(
        manifest, checkpoint_dir=tiny_checkpoint(tmp_path / "ckpt"), engine_dir=engine
    )
    proc = run(BIN / argv[0], *argv[1:])
    assert proc.returncode == 0, proc.stderr
    return engine


def h100_throughput(tmp_path: Path, engine: Path, isl: int, osl: int) -> list[str]:
    manifest = load_manifest(H100)
    point = next(p for p in manifest.sweep.points if (p.isl, p.osl) == (isl, osl))
    paths = PointPaths(
        model_path=tokenizer_dir(tmp_path),
        dataset=dataset(tmp_path / f"d{isl}.jsonl", isl=isl, osl=osl, n=2),
        report_json=tmp_path / "r.json",
        workspace=tmp_path / "ws",
        engine_dir=engine,
    )
    return trtllm.throughput_argv(manifest, point, paths, kv_fraction=0.95)


def test_isl_16384_runs_with_chunked_context_and_fails_without(tmp_path):
    engine = h100_engine(tmp_path)
    argv = h100_throughput(tmp_path, engine, 16384, 128)
    assert "--enable_chunked_context" in argv
    ok = run(BIN / argv[0], *argv[1:])
    assert ok.returncode == 0, ok.stderr
    assert "maxInputLen: 32767 = maxSequenceLen - 1 since chunked context is enabled" in ok.stdout

    pre_fix = [a for a in argv if a != "--enable_chunked_context"]
    refused = run(BIN / pre_fix[0], *pre_fix[1:])
    assert refused.returncode == 1
    assert "Prompt length (16384) exceeds maximum input length (8192)" in refused.stderr


def test_every_point_of_the_seed_grid_fits_the_runtime_limit():
    manifest = load_manifest(H100)
    limit = trtllm.runtime_max_input_len(manifest)
    assert limit == 32767
    assert all(p.isl <= limit for p in manifest.sweep.points)
    unchunked = manifest_with(H100, runtime={"enable_chunked_context": False})
    refused = [p for p in unchunked.sweep.points if p.isl > trtllm.runtime_max_input_len(unchunked)]
    assert len(refused) == 8 and {p.isl for p in refused} == {16384}


def test_chunked_context_needs_paged_context_fmha(tmp_path):
    out = tmp_path / "engine"
    proc = run(
        BIN / "trtllm-build",
        *("--checkpoint_dir", str(tiny_checkpoint(tmp_path / "ckpt")), "--output_dir", str(out)),
        *("--max_seq_len", "128", "--use_paged_context_fmha", "disable"),
    )
    assert proc.returncode == 0, proc.stderr
    data = dataset(tmp_path / "d.jsonl", isl=32, osl=8)
    proc = run(
        BIN / "trtllm-bench",
        *("-m", "tiny", "--model_path", str(tokenizer_dir(tmp_path)), "throughput"),
        *("--backend", "tensorrt", "--engine_dir", str(out), "--dataset", str(data)),
        "--enable_chunked_context",
    )
    assert proc.returncode == 1
    assert "Chunked context requires paged context FMHA" in proc.stderr


def test_engine_is_built_like_trtllm_bench_builds_its_own(tmp_path):
    plugins = json.loads((h100_engine(tmp_path) / "config.json").read_text())["build_config"][
        "plugin_config"
    ]
    assert plugins["multiple_profiles"] is True
    assert plugins["use_paged_context_fmha"] is True and plugins["use_fp8_context_fmha"] is True


def pytorch_throughput(tmp_path: Path, data: Path, *extra: str):
    model = tokenizer_dir(tmp_path)
    (model / "config.json").write_text(json.dumps({"num_attention_heads": 4, "hidden_size": 64}))
    return run(
        BIN / "trtllm-bench",
        *("-m", "tiny", "--model_path", str(model), "throughput", "--backend", "pytorch"),
        *("--dataset", str(data), "--report_json", str(tmp_path / "r.json"), *extra),
    )


@pytest.mark.parametrize(
    "options,error",
    [
        ({"use_cuda_graph": True}, "use_cuda_graph\n  Extra inputs are not permitted"),
        (
            {"cuda_graph_config": {"padding_enabled": True}},
            "cuda_graph_config.padding_enabled\n  Extra inputs are not permitted",
        ),
    ],
)
def test_extra_llm_api_options_are_validated_strictly(tmp_path, options, error):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(options))
    data = dataset(tmp_path / "d.jsonl", isl=32, osl=8)
    proc = pytorch_throughput(tmp_path, data, "--extra_llm_api_options", str(extra))
    assert proc.returncode == 1
    assert "validation error for TorchLlmArgs" in proc.stderr and error in proc.stderr


def test_nvidia_yaml_is_accepted(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(extra_options_yaml(load_manifest(NVIDIA)))
    data = dataset(tmp_path / "d.jsonl", isl=32, osl=8)
    proc = pytorch_throughput(tmp_path, data, "--extra_llm_api_options", str(extra))
    assert proc.returncode == 0, proc.stderr


def test_revision_is_not_a_1_0_option_but_is_a_later_one(tmp_path):
    args = ("-m", "tiny", "--revision", "main", "throughput")
    assert "No such option: --revision" in run(BIN / "trtllm-bench", *args).stderr
    later = run(BIN / "trtllm-bench", *args, env={**os.environ, "FAKE_TRTLLM_RELEASE": "1.2"})
    assert "No such option" not in later.stderr


def test_pytorch_heuristic_fits_the_longest_prompt_and_a_given_limit_does_not(tmp_path):
    data = dataset(tmp_path / "d.jsonl", isl=9000, osl=8, n=2)
    proc = pytorch_throughput(tmp_path, data)
    assert proc.returncode == 0, proc.stderr
    tokens = json.loads((tmp_path / "r.json").read_text())["world_info"]["max_num_tokens"]
    assert tokens == 9000 + 2048  # max ISL + max batch size
    refused = pytorch_throughput(tmp_path, data, "--max_num_tokens", "8192")
    assert refused.returncode == 1
    assert "should not exceed max_num_tokens (8192)" in refused.stderr


def test_report_json_is_written_before_the_console_report(tmp_path):
    data = dataset(tmp_path / "d.jsonl", isl=32, osl=8)
    out = pytorch_throughput(tmp_path, data).stdout
    assert out.index("Writing report to") < out.index("PERFORMANCE OVERVIEW")


def test_small_engine_limit_is_min_of_seq_len_and_tokens(tmp_path):
    """max_input_len (64) is not the limit: min(max_seq_len - 1, max_num_tokens) = 127 is."""
    engine = tmp_path / "engine"
    assert build_small_engine(tiny_checkpoint(tmp_path / "ckpt"), engine).returncode == 0
    data = dataset(tmp_path / "d.jsonl", isl=100, osl=8)
    proc = run(
        BIN / "trtllm-bench",
        *("-m", "tiny", "--model_path", str(tokenizer_dir(tmp_path)), "throughput"),
        *("--backend", "tensorrt", "--engine_dir", str(engine), "--dataset", str(data)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "maxInputLen: 127 = min(maxSequenceLen - 1, maxNumTokens)" in proc.stdout


def test_short_outputs_on_the_pytorch_backend_are_invalid(tmp_path, monkeypatch):
    """trtllm-bench passes --eos_id as SamplingParams(end_id=...), and the LLM API adds the EOS
    ids of generation_config.json only when end_id is None (llmapi/llm.py,
    _prepare_sampling_params): -1 therefore overrides them on the PyTorch backend too. Should a
    release change that, outputs come back short, and the kit must refuse the number."""
    monkeypatch.setenv("FAKE_TRTLLM_SHORT", "32/64")
    data = dataset(tmp_path / "d.jsonl", isl=32, osl=64)
    proc = pytorch_throughput(tmp_path, data, "--eos_id", str(trtllm.EOS_IGNORED))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    result = record.judge(
        parse_trtllm.parse_report_json(doc, isl=32, osl=64, requests=8, source_file="r.json")
    )
    assert result.status == "invalid" and result.failure == "length_mismatch"
    assert result.identity.backend == "trtllm-pytorch"


def test_report_says_whether_chunked_context_was_on():
    from bench.analysis.report_sections import chunked_context_note

    assert chunked_context_note(load_manifest(H100)).startswith("; chunked context on (off by")
    assert "0.16" in chunked_context_note(load_manifest(H100))
    assert chunked_context_note(load_manifest(NVIDIA)).startswith("; chunked context off")
    assert chunked_context_note(load_manifest(REPO / "manifests" / "demo.toml")) == ""


@pytest.mark.slow
def test_fake_make_all_runs_all_64_seed_points_including_isl_16384(tmp_path):
    """The H100 manifest's engine and runtime tables as they are, on the demo's tiny model with
    2 requests per point: every one of the 64 points runs under 1.0's real prompt-length rule."""
    from test_fake_h100_e2e import pipeline_env, records

    data = tomllib.loads(H100.read_text())
    tiny = tomllib.loads(
        (REPO / "tests" / "data" / "manifests" / "fake-h100-tensorrt.toml").read_text()
    )
    data |= {"model": tiny["model"], "quantization": tiny["quantization"], "name": "grid-64"}
    data |= {"accuracy": tiny["accuracy"]}  # the real MMLU archive is not fetched here
    data.pop("reference", None)
    data["sweep"]["points"] = [{**p, "requests": 2} for p in data["sweep"]["points"]]
    manifest = tmp_path / "grid-64.toml"
    manifest.write_text(tomli_w.dumps(data))
    proc = subprocess.run(  # 64 points: longer than test_fake_h100_e2e.make's 170 s allows
        ["make", "all", f"MANIFEST={manifest}", f"PYTHON={sys.executable}"],
        cwd=REPO,
        env=pipeline_env(tmp_path, fakes=True, inject={}),
        text=True,
        capture_output=True,
        timeout=1500,
    )
    code, out = proc.returncode, proc.stdout + proc.stderr
    got = records(tmp_path / "results" / "grid-64")
    assert len(got) == 64
    assert {k: r["status"] for k, r in got.items() if r["status"] != "ok"} == {}, out[-3000:]
    assert got[(16384, 16384)]["identity"]["max_seq_len"] == 32768
    assert code == 0, out[-3000:]

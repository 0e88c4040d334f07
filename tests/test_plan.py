"""`make plan` is every command the pipeline would run, exactly: the YAML that
--extra_llm_api_options names, the image's interpreter, and estimates that agree with what the
manifest's reference measured (issue 10)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from bench.core.manifest import load_manifest
from bench.core.run import Run, RunPaths
from bench.stages.plan import plan_lines

REPO = Path(__file__).resolve().parents[1]
NVIDIA = REPO / "manifests" / "nvidia-perf-overview-1.0.toml"
H100 = REPO / "manifests" / "llama-3.1-8b-fp8-h100.toml"


def plan_of(path: Path, monkeypatch) -> list[str]:
    monkeypatch.chdir(REPO)  # the manifest's reference path is relative to the kit
    return plan_lines(Run(RunPaths.for_run(path.stem), load_manifest(path), path), None)


def test_plan_writes_the_yaml_it_passes(run_roots, monkeypatch):
    lines = plan_of(NVIDIA, monkeypatch)
    start = next(i for i, line in enumerate(lines) if line.startswith("cat > "))
    end = lines.index("EOF", start)
    written = shlex.split(lines[start])[2]
    assert yaml.safe_load("\n".join(lines[start + 1 : end])) == {
        "cuda_graph_config": load_manifest(NVIDIA).runtime.extra_llm_api_options[
            "cuda_graph_config"
        ]
    }
    sweep = [line for line in lines if line.startswith("trtllm-bench ")]
    assert len(sweep) == 10
    for line in sweep:
        argv = shlex.split(line.split("  # ")[0])
        assert argv[argv.index("--extra_llm_api_options") + 1] == written


def test_plan_uses_the_images_interpreter(run_roots, monkeypatch):
    lines = plan_of(NVIDIA, monkeypatch)
    prepare = [line for line in lines if "prepare_dataset.py" in line]
    assert prepare and all(line.startswith("python3 ") for line in prepare)


def test_slowest_nvidia_point_is_estimated_from_the_published_rate(run_roots, monkeypatch):
    lines = plan_of(NVIDIA, monkeypatch)
    (slowest,) = [line for line in lines if "# isl20000_osl2000" in line]
    # 1000 requests x 2000 tokens / 1,351 tok/s + 33 s start-up = 25:13 (the model said 12:43)
    assert slowest.endswith("est. 0:25:13 (from the published 1,351 tok/s)")


def test_plan_passes_chunked_context_to_every_h100_point(run_roots, monkeypatch):
    lines = [line for line in plan_of(H100, monkeypatch) if line.startswith("trtllm-bench ")]
    assert len(lines) == 64 and all("--enable_chunked_context" in line for line in lines)
    build = next(line for line in plan_of(H100, monkeypatch) if line.startswith("trtllm-build"))
    assert "--multiple_profiles enable" in build

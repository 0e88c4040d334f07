"""bench.stages.preflight: pure checks over provenance dicts built from real and constructed
captures."""

from __future__ import annotations

import copy
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.core.manifest import Manifest, parse_manifest
from bench.core.run import RunPaths
from bench.gpu import gpus
from bench.gpu.gpu_info import parse_nvidia_smi_xml, visible_gpus
from bench.stages import preflight
from bench.stages.preflight import (
    DiskNeed,
    Finding,
    check_disk,
    check_hf_token,
    estimate_disk,
    expected_gpu,
    gpu_checks,
    model_params,
    recommended_commands,
)
from tests.conftest import CPU_MANIFEST_TOML, SHARED

SXM_XML = SHARED / "fixtures" / "nvidia-smi" / "h100-sxm"
SXM_XML = SXM_XML / "nvidia-smi-q.xml"
PCIE_XML = (
    Path(__file__).parent / "data" / "nvidia-smi" / "h100-pcie-constructed" / "nvidia-smi-q.xml"
)
OWN_PID = 1


def manifest(**changes: Any) -> Manifest:
    """Llama 3.1 8B FP8 on one H100 SXM; `changes` replace whole tables."""
    data: dict[str, Any] = {
        "name": "llama8b",
        "model": {
            "source": "hf",
            "repo": "meta-llama/Llama-3.1-8B-Instruct",
            "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
            "gated": True,
        },
        "quantization": {"method": "modelopt", "calibration": {"source": "synthetic"}},
        "engine": {"backend": "trtllm-pytorch", "max_seq_len": 4096},
        "sweep": {"points": [{"isl": 128, "osl": 128, "requests": 30000}]},
        "hardware": {"gpu": "H100-SXM", "gpus": 1},
    }
    data.update(changes)
    return parse_manifest(data)


def cpu_manifest() -> Manifest:
    return manifest(
        model={"source": "builtin", "repo": "kit/tiny-llama", "revision": "v1"},
        quantization={
            "method": "none",
            "format": "none",
            "kv_cache_dtype": "auto",
            "device": "cpu",
        },
        engine={"backend": "hf-transformers", "max_seq_len": 256},
        runtime={"device": "cpu"},
        sweep={"points": [{"isl": 16, "osl": 16, "requests": 4}]},
    )


def prov_from(xml: Path, **env: str) -> dict[str, Any]:
    if not xml.is_file():
        pytest.skip(f"{xml} not present (../shared fixtures)")
    return {
        "gpus": parse_nvidia_smi_xml(xml.read_text()),
        "gpu_note": None,
        "gpu_cross_check": {"disagreements": []},
        "environment": env,
        "credentials_present": [],
    }


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def levels(findings: list[Finding]) -> set[str]:
    return {f.level for f in findings}


# ----------------------------------------------------------------------------- GPU checks


def test_the_captured_h100_sxm_passes_every_gpu_check() -> None:
    findings = gpu_checks(prov_from(SXM_XML), manifest(), OWN_PID)
    assert levels(findings) == {"ok"}, findings
    assert set(by_check(findings)) == {
        "gpu count",
        "gpu model",
        "power limit",
        "persistence",
        "mig",
        "other processes",
        "clock events",
    }
    assert "SXM" in by_check(findings)["gpu model"].message


def test_an_h100_pcie_where_sxm_is_expected_warns_with_the_published_gap() -> None:
    findings = by_check(gpu_checks(prov_from(PCIE_XML), manifest(), OWN_PID))
    model = findings["gpu model"]
    assert model.level == "warn"
    assert "GPU0 NVIDIA H100 PCIe is PCIe" in model.message
    assert "about 60%" in model.message
    assert "NVIDIA/TensorRT-LLM#6294" in model.message
    assert findings["other processes"].level == "warn"
    assert "pid 4242 /usr/bin/python3 (1010 MiB)" in findings["other processes"].message


def test_an_h100_pcie_manifest_accepts_the_pcie_card() -> None:
    m = manifest(hardware={"gpu": "H100-PCIe", "gpus": 1})
    assert by_check(gpu_checks(prov_from(PCIE_XML), m, OWN_PID))["gpu model"].level == "ok"


def test_another_gpu_model_warns() -> None:
    prov = prov_from(SXM_XML)
    prov["gpus"][0]["name"] = "NVIDIA A100-SXM4-80GB"
    finding = by_check(gpu_checks(prov, manifest(), OWN_PID))["gpu model"]
    assert finding.level == "warn"
    assert "not be comparable" in finding.message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("H100-SXM", ("H100", "SXM")),
        ("H100-PCIe", ("H100", "PCIe")),
        ("H200", ("H200", None)),
        ("a100-sxm4", ("A100", "SXM")),
        ("H100-NVL", ("H100", "NVL")),
    ],
)
def test_expected_gpu(spec: str, expected: tuple[str, str | None]) -> None:
    assert expected_gpu(spec) == expected


def test_fewer_gpus_than_the_manifest_needs_is_an_error() -> None:
    m = manifest(
        hardware={"gpu": "H100-SXM", "gpus": 2},
        engine={"backend": "trtllm-pytorch", "max_seq_len": 4096, "tp_size": 2},
    )
    finding = by_check(gpu_checks(prov_from(SXM_XML), m, OWN_PID))["gpu count"]
    assert finding.level == "error"
    assert finding.message == "1 GPU(s) visible but hardware.gpus = 2"


def test_cuda_visible_devices_narrows_the_gpus() -> None:
    prov = prov_from(SXM_XML)
    second = copy.deepcopy(prov["gpus"][0])
    second.update(index=1, uuid="GPU-abcdef00-0000-0000-0000-000000000000")
    prov["gpus"].append(second)
    assert [g["index"] for g in visible_gpus(prov)] == [0, 1]
    for spec, indices in [
        ("1", [1]),
        ("GPU-abcdef", [1]),
        ("1,0", [1, 0]),
        ("", []),
        ("0,7,1", [0]),
        ("-1", []),
    ]:
        prov["environment"] = {"CUDA_VISIBLE_DEVICES": spec}
        assert [g["index"] for g in visible_gpus(prov)] == indices, spec
    prov["environment"] = {"CUDA_VISIBLE_DEVICES": ""}
    finding = by_check(gpu_checks(prov, manifest(), OWN_PID))["gpu count"]
    assert (finding.level, finding.message) == (
        "error",
        "0 GPU(s) visible (NVML sees 2; CUDA_VISIBLE_DEVICES hides the rest) but hardware.gpus = 1",
    )


def test_machine_settings_that_cost_throughput() -> None:
    prov = prov_from(SXM_XML)
    gpu = prov["gpus"][0]
    gpu.update(
        power_limit_enforced_w=500.0,
        persistence_mode=False,
        mig_enabled=True,
        clock_event_reasons=["gpu_idle", "hw_thermal_slowdown"],
        processes=[
            {"pid": OWN_PID, "used_memory_mib": 1, "name": "me"},
            {"pid": 77, "used_memory_mib": 30000, "name": "python"},
        ],
    )
    findings = by_check(gpu_checks(prov, manifest(), OWN_PID))
    assert findings["power limit"].level == "warn"
    assert findings["power limit"].message.startswith(
        "GPU0: power limit 500 W is below its default 700 W (max 700 W)"
    )
    assert findings["persistence"].level == "warn"
    assert findings["mig"].level == "error"
    assert (
        findings["clock events"].message
        == "clocks are held back right now: GPU0: hw_thermal_slowdown"
    )
    others = findings["other processes"].message
    assert "pid 77 python (30000 MiB)" in others
    assert "pid 1 " not in others


def test_nvml_and_nvidia_smi_disagreeing_warns() -> None:
    prov = prov_from(SXM_XML)
    prov["gpu_cross_check"]["disagreements"] = [
        {"index": 0, "field": "power_limit_enforced_w", "nvml": 500.0, "nvidia_smi": 700.0}
    ]
    finding = by_check(gpu_checks(prov, manifest(), OWN_PID))["nvml vs smi"]
    assert (finding.level, finding.message) == (
        "warn",
        "GPU0 power_limit_enforced_w: NVML 500.0, nvidia-smi 700.0",
    )


def test_no_gpu() -> None:
    prov = {"gpus": [], "gpu_note": "no NVIDIA GPU found (NVML: NVML Shared Library Not Found)"}
    assert gpu_checks(prov, cpu_manifest(), OWN_PID) == [
        Finding("skipped", "gpu", "runtime.device = 'cpu': GPU checks skipped")
    ]
    [finding] = gpu_checks(prov, manifest(), OWN_PID)
    assert finding.level == "error"
    assert "no NVIDIA GPU found (NVML: NVML Shared Library Not Found)" in finding.message


def test_recommended_commands_use_the_boards_max_power() -> None:
    commands = recommended_commands(prov_from(SXM_XML)["gpus"])
    assert commands[0].startswith("sudo nvidia-smi -pm 1")
    assert commands[1].startswith("sudo nvidia-smi -rgc")
    assert commands[2].startswith("sudo nvidia-smi -pl 700 ")
    assert "-pl <max_power_limit>" in recommended_commands([])[2]


# ----------------------------------------------------------------------------- disk and token


LLAMA_31_8B_CONFIG = {  # the keys of meta-llama/Llama-3.1-8B-Instruct's config.json that count
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}


def test_model_params_of_llama_31() -> None:
    assert model_params(LLAMA_31_8B_CONFIG) == 8_030_261_248
    assert gpus.MODELS["meta-llama/Llama-3.1-8B-Instruct"].all_params == 8_030_261_248
    assert gpus.MODELS["meta-llama/Llama-3.1-70B-Instruct"].all_params == 70_553_706_496
    assert model_params({"hidden_size": 8}) is None


def test_disk_estimate_for_llama_8b(tmp_path: Path) -> None:
    paths = RunPaths("r", tmp_path / "results", tmp_path / "work", tmp_path / "models", tmp_path)
    needs, basis = estimate_disk(manifest(), paths, None)
    assert basis == "8.03B parameters from the table of known models"
    sizes = {n.what: n.bytes for n in needs}
    assert sizes == {
        "datasets": 30000 * 128 * 7,
        "model snapshot": 2 * 8_030_261_248,
        "FP8 checkpoint": 8_030_261_248,
    }
    trt = manifest(
        engine={
            "backend": "trtllm-tensorrt",
            "max_seq_len": 4096,
            "max_batch_size": 256,
            "max_num_tokens": 8192,
        }
    )
    assert {n.what: n.bytes for n in estimate_disk(trt, paths, None)[0]}["engine"] == 8_030_261_248
    config = {**LLAMA_31_8B_CONFIG, "num_hidden_layers": 1}
    assert estimate_disk(manifest(), paths, config)[1].endswith("from config.json")
    needs, basis = estimate_disk(cpu_manifest(), paths, None)
    assert [n.what for n in needs] == ["datasets"]
    assert "builtin demo model" in basis


def test_check_disk_adds_up_needs_on_one_filesystem() -> None:
    needs = [
        DiskNeed("model snapshot", "models", Path("m"), 16 * 10**9),
        DiskNeed("FP8 checkpoint", "work", Path("w"), 8 * 10**9),
        DiskNeed("datasets", "results", Path("d"), 10**6),
    ]
    same_fs = {"models": (1, 30 * 10**9), "work": (1, 30 * 10**9), "results": (1, 30 * 10**9)}
    [finding] = check_disk(needs, same_fs)
    assert finding.level == "ok"
    assert finding.message.startswith("models/results/work: 24.0 GB needed")
    tight = {k: (1, 25 * 10**9) for k in same_fs}
    assert check_disk(needs, tight)[0].level == "warn"
    full = {k: (1, 20 * 10**9) for k in same_fs}
    assert check_disk(needs, full)[0].level == "error"
    present = [replace(needs[0], present=True), *needs[1:]]
    assert check_disk(present, full)[0].level == "ok"
    split = {"models": (1, 20 * 10**9), "work": (2, 5 * 10**9), "results": (3, 10**9)}
    assert [f.level for f in check_disk(needs, split)] == ["ok", "error", "ok"]


def test_hf_token_for_a_gated_model() -> None:
    m = manifest()
    error = check_hf_token(m, None, model_present=False)
    assert error.level == "error"
    assert "is gated (model.gated = true) and no Hugging Face token is set" in error.message
    assert check_hf_token(m, "$HF_TOKEN", model_present=False).level == "ok"
    assert check_hf_token(m, None, model_present=True).level == "ok"
    assert check_hf_token(cpu_manifest(), None, model_present=False).level == "skipped"


# ----------------------------------------------------------------------------- CLI


def write_manifest(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.split("_")[0].lower()))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(preflight.provenance, "_run_tool", lambda argv: None)
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def test_cli_on_a_cpu_machine_with_a_cpu_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, CPU_MANIFEST_TOML, monkeypatch)
    assert preflight.main(["--manifest", str(path)]) == 0
    out = capsys.readouterr().out
    assert "skipped gpu              runtime.device = 'cpu': GPU checks skipped" in out
    assert "nvidia-smi -pm 1" not in out
    assert "preflight: 0 error(s)" in out
    assert not (tmp_path / "results").exists()  # preflight writes nothing


def test_cli_fails_a_gpu_manifest_without_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = CPU_MANIFEST_TOML.replace('[runtime]\ndevice = "cpu"\n', "")
    path = write_manifest(tmp_path, text, monkeypatch)
    assert preflight.main(["--manifest", str(path)]) == 1
    out = capsys.readouterr().out
    assert "error   gpu              runtime.device = 'cuda' but no NVIDIA GPU found" in out
    assert "sudo nvidia-smi -pl <max_power_limit>" in out  # printed, never run


def test_cli_bad_manifest_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(
        tmp_path, CPU_MANIFEST_TOML.replace("max_seq_len = 256", "max_seq_len = 0"), monkeypatch
    )
    assert preflight.main(["--manifest", str(path)]) == 2
    assert "engine.max_seq_len" in capsys.readouterr().err

"""The shipped manifests and pins: every manifest validates, the H100 grid is the seed's, NVIDIA's
manifest is perf-overview 1.0's table, and the Hub revisions agree with manifests/pins.toml."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest

from bench.core import pins
from bench.core.errors import KitError
from bench.core.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
NOT_SWEEPS = {"pins.toml"}  # data files in manifests/ that are not sweep manifests
H100 = MANIFESTS / "llama-3.1-8b-fp8-h100.toml"
NVIDIA = MANIFESTS / "nvidia-perf-overview-1.0.toml"
SEED_LOGS = ROOT.parent / "shared" / "fixtures" / "trtllm-bench-0.16-logs"
GRID = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# sweep_config.csv lacks these two rows; their counts come from summary_results.log.
NOT_IN_SWEEP_CONFIG = {(16384, 4096): 100, (16384, 8192): 75}
# perf-overview.md at v1.0, "$num_requests" table: (ISL, OSL) -> requests.
NVIDIA_1_0_REQUESTS = {
    (128, 128): 30000,
    (128, 2048): 3000,
    (128, 4096): 1500,
    (1000, 2000): 1500,
    (2048, 128): 3000,
    (2048, 2048): 1500,
    (5000, 500): 1500,
    (1000, 1000): 3000,
    (500, 2000): 3000,
    (20000, 2000): 1000,
}
CUDA_GRAPH_BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192]


def sweep_manifests() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.toml") if p.name not in NOT_SWEEPS)


def points(path: Path) -> dict[tuple[int, int], int]:
    return {(p.isl, p.osl): p.requests for p in load_manifest(path).sweep.points}


@pytest.fixture
def seed_logs() -> Path:
    if not (SEED_LOGS / "sweep_config.csv").is_file():
        pytest.skip(f"{SEED_LOGS} is absent (needs ../shared)")
    return SEED_LOGS


# ----------------------------------------------------------------------------- every manifest


@pytest.mark.parametrize("path", sweep_manifests(), ids=lambda p: p.name)
def test_every_manifest_validates(path: Path) -> None:
    manifest = load_manifest(path)
    assert manifest.sweep.points


def test_the_h100_manifests_are_among_them() -> None:
    assert {H100, NVIDIA} <= set(sweep_manifests())


def test_reference_is_nvidias_1_0_file_only_for_nvidias_method() -> None:
    assert load_manifest(NVIDIA).reference == "manifests/published/nvidia-perf-overview-1.0.toml"
    assert load_manifest(H100).reference is None  # NVIDIA publishes no TensorRT-engine numbers


# ----------------------------------------------------------------------------- H100 grid


def test_h100_grid_is_8x8_with_64_unique_points() -> None:
    manifest = load_manifest(H100)
    keys = [(p.isl, p.osl) for p in manifest.sweep.points]
    assert len(keys) == len(set(keys)) == 64
    assert set(keys) == {(i, o) for i in GRID for o in GRID}
    assert manifest.engine.max_seq_len >= 16384 + 16384


def test_h100_request_counts_are_the_seeds(seed_logs: Path) -> None:
    with open(seed_logs / "sweep_config.csv", newline="", encoding="utf-8") as f:
        seed = {(int(r["isl"]), int(r["osl"])): int(r["num_requests"]) for r in csv.DictReader(f)}
    assert set(seed).isdisjoint(NOT_IN_SWEEP_CONFIG)
    assert points(H100) == seed | NOT_IN_SWEEP_CONFIG


def test_h100_rows_missing_from_sweep_config_match_summary_log(seed_logs: Path) -> None:
    logged = {}
    for line in (seed_logs / "summary_results.log").read_text(encoding="utf-8").splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[0].isdigit():
            logged[(int(fields[0]), int(fields[1]))] = int(fields[2])
    for key, requests in NOT_IN_SWEEP_CONFIG.items():
        assert logged[key] == requests == points(H100)[key]


def test_h100_method() -> None:
    m = load_manifest(H100)
    assert (m.model.source, m.model.gated) == ("hf", True)
    assert (m.quantization.method, m.quantization.format, m.quantization.kv_cache_dtype) == (
        "modelopt",
        "fp8",
        "fp8",
    )
    cal = m.quantization.calibration
    assert cal is not None and (cal.source, cal.size, cal.seq_len) == ("hf-dataset", 512, 512)
    assert (m.engine.backend, m.engine.max_batch_size, m.engine.max_num_tokens) == (
        "trtllm-tensorrt",
        2048,
        8192,
    )
    assert m.runtime.kv_cache_free_gpu_mem_fraction == 0.95
    assert m.runtime.kv_cache_fallbacks == [0.90, 0.85]
    assert (m.dataset.generator, m.hardware.gpu, m.hardware.gpus) == (
        "prepare_dataset",
        "H100-SXM",
        1,
    )


# ----------------------------------------------------------------------------- NVIDIA 1.0


def test_nvidia_points_are_perf_overview_1_0_request_table() -> None:
    assert points(NVIDIA) == NVIDIA_1_0_REQUESTS


def test_nvidia_points_match_the_published_reference_file() -> None:
    ref_path = ROOT / load_manifest(NVIDIA).reference
    if not ref_path.is_file():
        pytest.skip(f"{ref_path} is not there yet")
    ref = tomllib.loads(ref_path.read_text(encoding="utf-8"))
    assert {(p["isl"], p["osl"]): p["requests"] for p in ref["points"]} == points(NVIDIA)


def test_nvidia_method() -> None:
    m = load_manifest(NVIDIA)
    assert (m.model.repo, m.quantization.method) == (
        "nvidia/Llama-3.1-8B-Instruct-FP8",
        "prequantized",
    )
    assert m.quantization.calibration is None
    assert (m.engine.backend, m.engine.max_batch_size, m.engine.max_num_tokens) == (
        "trtllm-pytorch",
        None,
        None,
    )
    assert m.engine.max_seq_len >= 20000 + 2000
    assert m.runtime.kv_cache_free_gpu_mem_fraction == 0.95
    assert m.runtime.kv_cache_fallbacks == [0.90]
    assert m.runtime.extra_llm_api_options == {
        "cuda_graph_config": {"enable_padding": True, "batch_sizes": CUDA_GRAPH_BATCH_SIZES}
    }
    assert (m.dataset.generator, m.dataset.input_stdev, m.dataset.output_stdev) == (
        "prepare_dataset",
        0,
        0,
    )


# ----------------------------------------------------------------------------- pins


def test_pins_load_and_are_well_formed() -> None:
    p = pins.load_pins()
    assert pins.DIGEST.match(p["image"]["digest"])
    assert p["image"]["ref"].startswith("nvcr.io/nvidia/tensorrt-llm/release:")
    assert p["tensorrt_llm"]["version"] == "1.0.0"
    assert (p["modelopt"]["version"], p["transformers"]["version"]) == ("0.33", "4.53.1")
    for name, table in pins.tables(p):
        assert {"date", "source", "reason", "verified"} <= set(table), name
        if "revision" in table:
            assert len(table["revision"]) == 40 and int(table["revision"], 16) >= 0, name


def test_manifests_use_the_pinned_revisions() -> None:
    p = pins.load_pins()
    h100, nvidia = load_manifest(H100), load_manifest(NVIDIA)
    for model, pin in (
        (h100.model, p["models"]["llama_3_1_8b_instruct"]),
        (nvidia.model, p["models"]["llama_3_1_8b_instruct_fp8"]),
    ):
        assert (model.repo, model.revision) == (pin["repo"], pin["revision"])
    cal, pin = h100.quantization.calibration, p["calibration"]
    assert cal is not None
    assert (cal.dataset, cal.revision, cal.file, cal.text_column) == (
        pin["dataset"],
        pin["revision"],
        pin["file"],
        pin["text_column"],
    )


def test_pins_get_prints_one_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert pins.main(["--get", "image.digest"]) == 0
    assert capsys.readouterr().out.strip() == pins.load_pins()["image"]["digest"]


def test_pins_summary_flags_unverified_pins(capsys: pytest.CaptureFixture[str]) -> None:
    assert pins.main([]) == 0
    out = capsys.readouterr().out
    for name, table in pins.tables(pins.load_pins()):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{name}: "))
        assert ("UNVERIFIED" in line) == (table["verified"] is False)


def test_pins_get_unknown_key_names_the_allowed_ones() -> None:
    with pytest.raises(KitError, match=r"image\.nope.*\n.*digest, reason, ref"):
        pins.get(pins.load_pins(), "image.nope")
    assert pins.main(["--get", "image.nope"]) == 2

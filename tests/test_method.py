"""Compare like with like: a reference's numbers are judged only against a run of its method."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from test_report import ok

from bench.analysis import reference as refmod
from bench.analysis.tables import point_rows
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_json
from bench.core.manifest import load_manifest
from bench.core.run import RunPaths, open_run, point_id
from bench.schema.record import RESULT, Distribution, Identity, PointResult, write_summary
from bench.stages import verify

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "manifests" / "published"
NVIDIA_1_0 = PUBLISHED / "nvidia-perf-overview-1.0.toml"
NVIDIA_MANIFEST = REPO / "manifests" / "nvidia-perf-overview-1.0.toml"
FAKE_TRT = REPO / "tests" / "data" / "manifests" / "fake-h100-tensorrt.toml"
NVIDIA_ID = Identity(
    model="nvidia/Llama-3.1-8B-Instruct-FP8",
    backend="trtllm-pytorch",
    engine_version="1.0.0",
    tp_size=1,
    pp_size=1,
    quantization="FP8",
    kv_cache_fraction=0.95,
)
TRT_ID = dataclasses.replace(
    NVIDIA_ID,
    model="trtllm-repro/tiny-llama-3.1",
    backend="trtllm-tensorrt",
    kv_cache_fraction=0.95,
)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def run_of(manifest: Path, records: list[PointResult], name: str) -> RunPaths:
    """A finished run of `manifest` holding `records`."""
    paths = open_run(manifest, name).paths
    outputs = []
    for r in records:
        target = paths.points / point_id(r.isl, r.osl, r.concurrency) / RESULT
        atomic_write_json(target, r.to_json())
        outputs.append(target)
    write_summary(paths.summary, records)
    Artifacts(paths).record("sweep", {}, [*outputs, paths.summary, paths.summary_json])
    return paths


def nvidia_points(identity: Identity, factor: float) -> list[PointResult]:
    ref = refmod.load_reference(NVIDIA_1_0)
    return [
        ok(p.isl, p.osl, p.output_tok_s * factor, identity=identity, requests=p.requests or 1)
        for p in ref.points
    ]


def own_points(manifest: Path, identity: Identity) -> list[PointResult]:
    """A result for every point the manifest asks for, so verify holds the run complete."""
    return [
        dataclasses.replace(ok(p.isl, p.osl, 1000.0, identity=identity), concurrency=p.concurrency)
        for p in load_manifest(manifest).sweep.points
    ]


def without_accuracy(manifest: Path, folder: Path) -> Path:
    """The manifest less its [accuracy] gate: these runs are made up of records alone."""
    text = manifest.read_text()
    target = folder / manifest.name
    target.write_text(text[: text.index("[accuracy]")])
    return target


def asking_also_for(manifest: Path, records: list[PointResult]) -> Path:
    """The manifest with the records' points added: verify fails points it never asked for."""
    added = "".join(f"  {{ isl = {r.isl}, osl = {r.osl}, requests = 16 }},\n" for r in records)
    longest = max(r.isl + r.osl for r in records)
    text = manifest.read_text().replace("points = [\n", "points = [\n" + added, 1)
    manifest.write_text(text.replace("max_seq_len = 256", f"max_seq_len = {longest}", 1))
    return manifest


def test_fake_h100_tensorrt_run_vs_nvidia_1_0_is_not_comparable(roots: Path, capsys) -> None:
    trt = asking_also_for(without_accuracy(FAKE_TRT, roots), nvidia_points(TRT_ID, 1.0))
    run_of(trt, own_points(trt, TRT_ID) + nvidia_points(TRT_ID, 1.0), "trt")
    assert verify.main(["--run", "trt", "--reference", str(NVIDIA_1_0)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ISL 128 / OSL 128 |")]
    assert rows and all("NOT COMPARABLE" in line for line in rows)
    assert "backend trtllm-tensorrt vs trtllm-pytorch" in rows[0]
    assert "checkpoint trtllm-repro/tiny-llama-3.1 quantized by this kit" in rows[0]
    for verdict in ("| PASS |", "| FAIL |", "| **FAIL** |"):
        claims = out[out.index("## Reference claims") :]
        assert verdict not in claims
    assert verify.CROSS_METHOD in out  # the numbers, side by side, labelled as such
    assert "Reference claims judged: 0 of 10 (PASS 0, FAIL 0, SUSPECT 0)" in out


def test_nvidia_method_manifest_still_gets_pass_and_fail(roots: Path, capsys) -> None:
    records = nvidia_points(NVIDIA_ID, 1.01)
    records[0] = dataclasses.replace(
        records[0],
        metrics=dataclasses.replace(
            records[0].metrics, output_tok_s=records[0].metrics.output_tok_s * 0.8
        ),
    )
    slow = dataclasses.replace(NVIDIA_ID, kv_cache_fraction=0.9)
    records[1] = dataclasses.replace(records[1], identity=slow)
    run_of(NVIDIA_MANIFEST, records, "nv")
    verify.main(["--run", "nv", "--reference", str(NVIDIA_1_0)])
    out = capsys.readouterr().out
    assert "Same method: the numbers below are compared." in out
    assert "| ISL 128 / OSL 128 | **FAIL** |" in out
    assert "| ISL 500 / OSL 2000 | PASS |" in out
    kv_row = next(line for line in out.splitlines() if line.startswith("| ISL 128 / OSL 2048 |"))
    assert "| PASS |" in kv_row and "KV fraction 0.9 vs 0.95 (declared minor" in kv_row
    assert "NOT COMPARABLE" not in out.split("## Points vs reference")[1].split("## Best")[0]


def test_request_count_of_another_dataset_is_not_comparable() -> None:
    ref = refmod.load_reference(NVIDIA_1_0)
    (got,) = [ok(128, 128, 28312.0, identity=NVIDIA_ID, requests=1000)]
    (v, *_) = verify.point_verdicts([got], ref)
    assert v.verdict == "NOT COMPARABLE" and "requests 1000 vs 30000" in v.note


def test_every_manifest_names_a_reference_of_its_own_method() -> None:
    for path in sorted((REPO / "manifests").glob("*.toml")):
        if path.name == "pins.toml":
            continue
        manifest = load_manifest(path)
        if manifest.reference is None:
            continue
        ref = refmod.load_reference(REPO / manifest.reference)
        check = refmod.compare_method(ref.identity, refmod.run_method(manifest, [], None))
        # the release is what the records state (the image's); the manifest cannot say it
        known = [f.describe() for f in check.differences if f.run is not None]
        unknown = [f.field for f in check.differences if f.run is None]
        assert not known and set(unknown) <= {"engine_version"}, (path.name, known, unknown)


def test_benchmark_workflow_defaults_to_the_manifests_own_reference() -> None:
    text = (REPO / ".github" / "workflows" / "benchmark.yml").read_text()
    assert "nvidia-perf-overview-1.0.toml" not in text.split("jobs:")[0]


def test_reference_must_state_or_leave_open_every_method_field() -> None:
    data = tomllib.loads(NVIDIA_1_0.read_text())
    del data["identity"]["backend"]
    with pytest.raises(KitError, match=r"identity\.backend is neither stated nor in"):
        refmod.parse_reference(data)
    data = tomllib.loads(NVIDIA_1_0.read_text())
    data["identity"]["leaves_open"].append("backend")
    with pytest.raises(KitError, match=r"identity\.backend is both stated and in"):
        refmod.parse_reference(data)
    data = tomllib.loads(NVIDIA_1_0.read_text())
    data["identity"]["minor"] = ["kv_cache_dtype"]
    with pytest.raises(KitError, match="minor names kv_cache_dtype, which the reference does not"):
        refmod.parse_reference(data)


# ----------------------------------------------------------------------------- issue 12


def test_online_or_streamed_points_are_not_graded_against_offline_throughput(
    roots: Path, capsys
) -> None:
    """NVIDIA's perf overview queues every request at once without streaming: a run that served
    the same points online (or streamed them) is another method, never PASS or FAIL."""
    for name, change in (
        ("online", {"scenario": "online", "streaming": True}),
        ("streamed", {"streaming": True}),
    ):
        records = [dataclasses.replace(r, **change) for r in nvidia_points(NVIDIA_ID, 1.0)]
        run_of(NVIDIA_MANIFEST, records, name)
        verify.main(["--run", name, "--reference", str(NVIDIA_1_0)])
        out = capsys.readouterr().out
        assert "**Different method: NOT COMPARABLE.**" in out
        field = "scenario" if name == "online" else "streaming"
        assert f"| {field} |" in out and "**DIFFERS**" in out
        claims = out[out.index("## Reference claims") :].split("\n## ")[0]
        assert "| PASS |" not in claims and "FAIL |" not in claims


def test_a_point_at_a_concurrency_is_not_graded_against_an_unlimited_one() -> None:
    ref = refmod.load_reference(NVIDIA_1_0)
    limited = dataclasses.replace(
        ok(128, 128, 28312.0, identity=NVIDIA_ID, requests=30000), concurrency=64
    )
    (v, *_) = verify.point_verdicts([limited], ref)
    assert v.verdict == "NOT COMPARABLE" and "concurrency 64 vs no limit" in v.note
    unlimited = ok(128, 128, 28312.0, identity=NVIDIA_ID, requests=30000)
    (v, *_) = verify.point_verdicts([limited, unlimited], ref)
    assert v.verdict == "PASS"  # like with like: the run's own unlimited point is the one judged


def test_mlperf_results_are_never_graded(roots: Path, capsys) -> None:
    run_of(NVIDIA_MANIFEST, nvidia_points(NVIDIA_ID, 1.0), "nv")
    mlperf = PUBLISHED / "mlperf-inference-5.1-redhat-h100.toml"
    assert verify.main(["--run", "nv", "--reference", str(mlperf)]) == 0
    out = capsys.readouterr().out
    assert "| 5.1-0083 server: 5,103.99 tok/s | NOT COMPARABLE |" in out
    assert "dataset_generator prepare_dataset vs mlperf-cnn_dailymail" in out


# An online reference of NVIDIA's per-concurrency form (TTFT, ITL, output tok/s per
# concurrency). The numbers are made up for the test: no such table is transcribed in
# manifests/published/ (the NIM page's tables for Llama 3.1 8B could not be read with their
# GPU and ISL/OSL headings, and the page names no engine release).
ONLINE_REFERENCE = """
schema = "trtllm-repro/reference/1"
title = "test: an online per-concurrency table"
source = "tests/test_method.py"
date = "2025-01-01"

[identity]
model = "meta-llama/Llama-3.1-8B-Instruct"
checkpoint = "nvidia/Llama-3.1-8B-Instruct-FP8"
quantization = "FP8"
backend = "trtllm-pytorch"
engine_version = "1.0.0"
tp_size = 1
gpus = 1
gpu = "H100"
scenario = "online"
streaming = true
leaves_open = [
  "checkpoint_revision", "activations", "kv_cache_dtype", "pp_size",
  "dataset_generator", "input_stdev", "output_stdev", "kv_cache_fraction", "cuda_graphs",
  "chunked_prefill",
]

[[points]]
isl = 1000
osl = 1000
concurrency = 1
output_tok_s = 200.0
latency = [
  { metric = "ttft_ms", stat = "mean", value = 10.0 },
  { metric = "tpot_ms", stat = "mean", value = 5.0 },
  { metric = "tpot_ms", value = 5.0 },
]

[[points]]
isl = 1000
osl = 1000
concurrency = 8
output_tok_s = 1500.0
"""


def online_reference(text: str = ONLINE_REFERENCE) -> refmod.Reference:
    return refmod.parse_reference(tomllib.loads(text), "online.toml")


def served(out: float, concurrency: int, ttft: float, tpot: float) -> PointResult:
    """A streamed point served online at `concurrency`, as the AIPerf producer records it."""
    base = ok(1000, 1000, out, identity=NVIDIA_ID, requests=64)
    metrics = dataclasses.replace(
        base.metrics, ttft_ms=Distribution(mean=ttft, p50=ttft), tpot_ms=Distribution(mean=tpot)
    )
    return dataclasses.replace(
        base, concurrency=concurrency, scenario="online", streaming=True, metrics=metrics
    )


def test_online_reference_loads_and_checks_its_own_form() -> None:
    ref = online_reference()
    assert [p.label for p in ref.points] == [
        "ISL 1000 / OSL 1000 / concurrency 1",
        "ISL 1000 / OSL 1000 / concurrency 8",
    ]
    assert ref.points[0].latency[0].label == "ttft_ms mean"
    assert refmod.consistency_problems(ref) == []
    without_load = ONLINE_REFERENCE.replace("concurrency = 8\n", "")
    with pytest.raises(KitError, match="online reference's point states no concurrency"):
        online_reference(without_load)
    offline = ONLINE_REFERENCE.replace('scenario = "online"', 'scenario = "offline"')
    with pytest.raises(KitError, match="latency on a point of a reference that is not online"):
        online_reference(offline)


def test_offline_run_against_an_online_reference_is_not_comparable(roots: Path, capsys) -> None:
    path = roots / "online.toml"
    path.write_text(ONLINE_REFERENCE)
    run_of(NVIDIA_MANIFEST, nvidia_points(NVIDIA_ID, 1.0), "nv")
    assert verify.main(["--run", "nv", "--reference", str(path)]) == 0
    out = capsys.readouterr().out
    assert "**Different method: NOT COMPARABLE.**" in out
    scenario = next(line for line in out.splitlines() if line.startswith("| scenario |"))
    assert "online" in scenario and "offline" in scenario and "**DIFFERS**" in scenario
    claims = out[out.index("## Reference claims") :].split("\n## ")[0]
    assert "| ISL 1000 / OSL 1000 / concurrency 1: ttft_ms mean | NOT COMPARABLE |" in claims
    assert "differs: scenario offline vs online; streaming False vs True" in claims
    assert "| PASS |" not in claims and "FAIL |" not in claims


def test_matching_online_run_is_graded_at_its_concurrency() -> None:
    ref = online_reference()
    manifest = load_manifest(NVIDIA_MANIFEST)  # its points served online: the records say so
    online = refmod.run_method(manifest, [served(200.0, 1, 10.0, 5.0)], "H100-SXM")
    assert refmod.compare_method(ref.identity, online).comparable
    records = [served(204.0, 1, 10.2, 6.0), served(1500.0, 64, 50.0, 9.0)]
    verdicts = {v.claim: v for v in verify.point_verdicts(records, ref)}
    assert verdicts["ISL 1000 / OSL 1000 / concurrency 1"].verdict == "PASS"
    assert verdicts["ISL 1000 / OSL 1000 / concurrency 1: ttft_ms mean"].verdict == "PASS"
    tpot = verdicts["ISL 1000 / OSL 1000 / concurrency 1: tpot_ms mean"]
    assert tpot.verdict == "FAIL" and tpot.measured == 6.0 and tpot.published == 5.0
    unstated = verdicts["ISL 1000 / OSL 1000 / concurrency 1: tpot_ms (statistic not stated)"]
    assert unstated.verdict == "NOT COMPARABLE" and "does not say which statistic" in unstated.note
    other_load = verdicts["ISL 1000 / OSL 1000 / concurrency 8"]
    assert other_load.verdict == "NOT COMPARABLE" and "concurrency 1, 64 vs 8" in other_load.note


def test_verify_grades_an_online_run_against_an_online_reference(roots: Path, capsys) -> None:
    path = roots / "online.toml"
    path.write_text(ONLINE_REFERENCE)
    run_of(NVIDIA_MANIFEST, [served(204.0, 1, 10.2, 5.1)], "served")
    verify.main(["--run", "served", "--reference", str(path)])
    out = capsys.readouterr().out
    assert "Same method: the numbers below are compared." in out
    assert "| ISL 1000 / OSL 1000 / concurrency 1 | PASS |" in out
    assert "| ISL 1000 / OSL 1000 / concurrency 1: ttft_ms mean | PASS |" in out
    assert "| ISL 1000 / OSL 1000 / concurrency 8 | NOT COMPARABLE |" in out
    assert "differs: concurrency 1 vs 8" in out


def test_online_reference_keys_run_and_summary_points_on_concurrency() -> None:
    """Run points at concurrencies the reference does not list are NOT PUBLISHED, and a summary
    row is graded only against the reference point at its own concurrency."""
    ref = online_reference()
    records = [served(out, c, 10.0, 5.0) for c, out in ((1, 200.0), (2, 400.0), (4, 800.0))]
    records.append(served(1500.0, 8, 50.0, 9.0))
    verdicts = {v.claim: v.verdict for v in verify.point_verdicts(records, ref)}
    for c in (2, 4):
        assert verdicts[f"ISL 1000 / OSL 1000 / concurrency {c}"] == "NOT PUBLISHED"
    assert verdicts["ISL 1000 / OSL 1000 / concurrency 8"] == "PASS"
    (row,) = point_rows([served(1500.0, 8, 50.0, 9.0)])
    summary = [dataclasses.replace(row, evidence="summary.csv")]
    verdicts = {v.claim: v for v in verify.point_verdicts([], ref, summary)}
    assert verdicts["ISL 1000 / OSL 1000 / concurrency 8"].verdict == "PASS"
    at_one = verdicts["ISL 1000 / OSL 1000 / concurrency 1"]
    assert at_one.verdict not in ("PASS", "FAIL") and at_one.measured is None


def test_claims_are_not_graded_against_another_concurrency() -> None:
    """A report's claims are held to its logs whatever their method, but never a number at one
    concurrency against a measurement at another, nor latencies averaged over several."""
    ref = online_reference(ONLINE_REFERENCE.replace('date = "', 'kind = "claims"\ndate = "'))
    assert ref.kind == "claims"
    records = [served(200.0, 2, 10.0, 5.0), served(1500.0, 64, 10.0, 5.0)]
    verdicts = verify.point_verdicts(records, ref)
    graded = [v for v in verdicts if v.verdict in ("PASS", "FAIL", "SUSPECT")]
    assert graded == []
    by_claim = {v.claim: v for v in verdicts}
    assert "concurrency 2, 64 vs 1" in by_claim["ISL 1000 / OSL 1000 / concurrency 1"].note
    assert by_claim["ISL 1000 / OSL 1000 / concurrency 8"].verdict == "NOT COMPARABLE"
    assert by_claim["ISL 1000 / OSL 1000 / concurrency 1: ttft_ms mean"].measured is None


@pytest.mark.parametrize("field", ["scenario", "streaming"])
def test_scenario_and_streaming_cannot_be_declared_minor(field: str) -> None:
    data = tomllib.loads(NVIDIA_1_0.read_text())
    data["identity"]["minor"] = [*data["identity"].get("minor", []), field]
    with pytest.raises(KitError, match=f"identity.minor names {field}") as raised:
        refmod.parse_reference(data, "offline.toml")
    assert "offline.toml" in str(raised.value) and "identity.minor" in str(raised.value)

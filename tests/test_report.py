"""bench.stages.report and bench.analysis.tables: tables from records, markdown and figures
byte-stable, runs with
and without a manifest, CPU runs without GPU ceilings, repeats with a confidence interval."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.analysis import report_sections, tables
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_json
from bench.core.run import RunPaths, open_run, point_id
from bench.gpu import gpus
from bench.schema.record import (
    FAILURE,
    RESULT,
    Identity,
    Memory,
    Metrics,
    PointResult,
    write_summary,
)
from bench.stages import report

MANIFEST = """\
name = "t"
[model]
source = "builtin"
repo = "trtllm-repro/tiny-llama-3.1"
revision = "v1"
[quantization]
method = "none"
format = "none"
[engine]
backend = "hf-transformers"
max_seq_len = 4096
[runtime]
device = "cpu"
[sweep]
points = [{ isl = 128, osl = 128, requests = 10 }]
[hardware]
gpu = "cpu"
"""
CPU_ID = Identity(
    model="trtllm-repro/tiny-llama-3.1",
    backend="hf-transformers",
    tp_size=1,
    pp_size=1,
    quantization="FP8",
    kv_cache_dtype="FP8",
    engine_version="demo",
)
GPU_ID = Identity(
    model="meta-llama/Llama-3.1-8B-Instruct",
    backend="trtllm-pytorch",
    tp_size=1,
    pp_size=1,
    quantization="FP8",
    kv_cache_dtype="FP8",
    engine_version="1.0.0",
    max_batch_size=2048,
)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def ok(
    isl: int,
    osl: int,
    out: float,
    identity: Identity = CPU_ID,
    repeat: int = 0,
    telemetry: dict | None = None,
    requests: int = 100,
) -> PointResult:
    return PointResult(
        isl=isl,
        osl=osl,
        requests=requests,
        status="ok",
        source="synthetic",
        repeat=repeat,
        identity=identity,
        telemetry=telemetry,
        metrics=Metrics(
            num_requests=requests,
            avg_input_len=float(isl),
            avg_output_len=float(osl),
            output_tok_s=out,
            req_s=out / osl,
        ),
        memory=Memory(engine_size_mib=8925.0, kv_cache_gib=52.08, kv_cache_max_tokens=2730752),
    )


def failed(isl: int, osl: int, kind: str = "silent") -> PointResult:
    return PointResult(
        isl=isl,
        osl=osl,
        requests=10,
        status="failed",
        source="synthetic",
        failure=kind,
        failure_detail="the log ends after startup",
        raw_files=(f"points/{point_id(isl, osl)}/console.log",),
    )


RECORDS = [ok(128, 128, 1000.0), ok(128, 256, 1500.0), ok(256, 128, 800.0), failed(256, 256)]


def manifest_of(records: list[PointResult]) -> str:
    """MANIFEST asking for exactly the records' points and repeats: an honest run's manifest
    (verify fails a point the manifest never asked for)."""
    points = sorted({(r.isl, r.osl, r.concurrency) for r in records})
    if not points:
        return MANIFEST
    listed = ", ".join(
        f"{{ isl = {isl}, osl = {osl}, requests = 10"
        + (f", concurrency = {c}" if c is not None else "")
        + " }"
        for isl, osl, c in points
    )
    repeats = max(r.repeat for r in records) + 1
    return MANIFEST.replace(
        "points = [{ isl = 128, osl = 128, requests = 10 }]",
        f"repeats = {repeats}\npoints = [{listed}]",
    )


def make_run(
    roots: Path,
    records: list[PointResult],
    *,
    manifest: bool = True,
    name: str = "t",
    merged: bool = False,
    manifest_text: str | None = None,
) -> RunPaths:
    """A finished run: records, raw logs, summary.csv, and the artifacts of its producing stage
    (sweep; import without a manifest; merge when merged, which adds no file of its own here)."""
    paths = RunPaths.for_run(name)
    if manifest:
        (roots / "t.toml").write_text(manifest_text or manifest_of(records))
        open_run(roots / "t.toml", name)
    else:
        atomic_write_json(paths.root / "import.json", {"source": "/logs", "points": len(records)})
    outputs = []
    for r in records:
        folder = paths.points / point_id(r.isl, r.osl, r.concurrency, r.repeat)
        target = folder / (FAILURE if r.status == "failed" else RESULT)
        atomic_write_json(target, r.to_json())
        outputs.append(target)
        for raw in r.raw_files:
            (paths.root / raw).write_text("startup\nPreparing to run throughput benchmark...\n")
            outputs.append(paths.root / raw)
    write_summary(paths.summary, records)
    outputs += [paths.summary, paths.summary_json]
    if not manifest:
        outputs.append(paths.root / "import.json")
    stage = "merge" if merged else "sweep" if manifest else "import"
    Artifacts(paths).record(stage, {}, outputs)
    return paths


def reported_run(folder: Path) -> None:
    """make_run of RECORDS and its report: built once, copied per test (conftest.RunTemplates)."""
    make_run(folder, RECORDS)
    report.make_report("t")


# -----------------------------------------------------------------------------
# bench.analysis.tables


def test_point_rows_top_and_best_per_axis() -> None:
    rows = tables.point_rows(RECORDS)
    assert [(r.isl, r.osl) for r in tables.top_rows(rows)] == [(128, 256), (128, 128), (256, 128)]
    assert [(r.isl, r.osl) for r in tables.best_per(rows, "isl")] == [(128, 256), (256, 128)]
    assert [(r.osl, r.isl) for r in tables.best_per(rows, "osl")] == [(128, 128), (256, 128)]
    first = tables.top_rows(rows)[0]
    assert first.total_derived and first.total_tok_s == pytest.approx(1500 / 256 * (128 + 256))
    assert first.total_tokens == 100 * (128 + 256)


def test_grid_marks_failures() -> None:
    isls, osls, cells = tables.grid(tables.point_rows(RECORDS), RECORDS)
    assert (isls, osls) == ([128, 256], [128, 256])
    assert cells[256, 256] == "silent" and cells[128, 256] == 1500.0


def test_repeats_mean_ci_and_cv_flag() -> None:
    records = [ok(128, 128, v, repeat=i) for i, v in enumerate((1000.0, 1100.0, 900.0))]
    (stats,) = tables.repeat_stats(records)
    assert stats.n == 3 and stats.mean == pytest.approx(1000.0)
    assert stats.ci95 == pytest.approx(4.303 * 100.0 / 3**0.5)
    assert stats.cv == pytest.approx(0.1)
    (row,) = tables.point_rows(records)
    assert row.n == 3 and row.output_tok_s == pytest.approx(1000.0)


def test_identity_problems_against_manifest(roots: Path) -> None:
    paths = make_run(roots, [ok(128, 128, 1000.0, identity=GPU_ID)])
    manifest = open_run(roots / "t.toml", paths.name).manifest
    problems = tables.identity_problems([ok(128, 128, 1.0, identity=GPU_ID)], manifest)
    assert any("model" in p and "meta-llama/Llama-3.1-8B-Instruct" in p for p in problems)
    assert any(p.startswith("backend") for p in problems)
    assert tables.identity_problems([ok(128, 128, 1.0)], manifest) == []


def test_recommendations_come_from_data() -> None:
    lines = tables.recommendations(tables.point_rows(RECORDS), RECORDS)
    assert lines[0].startswith("Highest output throughput: ISL 128 / OSL 256 at 1,500.00")
    assert any("ISL 256 / OSL 256: silent" in line for line in lines)


def test_efficiency_of_8b_on_h100() -> None:
    e = gpus.efficiency(
        gpus.LLAMA_31_8B,
        gpus.GPUS["H100-SXM"],
        1,
        isl=128,
        osl=128,
        requests=30000,
        req_s=28312 / 128,
        output_tok_s=28312.0,
        weight_dtype="FP8",
        kv_dtype="FP8",
        max_batch_size=2048,
    )
    assert gpus.LLAMA_31_8B.all_params == pytest.approx(8.03e9, rel=0.01)
    # facts doc section 7: ceiling ~123k tokens/s (input + output); 28,312 x 2 / 123k = 46%
    assert 40 < e.compute_pct < 50 and e.bound == "compute"
    assert gpus.gpu_key("NVIDIA H100 80GB HBM3") == "H100-SXM"
    assert gpus.gpu_key("NVIDIA H100 PCIe") == "H100-PCIe"
    assert gpus.gpu_key("cpu") is None


# ----------------------------------------------------------------------------- the stage


def test_report_is_byte_identical_on_rerender(roots: Path, run_templates) -> None:
    run_templates.copy(reported_run, roots)  # first rendered in the template's folder
    paths = RunPaths.for_run("t")
    first = {p: p.read_bytes() for p in sorted(paths.reports.rglob("*")) if p.is_file()}
    for p in first:
        p.unlink()
    (paths.stamp("report")).unlink()
    report.make_report("t")
    second = {p: p.read_bytes() for p in sorted(paths.reports.rglob("*")) if p.is_file()}
    assert first == second
    assert {p.name for p in first} == {
        "report.md",
        "throughput_heatmap.png",
        "throughput_vs_osl.png",
    }


def test_report_content_for_cpu_run(roots: Path, run_templates) -> None:
    run_templates.copy(reported_run, roots)
    text = (RunPaths.for_run("t").reports / "report.md").read_text()
    assert "| Points | 3/4 valid; not valid: silent |" in text
    assert "Not applicable (hf-transformers)" in text
    assert "### ISL 256 / OSL 256: failed, silent" in text
    assert "Preparing to run throughput benchmark..." in text
    assert "WARNING" not in text
    arts = Artifacts(RunPaths.for_run("t"))
    assert "reports:report.md" in arts.stages["report"]["outputs"]


def test_report_warns_on_identity_mismatch(roots: Path) -> None:
    make_run(roots, [ok(128, 128, 1000.0, identity=GPU_ID)])
    text = report.make_report("t").read_text()
    assert text.splitlines()[2].startswith("> **WARNING: identity mismatch.**")


def test_imported_run_without_manifest_gets_gpu_free_efficiency_note(roots: Path) -> None:
    records = [ok(128, 128, 14000.0, identity=dataclasses.replace(GPU_ID, tp_size=8))]
    make_run(roots, records, manifest=False, name="imp")
    text = report.make_report("imp").read_text()
    assert "No manifest: this run was imported from `/logs`" in text
    assert "Not computed: the GPU model is not recorded" in text
    assert "| GPU | not recorded x 8 (TP x PP as recorded) |" in text


def test_efficiency_table_with_provenance(roots: Path) -> None:
    paths = make_run(
        roots, [ok(128, 128, 20000.0, identity=GPU_ID, requests=30000)], manifest=False, name="gpu"
    )
    atomic_write_json(
        paths.provenance,
        {
            "gpus": [
                {"name": "NVIDIA H100 80GB HBM3", "form_factor": "SXM", "memory_total_mib": 81559}
            ]
        },
    )
    Artifacts(paths).record("env", {}, [paths.provenance])
    text = report.make_report("gpu").read_text()
    assert "GPU: H100-SXM (provenance.json: NVIDIA H100 80GB HBM3)" in text
    assert "| 128 | 128 | 20,000.00 |" in text and "compute" in text
    assert "81,559 MiB (provenance.json)" in text


H100 = {"name": "NVIDIA H100 80GB HBM3", "form_factor": "SXM", "driver_version": "580.1"}
H200 = {"name": "NVIDIA H200", "form_factor": "SXM", "driver_version": "580.1"}


def test_the_gpu_named_is_the_one_cuda_used(roots: Path) -> None:
    paths = make_run(roots, [ok(128, 128, 20000.0, identity=GPU_ID)], manifest=False, name="gpu")
    atomic_write_json(
        paths.provenance,
        {
            "gpus": [{**H100, "index": 0}, {**H200, "index": 1}],
            "environment": {"CUDA_VISIBLE_DEVICES": "1"},
        },
    )
    Artifacts(paths).record("env", {}, [paths.provenance])
    text = report.make_report("gpu").read_text()
    assert "| GPU | NVIDIA H200 x 1 (TP x PP as recorded) |" in text
    assert "GPU: H200 (provenance.json: NVIDIA H200)" in text
    assert "| Provenance from | provenance.json |" in text


def test_a_merged_run_names_its_shards_gpus(roots: Path) -> None:
    on_gpu = MANIFEST.replace('"hf-transformers"', '"trtllm-pytorch"').replace(
        'gpu = "cpu"', 'gpu = "H200"'
    )
    records = [ok(128, 128, 20000.0, identity=GPU_ID)]
    paths = make_run(roots, records, name="m", merged=True, manifest_text=on_gpu)
    shards = [f"m-shard{i}of10" for i in range(1, 11)]
    for index, shard in enumerate(shards):
        prov = {
            "gpus": [{**H200, "index": 0}, {**H200, "index": 1}],
            "environment": {"CUDA_VISIBLE_DEVICES": str(index % 2)},
        }
        atomic_write_json(paths.root / "shards" / shard / "provenance.json", prov)
    provenances = [paths.root / "shards" / shard / "provenance.json" for shard in shards]
    arts = Artifacts(paths)
    merged = [arts.path(key) for key in arts.stages["merge"]["outputs"]]
    arts.record("merge", {}, merged + provenances, {"shards": shards})
    text = report.make_report("m").read_text()
    assert "| GPU | NVIDIA H200 x 1 (TP x PP as recorded) |" in text
    # the first shard is merge's first, not the first by name (shard10of10)
    assert "| Provenance from | shards/m-shard1of10/provenance.json (first of 10 shards;" in text
    assert (
        "| Shards ran on | m-shard1of10: NVIDIA H200 (GPU 0), driver 580.1; "
        "m-shard2of10: NVIDIA H200 (GPU 1), driver 580.1; m-shard3of10"
    ) in text


def test_without_provenance_the_manifests_gpu_is_marked_declared(roots: Path) -> None:
    gpu_manifest = MANIFEST.replace('"hf-transformers"', '"trtllm-pytorch"').replace(
        'gpu = "cpu"', 'gpu = "H100-SXM"'
    )
    (roots / "g.toml").write_text(gpu_manifest)
    make_run(roots, [ok(128, 128, 20000.0, identity=GPU_ID)], manifest=False, name="g")
    ctx = dataclasses.replace(
        report.load_context("g")[1], manifest=open_run(roots / "g.toml", "g2").manifest
    )
    text = report_sections.render([ok(128, 128, 20000.0, identity=GPU_ID)], ctx, {})
    assert "| GPU | H100-SXM, declared by the manifest (no provenance recorded) x 1" in text
    assert "| Provenance from | none recorded |" in text


def test_unknown_run_is_bad_input(roots: Path) -> None:
    with pytest.raises(KitError, match="no such run"):
        report.make_report("nope")
    assert report.main(["--run", "nope"]) == 2


def test_telemetry_section_shows_samples_and_flags_suspect_points():
    from bench.analysis.report_sections import section_telemetry
    from bench.schema.record import Identity, Metrics, PointResult

    def point(isl, telemetry):
        return PointResult(
            isl=isl,
            osl=64,
            requests=8,
            status="ok",
            source="t",
            identity=Identity(model="m"),
            metrics=Metrics(output_tok_s=1.0),
            telemetry=telemetry,
        )

    calm = {
        "available": True,
        "samples": 12,
        "power_w_mean": 500.0,
        "power_w_max": 690.0,
        "sm_clock_mhz_mean": 1980.0,
        "app_clock_mhz": 1980,
        "below_application_clock_s": 0.0,
        "temperature_c_max": 61,
        "throttled_s": {"sw_power_cap": 3.0},
        "suspect": False,
        "reasons": [],
    }
    hot = calm | {
        "throttled_s": {"hw_thermal_slowdown": 4.5},
        "suspect": True,
        "reasons": ["thermal slowdown for 4.5 s"],
    }
    text = section_telemetry([point(256, hot), point(128, calm)])
    lines = [line for line in text.splitlines() if line.startswith("| 1") or line.startswith("| 2")]
    assert lines[0].startswith("| 128 | 64 | all | 12 | 500.0 / 690.0 |")
    assert "| whole process | n/a |" in lines[0]  # no measured window: no energy
    assert "sw_power_cap 3 s" in lines[0] and lines[0].endswith("| ok |")
    assert "hw_thermal_slowdown 4.5 s" in lines[1]
    assert "**suspect**: thermal slowdown for 4.5 s" in lines[1]
    missing = section_telemetry([point(128, {"available": False, "reason": "no NVML here"})])
    assert "Not recorded: no NVML here." in missing
    assert "Points on several GPUs" not in text
    tp2 = calm | {"gpus": [{"device_index": 0}, {"device_index": 1}]}
    pooled = section_telemetry([point(128, tp2)])
    assert "Points on several GPUs" in pooled and "| 128 | 64 | all | 12 over 2 GPUs |" in pooled


def test_hf_transformers_runner_on_cuda_names_the_gpu(roots: Path) -> None:
    """The demo on a GPU (manifests/demo-cuda.toml): the GPU is named, ceilings do not apply."""
    (roots / "cuda.toml").write_text(MANIFEST.replace('device = "cpu"', 'device = "cuda"'))
    open_run(roots / "cuda.toml", "cuda")
    paths = RunPaths.for_run("cuda")
    target = paths.points / "isl128_osl128" / RESULT
    atomic_write_json(target, ok(128, 128, 12000.0).to_json())
    provenance = Path(__file__).parent / "data" / "provenance" / "h100-demo-cuda.json"
    paths.provenance.write_bytes(provenance.read_bytes())
    Artifacts(paths).record("sweep", {}, [target, paths.provenance])
    text = report.make_report("cuda").read_text()
    assert "| GPU | NVIDIA H100 80GB HBM3 (the hf-transformers runner on CUDA) |" in text
    assert "Not applicable (hf-transformers)" in text


def test_the_summary_says_how_many_repeats_each_number_averages() -> None:
    once = [ok(128, 128, 100.0), ok(128, 256, 90.0)]
    assert report_sections.repeats_note(once) == ""
    thrice = [dataclasses.replace(r, repeat=k) for k in range(3) for r in once]
    assert report_sections.repeats_note(thrice) == (
        " (2 points x 3 repeats: each throughput is the mean of its valid repeats; "
        "95% CI under Repeats)"
    )

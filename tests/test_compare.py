"""`make compare`'s decisions, on records made here: verdicts, the gate, identity, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.backends.hf_transformers.runner import TEST_SLOWDOWN_ENV, slowdown_factor
from bench.core.artifacts import Artifacts
from bench.core.fileio import atomic_write_json, atomic_write_text, sha256_bytes, sha256_file
from bench.core.manifest import load_manifest
from bench.core.run import RunPaths, point_id
from bench.schema import results_schema
from bench.schema.record import Identity, Metrics, PointResult, write_summary
from bench.schema.results_schema import Provenance
from bench.stages import compare, merge, verify
from tests.conftest import CPU_MANIFEST_TOML, DEMO_MANIFEST, ROOT

NOISE = {"output_tok_s": 5.0, "avg_request_latency_ms": 5.0}


def rec(isl: int, osl: int, tok_s: float, repeat: int = 0, status: str = "ok") -> PointResult:
    return PointResult(
        isl=isl,
        osl=osl,
        requests=8,
        status=status,  # type: ignore[arg-type]
        source="test",
        repeat=repeat,
        identity=Identity(backend="hf-transformers", engine_version="x", tp_size=1, pp_size=1),
        metrics=Metrics(output_tok_s=tok_s, avg_request_latency_ms=1000.0 * osl / tok_s),
    )


def repeats(isl: int, osl: int, values: list[float]) -> list[PointResult]:
    return [rec(isl, osl, v, repeat=i) for i, v in enumerate(values)]


def verdicts(result: compare.Comparison, metric: str = "output_tok_s") -> dict:
    return {c.point[:2]: c.verdict for c in result.comparisons if c.metric == metric}


# ----------------------------------------------------------------------------- verdicts


def test_single_runs_are_judged_by_the_noise_band_and_marked_single():
    base = [rec(32, 16, 100.0), rec(64, 16, 100.0), rec(128, 16, 100.0)]
    new = [rec(32, 16, 103.0), rec(64, 16, 80.0), rec(128, 16, 120.0)]
    result = compare.compare_records(base, new, NOISE)
    assert verdicts(result) == {(32, 16): "SAME", (64, 16): "SLOWER", (128, 16): "FASTER"}
    assert all(c.band_only for c in result.comparisons)
    slower = next(
        c for c in result.comparisons if c.point[:2] == (64, 16) and c.metric == "output_tok_s"
    )
    assert slower.change_pct == pytest.approx(-20.0) and slower.worse_pct == pytest.approx(20.0)


def test_latency_is_worse_when_it_grows():
    result = compare.compare_records([rec(32, 16, 100.0)], [rec(32, 16, 50.0)], NOISE)
    latency = next(c for c in result.comparisons if c.metric == "avg_request_latency_ms")
    assert latency.change_pct == pytest.approx(100.0) and latency.verdict == "SLOWER"


def test_repeats_need_significance_not_just_size():
    # Means 20% apart but the repeats overlap widely: NOISY, not SLOWER.
    noisy = compare.compare_records(
        repeats(32, 16, [60.0, 140.0, 100.0]), repeats(32, 16, [40.0, 120.0, 80.0]), NOISE
    )
    assert verdicts(noisy) == {(32, 16): "NOISY"}
    # The same means with tight repeats: significant, SLOWER, with its p-value.
    tight = compare.compare_records(
        repeats(32, 16, [99.0, 100.0, 101.0]), repeats(32, 16, [79.0, 80.0, 81.0]), NOISE
    )
    (c, _) = tight.comparisons
    assert c.verdict == "SLOWER" and c.p_value is not None and c.p_value < 0.01


def test_a_significant_change_inside_the_band_is_same():
    result = compare.compare_records(
        repeats(32, 16, [100.0, 100.1, 99.9]), repeats(32, 16, [98.0, 98.1, 97.9]), NOISE
    )
    assert verdicts(result) == {(32, 16): "SAME"}


def test_equal_constant_repeats_are_same_and_different_ones_are_decided():
    same = compare.compare_records(
        repeats(32, 16, [100.0] * 3), repeats(32, 16, [100.0] * 3), NOISE
    )
    assert verdicts(same) == {(32, 16): "SAME"}
    slower = compare.compare_records(
        repeats(32, 16, [100.0] * 3), repeats(32, 16, [50.0] * 3), NOISE
    )
    assert verdicts(slower) == {(32, 16): "SLOWER"}


def test_gate_counts_only_slower_beyond_the_threshold():
    result = compare.compare_records(
        [rec(32, 16, 100.0), rec(64, 16, 100.0)], [rec(32, 16, 92.0), rec(64, 16, 70.0)], NOISE
    )
    assert verdicts(result) == {(32, 16): "SLOWER", (64, 16): "SLOWER"}
    failing = {c.point[:2] for c in result.gate_failures(settings(10.0))}
    assert failing == {(64, 16)}
    assert result.gate_failures(settings(50.0)) == []


def settings(threshold: float, band_only_gates: bool = True) -> compare.Settings:
    return compare.Settings(threshold, "THRESHOLD=", NOISE, band_only_gates)


def test_two_repeats_are_judged_by_the_band_and_a_large_regression_fails():
    # Welch at alpha 0.01 with n=2 gives p = 0.066 here: NOISY, and the gate used to pass -48%.
    result = compare.compare_records(
        repeats(32, 16, [100.0, 120.0]), repeats(32, 16, [50.0, 65.0]), NOISE
    )
    tok_s = next(c for c in result.comparisons if c.metric == "output_tok_s")
    assert tok_s.band_only and tok_s.verdict == "SLOWER"
    assert tok_s.change_pct == pytest.approx(-47.7, abs=0.1)
    assert [c.point[:2] for c in result.gate_failures(settings(30.0))] == [(32, 16)]


def test_noisy_beyond_the_threshold_fails_the_gate_and_says_so():
    # 3 repeats a side, -45% but p = 0.16: NOISY. The estimate is still -45%: the gate fails.
    result = compare.compare_records(
        repeats(32, 16, [70.0, 130.0, 100.0]), repeats(32, 16, [30.0, 90.0, 45.0]), NOISE
    )
    assert verdicts(result) == {(32, 16): "NOISY"}
    (failure,) = result.gate_failures(settings(30.0))
    assert compare.verdict_label(failure, settings(30.0)) == "NOISY, beyond threshold"
    assert result.gate_failures(settings(50.0)) == []  # NOISY within the threshold passes
    ident = compare.identity(repeats(32, 16, [1.0]), prov())
    text = compare.render("a", "b", ident, ident, [], result, settings(30.0), {}, None)
    assert "**FAILED**: NOISY, beyond threshold 32/16 output tok/s: -45.0%" in text
    assert "| **NOISY, beyond threshold** |" in text


def test_band_only_verdicts_are_advisory_where_the_manifest_says_so():
    single = compare.compare_records([rec(32, 16, 100.0)], [rec(32, 16, 50.0)], NOISE)
    advisory = settings(30.0, band_only_gates=False)
    assert single.gate_failures(advisory) == [] and single.gate_problems(advisory) == []
    (c, _) = single.comparisons
    assert c.verdict == "SLOWER" and compare.verdict_label(c, advisory) == "SLOWER (advisory)"
    ident = compare.identity([rec(32, 16, 1.0)], prov())
    text = compare.render("a", "b", ident, ident, [], single, advisory, {}, None)
    assert "**PASSED**" in text and "advisory" in text and "band_only_gates = false" in text
    # With 3 repeats a side the test judges, and the gate is not advisory.
    tested = compare.compare_records(
        repeats(32, 16, [99.0, 100.0, 101.0]), repeats(32, 16, [49.0, 50.0, 51.0]), NOISE
    )
    assert len(tested.gate_failures(advisory)) == 1


def test_the_demo_runs_enough_repeats_to_gate_and_single_runs_stay_advisory():
    demo = load_manifest(DEMO_MANIFEST)
    assert demo.sweep.repeats >= compare.MIN_REPEATS_FOR_TEST  # mean +- CI in its report
    assert demo.compare is not None and demo.compare.band_only_gates is False
    repeated = load_manifest(ROOT / "tests" / "data" / "manifests" / "demo-repeats.toml")
    assert repeated.sweep.repeats >= compare.MIN_REPEATS_FOR_TEST


def test_points_in_one_run_only_and_lost_points_are_listed():
    base = [rec(32, 16, 100.0), rec(64, 16, 100.0), rec(128, 16, 100.0, status="failed")]
    new = [rec(32, 16, 100.0), rec(64, 16, 100.0, status="failed"), rec(256, 16, 9.0)]
    new.append(rec(128, 16, 100.0))
    result = compare.compare_records(base, new, NOISE)
    assert result.only_base == [] and result.only_new == [(256, 16, None)]
    assert result.lost == [(64, 16, None)] and result.gained == [(128, 16, None)]


# ----------------------------------------------------------------------------- identity, report


def prov(**changes) -> Provenance:
    fields = dict(
        model="m" * 64,
        checkpoint="c" * 64,
        engine=None,
        datasets="d" * 64,
        manifest="f" * 64,
        image_digest="sha256:aaa",
        tensorrt_llm="1.0.0",
        gpus=["NVIDIA H100 80GB HBM3"],
        drivers=["580.159.04"],
    )
    return Provenance(**{**fields, **changes})


def test_identity_differences_come_before_any_number():
    records = [rec(32, 16, 100.0)]
    base = compare.identity(records, prov())
    new = compare.identity(records, prov(drivers=["590.1"], image_digest="sha256:bbb"))
    assert compare.identity_differences(base, new) == ["image digest", "driver"]
    settings = compare.Settings(5.0, "THRESHOLD=", NOISE)
    result = compare.compare_records(records, [rec(32, 16, 50.0)], NOISE)
    text = compare.render("a", "b", base, new, [], result, settings, {}, None)
    assert "differ in 2 identity field(s): image digest, driver" in text
    assert text.index("## Identity") < text.index("## Points")
    assert "**FAILED**" in text and "weaker" in text


def test_latency_percentiles_are_side_by_side():
    settings = compare.Settings(5.0, "THRESHOLD=", NOISE)
    records = [rec(32, 16, 100.0)]
    pct = {
        (32, 16, None): (
            {"p50": 10.0, "p90": 20.0, "p99": 30.0},
            {"p50": 20.0, "p90": 20.0, "p99": 30.0},
        )
    }
    ident = compare.identity(records, prov())
    text = compare.render(
        "a",
        "b",
        ident,
        ident,
        [],
        compare.compare_records(records, records, NOISE),
        settings,
        pct,
        None,
    )
    assert "| 32/16 | 10.00 / 20.00 (+100.0%) | 20.00 / 20.00 (+0.0%) |" in text


def test_heatmap_is_a_png_over_isl_and_osl():
    result = compare.compare_records(
        [rec(32, 16, 100.0), rec(64, 32, 100.0)], [rec(32, 16, 50.0), rec(64, 32, 150.0)], NOISE
    )
    data = compare.heatmap_png(result)
    assert data is not None and data.startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- settings, input


def test_threshold_comes_from_the_flag_then_the_manifest_then_the_kit():
    demo = load_manifest(DEMO_MANIFEST)
    assert demo.compare is not None and demo.compare.threshold_pct == 40.0
    assert compare.parse_threshold("7.5") == 7.5 and compare.parse_threshold("") is None


def test_bad_input_from_the_command_line_is_one_line_exit_2(run_roots):
    """`python -m bench.stages.compare` as make runs it; the cases below call main() in-process
    (a subprocess costs ~0.2 s of imports each)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.stages.compare", "--base=a", "--run=b", "--threshold=abc"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert "is not a positive percentage" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", ["abc", "-3", "0", "nan", "inf"])
def test_a_bad_threshold_is_one_line_exit_2(bad, run_roots, capsys):
    assert compare.main(["--base=a", "--run=b", f"--threshold={bad}"]) == 2
    err = capsys.readouterr().err
    assert "is not a positive percentage" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "-x"])
def test_a_bad_base_is_one_line_exit_2(bad, run_roots, capsys):
    assert compare.main([f"--base={bad}", "--run", "b"]) == 2
    err = capsys.readouterr().err
    assert "is not a run name" in err and "Traceback" not in err


def test_a_missing_run_is_named(run_roots):
    assert compare.main(["--base", "nothere", "--run", "b"]) == 2


def test_the_slowdown_knob_is_honoured_only_under_pytest():
    assert slowdown_factor({TEST_SLOWDOWN_ENV: "2"}) == 1.0
    assert slowdown_factor({TEST_SLOWDOWN_ENV: "2", "PYTEST_CURRENT_TEST": "t"}) == 2.0
    with pytest.raises(compare.KitError, match="not a factor from 1 to 100"):
        slowdown_factor({TEST_SLOWDOWN_ENV: "0.5", "PYTEST_CURRENT_TEST": "t"})


# ----------------------------------------------------------------------------- on disk


def write_run(root: Path, name: str, records: list[PointResult]) -> None:
    run = root / "results" / name
    for r in records:
        point = run / "points" / point_id(r.isl, r.osl, r.concurrency, r.repeat)
        atomic_write_json(point / "result.json", r.to_json())
    atomic_write_json(
        run / "artifacts.json", {"schema": "trtllm-repro/artifacts/1", "files": {}, "stages": {}}
    )


def with_manifest(root: Path, name: str, manifest_text: str) -> None:
    atomic_write_text(root / "results" / name / "manifest.resolved.toml", manifest_text)


def demo_text(threshold: float, band_only_gates: bool) -> str:
    text = DEMO_MANIFEST.read_text()
    assert "threshold_pct = 40.0" in text
    text = text.replace("threshold_pct = 40.0", f"threshold_pct = {threshold}")
    return text.replace(
        "band_only_gates = false", f"band_only_gates = {str(band_only_gates).lower()}"
    )


def test_threshold_and_bands_come_from_the_base_runs_manifest(run_roots, capsys):
    write_run(run_roots, "base", [rec(32, 16, 100.0)])
    write_run(run_roots, "new", [rec(32, 16, 50.0)])
    with_manifest(run_roots, "base", demo_text(30.0, True))
    with_manifest(run_roots, "new", demo_text(90.0, True))  # the change loosens its own gate
    assert compare.main(["--base", "base", "--run", "new"]) == 1
    assert "the base run's manifest" in (run_roots / "reports/new/compare-base.md").read_text()
    assert "-50.0% (threshold 30%)" in capsys.readouterr().err
    assert compare.main(["--base", "base", "--run", "new", "--threshold", "60"]) == 0


def test_two_plain_demo_runs_compare_advisory_exit_0(run_roots):
    write_run(run_roots, "base", [rec(32, 16, 100.0), rec(64, 16, 100.0)])
    write_run(run_roots, "new", [rec(32, 16, 55.0), rec(64, 16, 141.0)])
    for name in ("base", "new"):
        with_manifest(run_roots, name, DEMO_MANIFEST.read_text())
    assert compare.main(["--base", "base", "--run", "new"]) == 0
    report = (run_roots / "reports/new/compare-base.md").read_text()
    assert "SLOWER (advisory)" in report and "weaker" in report


def test_nothing_compared_fails_with_one_line(run_roots, capsys):
    write_run(run_roots, "base", [rec(32, 16, 100.0)])
    write_run(run_roots, "new", [rec(64, 16, 100.0)])
    assert compare.main(["--base", "base", "--run", "new"]) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert len(failed) == 2 and "nothing was compared" in failed[0]
    write_run(run_roots, "failed", [rec(32, 16, 100.0, status="failed")])
    assert compare.main(["--base", "failed", "--run", "new"]) == 1


def test_base_points_missing_from_the_run_fail_the_gate(run_roots, capsys):
    write_run(run_roots, "base", [rec(32, 16, 100.0), rec(64, 16, 100.0)])
    write_run(run_roots, "part", [rec(32, 16, 100.0)])
    assert compare.main(["--base", "base", "--run", "part"]) == 1
    err = capsys.readouterr().err
    assert "1 point(s) of the base run missing from the new run: 64/16" in err
    write_run(run_roots, "more", [rec(32, 16, 100.0), rec(64, 16, 100.0), rec(128, 16, 9.0)])
    assert compare.main(["--base", "base", "--run", "more"]) == 0  # extra points in RUN are fine


def test_compare_writes_the_report_records_it_and_gates(run_roots):
    write_run(run_roots, "base", [rec(32, 16, 100.0), rec(64, 16, 100.0)])
    write_run(run_roots, "new", [rec(32, 16, 100.0), rec(64, 16, 50.0)])
    summary = run_roots / "step_summary.md"
    code = compare.main(["--base", "base", "--run", "new", "--summary", str(summary)])
    assert code == 1
    report = run_roots / "reports" / "new" / "compare-base.md"
    assert "**SLOWER**" in report.read_text() and "-50.0%" in report.read_text()
    assert (run_roots / "reports" / "new" / "figures" / "compare-base-heatmap.png").is_file()
    arts = json.loads((run_roots / "results" / "new" / "artifacts.json").read_text())
    assert "reports:compare-base.md" in arts["stages"]["compare-base"]["outputs"]
    assert "SLOWER" in summary.read_text()
    assert compare.main(["--base", "base", "--run", "new", "--threshold", "60"]) == 0
    write_run(run_roots, "same", [rec(32, 16, 100.0), rec(64, 16, 101.0)])
    assert compare.main(["--base", "base", "--run", "same"]) == 0


# ------------------------------------------------------------------------- shards without datasets


def shard_without_datasets(root: Path, name: str, point: PointResult) -> Path:
    """A finished shard as benchmark.yml uploads it: records, no datasets/ folder."""
    folder = root / name
    (folder / "manifest.resolved.toml").parent.mkdir(parents=True)
    manifest = CPU_MANIFEST_TOML.split("[[sweep.points]]")[0] + "".join(
        f"[[sweep.points]]\nisl = {isl}\nosl = 16\nrequests = 8\n" for isl in (32, 64)
    )
    (folder / "manifest.resolved.toml").write_text(manifest)
    (folder / ".stamps").mkdir()
    (folder / ".stamps" / "sweep.ok").write_text("")
    pid = point_id(point.isl, point.osl)
    atomic_write_json(folder / "points" / pid / "result.json", point.to_json())
    dataset = "run:datasets/isl32_osl16_n8.jsonl"
    own = {
        f"run:{f}": {"size": (folder / f).stat().st_size, "sha256": sha256_file(folder / f)}
        for f in ("manifest.resolved.toml", f"points/{pid}/result.json")
    }
    atomic_write_json(
        folder / "artifacts.json",
        {
            "schema": "trtllm-repro/artifacts/1",
            "files": {
                dataset: {"size": 3, "sha256": sha256_bytes(b"abc"), "stage": "datasets"},
                **{k: {**v, "stage": "sweep"} for k, v in own.items()},
            },
            "stages": {
                "datasets": {"inputs": {}, "outputs": [dataset], "details": {}},
                "sweep": {"inputs": {}, "outputs": sorted(own), "details": {}},
            },
        },
    )
    return folder


def test_a_merge_of_shards_without_datasets_verifies_and_says_so(run_roots):
    shards = [
        shard_without_datasets(run_roots / "up", "s1", rec(32, 16, 100.0)),
        shard_without_datasets(run_roots / "up", "s2", rec(64, 16, 100.0)),
    ]
    assert merge.merge("merged", shards) == 0
    arts = Artifacts(RunPaths.for_run("merged"))
    assert "run:datasets/isl32_osl16_n8.jsonl" in arts.files  # digest carried from the record
    files = verify.check_files(arts, "all")
    assert files.problems == () and "run:datasets/isl32_osl16_n8.jsonl" in files.from_record
    text = verify.render("merged", files, [], None, None, [], "PASSED")
    assert "The datasets are not on this machine" in text
    # Where the datasets exist, they are re-hashed: a changed one is named.
    dataset = run_roots / "results" / "merged" / "datasets" / "isl32_osl16_n8.jsonl"
    dataset.parent.mkdir()
    dataset.write_bytes(b"abd")
    files = verify.check_files(Artifacts(RunPaths.for_run("merged")), "all")
    assert [(p.key, p.kind) for p in files.problems] == [
        ("run:datasets/isl32_osl16_n8.jsonl", "changed")
    ]
    assert json.loads((run_roots / "results" / "merged" / "summary.json").read_text())["run"] == (
        "merged"
    )


# ----------------------------------------------------------------------------- summary.json


def test_summary_json_is_written_beside_summary_csv_and_validated(run_roots):
    run = run_roots / "results" / "r"
    records = [rec(64, 16, 90.0), rec(32, 16, 100.0)]
    write_summary(run / "summary.csv", records)
    doc = json.loads((run / "summary.json").read_text())
    assert doc["schema"] == "trtllm-repro/summary/2" and doc["run"] == "r"
    assert [(r["isl"], r["metrics"]["output_tok_s"]) for r in doc["records"]] == [
        (32, 100.0),
        (64, 90.0),
    ]
    assert set(doc["provenance"]) >= {"model", "checkpoint", "engine", "datasets", "image_digest"}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d["records"][0]["metrics"].update(output_tok_s="fast"), "records.0.metrics"),
        (lambda d: d["records"][0].update(status="great"), "records.0.status"),
        (lambda d: d["records"][0]["identity"].update(colour="red"), "records.0.identity"),
        (lambda d: d.pop("provenance"), "(document)"),
    ],
)
def test_a_document_off_the_schema_is_refused_naming_the_key(change, key):
    doc = results_schema.summary_document("r", prov(), [rec(32, 16, 100.0)])
    change(doc)
    with pytest.raises(compare.KitError, match=r"does not match summary\.schema\.json") as err:
        results_schema.check(doc, "summary.json")
    assert err.value.key is not None and err.value.key.startswith(key)

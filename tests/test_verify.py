"""bench.stages.verify: tampering named, identity mismatch fails, reference verdicts, suspects."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from test_report import GPU_ID, RECORDS, failed, make_run, ok, reported_run

from bench.analysis import tables
from bench.analysis.reference import METHOD_FIELDS, parse_reference
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError
from bench.core.run import RunPaths
from bench.stages import verify

REFERENCE = """\
schema = "trtllm-repro/reference/1"
title = "test"
source = "unit test"
date = "2026-01-01"
tolerance_pct = 5.0
[identity]
model = "trtllm-repro/tiny-llama-3.1"
tp_size = 1
leaves_open = [{OPEN}]
[[points]]
isl = 128
osl = 128
output_tok_s = 1020.0
[[points]]
isl = 128
osl = 256
output_tok_s = 1800.0
[[points]]
isl = 512
osl = 512
output_tok_s = 10.0
[[points]]
isl = 256
osl = 256
output_tok_s = 10.0
tolerance_pct = 1.0
""".replace("{OPEN}", ", ".join(f'"{f}"' for f in METHOD_FIELDS if f not in ("model", "tp_size")))


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def test_clean_run_passes_and_records_verify_md(roots: Path, capsys, run_templates) -> None:
    run_templates.copy(reported_run, roots)
    paths = RunPaths.for_run("t")
    assert verify.main(["--run", "t"]) == 0
    out = capsys.readouterr().out
    assert (
        "**Result: PASSED**" in out
        and "Not re-hashed (recorded digest taken from the record): 0" in out
    )
    # the console gets verify.md without its per-file lists, and where the whole file is
    full = (paths.reports / "verify.md").read_text()
    rehashed = full.split("<summary>Re-hashed</summary>")[1].split("</details>")[0].split()
    assert "`run:summary.csv`" in rehashed and "<summary>" not in out
    assert not any(name in out for name in rehashed if name.startswith("`"))
    assert out.rstrip().endswith(f"every file checked, by name: {paths.reports / 'verify.md'}")
    assert out.split("\n\nResult: PASSED;")[0] == full.replace(
        full[full.index("<details><summary>Re-hashed") : full.index("</details>") + 12], ""
    ).rstrip("\n")
    assert "reports:verify.md" in Artifacts(paths).files
    assert paths.stamp("verify").is_file()
    assert verify.main(["--run", "t"]) == 0  # its own verify.md is recorded, not unexpected


def test_changed_byte_is_named(roots: Path, capsys) -> None:
    paths = make_run(roots, RECORDS)
    target = paths.points / "isl128_osl128" / "result.json"
    target.write_text(target.read_text().replace("1000.0", "1900.0"))  # same size, still JSON
    assert verify.main(["--run", "t"]) == 1
    out = capsys.readouterr().out
    assert "| `run:points/isl128_osl128/result.json` | **changed** | sha256" in out
    assert not paths.stamp("verify").exists()


def test_deleted_file_is_missing(roots: Path, capsys) -> None:
    paths = make_run(roots, RECORDS)
    (paths.points / "isl256_osl256" / "console.log").unlink()
    assert verify.main(["--run", "t"]) == 1
    assert "| `run:points/isl256_osl256/console.log` | **missing** |" in capsys.readouterr().out


def test_added_file_is_unexpected(roots: Path, capsys) -> None:
    paths = make_run(roots, RECORDS)
    (paths.points / "isl128_osl128" / "notes.txt").write_text("hello")
    assert verify.main(["--run", "t"]) == 1
    assert "| `run:points/isl128_osl128/notes.txt` | **unexpected** |" in capsys.readouterr().out


def test_scope_run_takes_shared_roots_from_the_record(roots: Path, capsys) -> None:
    paths = make_run(roots, RECORDS)
    model = paths.models / "org--m" / "rev" / "config.json"
    model.parent.mkdir(parents=True)
    model.write_text("{}")
    Artifacts(paths).record("fetch", {}, [model])
    model.write_text('{"changed": true}')
    assert verify.main(["--run", "t", "--scope", "run"]) == 0
    out = capsys.readouterr().out
    assert "Not re-hashed (recorded digest taken from the record): 1" in out
    details = (paths.reports / "verify.md").read_text()  # the console names the file, not lists
    assert "- `models:org--m/rev/config.json`" in details
    assert verify.main(["--run", "t"]) == 1  # --scope all re-hashes it
    assert "models:org--m/rev/config.json` | **changed**" in capsys.readouterr().out


def test_absent_root_is_incomplete(roots: Path, capsys) -> None:
    paths = make_run(roots, RECORDS)
    engine = paths.work / "engine" / "rank0.engine"
    engine.parent.mkdir(parents=True)
    engine.write_bytes(b"x")
    Artifacts(paths).record("build", {}, [engine])
    engine.unlink()
    engine.parent.rmdir()
    paths.work.rmdir()
    assert verify.main(["--run", "t"]) == 3  # INCOMPLETE, never PASSED: the file is not here
    out = capsys.readouterr().out
    details = (paths.reports / "verify.md").read_text()  # the console names the file, not lists
    assert "**Result: INCOMPLETE**" in out and "- `work:engine/rank0.engine`" in details
    assert "work is absent on this machine: `work:engine/rank0.engine`; to restore, copy" in out
    assert not paths.stamp("verify").exists()
    assert verify.main(["--run", "t", "--scope", "run"]) == 0  # asked to skip shared roots


def test_identity_mismatch_with_manifest_fails(roots: Path, capsys) -> None:
    make_run(roots, [ok(128, 128, 1000.0, identity=GPU_ID)])
    assert verify.main(["--run", "t"]) == 1
    out = capsys.readouterr().out
    assert "| model = manifest model.repo | **FAIL** |" in out
    assert "recorded meta-llama/Llama-3.1-8B-Instruct, declared trtllm-repro/tiny-llama-3.1" in out


def test_records_of_two_engine_versions_fail_as_the_report_says() -> None:
    first = ok(128, 128, 1000.0)
    other = dataclasses.replace(first.identity, engine_version="other")
    mixed = [first, dataclasses.replace(ok(128, 256, 900.0), identity=other)]
    assert any("engine_version" in p for p in tables.identity_problems(mixed, None))
    (verdict,) = [
        v for v in verify.identity_verdicts(mixed, None, None) if v.verdict == verify.FAIL
    ]
    assert verdict.claim == "records agree on engine_version"


def test_reference_verdicts() -> None:
    ref = parse_reference(tomllib.loads(REFERENCE))
    verdicts = {v.claim: v for v in verify.point_verdicts(RECORDS, ref)}
    assert verdicts["ISL 128 / OSL 128"].verdict == "PASS"  # 1000 vs 1020: -1.96%
    assert verdicts["ISL 128 / OSL 128"].diff_pct == pytest.approx(-1.96, abs=0.01)
    assert verdicts["ISL 128 / OSL 256"].verdict == "FAIL"  # 1500 vs 1800: -16.7%
    assert verdicts["ISL 512 / OSL 512"].verdict == "NOT RUN"
    assert verdicts["ISL 256 / OSL 256"].verdict == "FAIL"  # measured nothing (silent)
    assert verdicts["ISL 256 / OSL 256"].tolerance_pct == 1.0
    assert verdicts["ISL 256 / OSL 128"].verdict == "NOT PUBLISHED"


def test_reference_file_and_suspect_points_fail(roots: Path, capsys) -> None:
    records = [
        ok(128, 128, 1000.0, telemetry={"suspect": True, "reasons": ["thermal: 12 s"]}),
        ok(128, 256, 1790.0),
        failed(256, 256),
    ]
    make_run(roots, records)
    ref = roots / "ref.toml"
    ref.write_text(REFERENCE)
    assert verify.main(["--run", "t", "--reference", str(ref)]) == 1
    out = capsys.readouterr().out
    assert "| ISL 128 / OSL 128 | **SUSPECT** | 1,000.00 |" in out
    assert "thermal: 12 s" in out
    assert "| ISL 128 / OSL 256 | PASS | 1,790.00 | 1,800.00 |" in out
    tiny = "trtllm-repro/tiny-llama-3.1"
    assert f"| model | {tiny} | {tiny} (records) | same |" in out


def test_invalid_point_is_suspect() -> None:
    bad = ok(128, 128, 1000.0)
    bad = dataclasses.replace(
        bad,
        status="invalid",
        failure="length_mismatch",
        failure_detail="average output length 28 differs from target 128",
    )
    (v,) = verify.suspect_verdicts([bad])
    assert v.verdict == "SUSPECT" and "length 28" in v.note


def test_best_per_axis_verdicts() -> None:
    ref = parse_reference(
        tomllib.loads(
            REFERENCE
            + """
[[best_per_isl]]
isl = 128
osl = 128
output_tok_s = 1000.0
[[best_per_osl]]
isl = 128
osl = 128
output_tok_s = 1000.0
[[best_per_osl]]
isl = 128
osl = 512
output_tok_s = 5000.0
"""
        )
    )
    rows = tables.point_rows(RECORDS)
    (isl,) = verify.best_verdicts(rows, ref, "isl")
    assert isl.verdict == "FAIL" and "best measured: OSL 256 at 1,500.00" in isl.note
    osl = verify.best_verdicts(rows, ref, "osl")
    assert [v.verdict for v in osl] == ["PASS", "NOT RUN"]


def test_missing_artifacts_is_bad_input(roots: Path) -> None:
    RunPaths.for_run("x").root.mkdir(parents=True)
    assert verify.main(["--run", "x"]) == 2
    with pytest.raises(KitError, match=r"artifacts\.json is missing"):
        verify.verify("x", None, "all")

"""Count and flag right: denominators, no point "within 10%" of itself, KV fallbacks flagged
where their numbers are shown."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from test_report import CPU_ID, make_run, ok

from bench.analysis import tables
from bench.stages import report, verify

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def fell_back(r):
    """The record as the sweep writes a point that ran out of memory at 0.95, then ran at 0.9."""
    return dataclasses.replace(
        r,
        identity=dataclasses.replace(r.identity, kv_cache_fraction=0.9),
        attempts=(
            {"kv_cache_fraction": 0.95, "outcome": "oom"},
            {"kv_cache_fraction": 0.9, "outcome": "ok"},
        ),
    )


def test_consistency_counts_invalid_records_as_invalid(roots: Path, capsys) -> None:
    short = dataclasses.replace(ok(128, 256, 1500.0), status="invalid", failure="length_mismatch")
    make_run(roots, [ok(128, 128, 1000.0), short])
    verify.main(["--run", "t"])
    out = capsys.readouterr().out
    assert (
        "2 of 2 records that state output tok/s, req/s and average OSL (1 valid, 1 invalid)" in out
    )
    assert "valid records PASS" not in out


def test_no_point_is_within_10_percent_of_itself() -> None:
    rows = tables.point_rows([ok(128, 128, 1000.0), ok(128, 256, 500.0)])
    best, rate = tables.recommendations(rows, [])[:2]
    assert "0 of the other 1 valid point(s) within 10% of it." in best
    assert "within 10%: ISL" not in rate and rate.count("ISL 128 / OSL 128") == 1


def test_kv_fallback_is_flagged_where_the_number_is_shown(roots: Path) -> None:
    identity = dataclasses.replace(CPU_ID, kv_cache_fraction=0.95)
    records = [ok(128, 128, 1000.0, identity=identity), fell_back(ok(128, 256, 1500.0, identity))]
    make_run(roots, records)
    text = report.make_report("t").read_text()
    top = text.split("## Top 10")[1].split("##")[0]
    assert "| 1,500.00 † |" in top and "| 1,000.00 |" in top
    assert "ISL 128 / OSL 256: 0.95 -> 0.9 (1 of 2 valid points)" in top
    grid = text.split("## Output tok/s over ISL x OSL")[1].split("##")[0]
    assert "1,500.00 †" in grid
    memory = text.split("## Memory")[1].split("##")[0]
    assert "0.9 of free memory: ISL 128 / OSL 256 (fell back 0.95 -> 0.9) (1 of 2)" in memory
    assert "varies by point" not in memory


def test_make_all_prints_the_stage_summary_before_verifys_exit(tmp_path: Path) -> None:
    """A FAIL or SUSPECT verdict must not hide the stage summary (make then exits 2)."""
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$*" in *"ifchanged verify"*) echo "**Result: FAILED**"; exit 1;; esac\n'
        'case "$*" in *bench.stages.status*) echo "run r: stages";; esac\n'
    )
    python.chmod(0o755)
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    proc = subprocess.run(
        [
            "make",
            "-s",
            "all",
            "ENV_READY=",
            f"PYTHON={python}",
            "RUN=r",
            f"RESULTS_DIR={results}",
            "-o",
            f"{results}/r/.stamps/report.ok",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.splitlines()[-2:] == ["**Result: FAILED**", "run r: stages"], proc.stdout
    assert proc.returncode == 2

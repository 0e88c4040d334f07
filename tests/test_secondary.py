"""Secondary evidence: summary files imported as their own kind, judged and marked as such."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from test_audit import seed_audit

from bench.analysis import secondary
from bench.core.errors import KitError
from bench.stages import import_logs, verify
from tests.conftest import SHARED

KIT = Path(__file__).resolve().parents[1]
LOGS = SHARED / "fixtures" / "trtllm-bench-0.16-logs"
CLAIMS = KIT / "manifests" / "published" / "seed-report-claims.toml"
needs_logs = pytest.mark.skipif(not LOGS.is_dir(), reason="needs ../shared (developers only)")

SUMMARY_LOG = """=== TensorRT-LLM Comprehensive Test Results Summary ===
Start Time: Fri Jul 11 04:27:26 UTC 2025

ISL,OSL,Requests,Throughput(tokens/sec),Latency(ms),Status
128,128,30000,14389.7989,266855.7100,SUCCESS
128,512,15000,19327.0773,397369.9631,SUCCESS
16384,16384,50,FAILED,FAILED,Benchmark Failed
"""
CSV_HEAD = "ISL,OSL,Requests,Token_Throughput,Request_Throughput,Avg_Input_Len,Avg_Output_Len\n"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def test_summary_log_rows_start_time_and_failures() -> None:
    start, rows = secondary.parse_summary_log(SUMMARY_LOG, "summary_results.log")
    assert start == "Fri Jul 11 04:27:26 UTC 2025"
    assert [(r.isl, r.osl, r.output_tok_s, r.status, r.line) for r in rows] == [
        (128, 128, 14389.7989, "ok", 5),
        (128, 512, 19327.0773, "ok", 6),
        (16384, 16384, None, "Benchmark Failed", 7),
    ]


def test_bad_summary_is_named_with_its_line() -> None:
    with pytest.raises(KitError, match="ISL, OSL and Requests must be whole numbers"):
        secondary.parse_throughput_csv(CSV_HEAD + "128,x,10,1.0,1.0,128,128\n", "t.csv")
    with pytest.raises(KitError, match="header lacks Token_Throughput"):
        secondary.parse_throughput_csv("ISL,OSL,Requests,Request_Throughput\n", "t.csv")


def test_console_logs_date_the_run() -> None:
    logs = ["[07/11/2025-11:40:45] [TRT-LLM] [I] x\n", "[07/11/2025-04:27:38] [TRT-LLM] y\n"]
    assert secondary.log_span(logs) == ("2025-07-11T04:27:38", "2025-07-11T11:40:45")


@needs_logs
def test_summary_only_and_disagreeing_points(roots: Path, capsys) -> None:
    logs = roots / "logs"
    logs.mkdir()
    shutil.copy(LOGS / "result_128_128_30000.txt", logs)
    (logs / "summary_results.log").write_text(SUMMARY_LOG)
    # the CSV disagrees with the raw log at 128/128 (a finding) and gives 128/512 (summary only)
    (logs / "throughput_summary.csv").write_text(
        CSV_HEAD + "128,128,30000,15000.0000,117.1875,128,128\n"
        "128,512,15000,19327.0773,37.7482,128,512\n"
    )
    assert import_logs.main(["--logs", str(logs), "--run", "s"]) == 0
    run = roots / "results" / "s"
    summary = json.loads((run / "import.json").read_text())
    assert summary["secondary_evidence"] == ["summary_results.log", "throughput_summary.csv"]
    assert summary["measured"]["console_logs_first"].startswith("2025-07-11T04:27")
    assert summary["measured"]["summary_start_time"] == "Fri Jul 11 04:27:26 UTC 2025"
    assert len(summary["imported_by_kit"]["commit"] or "") == 40
    assert not summary["ignored"]  # summaries are evidence now, not ignored files
    assert (run / "secondary" / "raw" / "throughput_summary.csv").is_file()

    ref = roots / "ref.toml"
    ref.write_text(
        CLAIMS.read_text().split('# "Top 10')[0]
        + "[[points]]\nisl = 128\nosl = 512\noutput_tok_s = 19327.08\n"
    )
    assert verify.main(["--run", "s", "--reference", str(ref), "--scope", "run"]) == 1
    out = capsys.readouterr().out
    assert (
        "| ISL 128 / OSL 512 | PASS (summary only: raw log absent) | 19,327.08 | 19,327.08 |"
    ) in out
    finding = next(ln for ln in out.splitlines() if ln.startswith("| ISL 128 / OSL 128 | **FAIL"))
    assert "raw log: 14,389.7989" in finding and "throughput_summary.csv:2: 15,000.0000" in finding


@needs_logs
def test_seed_audit_judges_osl_512_and_8192_from_the_summaries(roots: Path, run_templates) -> None:
    out = run_templates.copy(seed_audit, roots).value
    for osl, isl, value in ((512, 128, "19,327.08"), (8192, 128, "7,944.30")):
        assert (
            f"PASS (summary only: raw log absent): Best per OSL vs reference: best at OSL {osl}: "
            f"ISL {isl}, {value}"
        ) in out
        assert f"checked against 8 points with OSL {osl}: 0 with raw logs, 8 with summary" in out
    isl4096 = next(ln for ln in out.splitlines() if "best at ISL 4096" in ln)
    assert "the claimed point measured 3,018.63 (summary only: raw log absent" in isl4096
    isl8192 = next(ln for ln in out.splitlines() if "best at ISL 8192" in ln)
    assert "the claimed point measured 1,565.99 (summary only" in isl8192
    verify_md = (roots / "reports" / "seed" / "verify.md").read_text()
    assert "checked against 63 points: 47 with raw logs, 16 with summary evidence only" in verify_md
    assert "48 of the 64 have a raw log, 48 of those agree with it" in verify_md
    report_md = (roots / "reports" / "seed" / "report.md").read_text()
    assert (
        "| Measured (by the logs) | 2025-07-11T04:27:38 to 2025-07-11T11:40:45 (console log "
        "timestamps, time zone not stated by the logs); summary log start: Fri Jul 11 04:27:26 "
        "UTC 2025 |"
    ) in report_md
    assert "| Imported by kit commit | " in report_md
    assert "| **summary only**: 19,327.08 |" in report_md  # 128/512 in the grid table


def test_repeats_are_not_a_disagreement_but_a_wrong_summary_is() -> None:
    from test_report import ok

    repeats = [ok(128, 128, 1000.0, repeat=1), ok(128, 128, 1100.0, repeat=2)]
    assert verify.evidence_agreement(repeats, []) == []  # no summary: nothing to compare
    rows = (secondary.SecondaryRow("s.csv", 2, 128, 128, 100, 1100.0, None, "ok"),)
    summary = secondary.SecondaryFile("throughput_summary.csv", "t", "0" * 64, None, rows)
    (agrees,) = verify.evidence_agreement(repeats, [summary])
    assert agrees.verdict == "PASS"
    wrong = dataclasses.replace(summary, rows=(dataclasses.replace(rows[0], output_tok_s=900.0),))
    (finding,) = verify.evidence_agreement(repeats, [wrong])
    assert finding.verdict == "FAIL" and "csv:2: 900.0000" in finding.note

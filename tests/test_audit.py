"""bench.stages.audit on the seed's raw logs (../shared): 70B TP8 data, contradicted claims."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from bench.stages import audit
from tests.conftest import SHARED

KIT = Path(__file__).resolve().parents[1]
LOGS = SHARED / "fixtures" / "trtllm-bench-0.16-logs"
CLAIMS = KIT / "manifests" / "published" / "seed-report-claims.toml"

pytestmark = pytest.mark.skipif(
    not LOGS.is_dir() or not (KIT / "bench" / "stages" / "import_logs.py").is_file(),
    reason="needs ../shared/fixtures/trtllm-bench-0.16-logs and bench/stages/import_logs.py",
)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def seed_audit(folder: Path) -> str:
    """The seed's audit (import, report, verify) into run seed, and what it printed: built once,
    copied per test (conftest.RunTemplates); test_secondary reads it too."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert audit.main(["--logs", str(LOGS), "--reference", str(CLAIMS), "--run", "seed"]) == 1
    return out.getvalue()


def test_seed_audit_finds_70b_tp8_and_the_wrong_claims(roots: Path, capsys, run_templates) -> None:
    built = run_templates.copy(seed_audit, roots)
    out = built.value
    assert (
        "the logs record model meta-llama/Llama-3.1-70B-Instruct, TP 8, PP 1, backend "
        "trtllm-tensorrt 0.16.0; 47/48 points valid"
    ) in out
    assert "FAIL: Identity: tp_size = reference; recorded 8, declared 1" in out
    assert "FAIL: Identity: GPUs (TP x PP) = reference; recorded 8, declared 1" in out
    failed_best = [line for line in out.splitlines() if "FAIL: Best per" in line]
    assert [line.split(": best at ")[1].split(":")[0] for line in failed_best] == [
        "ISL 2048",
        "ISL 4096",
        "ISL 8192",
        "ISL 16384",
        "OSL 128",
        "OSL 16384",
    ]
    assert (
        "best at OSL 128: ISL 1024, 3,575.36 (measured 14,389.80); best measured: ISL 128 "
        "at 14,389.80"
    ) in out
    assert "best at OSL 16384: ISL 128, 4,557.74 (measured 4,591.19)" in out

    verify_md = (roots / "reports" / "seed" / "verify.md").read_text()
    # output = req/s x OSL
    assert (
        "47 of 47 records that state output tok/s, req/s and average OSL (47 valid, 0 invalid) PASS"
        in verify_md
    )
    assert "| peak output tok/s 19,787.00 | PASS | 19,787.63 |" in verify_md
    # no OSL 512 log in the fixture: judged from the summary files, marked so
    assert (
        "| ISL 128 / OSL 512 (rank 2) | PASS (summary only: raw log absent) | 19,327.08 |"
    ) in verify_md

    report_md = (roots / "reports" / "seed" / "report.md").read_text()
    assert "| 128 | 14,389.80 | ISL 128 | 30,000 | 112.42 |" in report_md  # best per OSL 128
    assert "| 2048 | 8,686.76 | OSL 2048 | 1,500 | 4.24 |" in report_md  # best per ISL 2048
    assert "| Model | meta-llama/Llama-3.1-70B-Instruct |" in report_md

    # a second audit of the same logs reuses the import and gives the same verdicts; the first
    # ran in the template's folder, so its output names that folder
    assert audit.main(["--logs", str(LOGS), "--reference", str(CLAIMS), "--run", "seed"]) == 1
    second = capsys.readouterr()
    assert second.out == out.replace(str(built.folder), str(roots))
    assert "already holds these logs; not importing again" in second.err


def test_missing_logs_folder_is_bad_input(roots: Path) -> None:
    assert audit.main(["--logs", str(roots / "none")]) == 2

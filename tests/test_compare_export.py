"""`make export TO=mlflow`: the payload made from a run, bad targets, and a real local MLflow store.

MLflow is not in the kit's install. The store test uses MLFLOW_VENV (default .venv-mlflow), made
on demand by bench.stages.export with pip; where that cannot install (no index), it skips saying
why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.fileio import atomic_write_text
from bench.schema.record import write_summary
from bench.schema.results_schema import Provenance
from bench.stages import export
from tests.conftest import ROOT
from tests.test_compare import prov, rec


def made_run(root: Path, name: str = "r") -> Path:
    run = root / "results" / name
    atomic_write_text(run / "manifest.resolved.toml", 'name = "m"\n[sweep]\nrepeats = 3\n')
    write_summary(run / "summary.csv", [rec(32, 16, 100.0), rec(64, 16, 90.0, status="failed")])
    atomic_write_text(root / "reports" / name / "report.md", "# report\n")
    return run


def test_payload_carries_metrics_params_tags_and_artifacts(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("x")
    data = export.payload(
        "r",
        [rec(32, 16, 100.0), rec(64, 16, 90.0, status="failed")],
        {"name": "m", "sweep": {"repeats": 3, "points": [1, 2]}},
        Provenance(**{**prov().model_dump(), "image_digest": "sha256:abc"}),
        [report, tmp_path / "absent.json"],
    )
    assert data["metrics"] == {
        "isl32_osl16.output_tok_s": 100.0,
        "isl32_osl16.avg_request_latency_ms": 160.0,
    }
    assert data["params"] == {"name": "m", "sweep.repeats": "3", "sweep.points": "[1, 2]"}
    assert data["tags"]["trtllm-repro.image_digest"] == "sha256:abc"
    assert data["tags"]["trtllm-repro.run"] == "r"
    assert data["artifacts"] == [str(report.resolve())]


def test_an_unknown_target_from_the_command_line_is_one_line_exit_2(run_roots):
    """`python -m bench.stages.export` as make runs it; the cases below call main() in-process
    (a subprocess costs ~0.2 s of imports each)."""
    made_run(run_roots)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.stages.export", "--run", "r", "--to=wandb"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "is not a known target (mlflow)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", ["", "wandb", "mlflow;rm"])
def test_an_unknown_target_is_one_line_exit_2(bad, run_roots, capsys):
    made_run(run_roots)
    assert export.main(["--run", "r", f"--to={bad}"]) == 2
    err = capsys.readouterr().err
    assert "is not a known target (mlflow)" in err and "Traceback" not in err


def test_a_run_without_summary_json_is_named(run_roots):
    assert export.main(["--run", "nothere", "--to", "mlflow"]) == 2


def test_the_default_install_has_no_mlflow():
    for name in ("runtime.lock", "dev.lock"):
        assert "mlflow" not in (ROOT / "requirements" / name).read_text().lower()


@pytest.mark.slow
def test_export_to_a_local_mlflow_file_store(run_roots, monkeypatch):
    venv = Path(os.environ.get("MLFLOW_VENV", ROOT / ".venv-mlflow"))
    if not (venv / "bin" / "python").is_file():
        probe = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(run_roots / "probe"),
                export.MLFLOW_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            pytest.skip(
                f"cannot fetch {export.MLFLOW_REQUIREMENT} here: {probe.stderr.strip()[-200:]}"
            )
    made_run(run_roots)
    store = run_roots / "mlruns"
    monkeypatch.setenv("MLFLOW_VENV", str(venv))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x: file store opt-in
    assert export.main(["--run", "r", "--to", "mlflow"]) == 0
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import json, mlflow; r = mlflow.search_runs(experiment_names=['trtllm-repro'], "
            "output_format='list')[0]; a = [f.path for f in mlflow.MlflowClient()"
            ".list_artifacts(r.info.run_id)]; print(json.dumps([r.data.metrics, r.data.params, "
            "r.data.tags.get('trtllm-repro.run'), sorted(a)]))",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": store.as_uri()},
    )
    assert check.returncode == 0, check.stderr[-2000:]
    metrics, params, run_tag, artifacts = json.loads(check.stdout.strip().splitlines()[-1])
    assert metrics == {
        "isl32_osl16.output_tok_s": 100.0,
        "isl32_osl16.avg_request_latency_ms": 160.0,
    }
    assert params == {"name": "m", "sweep.repeats": "3"}
    assert run_tag == "r"
    assert artifacts == ["report.md", "summary.csv", "summary.json"]

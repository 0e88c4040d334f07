"""`make export`: send a run to a tracking server, for teams that keep their numbers in one.

Reads:  results/<run>/summary.json (records, provenance), manifest.resolved.toml, and
        reports/<run>/report.md
Writes: nothing in the run; one MLflow run with the run's metrics (one per point and metric),
        params (the resolved manifest, flattened), tags (identity) and artifacts (report,
        summary.json, summary.csv)
Usage:  python -m bench.stages.export --run RUN --to mlflow       (make export RUN=<run> TO=mlflow)

MLflow is not in the kit's install: it goes into its own virtualenv (MLFLOW_VENV, default
.venv-mlflow) on first use, pinned to MLFLOW_REQUIREMENT, and bench/stages/mlflow_log.py runs there
with nothing of the kit but a JSON payload. The server is MLflow's own MLFLOW_TRACKING_URI (a
local `file:` store, which MLflow 3 accepts only with MLFLOW_ALLOW_FILE_STORE=true; a URL);
MLFLOW_EXPERIMENT_NAME names the experiment (default trtllm-repro).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.core.errors import KitError, StageFailed, run_main
from bench.core.fileio import atomic_write_json, read_json
from bench.core.run import RunPaths, point_id
from bench.schema.record import PointResult
from bench.schema.results_schema import Provenance, check
from bench.stages.compare import METRICS, identity

TARGETS = ("mlflow",)
MLFLOW_REQUIREMENT = "mlflow-skinny==3.17.2"
LOGGER = Path(__file__).with_name("mlflow_log.py")
PARAM_LIMIT = 500  # MLflow caps a param value (6000 chars on recent servers, 500 on old ones)


# ----------------------------------------------------------------------------- payload (pure)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested TOML tables as dotted keys; lists and scalars as text, cut to PARAM_LIMIT."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:PARAM_LIMIT]
    return out


def metrics(records: Sequence[PointResult]) -> dict[str, float]:
    """`<point>.<metric>` for every valid record: the same names as the run's point folders."""
    out = {}
    for r in records:
        if r.status != "ok":
            continue
        for metric in (*METRICS, "req_s", "total_tok_s"):
            value = getattr(r.metrics, metric)
            if value is not None:
                out[f"{point_id(r.isl, r.osl, r.concurrency, r.repeat)}.{metric}"] = float(value)
    return out


def payload(
    run: str,
    records: Sequence[PointResult],
    manifest: Mapping[str, Any] | None,
    provenance: Provenance,
    artifacts: Sequence[Path],
) -> dict[str, Any]:
    tags = {
        f"trtllm-repro.{k.replace(' ', '_')}": v for k, v in identity(records, provenance).items()
    }
    return {
        "experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME", "trtllm-repro"),
        "run_name": run,
        "metrics": metrics(records),
        "params": flatten(manifest or {}),
        "tags": {"trtllm-repro.run": run, **tags},
        "artifacts": [str(p.resolve()) for p in artifacts if p.is_file()],
    }


# ----------------------------------------------------------------------------- I/O edge


def mlflow_python() -> Path:
    """The MLflow virtualenv's interpreter, made on first use (never the kit's own .venv)."""
    venv = Path(os.environ.get("MLFLOW_VENV", ".venv-mlflow"))
    python = venv / "bin" / "python"
    if python.is_file():
        return python
    print(f"[export] installing {MLFLOW_REQUIREMENT} into {venv} (first use)", file=sys.stderr)
    for argv in (
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            MLFLOW_REQUIREMENT,
        ],
    ):
        if subprocess.run(argv).returncode != 0:
            raise StageFailed(
                f"could not install {MLFLOW_REQUIREMENT} into {venv}",
                fix="check the network or the package index, or set MLFLOW_VENV to a "
                "virtualenv that has mlflow",
            )
    return python


def export(run_name: str, target: str) -> int:
    if target not in TARGETS:
        raise KitError(
            f"TO={target!r} is not a known target ({', '.join(TARGETS)})",
            fix="make export RUN=<run> TO=mlflow",
        )
    paths = RunPaths.for_run(run_name)
    if not paths.summary_json.is_file():
        raise KitError(
            "the run has no summary.json (made by the sweep, import and merge of this kit)",
            path=str(paths.root),
            fix=f"finish the run first, or rerun `make sweep RUN={run_name}` (it resumes)",
        )
    summary = read_json(paths.summary_json)
    check(summary, str(paths.summary_json))
    manifest = (
        tomllib.loads(paths.resolved_manifest.read_text(encoding="utf-8"))
        if paths.resolved_manifest.is_file()
        else None
    )
    data = payload(
        run_name,
        [PointResult.from_json(r, str(paths.summary_json)) for r in summary["records"]],
        manifest,
        Provenance(**summary["provenance"]),
        [paths.reports / "report.md", paths.summary_json, paths.summary],
    )
    python = mlflow_python()
    with tempfile.TemporaryDirectory() as tmp:
        payload_file = Path(tmp) / "payload.json"
        atomic_write_json(payload_file, data)
        proc = subprocess.run([str(python), str(LOGGER), str(payload_file)])
    if proc.returncode != 0:
        raise StageFailed(f"MLflow logging failed (exit {proc.returncode}); see its output above")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--run", required=True)
    parser.add_argument("--to", required=True, help=f"one of: {', '.join(TARGETS)}")
    args = parser.parse_args(argv)
    return run_main(lambda: export(args.run, args.to), "bench.stages.export")


if __name__ == "__main__":
    raise SystemExit(main())

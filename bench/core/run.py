"""A run: one folder of results for one manifest, and where its larger files live.

Layout (every name below comes from here, nowhere else):
  results/<run>/manifest.resolved.toml   the manifest with defaults, fixed at the run's start
  results/<run>/artifacts.json           every file read or written, with sha256
  (bench.core.artifacts)
  results/<run>/.stamps/<stage>.ok       written last by each stage, for Make
  results/<run>/.stamps/point-session.log the console of what the sweep holds around its points
  (the CPU runner's fork server): diagnostics, not evidence, so not recorded
  results/<run>/datasets/, points/<point>/, summary.csv, summary.json, provenance.json
  results/<run>/logs/<stage>.log         what a stage's libraries said (bench.core.library_log)
  results/<run>/import.json              an imported run without a manifest: what was imported
  results/<run>/shards/<shard>/          a merged run: each shard's artifacts and provenance
  work/<run>/                            large per-run files: quantized checkpoint, engine
  models/<org>--<name>/<revision>/       model snapshots, shared by runs, immutable per revision
  reports/<run>/                         report.md, figures, verify.md
"""

from __future__ import annotations

import argparse
import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from bench.core.edge import run_name_problem, shown
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_text
from bench.core.manifest import Manifest, load_manifest, resolved_toml

STAGE_LOGS = "logs"  # results/<run>/logs/: what libraries said; recorded, but not a result
STAGES = ("fetch", "quantize", "build", "accuracy", "datasets", "sweep", "report", "verify")


@dataclass(frozen=True)
class RunPaths:
    name: str
    root: Path
    work: Path
    models: Path
    reports: Path

    @classmethod
    def for_run(cls, name: str) -> RunPaths:
        """Roots come from RESULTS_DIR/WORK_DIR/MODELS_DIR/REPORTS_DIR (set by the Makefile).

        The name is checked here too, so no caller (CLI, audit's default name) can reach outside
        results/ with a name like `../x`.
        """
        why = run_name_problem(name)
        if why:
            raise KitError(f"run name {shown(name)} {why}", key="--run", fix="RUN=my-run")
        env = os.environ.get
        return cls(
            name=name,
            root=Path(env("RESULTS_DIR", "results")) / name,
            work=Path(env("WORK_DIR", "work")) / name,
            models=Path(env("MODELS_DIR", "models")),
            reports=Path(env("REPORTS_DIR", "reports")) / name,
        )

    @classmethod
    def at(cls, root: Path) -> RunPaths:
        """The run-folder names under any folder (a shard given by path, a run being merged);
        its work, models and reports roots are not known there and lead nowhere."""
        nowhere = root / ".stamps" / "not-here"
        return cls(root.name, root, nowhere, nowhere, nowhere)

    @property
    def resolved_manifest(self) -> Path:
        return self.root / "manifest.resolved.toml"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts.json"

    def stamp(self, stage: str) -> Path:
        return self.root / ".stamps" / f"{stage}.ok"

    @property
    def point_session_log(self) -> Path:
        return self.root / ".stamps" / "point-session.log"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def points(self) -> Path:
        return self.root / "points"

    @property
    def summary(self) -> Path:
        return self.root / "summary.csv"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    def stage_log(self, stage: str) -> Path:
        return self.root / STAGE_LOGS / f"{stage}.log"

    @property
    def import_summary(self) -> Path:
        """What an import without a manifest imported (bench.stages.import_logs)."""
        return self.root / "import.json"

    @property
    def shards(self) -> Path:
        """A merged run's copies of each shard's artifacts.json and provenance.json."""
        return self.root / "shards"

    def model_dir(self, repo: str, revision: str) -> Path:
        return self.models / repo.replace("/", "--") / revision

    @property
    def checkpoint(self) -> Path:
        return self.work / "checkpoint"

    @property
    def engine(self) -> Path:
        return self.work / "engine"


def point_id(isl: int, osl: int, concurrency: int | None = None, repeat: int = 0) -> str:
    """The one name of a sweep point, used by sweep, resume, report and import."""
    name = f"isl{isl}_osl{osl}"
    if concurrency is not None:
        name += f"_c{concurrency}"
    if repeat:
        name += f"_r{repeat}"
    return name


@dataclass(frozen=True)
class Run:
    paths: RunPaths
    manifest: Manifest
    manifest_path: Path


def add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", type=Path, required=True, help="the sweep manifest (TOML)")
    parser.add_argument("--run", help="run name (default: the manifest's file name)")


def _first_difference(old: str, new: str) -> str:
    diff = [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return "\n".join(f"    {line}" for line in diff[:12])


def open_run(manifest_path: Path, run_name: str | None = None, *, create: bool = True) -> Run:
    """Load and validate the manifest, and bind it to its run folder.

    The first stage fixes the resolved manifest in the run; later stages (and resumed ones)
    refuse a manifest whose resolved form differs, naming what changed.
    """
    manifest = load_manifest(manifest_path)
    paths = RunPaths.for_run(run_name or manifest_path.stem)
    text = resolved_toml(manifest)
    if paths.resolved_manifest.exists():
        recorded = paths.resolved_manifest.read_text(encoding="utf-8")
        if recorded != text:
            raise KitError(
                "the manifest changed since this run started:\n"
                + _first_difference(recorded, text),
                path=str(manifest_path),
                fix=f"start a new run (RUN=<new name>), or remove {paths.root} to redo this one",
            )
    elif create:
        from bench.core.artifacts import Artifacts  # artifacts names files by these paths

        atomic_write_text(paths.resolved_manifest, text)
        arts = Artifacts(paths)
        arts.record(
            "init",
            arts.input_digests([manifest_path]),
            [paths.resolved_manifest],
            {"manifest": str(manifest_path)},
            stamp=False,
        )
    else:
        raise KitError(
            "this run has not started",
            path=str(paths.root),
            fix=f"run `make all MANIFEST={manifest_path}` first",
        )
    return Run(paths=paths, manifest=manifest, manifest_path=manifest_path)


def load_run(run_name: str) -> Run:
    """Open an existing run from its own resolved manifest (report, verify, merge need no TOML)."""
    paths = RunPaths.for_run(run_name)
    if not paths.resolved_manifest.is_file():
        raise KitError(
            "no such run (manifest.resolved.toml is missing)",
            path=str(paths.root),
            fix="name a folder under results/ with RUN=, or run the pipeline first",
        )
    manifest = load_manifest(paths.resolved_manifest)
    return Run(paths=paths, manifest=manifest, manifest_path=paths.resolved_manifest)

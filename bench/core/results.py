"""A finished run as its readers load it (report, verify, compare): its kind, what it was
asked to measure, its provenance and its records, read in one place.

Kinds, by the stage that made its points (recorded in artifacts.json):
  pipeline  the stages ran from a manifest (`make sweep`; one shard of a split is one too)
  imported  `make import`: trtllm-bench outputs made elsewhere; without a manifest, import.json
            says what was imported
  merged    `make merge`: the shards' points in one run; shards/<shard>/ keeps each shard's
            artifacts.json and provenance.json, and merge recorded their names and order
A run that claims two kinds (two of those stages, or the files of one kind beside the record of
another, e.g. import.json and shards/) is refused, naming both: its numbers have no one origin.
A missing manifest.resolved.toml is not refused here: verify judges it (FAIL), report refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.core.artifacts import Artifacts
from bench.core.errors import KitError
from bench.core.fileio import read_json_object
from bench.core.manifest import Manifest, load_manifest
from bench.core.run import RunPaths
from bench.schema.provenance import Provenance, read_provenance
from bench.schema.record import PointResult, load_records

RunKind = Literal["pipeline", "imported", "merged"]
# The stage whose record makes a run of each kind.
MADE_BY: dict[str, RunKind] = {"sweep": "pipeline", "import": "imported", "merge": "merged"}


@dataclass(frozen=True)
class RunProvenance:
    """Where a run's provenance comes from: its own file, or a merged run's first shard's."""

    record: Provenance | None
    source: str  # "provenance.json", "shards/<first>/provenance.json (...)", or "none recorded"
    shard_gpus: tuple[str, ...]  # a merged run: the GPUs each shard ran on
    files: tuple[Path, ...]  # every provenance file read


@dataclass(frozen=True)
class LoadedRun:
    paths: RunPaths
    kind: RunKind
    artifacts: Artifacts
    manifest: Manifest | None  # manifest.resolved.toml; None for an import without --manifest
    import_summary: dict[str, Any] | None  # import.json: an imported run without a manifest
    shards: tuple[str, ...] = ()  # merged: the shard runs, in the order merge was given them
    partial: tuple[str, ...] = ()  # merged from a subset on purpose: what the subset lacks

    @property
    def manifest_text(self) -> str | None:
        path = self.paths.resolved_manifest
        return path.read_text(encoding="utf-8") if self.manifest is not None else None

    def provenance(self) -> RunProvenance:
        return run_provenance(self.paths.root, self.shards)

    def records(self) -> list[PointResult]:
        """Every point's record (bench.schema.record.load_records: ok, invalid, failed alike)."""
        return load_records(self.paths.points)


def kind_problems(stages: set[str], has_import_summary: bool, has_shards: bool) -> list[str]:
    """Why a run's record and files name more than one kind; empty when they agree."""
    makers = sorted(stage for stage in stages if stage in MADE_BY)
    problems = []
    if len(makers) > 1:
        kinds = ", ".join(f"{s} ({MADE_BY[s]})" for s in makers)
        problems.append(f"artifacts.json records the stages of two kinds of run: {kinds}")
    if has_import_summary and has_shards:
        problems.append("it holds both import.json (imported) and shards/ (merged)")
    if has_import_summary and "import" not in stages:
        problems.append("it holds import.json but artifacts.json records no import")
    if has_shards and "merge" not in stages:
        problems.append("it holds shards/ but artifacts.json records no merge")
    return problems


def kind_of(stages: set[str]) -> RunKind:
    """The kind the record names (kind_problems has ruled out two); no maker yet: pipeline."""
    return next((MADE_BY[s] for s in ("merge", "import") if s in stages), "pipeline")


def load_run_results(name: str) -> LoadedRun:
    """The run named, with its kind; bad input (no run, two kinds, a broken file) is a KitError."""
    paths = RunPaths.for_run(name)
    if not paths.artifacts.is_file():
        raise KitError(
            "no such run (artifacts.json is missing)",
            path=str(paths.root),
            fix="name a folder under results/ with RUN=, or run its stages (or make import) first",
        )
    arts = Artifacts(paths)
    stages = set(arts.stages)
    problems = kind_problems(stages, paths.import_summary.is_file(), paths.shards.is_dir())
    if problems:
        raise KitError(
            "not one kind of run: " + "; ".join(problems),
            path=str(paths.root),
            fix="a run is made by one of sweep, import or merge: restore the run from its "
            "copy, or make it again in a new run (RUN=<new name>)",
        )
    merged = arts.stages.get("merge", {}).get("details", {})
    return LoadedRun(
        paths=paths,
        kind=kind_of(stages),
        artifacts=arts,
        manifest=(
            load_manifest(paths.resolved_manifest) if paths.resolved_manifest.is_file() else None
        ),
        import_summary=(
            read_json_object(paths.import_summary) if paths.import_summary.is_file() else None
        ),
        shards=tuple(map(str, merged.get("shards") or ())),
        partial=tuple(map(str, merged.get("partial") or ())),
    )


def provenance_files(root: Path, shards: tuple[str, ...] = ()) -> list[Path]:
    """The run's provenance.json, or a merged run's shards' in merge's order (then by name).
    By folder, not RunPaths: summary.json is written from it while merge is still running."""
    own = RunPaths.at(root)
    if own.provenance.is_file():
        return [own.provenance]
    order = {name: position for position, name in enumerate(shards)}
    return sorted(
        own.shards.glob("*/provenance.json"),
        key=lambda f: (order.get(f.parent.name, len(order)), f.parent.name),
    )


def run_provenance(root: Path, shards: tuple[str, ...] = ()) -> RunProvenance:
    """A merged run has no provenance.json of its own: merge refused shards of different images
    or GPU models, so the first shard's speaks for them all, and each shard's GPUs are listed."""
    files = provenance_files(root, shards)
    if not files:
        return RunProvenance(None, "none recorded", (), ())
    if files == [RunPaths.at(root).provenance]:
        return RunProvenance(read_provenance(files[0]), "provenance.json", (), tuple(files))
    read = [(f.parent.name, read_provenance(f)) for f in files]
    shard_gpus = tuple(
        f"{name}: "
        + (
            ", ".join(
                f"{g.name} (GPU {g.index}), driver {g.driver_version}" for g in prov.used_gpus()
            )
            or "no GPU"
        )
        for name, prov in read
    )
    source = (
        f"shards/{read[0][0]}/provenance.json (first of {len(read)} shards; merge checked "
        "that they ran one image on one GPU model)"
    )
    return RunProvenance(read[0][1], source, shard_gpus, tuple(files))

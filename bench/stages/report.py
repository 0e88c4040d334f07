"""Stage `report`: a run's results as one markdown report with figures, computed from records.

Reads:  the run as bench.core.results loads it (pipeline, imported or merged):
        results/<run>/points/*/{result,failure}.json, summary.csv, manifest.resolved.toml (or
        import.json for an imported run), provenance.json and the model's config.json when present,
        each failed point's raw log (its last lines)
Writes: reports/<run>/report.md, reports/<run>/figures/{throughput_heatmap,throughput_vs_osl}.png;
        recorded as stage "report" in results/<run>/artifacts.json
Usage:  python -m bench.stages.report --run demo          (make report RUN=demo)

Every number comes from the records (bench.schema.record.PointResult); nothing is copied from a
log's
name or a previous report. The tables are pure functions of the records (bench.analysis.tables); the
markdown is bench.analysis.report_sections (pure: render() joins one function per section);
bench.analysis.figures
draws the figures. This module is the edge: it loads the run, renders and writes.
The same records give byte-identical output: no clock is read, times come from the run's own
artifact record.

Recorded means verified: every file the report reads (records, summary, manifest, provenance,
config.json: small files) is re-hashed against artifacts.json first. When one differs or was never
recorded, the report is still written, with UNVERIFIED at its top naming the files, and the stage
exits 1 without its stamp. A run merged from a subset of its shards says PARTIAL at the top.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.analysis import (
    figures,
    report_sections,
    secondary,
    serving_report,
    tables,
)
from bench.analysis.report_sections import Context, render
from bench.analysis.tables import is_suspect
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, StageFailed, run_main
from bench.core.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    read_json_object,
    sha256_bytes,
)
from bench.core.manifest import Manifest
from bench.core.results import load_run_results
from bench.core.run import RunPaths
from bench.core.runlock import locked
from bench.gpu import gpus
from bench.gpu.gpus import ModelShape
from bench.schema.record import PointResult, record_files
from bench.stages import accuracy

STAGE = "report"
VERSION = 1  # bump when the report or figures written from the same records would change
REPORT_NAME = "report.md"
LOG_TAIL_LINES = 6


def results_digest(arts: Artifacts) -> str:
    files = {
        k: dataclasses.asdict(v)
        for k, v in sorted(arts.files.items())
        if v.stage not in (STAGE, "verify")
    }
    return sha256_bytes(json.dumps(files, sort_keys=True).encode())


def recorded_at(arts: Artifacts) -> str | None:
    for stage in ("sweep", "import", "merge"):
        when = arts.stages.get(stage, {}).get("finished_at")
        if when:
            return f"{when} (stage {stage} finished)"
    return None


def model_shape(
    paths: RunPaths, manifest: Manifest | None, records: Sequence[PointResult]
) -> tuple[ModelShape | None, str, Path | None]:
    """config.json of the manifest's model when on this machine, else the table by recorded id."""
    if manifest is not None:
        config = paths.model_dir(manifest.model.repo, manifest.model.revision) / "config.json"
        if config.is_file():
            try:
                return gpus.shape_from_config(read_json(config)), f"{config}", config
            except KeyError as exc:
                raise KitError(f"config.json lacks {exc}", path=str(config)) from None
    models = sorted({r.identity.model for r in records if r.identity.model is not None})
    for m in models:
        if m in gpus.MODELS:
            return (
                gpus.MODELS[m],
                f"the table in bench/gpu/gpus.py for {m} (recorded model id)",
                None,
            )
    if not models:
        return None, "the model id is not recorded in the results", None
    return None, f"no config.json on this machine and no table row for {', '.join(models)}", None


def load_context(run_name: str) -> tuple[RunPaths, Context, list[PointResult], list[Path]]:
    run = load_run_results(run_name)
    paths, manifest = run.paths, run.manifest
    if manifest is None and run.import_summary is None:
        raise KitError(
            f"manifest.resolved.toml is missing, though this {run.kind} run was made from one",
            path=str(paths.root),
            fix="restore it from the run's copy (make verify names every missing file)",
        )
    inputs: list[Path] = [paths.resolved_manifest] if manifest is not None else []
    if run.import_summary is not None:
        inputs.append(paths.import_summary)
    records = run.records()
    if not records:
        raise KitError(
            "no point records",
            path=str(paths.points),
            fix="run the sweep (make sweep) or import logs first",
        )
    provenance = run.provenance()
    inputs += provenance.files
    shape, shape_source, config = model_shape(paths, manifest, records)
    if config is not None:
        inputs.append(config)
    accuracy_record = accuracy.result_path(paths)
    if accuracy_record.is_file():
        inputs.append(accuracy_record)
    arts = run.artifacts
    ctx = Context(
        run=run_name,
        manifest=manifest,
        import_summary=run.import_summary,
        provenance=provenance.record,
        provenance_source=provenance.source,
        shard_gpus=provenance.shard_gpus,
        shape=shape,
        shape_source=shape_source,
        results_digest=results_digest(arts),
        recorded_at=recorded_at(arts),
        secondary=tuple(secondary.load(paths.root)),
        accuracy=read_json_object(accuracy_record) if accuracy_record.is_file() else None,
    )
    if ctx.secondary:
        inputs.append(paths.root / secondary.FOLDER / secondary.EVIDENCE)
    inputs += record_files(paths.points)
    if paths.summary.is_file():
        inputs.append(paths.summary)
    return paths, ctx, records, inputs


def read_log_tails(paths: RunPaths, records: Sequence[PointResult]) -> dict[str, list[str]]:
    tails = {}
    for r in records:
        if r.status == "ok" and not is_suspect(r):
            continue
        for raw in r.raw_files:
            f = paths.root / raw
            if f.is_file() and f.suffix in (".txt", ".log"):
                lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
                tails[raw] = [line[:240] for line in lines[-LOG_TAIL_LINES:]]
    return tails


def unverified_inputs(arts: Artifacts, files: Sequence[Path]) -> list[str]:
    """The files the report read that do not match their record: "key: problem (detail)"."""
    out = []
    for path in files:
        try:
            key = arts.key(path)
        except KitError:
            out.append(f"{path}: outside the run's roots (not recorded)")
            continue
        for problem in arts.check([key]):
            detail = "never recorded" if key not in arts.files else problem.detail
            out.append(f"`{key}`: {problem.kind} ({detail})")
    return out


def integrity_banner(unverified: Sequence[str], partial: Sequence[str]) -> str:
    """What stands above the report's first line when its inputs cannot be trusted whole."""
    out = ""
    if unverified:
        out += (
            "> **UNVERIFIED**: these records do not match their digests in artifacts.json; "
            "the numbers below are not the run's as measured:\n"
            + "".join(f"> - {line}\n" for line in unverified)
            + "> Run `make verify RUN=<run>` for the full check; restore the files or re-run.\n\n"
        )
    if partial:
        out += (
            "> **PARTIAL**: merged from a subset of the shards on purpose (PARTIAL=1):\n"
            + "".join(f"> - {line}\n" for line in partial)
            + "\n"
        )
    return out


def make_report(run_name: str) -> Path:
    paths, ctx, records, input_files = load_context(run_name)
    arts = Artifacts(paths)
    inputs = arts.input_digests(input_files)
    command = {"report": REPORT_NAME, "figures": sorted(figures.FIGURES)}
    key = rule.StageKey(STAGE, VERSION, command, inputs, rule.tool_versions("matplotlib"))
    report = paths.reports / REPORT_NAME
    if rule.skip_if_current(arts, key, str(report)):
        return report
    unverified = unverified_inputs(arts, input_files)
    partial = arts.stages.get("merge", {}).get("details", {}).get("partial") or []
    text = integrity_banner(unverified, partial) + render(
        records, ctx, read_log_tails(paths, records)
    )
    outputs = []
    reference = tables.ceilings_do_not_apply(records, ctx.manifest)
    drawn = figures.draw(*report_sections.figure_grid(records, ctx)) | serving_report.draw(
        records,
        report_sections.slo_of(ctx),
        report_sections.serving_gpus(records, reference),
        report_sections.serving_identity(records, ctx),
    )
    for name, data in drawn.items():
        atomic_write_bytes(paths.reports / name, data)
        outputs.append(paths.reports / name)
    atomic_write_text(report, text)
    outputs.append(report)
    rule.record(arts, key, outputs, {"points": len(records)}, stamp=not unverified)
    if unverified:
        paths.stamp(STAGE).unlink(missing_ok=True)
        raise StageFailed(
            "UNVERIFIED: records differ from artifacts.json: " + "; ".join(unverified),
            path=str(report),
            fix="restore those files (make verify names every problem), or re-run the run",
        )
    print(f"[report] wrote {report} and {len(drawn)} figures", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--run", required=True, help="run name: results/<run>/")
    args = parser.parse_args(argv)

    def stage() -> int:
        make_report(args.run)
        return 0

    return run_main(locked(args.run, "report", stage, create=False), "bench.stages.report")


if __name__ == "__main__":
    raise SystemExit(main())

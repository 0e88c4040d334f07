"""Import a folder of trtllm-bench outputs from elsewhere as a run the report can read.

Reads:  <logs>/result_<ISL>_<OSL>_<requests>.txt (console log) and/or .json (--report_json);
        every other file is listed as ignored. ISL, OSL and requests come from the file name;
        everything else (model, TP, version, ...) only from each file's own contents.
Writes: results/<run>/points/<point>/raw/<original name>    each file, byte for byte
        results/<run>/points/<point>/result.json             status ok or invalid
        results/<run>/points/<point>/failure.json            status failed
        results/<run>/summary.csv
        results/<run>/manifest.resolved.toml (with --manifest) or import.json (without)
        results/<run>/artifacts.json, .stamps/import.ok       stage "import"
Usage:  python -m bench.stages.import_logs --logs ../shared/fixtures/trtllm-bench-0.16-logs --run
seed
        (make import LOGS=<folder>)

A point with both a .json and a .txt is read from the JSON, with the engine and KV cache sizes
that only the log prints. Importing again with the same files and code does nothing; with other
files it replaces this stage's own outputs, and it refuses a run folder holding anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis import secondary
from bench.backends.trtllm.parse import (
    disagreements,
    has_performance_section,
    identity_disagreements,
    invalid,
    memory_from_log,
    parse_console,
    parse_file,
    read_bytes,
    read_log,
)
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, run_main
from bench.core.fileio import atomic_write_bytes, atomic_write_json, sha256_bytes
from bench.core.manifest import MAX_REQUESTS, MAX_TOKENS, load_manifest
from bench.core.run import RunPaths, open_run, point_id
from bench.core.runlock import locked
from bench.schema import record
from bench.schema.record import PointResult

STAGE = "import"
SCHEMA = "trtllm-repro/import/1"
RESULT_NAME = re.compile(r"^result_(?P<isl>\d+)_(?P<osl>\d+)_(?P<requests>\d+)\.(?P<ext>txt|json)$")
NAME_RULE = "not named result_<ISL>_<OSL>_<requests>.txt|.json"
OWN_STAGES = ("init", STAGE)  # what an imported run may already hold
VERSION = 1  # bump when the records imported from the same logs would change


@dataclass(frozen=True)
class PointFiles:
    isl: int
    osl: int
    requests: int
    files: tuple[Path, ...]  # sorted by name; at most one .txt and one .json

    @property
    def name(self) -> str:
        return point_id(self.isl, self.osl)

    def with_suffix(self, suffix: str) -> Path | None:
        return next((f for f in self.files if f.suffix == suffix), None)


# ----------------------------------------------------------------------------- pure planning


def name_problem(isl: int, osl: int, requests: int) -> str | None:
    """Why a file name's numbers cannot be a point (the manifest's own bounds), or None."""
    for what, value, most in (
        ("ISL", isl, MAX_TOKENS),
        ("OSL", osl, MAX_TOKENS),
        ("requests", requests, MAX_REQUESTS),
    ):
        if not 1 <= value <= most:
            return f"{what} {value} is not a point (1 to {most:,})"
    return None


def plan_points(names: list[str], folder: Path) -> tuple[list[PointFiles], list[dict[str, str]]]:
    """Group file names into points (sorted by ISL, OSL) and list the ignored ones with why.
    Two files of one kind for one point (result_128_... and result_0128_...) are refused."""
    grouped: dict[tuple[int, int], list[tuple[int, str]]] = {}
    ignored = []
    for name in sorted(names):
        match = RESULT_NAME.match(name)
        if not match:
            ignored.append({"name": name, "reason": NAME_RULE})
            continue
        isl, osl, requests = int(match["isl"]), int(match["osl"]), int(match["requests"])
        why = name_problem(isl, osl, requests)
        if why:
            ignored.append({"name": name, "reason": why})
            continue
        key = (isl, osl)
        for _, other in grouped.get(key, []):
            if Path(other).suffix == Path(name).suffix:
                raise KitError(
                    f"two files for point ISL {isl} / OSL {osl}: {other} and {name}",
                    path=str(folder),
                    fix="keep one of them (the one the run wrote), move the other away",
                )
        grouped.setdefault(key, []).append((requests, name))
    points = []
    for (isl, osl), entries in sorted(grouped.items()):
        counts = sorted({requests for requests, _ in entries})
        if len(counts) > 1:
            raise KitError(
                f"point ISL {isl} / OSL {osl} has files for different request counts: "
                + ", ".join(name for _, name in entries),
                path=str(folder),
                fix="keep one result per ISL/OSL in the folder",
            )
        files = tuple(folder / name for _, name in sorted(entries, key=lambda e: e[1]))
        points.append(PointFiles(isl=isl, osl=osl, requests=counts[0], files=files))
    return points, ignored


def identity_summary(records: list[PointResult]) -> dict[str, list[Any]]:
    """The distinct identities the files report (unknown values left out)."""

    def distinct(field: str) -> list[Any]:
        return sorted({getattr(r.identity, field) for r in records} - {None})

    return {
        "models": distinct("model"),
        "backends": distinct("backend"),
        "engine_versions": distinct("engine_version"),
        "tp_sizes": distinct("tp_size"),
        "pp_sizes": distinct("pp_size"),
        "quantizations": distinct("quantization"),
    }


def import_summary(
    folder: Path,
    points: list[PointFiles],
    records: list[PointResult],
    ignored: list[dict[str, str]],
) -> dict[str, Any]:
    statuses = [r.status for r in records]
    return {
        "schema": SCHEMA,
        "source": str(folder),
        "files": sum(len(p.files) for p in points),
        "points": len(points),
        "status": {s: statuses.count(s) for s in ("ok", "invalid", "failed")},
        "identity": identity_summary(records),
        "ignored": ignored,
    }


# ----------------------------------------------------------------------------- I/O edge


def read_point(point: PointFiles, raw_files: tuple[str, ...]) -> PointResult:
    """Parse one point: the JSON report if there is one (sizes from the log), else the log.
    With both, the log's own report must agree with the JSON, or the point is invalid."""
    report, log = point.with_suffix(".json"), point.with_suffix(".txt")
    args = dict(isl=point.isl, osl=point.osl, requests=point.requests)
    first = report or log
    assert first is not None, "a point has its .json, its .txt or both (RESULT_NAME)"
    result = parse_file(first, **args)
    if report and log and result.status != "failed":
        text = read_log(log)
        result = dataclasses.replace(result, memory=memory_from_log(text))
        if has_performance_section(text):
            from_log = parse_console(text, source_file=str(log), **args)
            differ = disagreements(result, from_log)
        else:  # cut before its numbers, it may still name another model or parallelism
            differ = identity_disagreements(result.identity, text)
        if differ:
            detail = f"{report.name} vs {log.name} disagree: {'; '.join(differ)}"
            result = invalid(result, "disagreement", detail)
    return dataclasses.replace(result, raw_files=raw_files)


def import_key(arts: Artifacts, folder: Path, sources: list[Path], manifest: Path | None):
    """The import's stage key: the logs' digests (and the manifest's) under this VERSION."""
    inputs = arts.input_digests(sources + ([manifest] if manifest else []))
    return rule.StageKey(STAGE, VERSION, {"logs": str(folder)}, inputs)


def _check_run_folder(arts: Artifacts, key: rule.StageKey) -> bool:
    """True when this import already happened; raises when the folder holds another run."""
    foreign = sorted(set(arts.stages) - set(OWN_STAGES))
    unexpected = arts.unexpected()
    if foreign or unexpected:
        what = foreign or [p.key for p in unexpected[:5]]
        raise KitError(
            f"the run folder already holds other work ({', '.join(what)})",
            path=str(arts.paths.root),
            fix="choose another --run, or remove the folder",
        )
    return rule.is_current(arts, key)


def _remove_previous(arts: Artifacts) -> None:
    """Delete this stage's earlier outputs (recorded, so they are ours) before re-importing."""
    keys = arts.stages.get(STAGE, {}).get("outputs", [])
    for key in keys:
        path = arts.path(key)
        path.unlink(missing_ok=True)
        for folder in path.parents:  # and the point folders left empty
            if folder == arts.paths.root or any(folder.iterdir()):
                break
            folder.rmdir()
    arts.forget(keys)


def not_a_file(entry: Path) -> str:
    """Why an entry of the logs folder is not read: links are never followed."""
    if entry.is_symlink():
        return "a symbolic link (not followed: copy the file itself into the folder)"
    return "a folder" if entry.is_dir() else "not a regular file"


def run_import(folder: Path, run_name: str, manifest: Path | None) -> int:
    if not folder.is_dir():
        raise KitError("not a folder", path=str(folder), fix="pass LOGS=<folder of result_* files>")
    if manifest is not None:
        load_manifest(manifest)  # a bad manifest stops the import before anything is written
    folder = folder.resolve()
    entries = sorted(folder.iterdir())
    files = [e for e in entries if e.is_file() and not e.is_symlink()]
    points, ignored = plan_points([e.name for e in files], folder)
    ignored += [{"name": e.name, "reason": not_a_file(e)} for e in entries if e not in files]
    evidence = secondary.collect(folder)  # summaries: records of their own kind, not ignored
    ignored = [e for e in ignored if e["name"] not in {f.name for f in evidence}]
    ignored.sort(key=lambda e: e["name"])
    for entry in ignored:
        print(f"import: ignored {entry['name']}: {entry['reason']}", file=sys.stderr)
    if not points:
        raise KitError(
            "no result_<ISL>_<OSL>_<requests>.txt|.json files",
            path=str(folder),
            fix="point LOGS at the folder that holds the trtllm-bench outputs",
        )

    paths = RunPaths.for_run(run_name)
    arts = Artifacts(paths)
    key = import_key(arts, folder, files, manifest)
    inputs = key.inputs
    if paths.root.exists() and _check_run_folder(arts, key):
        print(f"import: {paths.root} is up to date with {folder}", file=sys.stderr)
        return 0

    raw = {f: paths.points / p.name / "raw" / f.name for p in points for f in p.files}
    records = []
    for point in points:  # parse everything before writing anything
        raw_files = tuple(raw[f].relative_to(paths.root).as_posix() for f in point.files)
        result = read_point(point, raw_files)
        records.append(result)
        shown = (
            f"{result.metrics.output_tok_s:.2f} output tok/s"
            if result.status == "ok"
            else f"{result.failure}: {result.failure_detail}"
        )
        print(f"import: {point.name}: {result.status}, {shown}", file=sys.stderr)

    if manifest is not None:
        open_run(manifest, run_name)  # validates it, fixes manifest.resolved.toml
        arts = Artifacts(paths)  # open_run recorded the "init" stage
    _remove_previous(arts)
    outputs = []
    for point, result in zip(points, records, strict=True):
        for source in point.files:
            data = read_bytes(source)
            if sha256_bytes(data) != inputs[arts.input_name(source)]:  # recorded means verified
                raise KitError(
                    "changed while it was being imported: the copy would not be what was read",
                    path=str(source),
                    fix="import again once nothing writes into the folder",
                )
            atomic_write_bytes(raw[source], data)
            outputs.append(raw[source])
        name = "failure.json" if result.status == "failed" else "result.json"
        target = paths.points / point.name / name
        atomic_write_json(target, result.to_json())
        outputs.append(target)
    record.write_summary(paths.summary, records)
    outputs += [paths.summary, paths.summary_json]
    outputs += secondary.write(paths.root, folder, evidence)
    logs = [f for p in points for f in p.files if f.suffix == ".txt"]
    summary = import_summary(folder, points, records, ignored) | secondary.import_fields(
        logs, evidence
    )
    if manifest is None:
        atomic_write_json(paths.import_summary, summary)
        outputs.append(paths.import_summary)
    rule.record(arts, key, outputs, summary)
    counts = ", ".join(f"{n} {s}" for s, n in summary["status"].items())
    print(
        f"import: {len(points)} points ({counts}), {len(ignored)} ignored -> {paths.root}",
        file=sys.stderr,
    )
    return 0


def add_logs_arg(parser: argparse.ArgumentParser) -> None:
    """--logs, as `make import` and `make audit` take it."""
    parser.add_argument(
        "--logs",
        type=Path,
        required=True,
        help="folder of result_<ISL>_<OSL>_<requests>.txt|.json files",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.import_logs", description=__doc__.splitlines()[0]
    )
    add_logs_arg(parser)
    parser.add_argument("--run", required=True, help="run name: results/<run>/")
    parser.add_argument(
        "--manifest", type=Path, help="the manifest the logs were measured with (optional)"
    )
    args = parser.parse_args(argv)

    def stage() -> int:
        return run_import(args.logs, args.run, args.manifest)

    return run_main(locked(args.run, "import", stage), "bench.stages.import_logs")


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage `verify`: prove a run's files are the ones recorded, its identity is the declared one, and
its numbers agree with a published reference.

Reads:  results/<run>/artifacts.json and every file it names, the run's records, its manifest
        (when it has one), its secondary evidence (secondary/evidence.json,
        bench.analysis.secondary),
        the reference TOML (--reference, else the manifest's `reference` key)
Writes: reports/<run>/verify.md (printed without its per-file lists), recorded as stage "verify"
        after all checks
Usage:  python -m bench.stages.verify --run demo [--scope all|run]
            [--reference manifests/published/nvidia-perf-overview-1.0.toml]
        (make verify RUN=demo [REFERENCE=...])

verify never trusts the stat-keyed hash cache (bench.core.hashcache): every recorded file is read
again, so a file changed in place with its size and mtime forged back is caught here (and only
here). `make all` asks bench.stages.ifchanged first, which repeats the last PASSED verdict when
nothing it checked changed; `make verify` always re-reads.

Result and exit code (the old verify.md and stamp are removed before anything is read):
  PASSED      0  every check passed
  FAILED      1  a missing, changed, unexpected, misplaced (symlink, unknown root) file; a point
                 the manifest asks for that is neither a result nor a failure; an identity
                 mismatch; a FAIL or SUSPECT point; an inconsistent reference
  bad input   2  a corrupt artifacts.json, point record, manifest or reference, named on stderr
  INCOMPLETE  3  nothing failed, but recorded files could not be re-hashed (their root, e.g.
                 models/ or work/, is absent here): the verdict names them and how to restore them
  PARTIAL     4  nothing failed, but the run was merged from a subset of its shards on purpose
                 (make merge PARTIAL=1); the missing points are listed
A published reference of another method (bench.analysis.reference.compare_method) gives NOT
COMPARABLE rows naming what differs (an online reference against an offline run, or a point at
another concurrency, included) and a cross-method section, never PASS or FAIL; a claim whose number
only a summary file states is marked "(summary only: raw log absent)"; each claim about the
whole run (best per ISL/OSL, peak, top N) says how many points it was checked against.
--scope run re-hashes only the run's own files (results/<run>/, reports/<run>/); files of the
shared roots (models/, work/) are then reported with the digest taken from the record, as are the
shared stages' files of a merged run (their digests come from the shards' verified records).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis import accuracy_metrics as am
from bench.analysis import reference as refmod
from bench.analysis import secondary, tables
from bench.analysis.markdown import md_table, num
from bench.analysis.tables import PointRow, is_suspect, point_rows
from bench.core import stage as rule
from bench.core.artifacts import Artifacts, Problem
from bench.core.errors import EXIT_FAILED, EXIT_OK, KitError, run_main
from bench.core.fileio import (
    atomic_write_text,
    read_json,
    read_json_object,
)
from bench.core.manifest import Manifest
from bench.core.results import LoadedRun, load_run_results
from bench.core.run import RunPaths, point_id
from bench.core.runlock import locked
from bench.gpu import gpus
from bench.schema.provenance import Provenance
from bench.schema.record import PointResult, record_files
from bench.stages import accuracy as accmod
from bench.stages.ifchanged import VERIFY_VERSION, verify_key
from bench.stages.sweep import Task

STAGE = "verify"
VERSION = VERIFY_VERSION  # bump it there (bench.stages.ifchanged asks before this module loads)
VERIFY_NAME = "verify.md"
OWN_ROOTS = ("run", "reports")  # the run's own folders; --scope run re-hashes only these
RATE_TOLERANCE = refmod.RATE_TOLERANCE
PASS, FAIL, NOT_RUN, NOT_PUBLISHED, SUSPECT = "PASS", "FAIL", "NOT RUN", "NOT PUBLISHED", "SUSPECT"
NOT_COMPARABLE = "NOT COMPARABLE"  # a different method: never PASS or FAIL
CROSS_METHOD = "Cross-method comparison (not a reproduction: different method)"
EVIDENCE_AGREEMENT = "Summary files vs raw logs"
INVALID_MARK = "(invalid)"  # a record the kit judged invalid (e.g. lengths off target)
FAILING = (FAIL, SUSPECT)
INCOMPLETE, PARTIAL = "INCOMPLETE", "PARTIAL"  # verdicts that keep a run from PASSED, not failures
# The overall result, most severe first, with its exit code (2, bad input, is a KitError).
RESULTS = (("FAILED", EXIT_FAILED), (INCOMPLETE, 3), (PARTIAL, 4), ("PASSED", EXIT_OK))
DATASETS_KEY = "run:datasets/"
MANIFEST_STAGES = {"init", "sweep", "merge"}  # a run with one of these was made from a manifest


@dataclass(frozen=True)
class FileCheck:
    rehashed: tuple[str, ...]
    from_record: tuple[str, ...]
    problems: tuple[Problem, ...]
    absent: tuple[str, ...] = ()  # not re-hashed because their root is not here (scope all)


@dataclass(frozen=True)
class Outcome:
    text: str  # verify.md
    exit_code: int
    sections: list[tuple[str, list[Verdict]]]
    ref_problems: list[str]
    console: str = (
        ""  # what the terminal gets: verify.md without the per-file lists, and where it is
    )


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    measured: float | None = None
    published: float | None = None
    tolerance_pct: float | None = None
    note: str = ""
    basis: str = "raw"  # "summary": the verdict rests on secondary evidence alone

    @property
    def shown(self) -> str:
        mark = f" ({secondary.SUMMARY_ONLY})" if self.basis == "summary" else ""
        return (f"**{self.verdict}**" if self.verdict in FAILING else self.verdict) + mark

    @property
    def diff_pct(self) -> float | None:
        if self.measured is None or self.published is None:
            return None
        return 100.0 * (self.measured - self.published) / self.published


# ----------------------------------------------------------------------------- checks (pure)


def from_shard_records(arts: Artifacts) -> set[str]:
    """Files a merged run took from its shards' records (verified by merge), not copied."""
    return {
        key
        for stage in arts.stages.values()
        if "from_shard" in stage.get("details", {})
        for key in stage["outputs"]
    }


def check_files(arts: Artifacts, scope: str) -> FileCheck:
    """Re-hash what can be re-hashed here; name every missing, changed, unexpected and misplaced
    file, and every file whose root is absent (the verdict then depends on files not here).
    verify's own earlier output is left out: it is removed before the check."""
    rehash_roots = {
        name
        for name, root in arts.roots.items()
        if root.is_dir() and (scope == "all" or name in OWN_ROOTS)
    }
    keys = sorted(k for k, entry in arts.files.items() if entry.stage != STAGE)
    misplaced = [p for k in keys if (p := arts.placement_problem(k)) is not None]
    bad = {p.key for p in misplaced}
    # Only a merged run whose record says its datasets' digests came from the shard records
    # (shards uploaded without them, benchmark.yml) may lack datasets/; any other run's are missing.
    merge_details = arts.stages.get("merge", {}).get("details", {})
    datasets_absent = (
        merge_details.get("datasets_from_shard_records") is True
        and not arts.paths.datasets.is_dir()
    )
    rehashed = tuple(
        k
        for k in keys
        if k not in bad
        and k.partition(":")[0] in rehash_roots
        and not (datasets_absent and k.startswith(DATASETS_KEY))
    )
    from_record = tuple(k for k in keys if k not in bad and k not in rehashed)
    shard_taken = from_shard_records(arts)
    absent = tuple(
        k
        for k in from_record
        if scope == "all" and k not in shard_taken and k.partition(":")[0] not in rehash_roots
    )
    problems = (
        misplaced
        + arts.check(rehashed)
        + [p for p in arts.unexpected() if p.key.partition(":")[0] in rehash_roots]
    )
    return FileCheck(rehashed, from_record, tuple(problems), absent)


RESTORE = {
    "models": "run `make fetch MANIFEST=<manifest> RUN=<run>` (or copy models/ from the machine "
    "that ran it)",
    "work": "copy work/<run>/ from the machine that ran it (or verify only the run's own files: "
    "--scope run)",
    "reports": "run `make report RUN=<run>` (or copy reports/<run>/ from the machine that ran it)",
}


def absent_verdicts(files: FileCheck) -> list[Verdict]:
    """One INCOMPLETE verdict per absent root, naming its files and how to bring them back."""
    by_root: dict[str, list[str]] = {}
    for key in files.absent:
        by_root.setdefault(key.partition(":")[0], []).append(key)
    out = []
    for root, keys in sorted(by_root.items()):
        shown = ", ".join(f"`{k}`" for k in keys[:5])
        more = f" and {len(keys) - 5} more (listed under Files)" if len(keys) > 5 else ""
        how = RESTORE.get(root, f"restore the {root} folder from the machine that ran it")
        out.append(
            Verdict(
                f"{len(keys)} recorded file(s) under {root}/ re-hashed here",
                INCOMPLETE,
                note=f"{root} is absent on this machine: {shown}{more}; to restore, {how}",
            )
        )
    return out


@dataclass(frozen=True)
class Completeness:
    """The run's points against the points its manifest (or its shard of it) asks for."""

    expected: tuple[str, ...]
    missing: tuple[str, ...]
    basis: str  # where `expected` comes from, said in the verdict
    partial: bool  # merged from a subset of shards on purpose: missing points are PARTIAL
    extra: tuple[str, ...] = ()  # finished points the manifest (or shard) never asked for


def manifest_tasks(manifest: Manifest) -> list[Task]:
    """Every point the manifest's sweep runs (all repeats), in sweep order."""
    return [Task(p, r) for r in range(manifest.sweep.repeats) for p in manifest.sweep.points]


def finished_points(points_dir: Path) -> set[str]:
    """Point folders holding a result or a recorded failure (a .partial one is not finished)."""
    return {path.parent.name for path in record_files(points_dir)}


def completeness(arts: Artifacts, manifest: Manifest) -> Completeness:
    """A shard run is held to its recorded shard of the points; a merged run to the union of its
    shards' manifests (merge refuses shards of different manifests, so: the manifest's points)."""
    sweep_details = arts.stages.get("sweep", {}).get("details", {})
    merge_details = arts.stages.get("merge", {}).get("details", {})
    tasks = manifest_tasks(manifest)
    everything = [t.name for t in tasks]
    basis = f"the manifest's {len(everything)} point(s)"
    expected = everything
    shard = sweep_details.get("shard")
    if shard and "merge" not in arts.stages:  # the sweep recorded its shard's plan
        wanted = set(map(str, sweep_details.get("shard_points") or []))
        expected = [name for name in everything if name in wanted]
        basis = f"shard {shard} of the manifest's {len(everything)} point(s)"
    elif merge_details:
        shards = merge_details.get("shards", [])
        basis = f"the union of {len(shards)} shard(s)' manifest points ({len(everything)})"
    have = finished_points(arts.paths.points)
    missing = tuple(name for name in expected if name not in have)
    extra = tuple(sorted(have - set(expected)))
    partial = bool(merge_details.get("partial"))
    return Completeness(tuple(expected), missing, basis, partial, extra)


def completeness_verdicts(done: Completeness) -> list[Verdict]:
    extra = [
        Verdict(f"point {name} is not one of {done.basis}", FAIL, note="never asked for")
        for name in done.extra
    ]
    if not done.missing:
        return [
            Verdict(
                f"every point of {done.basis} is a result or a recorded failure",
                PASS,
                note=f"{len(done.expected)} point(s)",
            ),
            *extra,
        ]
    verdict = PARTIAL if done.partial else FAIL
    why = (
        "merged from a subset of shards on purpose (--allow-partial)"
        if done.partial
        else "neither a result nor a recorded failure: deleted, or never run"
    )
    missing = [Verdict(f"point {name} of {done.basis}", verdict, note=why) for name in done.missing]
    return missing + extra


def summary_points(paths: RunPaths) -> dict[str, set[str]]:
    """The points each summary file (summary.csv, summary.json) lists, by file name."""
    out: dict[str, set[str]] = {}
    try:
        if paths.summary.is_file():
            rows = csv.DictReader(io.StringIO(paths.summary.read_text(encoding="utf-8")))
            out[paths.summary.name] = {
                point_id(
                    int(r["isl"]),
                    int(r["osl"]),
                    int(r["concurrency"]) if r.get("concurrency") else None,
                    int(r.get("repeat") or 0),
                )
                for r in rows
            }
        if paths.summary_json.is_file():
            records = read_json(paths.summary_json).get("records", [])
            out[paths.summary_json.name] = {
                point_id(r["isl"], r["osl"], r.get("concurrency"), r.get("repeat") or 0)
                for r in records
            }
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KitError(
            f"unreadable summary: {exc!r}",
            path=str(paths.root),
            fix="restore summary.csv / summary.json from the run's copy",
        ) from None
    return out


def summary_verdicts(paths: RunPaths) -> list[Verdict]:
    """Every point a recorded summary lists is still a result or a recorded failure: deleting a
    point with its entries (and the manifest) must not leave a summary that still shows it."""
    have = finished_points(paths.points)
    out = []
    for name, listed in sorted(summary_points(paths).items()):
        out += [
            Verdict(f"point {point} listed in {name}", FAIL, note="its record is gone")
            for point in sorted(listed - have)
        ]
    return out


def overall(files: FileCheck, sections, ref_problems: list[str]) -> tuple[str, int]:
    """The run's one result word and exit code: the most severe verdict decides."""
    verdicts = {v.verdict for _, vs in sections for v in vs}
    failed = bool(files.problems or ref_problems or verdicts & set(FAILING))
    hit = {"FAILED": failed, INCOMPLETE: INCOMPLETE in verdicts, PARTIAL: PARTIAL in verdicts}
    return next((word, code) for word, code in RESULTS if hit.get(word, True))


def imported_point_count(import_summary: dict[str, Any] | None) -> int | None:
    """How many points import.json (a recorded, re-hashed file) says the import wrote."""
    count = (import_summary or {}).get("points")
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def integrity_sections(run: LoadedRun, files: FileCheck) -> list[tuple[str, list[Verdict]]]:
    """The verdicts on what the run holds: points against the manifest, files not here."""
    arts, manifest = run.artifacts, run.manifest
    out = []
    if manifest is None and (stages := MANIFEST_STAGES & set(arts.stages)):
        missing = f"missing, though the run has a {'/'.join(sorted(stages))} stage"
        claim = "manifest.resolved.toml (what the run was asked to measure)"
        out.append(("Points vs manifest", [Verdict(claim, FAIL, note=missing)]))
    if manifest is not None:
        out.append(("Points vs manifest", completeness_verdicts(completeness(arts, manifest))))
    elif (imported := imported_point_count(run.import_summary)) is not None:
        have = len(finished_points(arts.paths.points))
        verdict = PASS if have >= imported else FAIL
        claim = f"{imported} imported point(s) (import.json) are all here"
        out.append(("Points vs import", [Verdict(claim, verdict, note=f"{have} found")]))
    if listed := summary_verdicts(arts.paths):
        out.append(("Points vs summary", listed))
    if files.absent:
        out.append(("Files not on this machine", absent_verdicts(files)))
    return out


def readable_records(run: LoadedRun, files: FileCheck) -> list[PointResult]:
    """The point records; a corrupt one is bad input (exit 2), named with what the file check
    found, since no verdict can be given on numbers that cannot be read."""
    try:
        return run.records()
    except KitError as exc:
        if files.problems:
            found = "; ".join(f"{p.kind} {p.key}" for p in files.problems[:5])
            exc.message += f" (the file check found: {found})"
        raise KitError(exc.message, path=exc.path, key=exc.key, fix=exc.fix) from None


def remove_old_verdict(paths: RunPaths) -> None:
    """Fail closed: whatever happens next, no earlier PASSED verify.md or stamp stays behind."""
    (paths.reports / VERIFY_NAME).unlink(missing_ok=True)
    paths.stamp(STAGE).unlink(missing_ok=True)


def identity_verdicts(
    records: Sequence[PointResult], manifest: Manifest | None, ref: refmod.Reference | None
) -> list[Verdict]:
    """Recorded identity vs the manifest's declaration and the reference's claim."""
    out = []
    seen = tables.distinct_identity(records)
    models, tps, pps = seen["model"], seen["tp_size"], seen["pp_size"]
    gpus = sorted(
        {
            t * (p or 1)
            for r in records
            if (t := r.identity.tp_size) is not None
            for p in [r.identity.pp_size]
        }
    )

    def compare(claim: str, recorded: list, wanted: object, matches) -> None:
        shown = ", ".join(map(str, recorded)) or "not recorded"
        if not recorded:
            out.append(Verdict(claim, NOT_RUN, note=f"declared {wanted}; results do not record it"))
        elif all(matches(v) for v in recorded):
            out.append(Verdict(claim, PASS, note=f"recorded {shown}"))
        else:
            out.append(Verdict(claim, FAIL, note=f"recorded {shown}, declared {wanted}"))

    for field in tables.MUST_AGREE:
        values = seen[field]
        if len(values) > 1:
            out.append(Verdict(f"records agree on {field}", FAIL, note=", ".join(map(str, values))))
    if manifest is not None:
        m = manifest
        compare("model = manifest model.repo", models, m.model.repo, lambda v: v == m.model.repo)
        compare(
            "backend = manifest engine.backend",
            seen["backend"],
            m.engine.backend,
            lambda v: v == m.engine.backend,
        )
        compare(
            "tp_size = manifest engine.tp_size",
            tps,
            m.engine.tp_size,
            lambda v: v == m.engine.tp_size,
        )
        compare(
            "pp_size = manifest engine.pp_size",
            pps,
            m.engine.pp_size,
            lambda v: v == m.engine.pp_size,
        )
    if ref is not None:
        i = ref.identity
        if i.model_ids():
            ids = sorted(i.model_ids())
            compare(
                f"model = reference ({' or '.join(ids)})",
                models,
                " or ".join(ids),
                lambda v: v in i.model_ids(),
            )
        if i.tp_size is not None:
            compare("tp_size = reference", tps, i.tp_size, lambda v: v == i.tp_size)
        if i.pp_size is not None:
            compare("pp_size = reference", pps, i.pp_size, lambda v: v == i.pp_size)
        if i.gpus is not None:
            compare("GPUs (TP x PP) = reference", gpus, i.gpus, lambda v: v == i.gpus)
    return out


def consistency_verdicts(records: Sequence[PointResult]) -> list[Verdict]:
    """output tok/s = req/s x average OSL (0.1%) for every valid record that states both."""
    out = []
    for r in records:
        output_tok_s, req_s, osl = r.metrics.output_tok_s, r.metrics.req_s, r.metrics.avg_output_len
        if r.status == "failed" or output_tok_s is None or req_s is None or osl is None:
            continue
        implied = req_s * osl
        ok = abs(output_tok_s - implied) <= RATE_TOLERANCE * implied
        out.append(
            Verdict(
                f"ISL {r.isl} / OSL {r.osl}"
                + (f" r{r.repeat}" if r.repeat else "")
                + (f" {INVALID_MARK}" if r.status == "invalid" else ""),
                PASS if ok else FAIL,
                output_tok_s,
                implied,
                RATE_TOLERANCE * 100,
                "" if ok else "output tok/s is not req/s x OSL: not output tokens?",
            )
        )
    return out


def _measured(records: Sequence[PointResult], isl: int, osl: int) -> list[PointResult]:
    return [r for r in records if (r.isl, r.osl) == (isl, osl)]


def point_verdicts(
    records: Sequence[PointResult],
    ref: refmod.Reference,
    summary: Sequence[PointRow] = (),
) -> list[Verdict]:
    """Every reference point, then every run point the reference does not list. A point with
    no raw record is judged from a summary file's number when there is one, marked so.

    A reference whose points state their concurrency (an online one) is keyed on ISL, OSL and
    concurrency: its point is judged only against the run's at that concurrency, never another."""
    by_load = any(p.concurrency is not None for p in ref.points)

    def key(r: PointRow | PointResult | refmod.RefPoint) -> tuple[int, int, int | None]:
        return (r.isl, r.osl, r.concurrency if by_load else None)

    ordered = sorted(point_rows(records), key=lambda r: r.output_tok_s)
    rows = {key(r): r for r in ordered}
    at_concurrency = {(r.isl, r.osl, r.concurrency): r for r in ordered}
    summarized = {key(r): r for r in summary}
    out = []
    for p in ref.points:
        claim = p.label + (f" (rank {p.rank})" if p.rank else "")
        tol = ref.tolerance(p)
        got = _measured(records, p.isl, p.osl)
        row = rows.get((p.isl, p.osl, None))
        same_load = [r for r in got if r.concurrency == p.concurrency]
        elsewhere = {r.concurrency for r in got} | {
            s.concurrency for s in summary if (s.isl, s.osl) == (p.isl, p.osl)
        }
        if same_load or by_load:  # like with like: the run's point at the reference's concurrency
            got, row = same_load, at_concurrency.get((p.isl, p.osl, p.concurrency))
        if not got and key(p) in summarized:
            s = summarized[key(p)]
            within = abs(s.output_tok_s - p.output_tok_s) <= tol / 100 * p.output_tok_s
            out.append(
                Verdict(
                    claim,
                    PASS if within else FAIL,
                    s.output_tok_s,
                    p.output_tok_s,
                    tol,
                    f"from {s.evidence}; no raw log",
                    basis="summary",
                )
            )
        elif not got and by_load and elsewhere:
            loads = ", ".join(refmod.in_flight(c) for c in sorted(elsewhere, key=lambda c: c or 0))
            why = f"differs: concurrency {loads} vs {p.concurrency}; none at {p.concurrency}"
            out.append(Verdict(claim, NOT_COMPARABLE, None, p.output_tok_s, None, why))
        elif not got:
            out.append(Verdict(claim, NOT_RUN, None, p.output_tok_s, tol, "in no evidence"))
        elif row is None:
            bad = got[0]
            value = bad.metrics.output_tok_s
            if bad.status == "invalid" or any(is_suspect(r) for r in got):
                out.append(
                    Verdict(
                        claim,
                        SUSPECT,
                        value,
                        p.output_tok_s,
                        tol,
                        f"{bad.status}: {bad.failure_detail or bad.failure}",
                    )
                )
            else:
                out.append(
                    Verdict(
                        claim, FAIL, None, p.output_tok_s, tol, f"measured nothing: {bad.failure}"
                    )
                )
        else:
            out.append(_measured_point_verdict(claim, p, row, got, ref))
        out += latency_verdicts(p, got, ref, out[-1])
    listed = {key(p) for p in ref.points}
    for k in sorted({key(r) for r in records} - listed, key=lambda k: (k[0], k[1], k[2] or 0)):
        row = rows.get(k)
        label = f"ISL {k[0]} / OSL {k[1]}" + (f" / concurrency {k[2]}" if k[2] else "")
        out.append(Verdict(label, NOT_PUBLISHED, row.output_tok_s if row else None))
    return out


def _measured_point_verdict(
    claim: str, p: refmod.RefPoint, row: PointRow, got: Sequence[PointResult], ref: refmod.Reference
) -> Verdict:
    """A measured point against a published one. A published reference's point measured with
    another request count is another dataset: NOT COMPARABLE. A KV fraction the reference
    declares minor is named and the number still compared."""
    tol = ref.tolerance(p)
    diff = abs(row.output_tok_s - p.output_tok_s) / p.output_tok_s * 100
    verdict = SUSPECT if row.suspect else (PASS if diff <= tol else FAIL)
    notes = ["telemetry marks it suspect"] if row.suspect else []
    found = [refmod.point_method_notes(ref.identity, p, r) for r in got if r.status == "ok"]
    major = sorted({n for differs, _ in found for n in differs})
    minor = sorted({n for _, declared_minor in found for n in declared_minor})
    if ref.kind == "published" and major:
        return Verdict(
            claim, NOT_COMPARABLE, None, p.output_tok_s, None, "differs: " + "; ".join(major)
        )
    notes += major + [f"{n} (declared minor: still compared)" for n in minor]
    return Verdict(claim, verdict, row.output_tok_s, p.output_tok_s, tol, "; ".join(notes))


def latency_verdicts(
    p: refmod.RefPoint, got: Sequence[PointResult], ref: refmod.Reference, point: Verdict
) -> list[Verdict]:
    """An online point's published latencies, judged only where its throughput was (same method,
    same concurrency), against the same statistic of the run's records, averaged over repeats."""
    out = []
    tol = ref.tolerance(p)
    for claimed in p.latency:
        claim = f"{p.label}: {claimed.label}"
        if point.verdict not in (PASS, FAIL, SUSPECT):
            note = f"as the point's throughput ({point.note})" if point.note else "as the point"
            out.append(Verdict(claim, point.verdict, None, claimed.value, None, note))
            continue
        if claimed.stat is None:
            why = "the source does not say which statistic it printed (mean, p50, ...)"
            out.append(Verdict(claim, NOT_COMPARABLE, None, claimed.value, None, why))
            continue
        values = [
            getattr(dist, claimed.stat) if (dist := getattr(r.metrics, claimed.metric)) else None
            for r in got
            if r.status == "ok"
        ]
        if not values or None in values:
            why = f"the run's records do not state {claimed.metric} {claimed.stat}"
            out.append(Verdict(claim, NOT_RUN, None, claimed.value, tol, why))
            continue
        measured = statistics.fmean(v for v in values if v is not None)
        within = abs(measured - claimed.value) <= tol / 100 * claimed.value
        verdict = SUSPECT if point.verdict == SUSPECT else (PASS if within else FAIL)
        repeats = f"mean of {len(values)} repeats" if len(values) > 1 else ""
        out.append(Verdict(claim, verdict, measured, claimed.value, tol, repeats))
    return out


def _from_summary(r: PointRow) -> bool:
    return r.evidence != "raw"


def _where_from(r: PointRow) -> str:
    """Where a row's number comes from, said only when it is not a raw log."""
    return f" ({secondary.SUMMARY_ONLY}; {r.evidence})" if _from_summary(r) else ""


def coverage(rows: Sequence[PointRow], scope: str = "") -> str:
    """What a claim about several points was checked against, e.g. "checked against 63
    points: 47 with raw logs, 16 with summary evidence only"."""
    raw = sum(not _from_summary(r) for r in rows)
    text = f"checked against {len(rows)} points{scope}: {raw} with raw logs"
    if raw < len(rows):
        text += f", {len(rows) - raw} with summary evidence only"
    return text


def best_verdicts(rows: Sequence[PointRow], ref: refmod.Reference, axis: str) -> list[Verdict]:
    """Each "best per ISL/OSL" claim against the best the evidence holds for that ISL/OSL.

    rows: the raw rows and any summary-only rows (bench.analysis.secondary); a verdict that rests on
    summary rows alone is marked so, and every verdict states its coverage.
    """
    other = "osl" if axis == "isl" else "isl"
    out = []
    for claim_row in getattr(ref, f"best_per_{axis}"):
        value = getattr(claim_row, axis)
        claim = (
            f"best at {axis.upper()} {value}: {other.upper()} {getattr(claim_row, other)}, "
            f"{num(claim_row.output_tok_s)}"
        )
        tol = ref.tolerance_pct
        same = [r for r in rows if getattr(r, axis) == value]
        if not same:
            out.append(
                Verdict(
                    claim,
                    NOT_RUN,
                    None,
                    claim_row.output_tok_s,
                    tol,
                    f"no valid point with {axis.upper()} {value} in any evidence",
                )
            )
            continue
        cover = coverage(same, f" with {axis.upper()} {value}")
        best = max(same, key=lambda r: (r.output_tok_s, -getattr(r, other)))
        at_claim = [r for r in same if getattr(r, other) == getattr(claim_row, other)]
        where_best = (
            f"best measured: {other.upper()} {getattr(best, other)} at "
            f"{num(best.output_tok_s)}{_where_from(best)}"
        )
        claimed = claim_row.output_tok_s
        within = abs(best.output_tok_s - claimed) <= tol / 100 * claimed
        if getattr(best, other) == getattr(claim_row, other) and within:
            basis = "summary" if _from_summary(best) else "raw"
            out.append(Verdict(claim, PASS, best.output_tok_s, claimed, tol, cover, basis=basis))
        elif at_claim or best.output_tok_s > claimed * (1 + tol / 100):
            if at_claim:
                measured_at = (
                    f"; the claimed point measured {num(at_claim[0].output_tok_s)}"
                    f"{_where_from(at_claim[0])}"
                )
            else:
                measured_at = "; the claimed point is in no evidence"
            beaten = best.output_tok_s > claimed * (1 + tol / 100)
            cited = [best] if beaten else [best, *at_claim]
            basis = "summary" if all(map(_from_summary, cited)) else "raw"
            out.append(
                Verdict(
                    claim,
                    FAIL,
                    best.output_tok_s,
                    claimed,
                    tol,
                    f"{where_best}{measured_at}; {cover}",
                    basis=basis,
                )
            )
        else:
            out.append(
                Verdict(
                    claim,
                    NOT_RUN,
                    best.output_tok_s,
                    claimed,
                    tol,
                    f"the claimed point is in no evidence; {where_best}; {cover}",
                )
            )
    return out


def peak_verdicts(rows: Sequence[PointRow], ref: refmod.Reference) -> list[Verdict]:
    out: list[Verdict] = []
    if ref.peak is None or not rows:
        return out
    tol = ref.tolerance_pct
    for metric, claimed in (("output_tok_s", ref.peak.output_tok_s), ("req_s", ref.peak.req_s)):
        if claimed is None:
            continue
        known = [r for r in rows if getattr(r, metric) is not None]
        best = max(known, key=lambda r: getattr(r, metric))
        got = getattr(best, metric)
        ok = abs(got - claimed) <= tol / 100 * claimed
        if ok and ref.peak.isl is not None and (best.isl, best.osl) != (ref.peak.isl, ref.peak.osl):
            ok = False
        label = "output tok/s" if metric == "output_tok_s" else "req/s"
        out.append(
            Verdict(
                f"peak {label} {num(claimed)}",
                PASS if ok else FAIL,
                got,
                claimed,
                tol,
                f"measured at ISL {best.isl} / OSL {best.osl}{_where_from(best)}; "
                + coverage(known, f" stating {label}"),
                basis="summary" if _from_summary(best) else "raw",
            )
        )
    return out


def ranking_verdicts(rows: Sequence[PointRow], ref: refmod.Reference) -> list[Verdict]:
    """A "top N" claim: no point outside it, in any evidence, beats its lowest row."""
    ranked = [p for p in ref.points if p.rank is not None]
    if not ranked:
        return []
    floor = min(p.output_tok_s for p in ranked)
    listed = {(p.isl, p.osl) for p in ranked}
    tol = ref.tolerance_pct
    missing = [
        r for r in rows if (r.isl, r.osl) not in listed and r.output_tok_s > floor * (1 + tol / 100)
    ]
    claim = f"top {len(ranked)} table lists every point above {num(floor)}"
    if missing:
        return [
            Verdict(
                claim,
                FAIL,
                note="omits "
                + ", ".join(
                    f"ISL {r.isl} / OSL {r.osl} ({num(r.output_tok_s)}{_where_from(r)})"
                    for r in missing
                )
                + f"; {coverage(rows)}",
                basis="summary" if all(map(_from_summary, missing)) else "raw",
            )
        ]
    return [Verdict(claim, PASS, note=coverage(rows))]


# ----------------------------------------------------------------------------- secondary evidence


def summary_only_rows(
    records: Sequence[PointResult], files: Sequence[secondary.SecondaryFile]
) -> list[PointRow]:
    """Points no raw record covers that a summary file gives a number for, each marked with
    the file and line it comes from (the first file of secondary.PREFERENCE that has it)."""
    covered = {(r.isl, r.osl) for r in records}
    chosen: dict[tuple[int, int], PointRow] = {}
    for f in sorted(files, key=lambda f: secondary.PREFERENCE.index(f.name)):
        for row in f.rows:
            if row.output_tok_s is None or (row.isl, row.osl) in covered:
                continue
            chosen.setdefault(
                (row.isl, row.osl),
                PointRow(
                    isl=row.isl,
                    osl=row.osl,
                    concurrency=None,
                    requests=row.requests,
                    n=0,
                    output_tok_s=row.output_tok_s,
                    req_s=row.req_s,
                    total_tok_s=None,
                    total_derived=False,
                    total_tokens=row.requests * (row.isl + row.osl),
                    output_tok_s_per_gpu=None,
                    suspect=False,
                    evidence=f"{f.name}:{row.line}",
                ),
            )
    return [chosen[k] for k in sorted(chosen)]


def _same_number(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= max(0.01, 1e-5 * max(a, b))


def evidence_agreement(
    records: Sequence[PointResult], files: Sequence[secondary.SecondaryFile]
) -> list[Verdict]:
    """Each point a summary file states, when a raw record or another summary states it too:
    do they agree? A disagreement is a finding (FAIL): one of them is not what was measured.
    Raw records are not compared with each other (repeats and concurrencies differ by nature);
    a summary's number must match one of them."""
    summaries: dict[tuple[int, int], list[tuple[str, float | None]]] = {}
    for f in files:
        for row in f.rows:
            summaries.setdefault((row.isl, row.osl), []).append(
                (f"{f.name}:{row.line}", row.output_tok_s)
            )
    out = []
    for (isl, osl), said in sorted(summaries.items()):
        raw = [r.metrics.output_tok_s for r in records if (r.isl, r.osl) == (isl, osl)]
        if len(raw) + len(said) < 2:
            continue
        agree = all(_same_number(v, said[0][1]) for _, v in said) and (
            not raw or all(any(_same_number(v, x) for x in raw) for _, v in said)
        )
        stated = [*(("raw log", x) for x in raw), *said]
        note = "; ".join(f"{w}: {'failed' if v is None else num(v, 4)}" for w, v in stated)
        out.append(Verdict(f"ISL {isl} / OSL {osl}", PASS if agree else FAIL, note=note))
    return out


def suspect_verdicts(records: Sequence[PointResult]) -> list[Verdict]:
    out = []
    for r in records:
        if r.status == "invalid" or (r.status == "ok" and is_suspect(r)):
            reasons = "; ".join(map(str, (r.telemetry or {}).get("reasons") or []))
            out.append(
                Verdict(
                    f"ISL {r.isl} / OSL {r.osl}" + (f" r{r.repeat}" if r.repeat else ""),
                    SUSPECT,
                    r.metrics.output_tok_s,
                    note=r.failure_detail or reasons or "telemetry marks it suspect",
                )
            )
    return out


def not_comparable_verdicts(ref: refmod.Reference, check: refmod.MethodCheck) -> list[Verdict]:
    """Every claim of a reference of another method: NOT COMPARABLE, naming what differs."""
    why = "differs: " + "; ".join(f.describe() for f in check.differences)
    claims = [p.label for p in ref.points]
    claims += [f"{p.label}: {lat.label}" for p in ref.points for lat in p.latency]
    claims += [f"best at ISL {r.isl}: OSL {r.osl}, {num(r.output_tok_s)}" for r in ref.best_per_isl]
    claims += [f"best at OSL {r.osl}: ISL {r.isl}, {num(r.output_tok_s)}" for r in ref.best_per_osl]
    if ref.peak is not None:
        claims.append("peak")
    claims += [f"{r.id} {r.scenario}: {num(r.output_tok_s)} tok/s" for r in ref.scenario_results]
    return [Verdict(c, NOT_COMPARABLE, note=why) for c in claims]


def cross_method_verdicts(rows: Sequence[PointRow], ref: refmod.Reference) -> list[Verdict]:
    """The numbers side by side for readers who want them, with no verdict: not a reproduction."""
    measured = {(r.isl, r.osl): r for r in sorted(rows, key=lambda r: r.output_tok_s)}
    return [
        Verdict(
            p.label,
            NOT_COMPARABLE,
            measured[p.isl, p.osl].output_tok_s,
            p.output_tok_s,
            note="different method",
        )
        for p in ref.points
        if (p.isl, p.osl) in measured
    ]


def method_table(check: refmod.MethodCheck) -> str:
    """The method, field by field: what the reference states, what this run recorded."""

    def shown(value: object) -> str:
        return "-" if value is None else str(value)

    rows = [
        [
            f.field,
            shown(f.reference) if f.outcome != refmod.OPEN else "(left open)",
            shown(f.run) + (f" ({f.run_source})" if f.run_source else ""),
            f"**{f.outcome}**" if f.outcome == refmod.DIFFERS else f.outcome,
        ]
        for f in check.fields
    ]
    stated = sum(f.outcome != refmod.OPEN for f in check.fields)
    head = (
        f"The reference states {stated} of {len(check.fields)} method fields and leaves "
        f"{len(check.fields) - stated} open; {len(check.differences)} of the {stated} stated "
        f"differ, {len(check.minor_differences)} only in a knob the reference declares minor.\n\n"
    )
    if check.comparable:
        tail = "Same method: the numbers below are compared.\n\n"
    else:
        tail = (
            "**Different method: NOT COMPARABLE.** No reference number is judged PASS or FAIL; "
            f'the numbers side by side are under "{CROSS_METHOD}".\n\n'
        )
    return (
        head
        + md_table(["Field", "Reference", "This run", "Outcome"], rows, [False] * 4)
        + "\n"
        + tail
    )


def evidence_agreement_head(verdicts: Sequence[Verdict]) -> str:
    with_raw = [v for v in verdicts if "raw log" in v.note]
    agree = sum(v.verdict == PASS for v in verdicts)
    return (
        f"{agree} of {len(verdicts)} points stated by two or more of the raw logs and the "
        f"summary files agree (to 0.01 tok/s), {len(verdicts) - agree} disagree; "
        f"{len(with_raw)} of the {len(verdicts)} have a raw log, "
        f"{sum(v.verdict == PASS for v in with_raw)} of those agree with it. Summary files are "
        "secondary evidence (what a script or an author wrote about the run): a disagreement "
        "with a raw log is a finding, FAIL.\n\n"
    )


def reference_summary(sections: Sequence[tuple[str, Sequence[Verdict]]]) -> str:
    """How many reference claims were judged, of how many, and why the others were not."""
    verdicts = [
        v
        for title, vs in sections
        if "vs reference" in title or title.startswith("Reference claims")
        for v in vs
        if v.verdict != NOT_PUBLISHED
    ]
    if not verdicts:
        return ""
    judged = [v for v in verdicts if v.verdict in (PASS, FAIL, SUSPECT)]
    counts = {k: sum(v.verdict == k for v in verdicts) for k in (PASS, FAIL, SUSPECT)}
    others = {k: sum(v.verdict == k for v in verdicts) for k in (NOT_RUN, NOT_COMPARABLE)}
    on_summary = sum(v.basis == "summary" for v in judged)
    return (
        f"Reference claims judged: {len(judged)} of {len(verdicts)} ("
        + ", ".join(f"{k} {n}" for k, n in counts.items())
        + (f"; {on_summary} of the {len(judged)} on summary evidence only" if on_summary else "")
        + "); not judged: "
        + ", ".join(f"{k} {n}" for k, n in others.items())
        + ".\n\n"
    )


ACCURACY_FAILED = "accuracy gate failed"
NOT_EVIDENCED = "accuracy: not evidenced"


def accuracy_verdicts(paths: RunPaths, manifest: Manifest | None, arts: Artifacts) -> list[Verdict]:
    """The accuracy gate re-derived from the run's raw accuracy files (issue 14).

    The record's own `passed` is not trusted: scores are re-read from trtllm-eval's logs (or the
    per-prompt agreement numbers) and checked against the manifest's thresholds, and the files
    the gate evaluated must be the engine/checkpoint files the run records now. A merged run
    carries its shards' agreeing record (bench.stages.merge) and is judged the same way.
    """
    record_file = accmod.result_path(paths)
    acc = manifest.accuracy if manifest is not None else None
    if not record_file.is_file():
        if acc is None:
            why = (
                "imported logs carry no accuracy evidence" if manifest is None else "no [accuracy]"
            )
            return [Verdict("accuracy gate", NOT_RUN, note=f"{NOT_EVIDENCED} ({why})")]
        return [
            Verdict(
                "accuracy gate",
                FAIL,
                note=f"{NOT_EVIDENCED}: the manifest has [accuracy] but the run has no "
                f"{record_file.name}; run `make accuracy RUN={paths.name}`",
            )
        ]
    if acc is None:
        return [Verdict("accuracy gate", FAIL, note="an accuracy record without [accuracy]")]
    record = read_json_object(record_file)
    logs = {
        label: f.read_text(encoding="utf-8", errors="replace")
        for label in ("fp8", "bf16")
        if (f := record_file.with_name(f"{label}.log")).is_file()
    }
    checks = am.rederive(record, acc, logs)
    out = [
        Verdict(
            c.metric,
            PASS if c.passed else FAIL,
            c.value if isinstance(c.value, float) else None,
            c.threshold if isinstance(c.threshold, float) else None,
            note=("" if c.passed else f"{ACCURACY_FAILED}: ")
            + f"required {c.op} {c.threshold}"
            + (f"; {acc.confidence:.0%} CI {c.ci[0]:.4g}..{c.ci[1]:.4g}" if c.ci else ""),
        )
        for c in checks
    ]
    if am.passed(checks) != record.get("passed"):
        out.append(
            Verdict(
                "recorded verdict follows from the raw values",
                FAIL,
                note=f"{record_file.name} says passed={record.get('passed')}, re-derived "
                f"{am.passed(checks)}",
            )
        )
    evaluated = record.get("evaluated", {}).get("fp8", "")
    seen = arts.stages.get(accmod.STAGE, {}).get("inputs", {})
    measured = {k: f.sha256 for k, f in arts.files.items() if k.startswith(evaluated + "/")}
    differ = sorted(k for k, digest in measured.items() if seen.get(k) != digest)
    out.append(
        Verdict(
            f"evaluated {evaluated} = the files the sweep measured",
            FAIL if differ or not measured else PASS,
            note=f"differ: {', '.join(differ)}" if differ else f"{len(measured)} file(s)",
        )
    )
    return out


def mark_accuracy_failed(
    sections: list[tuple[str, list[Verdict]]],
) -> list[tuple[str, list[Verdict]]]:
    """Every throughput figure of a run whose gate failed carries the words."""
    return [
        (
            title,
            [
                dataclasses.replace(
                    v, note=f"{ACCURACY_FAILED}; {v.note}" if v.note else ACCURACY_FAILED
                )
                if v.measured is not None
                else v
                for v in verdicts
            ],
        )
        if title != "Accuracy gate"
        else (title, verdicts)
        for title, verdicts in sections
    ]


# ----------------------------------------------------------------------------- markdown (pure)


def _verdict_table(verdicts: Sequence[Verdict]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}%"

    return md_table(
        ["Claim", "Verdict", "Measured", "Published", "Diff", "Tolerance", "Note"],
        [
            [
                v.claim,
                v.shown,
                num(v.measured),
                num(v.published),
                pct(v.diff_pct),
                "-" if v.tolerance_pct is None else f"{v.tolerance_pct:g}%",
                v.note,
            ]
            for v in verdicts
        ],
        [False, False, True, True, True, True, False],
    )


def render(
    run: str,
    files: FileCheck,
    sections: list[tuple[str, list[Verdict]]],
    ref: refmod.Reference | None,
    ref_path: str | None,
    ref_problems: list[str],
    result: str,
    method: refmod.MethodCheck | None = None,
    *,
    file_lists: bool = True,
) -> str:
    """verify.md; file_lists=False leaves out the name of every file checked (the console)."""
    out = [
        f"# Verification: {run}\n\n",
        f"**Result: {result}**\n\n",
        reference_summary(sections),
        "## Files\n\n",
        f"Re-hashed on this machine: {len(files.rehashed)} file(s). Not re-hashed (recorded "
        f"digest taken from the record): {len(files.from_record)} file(s).\n\n",
    ]
    if files.problems:
        out.append(
            md_table(
                ["File", "Problem", "Detail"],
                [[f"`{p.key}`", f"**{p.kind}**", p.detail] for p in files.problems],
                [False, False, False],
            )
            + "\n"
        )
    else:
        out.append(
            "Every re-hashed file matches its recorded size and sha256; no unrecorded file "
            "in the re-hashed folders.\n\n"
        )
    if any(k.startswith(DATASETS_KEY) for k in files.from_record):
        out.append(
            "The datasets are not on this machine (shards upload no datasets; they are made "
            "from the seed and recorded by digest): not re-hashed here. Run verify where they "
            "exist to re-check them.\n\n"
        )
    if files.from_record and file_lists:
        out.append(
            "<details><summary>Not re-hashed (digest taken from the record)</summary>\n\n"
            + "".join(f"- `{k}`\n" for k in files.from_record)
            + "\n</details>\n\n"
        )
    if file_lists:
        out.append(
            "<details><summary>Re-hashed</summary>\n\n"
            + "".join(f"- `{k}`\n" for k in files.rehashed)
            + "\n</details>\n\n"
        )
    if ref is not None:
        out.append(
            f"## Reference\n\n`{ref_path}`: {ref.title}; source {ref.source}, {ref.date}; "
            f"default tolerance {ref.tolerance_pct:g}%.\n\n"
        )
        if ref_problems:
            out.append(
                "The reference contradicts itself (**FAIL**):\n\n"
                + "".join(f"- {p}\n" for p in ref_problems)
                + "\n"
            )
        else:
            out.append("The reference is internally consistent as far as it can be checked.\n\n")
        if method is not None:
            out.append("## Method vs reference\n\n" + method_table(method))
        elif ref.kind == "claims":
            out.append(
                "A report's claims, held to the logs they were copied from whatever method those "
                "logs record: an identity that differs is a finding (FAIL), not a reason to "
                "skip the numbers.\n\n"
            )
    for title, verdicts in sections:
        if not verdicts:
            continue
        out.append(f"## {title}\n\n")
        shown = [v for v in verdicts if v.verdict != NOT_PUBLISHED]
        if title.startswith("Consistency"):
            passed = sum(v.verdict == PASS for v in verdicts)
            invalid = sum(v.claim.endswith(INVALID_MARK) for v in verdicts)
            out.append(
                f"{passed} of {len(verdicts)} records that state output tok/s, req/s and average "
                f"OSL ({len(verdicts) - invalid} valid, {invalid} invalid) PASS (within "
                f'{RATE_TOLERANCE:.1%}); "Published" below is req/s x average OSL.\n\n'
            )
            shown = [v for v in verdicts if v.verdict != PASS]
        if title == EVIDENCE_AGREEMENT:
            out.append(evidence_agreement_head(verdicts))
            shown = [v for v in verdicts if v.verdict != PASS]
        if shown:
            out.append(_verdict_table(shown) + "\n")
        unlisted = [v.claim for v in verdicts if v.verdict == NOT_PUBLISHED]
        if unlisted:
            out.append(
                f"NOT PUBLISHED (measured here, not in the reference): {len(unlisted)} "
                f"point(s): {', '.join(unlisted)}.\n\n"
            )
    counts: dict[str, int] = {}
    for _, verdicts in sections:
        for v in verdicts:
            counts[v.verdict] = counts.get(v.verdict, 0) + 1
    out.append(
        "## Totals\n\n"
        + f"{sum(counts.values())} verdicts: "
        + ", ".join(f"{k}: {counts[k]}" for k in sorted(counts))
        + f"; file problems: {len(files.problems)} (of {len(files.rehashed)} files re-hashed).\n"
    )
    return "".join(out)


# ----------------------------------------------------------------------------- I/O edge


def recorded_gpu(provenance: Provenance | None) -> str | None:
    """The GPU provenance recorded for the run (bench.gpu.gpus' key, e.g. "H100-SXM"), or None: a
    merged run's is its shards' (bench.core.results), never the manifest's declared one."""
    used = provenance.used_gpus() if provenance else []
    return gpus.gpu_key(used[0].name, used[0].form_factor) if used else None


def verify(run_name: str, reference: Path | None, scope: str) -> Outcome:
    paths = RunPaths.for_run(run_name)
    remove_old_verdict(paths)
    run = load_run_results(run_name)
    manifest = run.manifest
    if reference is None and manifest is not None and manifest.reference:
        reference = Path(manifest.reference)
    ref = refmod.load_reference(reference) if reference is not None else None
    arts = Artifacts(paths, trust_stat=False)  # every byte read again, whatever the cache says
    files = check_files(arts, scope)
    records = readable_records(run, files)
    rows = point_rows(records)
    summaries = secondary.load(paths.root)
    summary_rows = summary_only_rows(records, summaries)
    claims = ref is not None and ref.kind == "claims"  # published: the method table instead
    accuracy = accuracy_verdicts(paths, manifest, arts)
    sections = [
        *integrity_sections(run, files),
        ("Identity", identity_verdicts(records, manifest, ref if claims else None)),
        ("Accuracy gate", accuracy),
        ("Consistency: output tok/s = req/s x average OSL", consistency_verdicts(records)),
        ("Suspect points", suspect_verdicts(records)),
        (EVIDENCE_AGREEMENT, evidence_agreement(records, summaries)),
    ]
    ref_problems: list[str] = []
    method = None
    if ref is not None:
        ref_problems = refmod.consistency_problems(ref)
        if ref.kind == "published":
            measured = refmod.run_method(manifest, records, recorded_gpu(run.provenance().record))
            method = refmod.compare_method(ref.identity, measured)
        if method is not None and not method.comparable:
            sections += [
                (
                    "Reference claims (NOT COMPARABLE: different method)",
                    not_comparable_verdicts(ref, method),
                ),
                (CROSS_METHOD, cross_method_verdicts(rows, ref)),
            ]
        else:
            every = rows + summary_rows
            sections += [
                ("Points vs reference", point_verdicts(records, ref, summary_rows)),
                ("Best per ISL vs reference", best_verdicts(every, ref, "isl")),
                ("Best per OSL vs reference", best_verdicts(every, ref, "osl")),
                ("Peak vs reference", peak_verdicts(every, ref)),
                ("Top-N table vs reference", ranking_verdicts(every, ref)),
            ]
    if any(v.verdict == FAIL for v in accuracy):
        sections = mark_accuracy_failed(sections)
    result, exit_code = overall(files, sections, ref_problems)
    shown = (
        run_name,
        files,
        sections,
        ref,
        str(reference) if reference else None,
        ref_problems,
        result,
        method,
    )
    text = render(*shown)
    target = paths.reports / VERIFY_NAME
    console = render(*shown, file_lists=False).rstrip("\n") + (
        f"\n\nResult: {result}; every file checked, by name: {target}\n"
    )
    atomic_write_text(target, text)
    passed = exit_code == EXIT_OK
    key = verify_key(arts, reference, scope)
    rule.record(arts, key, [target], {"passed": passed, "result": result}, stamp=passed)
    if not passed:
        paths.stamp(STAGE).unlink(missing_ok=True)  # Make must not take a failed verify as done
    return Outcome(text, exit_code, sections, ref_problems, console)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.verify", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--run", required=True, help="run name: results/<run>/")
    parser.add_argument(
        "--reference",
        type=Path,
        help="reference TOML (default: the manifest's `reference` key, if any)",
    )
    parser.add_argument(
        "--scope",
        choices=("all", "run"),
        default="all",
        help="re-hash every root (all) or only the run's own folders (run)",
    )
    args = parser.parse_args(argv)

    def stage() -> int:
        outcome = verify(args.run, args.reference, args.scope)
        sys.stdout.write(outcome.console or outcome.text)
        return outcome.exit_code

    return run_main(locked(args.run, "verify", stage, create=False), "bench.stages.verify")


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage `verify`: prove a run's files are the ones recorded, its identity is the declared one, and
its numbers agree with a published reference.

Reads:  results/<run>/artifacts.json and every file it names, the run's records, its manifest
        (when it has one), the reference TOML (--reference, else the manifest's `reference` key)
Writes: reports/<run>/verify.md (also printed), recorded as stage "verify" after all checks
Usage:  python -m bench.verify --run demo [--scope all|run]
            [--reference manifests/published/nvidia-perf-overview-1.0.toml]
        (make verify RUN=demo [REFERENCE=...])

Exit 0 only when everything passes; 1 on a missing, changed or unexpected file, an identity
mismatch, a FAIL or SUSPECT point, or an inconsistent reference; 2 on bad input.
--scope run re-hashes only the run's own files (results/<run>/, reports/<run>/); files of the
shared roots (models/, work/) are then reported with the digest taken from the record, as they are
whenever their root does not exist on this machine (e.g. after merging shards elsewhere).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import reference as refmod
from bench import tables
from bench.artifacts import Artifacts, Problem
from bench.errors import EXIT_FAILED, EXIT_OK, KitError, run_main
from bench.fileio import atomic_write_text
from bench.manifest import Manifest
from bench.record import PointResult, load_records
from bench.run import RunPaths, load_run
from bench.tables import PointRow, is_suspect, md_table, num, point_rows

STAGE = "verify"
VERIFY_NAME = "verify.md"
OWN_ROOTS = ("run", "reports")  # the run's own folders; --scope run re-hashes only these
RATE_TOLERANCE = refmod.RATE_TOLERANCE
PASS, FAIL, NOT_RUN, NOT_PUBLISHED, SUSPECT = "PASS", "FAIL", "NOT RUN", "NOT PUBLISHED", "SUSPECT"
FAILING = (FAIL, SUSPECT)
DATASETS_KEY = "run:datasets/"


@dataclass(frozen=True)
class FileCheck:
    rehashed: tuple[str, ...]
    from_record: tuple[str, ...]
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class Outcome:
    text: str
    exit_code: int
    sections: list[tuple[str, list[Verdict]]]
    ref_problems: list[str]


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    measured: float | None = None
    published: float | None = None
    tolerance_pct: float | None = None
    note: str = ""

    @property
    def diff_pct(self) -> float | None:
        if self.measured is None or self.published is None:
            return None
        return 100.0 * (self.measured - self.published) / self.published


# ----------------------------------------------------------------------------- checks (pure)


def check_files(arts: Artifacts, scope: str) -> FileCheck:
    """Re-hash what can be re-hashed here; name every missing, changed and unexpected file."""
    rehash_roots = {
        name
        for name, root in arts.roots.items()
        if root.is_dir() and (scope == "all" or name in OWN_ROOTS)
    }
    keys = sorted(arts.files)
    # A merged run whose shards uploaded no datasets (benchmark.yml): checked where they exist.
    datasets_absent = not arts.paths.datasets.is_dir()
    rehashed = tuple(
        k
        for k in keys
        if k.partition(":")[0] in rehash_roots
        and not (datasets_absent and k.startswith(DATASETS_KEY))
    )
    from_record = tuple(k for k in keys if k not in rehashed)
    problems = arts.check(rehashed) + [
        p for p in arts.unexpected() if p.key.partition(":")[0] in rehash_roots
    ]
    return FileCheck(rehashed, from_record, tuple(problems))


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
        m = r.metrics
        if r.status == "failed" or None in (m.output_tok_s, m.req_s, m.avg_output_len):
            continue
        implied = m.req_s * m.avg_output_len
        ok = abs(m.output_tok_s - implied) <= RATE_TOLERANCE * implied
        out.append(
            Verdict(
                f"ISL {r.isl} / OSL {r.osl}" + (f" r{r.repeat}" if r.repeat else ""),
                PASS if ok else FAIL,
                m.output_tok_s,
                implied,
                RATE_TOLERANCE * 100,
                "" if ok else "output tok/s is not req/s x OSL: not output tokens?",
            )
        )
    return out


def _measured(records: Sequence[PointResult], isl: int, osl: int) -> list[PointResult]:
    return [r for r in records if (r.isl, r.osl) == (isl, osl)]


def point_verdicts(records: Sequence[PointResult], ref: refmod.Reference) -> list[Verdict]:
    """Every reference point, then every run point the reference does not list."""
    rows = {(r.isl, r.osl): r for r in sorted(point_rows(records), key=lambda r: r.output_tok_s)}
    out = []
    for p in ref.points:
        claim = f"ISL {p.isl} / OSL {p.osl}" + (f" (rank {p.rank})" if p.rank else "")
        tol = ref.tolerance(p)
        got = _measured(records, p.isl, p.osl)
        row = rows.get((p.isl, p.osl))
        if not got:
            out.append(Verdict(claim, NOT_RUN, None, p.output_tok_s, tol, "not in this run"))
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
            diff = abs(row.output_tok_s - p.output_tok_s) / p.output_tok_s * 100
            verdict = SUSPECT if row.suspect else (PASS if diff <= tol else FAIL)
            note = "telemetry marks it suspect" if row.suspect else ""
            if p.requests is not None and row.requests != p.requests:
                note = (note + "; " if note else "") + f"requests {row.requests} vs {p.requests}"
            out.append(Verdict(claim, verdict, row.output_tok_s, p.output_tok_s, tol, note))
    listed = {(p.isl, p.osl) for p in ref.points}
    for r in sorted({(r.isl, r.osl) for r in records} - listed):
        row = rows.get(r)
        out.append(
            Verdict(f"ISL {r[0]} / OSL {r[1]}", NOT_PUBLISHED, row.output_tok_s if row else None)
        )
    return out


def best_verdicts(rows: Sequence[PointRow], ref: refmod.Reference, axis: str) -> list[Verdict]:
    """Each "best per ISL/OSL" claim against the best the run measured for that ISL/OSL."""
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
                    f"no valid point with {axis.upper()} {value}",
                )
            )
            continue
        best = max(same, key=lambda r: (r.output_tok_s, -getattr(r, other)))
        at_claim = [r for r in same if getattr(r, other) == getattr(claim_row, other)]
        where_best = (
            f"best measured: {other.upper()} {getattr(best, other)} at {num(best.output_tok_s)}"
        )
        within = (
            abs(best.output_tok_s - claim_row.output_tok_s) <= tol / 100 * claim_row.output_tok_s
        )
        if getattr(best, other) == getattr(claim_row, other) and within:
            out.append(
                Verdict(
                    claim,
                    PASS,
                    best.output_tok_s,
                    claim_row.output_tok_s,
                    tol,
                    f"of {len(same)} measured points",
                )
            )
        elif at_claim or best.output_tok_s > claim_row.output_tok_s * (1 + tol / 100):
            measured_at = (
                f"; the claimed point measured {num(at_claim[0].output_tok_s)}"
                if at_claim
                else "; the claimed point is not in this run"
            )
            out.append(
                Verdict(
                    claim,
                    FAIL,
                    best.output_tok_s,
                    claim_row.output_tok_s,
                    tol,
                    where_best + measured_at,
                )
            )
        else:
            out.append(
                Verdict(
                    claim,
                    NOT_RUN,
                    best.output_tok_s,
                    claim_row.output_tok_s,
                    tol,
                    f"the claimed point is not in this run; {where_best}",
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
                f"measured at ISL {best.isl} / OSL {best.osl}",
            )
        )
    return out


def ranking_verdicts(rows: Sequence[PointRow], ref: refmod.Reference) -> list[Verdict]:
    """A "top N" claim: no measured point outside it beats its lowest row."""
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
                + ", ".join(f"ISL {r.isl} / OSL {r.osl} ({num(r.output_tok_s)})" for r in missing),
            )
        ]
    return [Verdict(claim, PASS, note=f"checked against {len(rows)} measured points")]


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


# ----------------------------------------------------------------------------- markdown (pure)


def _verdict_table(verdicts: Sequence[Verdict]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}%"

    return md_table(
        ["Claim", "Verdict", "Measured", "Published", "Diff", "Tolerance", "Note"],
        [
            [
                v.claim,
                f"**{v.verdict}**" if v.verdict in FAILING else v.verdict,
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
    failed: bool,
) -> str:
    out = [
        f"# Verification: {run}\n\n",
        f"**Result: {'FAILED' if failed else 'PASSED'}**\n\n",
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
    if files.from_record:
        out.append(
            "<details><summary>Not re-hashed (digest taken from the record)</summary>\n\n"
            + "".join(f"- `{k}`\n" for k in files.from_record)
            + "\n</details>\n\n"
        )
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
    for title, verdicts in sections:
        if not verdicts:
            continue
        out.append(f"## {title}\n\n")
        shown = [v for v in verdicts if v.verdict != NOT_PUBLISHED]
        if title.startswith("Consistency"):
            passed = sum(v.verdict == PASS for v in verdicts)
            out.append(
                f"{passed} of {len(verdicts)} valid records PASS (within "
                f'{RATE_TOLERANCE:.1%}); "Published" below is req/s x average OSL.\n\n'
            )
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
        + ", ".join(f"{k}: {counts[k]}" for k in sorted(counts))
        + f"; file problems: {len(files.problems)}.\n"
    )
    return "".join(out)


# ----------------------------------------------------------------------------- I/O edge


def verify(run_name: str, reference: Path | None, scope: str) -> Outcome:
    paths = RunPaths.for_run(run_name)
    if not paths.artifacts.is_file():
        raise KitError(
            "artifacts.json is missing: nothing to verify",
            path=str(paths.root),
            fix="name a run under results/ with RUN=",
        )
    manifest = load_run(run_name).manifest if paths.resolved_manifest.is_file() else None
    if reference is None and manifest is not None and manifest.reference:
        reference = Path(manifest.reference)
    ref = refmod.load_reference(reference) if reference is not None else None
    arts = Artifacts(paths)
    files = check_files(arts, scope)
    try:
        records, unreadable = load_records(paths.points), None
    except KitError as exc:  # a tampered record: the file check above names the file
        records, unreadable = [], exc.render().replace("\n", " ")
    rows = point_rows(records)
    sections = [
        ("Identity", identity_verdicts(records, manifest, ref)),
        ("Consistency: output tok/s = req/s x average OSL", consistency_verdicts(records)),
        ("Suspect points", suspect_verdicts(records)),
    ]
    ref_problems = []
    if ref is not None:
        ref_problems = refmod.consistency_problems(ref)
        sections += [
            ("Points vs reference", point_verdicts(records, ref)),
            ("Best per ISL vs reference", best_verdicts(rows, ref, "isl")),
            ("Best per OSL vs reference", best_verdicts(rows, ref, "osl")),
            ("Peak vs reference", peak_verdicts(rows, ref)),
            ("Top-N table vs reference", ranking_verdicts(rows, ref)),
        ]
    if unreadable:
        sections.insert(0, ("Records", [Verdict("point records readable", FAIL, note=unreadable)]))
    failed = bool(files.problems or ref_problems) or any(
        v.verdict in FAILING for _, vs in sections for v in vs
    )
    text = render(
        run_name, files, sections, ref, str(reference) if reference else None, ref_problems, failed
    )
    target = paths.reports / VERIFY_NAME
    atomic_write_text(target, text)
    inputs = {"reference": str(reference) if reference else "", "scope": scope}
    arts.record(STAGE, inputs, [target], {"passed": not failed}, stamp=not failed)
    if failed:
        paths.stamp(STAGE).unlink(missing_ok=True)  # Make must not take a failed verify as done
    return Outcome(text, EXIT_FAILED if failed else EXIT_OK, sections, ref_problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.verify", description=__doc__.splitlines()[0])
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
        sys.stdout.write(outcome.text)
        return outcome.exit_code

    return run_main(stage, "bench.verify")


if __name__ == "__main__":
    raise SystemExit(main())

"""Audit a folder of trtllm-bench logs in one step: import them, report on them, verify a claim.

Reads:  <logs>/result_<ISL>_<OSL>_<requests>.txt|.json, the summary files beside them
        (secondary evidence, bench.analysis.secondary), the reference TOML (optional)
Writes: results/<run>/ (bench.stages.import_logs), reports/<run>/report.md + figures
(bench.stages.report),
        reports/<run>/verify.md (bench.stages.verify); prints a short summary of what the logs are
        and
        which claims they contradict
Usage:  python -m bench.stages.audit --logs ../shared/fixtures/trtllm-bench-0.16-logs \
            --reference manifests/published/seed-report-claims.toml --run seed-audit
        (make audit LOGS=<folder> REFERENCE=<toml> [RUN=<run>])

Exit codes are verify's: 0 all passes, 1 a contradiction (identity, claims, files), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.analysis import markdown, report_sections, tables
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import EXIT_OK, KitError, StageFailed, run_main
from bench.core.run import RunPaths
from bench.core.runlock import locked
from bench.schema.record import PointResult, load_records
from bench.stages import import_logs, report, verify


def summary_lines(run: str, records: list[PointResult], outcome: verify.Outcome) -> list[str]:
    """What the logs are, then every check that failed: identity, claims, consistency."""
    ident = tables.distinct_identity(records)

    def shown(field: str) -> str:
        return ", ".join(map(str, ident[field])) or report_sections.NOT_RECORDED

    ok = sum(r.status == "ok" for r in records)
    out = [
        f"audit {run}: the logs record model {shown('model')}, TP {shown('tp_size')}, "
        f"PP {shown('pp_size')}, backend {shown('backend')} {shown('engine_version')}; "
        f"{ok}/{len(records)} points valid"
    ]
    for title, verdicts in outcome.sections:
        for v in verdicts:
            headline = title in ("Peak vs reference", "Top-N table vs reference")
            if v.verdict in verify.FAILING or v.basis == "summary" or headline:
                measured = (
                    f" (measured {markdown.num(v.measured)})" if v.measured is not None else ""
                )
                note = f"; {v.note}" if v.note else ""
                out.append(f"  {v.shown.replace('**', '')}: {title}: {v.claim}{measured}{note}")
    out += [f"  FAIL: reference contradicts itself: {p}" for p in outcome.ref_problems]
    agreement = dict(outcome.sections).get(verify.EVIDENCE_AGREEMENT)
    if agreement:
        out.append("  evidence: " + verify.evidence_agreement_head(agreement).strip())
    return out


def already_imported(logs: Path, paths: RunPaths) -> bool:
    """True when the run holds an import of exactly these files under the import's key."""
    arts = Artifacts(paths)
    recorded = arts.stages.get(import_logs.STAGE)
    if recorded is None:
        return False
    folder = logs.resolve()
    sources = sorted(p for p in folder.iterdir() if p.is_file())
    return not rule.differences(recorded, import_logs.import_key(arts, folder, sources, None))


def audit(logs: Path, ref_path: Path | None, run: str) -> int:
    paths = RunPaths.for_run(run)
    if already_imported(logs, paths):
        print(f"audit: {paths.root} already holds these logs; not importing again", file=sys.stderr)
    else:
        code = import_logs.run_import(logs, run, None)
        if code != EXIT_OK:
            raise StageFailed(f"import of {logs} failed (exit {code})", path=str(logs))
    report_path = report.make_report(run)
    outcome = verify.verify(run, ref_path, "run")
    for line in summary_lines(run, load_records(paths.points), outcome):
        print(line)
    print(f"report: {report_path}\nverification: {paths.reports / verify.VERIFY_NAME}")
    return outcome.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.audit", description=__doc__.splitlines()[0])
    import_logs.add_logs_arg(parser)
    parser.add_argument("--reference", type=Path, help="claims or published numbers (TOML)")
    parser.add_argument("--run", help="run name (default: audit-<logs folder name>)")
    args = parser.parse_args(argv)

    def stage() -> int:
        if not args.logs.is_dir():
            raise KitError(
                "not a folder", path=str(args.logs), fix="pass LOGS=<folder of result_* files>"
            )
        run = args.run or f"audit-{args.logs.resolve().name}"
        return locked(run, "audit", lambda: audit(args.logs, args.reference, run))()

    return run_main(stage, "bench.stages.audit")


if __name__ == "__main__":
    raise SystemExit(main())

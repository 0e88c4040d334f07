"""Say which stages of a run ran in this `make` invocation and which were skipped as up to date.

Usage: python -m bench.stages.status --run demo --since <unix time the make started>
"""

from __future__ import annotations

import argparse
import datetime as dt

from bench.core.fileio import read_json
from bench.core.run import STAGES, RunPaths

STAMPED = ("env", *STAGES[:-1])  # verify always runs: it is the check, not a product


def unix_time(text: str) -> float:
    """`date +%s.%N` output; BSD date prints "%N" literally, so keep its whole seconds then."""
    seconds, _, fraction = text.partition(".")
    return float(f"{seconds}.{fraction}") if fraction.isdigit() else float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.status", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--run", required=True)
    parser.add_argument("--since", type=unix_time, required=True)
    args = parser.parse_args(argv)
    paths = RunPaths.for_run(args.run)
    stages = read_json(paths.artifacts)["stages"] if paths.artifacts.exists() else {}
    since = dt.datetime.fromtimestamp(int(args.since), dt.UTC)
    lines = []
    for stage in STAMPED:
        if stage not in stages or not paths.stamp(stage).exists():
            lines.append(f"  {stage:<9} not run")
            continue
        finished = dt.datetime.strptime(stages[stage]["finished_at"], "%Y-%m-%dT%H:%M:%SZ")
        finished = finished.replace(tzinfo=dt.UTC)
        # finished_at has whole seconds; the stamp's mtime settles a stage that ended in the
        # same second as this make started (a stage that skipped itself refreshes its stamp
        # but keeps its old finished_at).
        ran = finished >= since and paths.stamp(stage).stat().st_mtime >= args.since
        state = "ran" if ran else "skipped (inputs unchanged)"
        lines.append(f"  {stage:<9} {state:<27} last ran {finished:%Y-%m-%d %H:%M:%S} UTC")
    print(f"run {args.run}:\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

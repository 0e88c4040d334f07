"""Keep README's target table equal to the Makefile's `##` help lines (docs that cannot drift).

Usage: python -m scripts.readme_targets          rewrite the table between the markers in README.md
       python -m scripts.readme_targets --check  exit 1 if README.md is out of date (a test runs
       this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench.core.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- targets:begin -->", "<!-- targets:end -->"


def targets(makefiles: list[Path]) -> list[tuple[str, str]]:
    """(target, description) for each public target with a `## ` line right above it."""
    out = []
    for makefile in makefiles:
        doc = None
        for line in makefile.read_text(encoding="utf-8").splitlines():
            if line.startswith("## "):
                doc = line[3:].strip()
            elif doc and (m := re.match(r"^([a-z][a-zA-Z_-]*):", line)):
                out.append((m.group(1), doc))
                doc = None
            else:
                doc = None
    return out


def table(rows: list[tuple[str, str]]) -> str:
    lines = ["| target | what it does (reads -> writes) |", "|---|---|"]
    lines += [f"| `make {t}` | {d.replace('|', '/')} |" for t, d in rows]
    return "\n".join(lines)


def render(readme: str, rows: list[tuple[str, str]]) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + table(rows) + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts.readme_targets", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    makefiles = [ROOT / "Makefile", *sorted(ROOT.glob("*.mk"))]
    wanted = render(readme, targets(makefiles))
    if args.check:
        if wanted != readme:
            print(
                "README.md's target table is out of date: run `python -m scripts.readme_targets`",
                file=sys.stderr,
            )
            return 1
        return 0
    atomic_write_text(readme_path, wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

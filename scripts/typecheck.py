"""`make lint`'s type check: mypy over the kit (pyproject's [tool.mypy] files), then each fake tool.

Usage:  python -m scripts.typecheck
Reads:  pyproject.toml [tool.mypy]; bench/, scripts/, tests/fakes/ and tests/fakes/bin/*
Writes: .mypy_cache/

The fakes in tests/fakes/bin are scripts without a .py suffix: mypy names every such file
`__main__`, so checked together they collide ("Duplicate module named __main__"). Each is checked
in its own run here (the cache keeps that cheap). Exit 0 when every run was clean, else 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKES_BIN = ROOT / "tests" / "fakes" / "bin"


def runs(root: Path = ROOT) -> list[list[str]]:
    """The mypy argument lists: the configured files, then one list per fake script."""
    fakes = sorted(p for p in (root / "tests" / "fakes" / "bin").iterdir() if p.is_file())
    return [[], *([p.relative_to(root).as_posix()] for p in fakes)]


def main() -> int:
    failed = []
    for extra in runs():
        argv = [sys.executable, "-m", "mypy", *extra]
        if subprocess.run(argv, cwd=ROOT, check=False).returncode != 0:
            failed.append(" ".join(extra) or "[tool.mypy] files")
    if failed:
        print(f"[typecheck] mypy found errors in: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

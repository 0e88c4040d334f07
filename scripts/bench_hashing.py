"""Benchmark: the kit's streaming sha256 (bench.core.fileio.sha256_file) against coreutils
sha256sum.

Usage: PYTHONPATH=. python scripts/bench_hashing.py [--size-mib 512] [--files 4] [--repeats 3]

Writes temporary files of random bytes, hashes them with both (page cache warm for both, best of
N), checks the digests agree, and prints MB/s for each. The artifact manifest hashes every model,
checkpoint and engine file, so this must be at least as fast as `sha256sum`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.core.fileio import sha256_file

T = TypeVar("T")


def best_of(repeats: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The fastest of `repeats` calls (at least one) and the last call's result."""
    timings = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - start)
    return min(timings), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="total size of the test files")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("sha256sum"):
        print("sha256sum not found: nothing to compare against", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.files):
            path = Path(tmp) / f"f{i}.bin"
            with open(path, "wb") as f:
                for _ in range(args.size_mib // args.files):
                    f.write(os.urandom(1 << 20))
            files.append(path)
        total_mb = sum(p.stat().st_size for p in files) / 1e6
        kit_s, kit = best_of(args.repeats, lambda: [sha256_file(p) for p in files])
        core_s, out = best_of(
            args.repeats,
            lambda: (
                subprocess.run(
                    ["sha256sum", *map(str, files)], check=True, capture_output=True, text=True
                ).stdout
            ),
        )
        coreutils = [line.split()[0] for line in out.splitlines()]
        if kit != coreutils:
            print("digests differ between bench.core.fileio and sha256sum", file=sys.stderr)
            return 1
        print(f"{total_mb:.0f} MB in {args.files} files, best of {args.repeats}:")
        print(f"  bench.core.fileio.sha256_file  {total_mb / kit_s:8.0f} MB/s")
        print(f"  coreutils sha256sum       {total_mb / core_s:8.0f} MB/s")
        print(
            f"  ratio                     {core_s / kit_s:8.2f}x "
            "(>= 1: the kit is as fast or faster)"
        )
        return 0 if kit_s <= core_s * 1.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Turn pip's installation reports into a hashed lock (`pip install --require-hashes -r`).

Usage: python -m pip install --dry-run --ignore-installed --report r.json PKG==V   (fresh venv)
       python -m scripts.hashed_lock r.json [more.json ...] "header" ... > requirements/<name>.lock

One line per package pip chose, `name==version --hash=sha256:<the file it chose>`, sorted by
name, so the lock installs exactly what was resolved and nothing else. Several reports (one
resolution for several interpreters, e.g. the kit's Python 3.11 and the image's 3.12: resolve the
others with `--python-version 3.12 --platform ... --only-binary=:all: -c <the first's pins>`) give
each line every report's file: the same versions, a wheel per interpreter.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path


def lock_lines(reports: list[dict]) -> list[str]:
    """name==version and the hash of each report's file for it; the reports must agree on
    every package and version (else they are two resolutions, not one)."""
    hashes: dict[tuple[str, str], list[str]] = {}
    packages: list[set[tuple[str, str]]] = []
    for report in reports:
        chosen: set[tuple[str, str]] = set()
        for item in report["install"]:
            meta, info = item["metadata"], item["download_info"]
            digest = info.get("archive_info", {}).get("hashes", {}).get("sha256")
            if not digest:
                raise SystemExit(f"{meta['name']}: the report has no sha256 (not from an index?)")
            key = (meta["name"], meta["version"])
            chosen.add(key)
            if digest not in hashes.setdefault(key, []):
                hashes[key].append(digest)
        packages.append(chosen)
    if any(chosen != packages[0] for chosen in packages):
        every: set[tuple[str, str]] = set().union(*packages)
        differ = sorted(f"{n}=={v}" for n, v in every if not all((n, v) in c for c in packages))
        raise SystemExit(f"the reports resolved different packages: {', '.join(differ)}")
    lines = [
        f"{name}=={version}" + "".join(f" --hash=sha256:{d}" for d in digests)
        for (name, version), digests in hashes.items()
    ]
    return sorted(lines, key=str.lower)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    reports = list(itertools.takewhile(lambda a: a.endswith(".json"), args))
    if not reports:
        print(__doc__, file=sys.stderr)
        return 2
    header = [f"# {line}" for line in args[len(reports) :]]
    loaded = [json.loads(Path(r).read_text(encoding="utf-8")) for r in reports]
    sys.stdout.write("\n".join([*header, *lock_lines(loaded)]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Turn pip's installation report into a hashed lock (`pip install --require-hashes -r`).

Usage: python -m pip install --dry-run --ignore-installed --report r.json PKG==V   (fresh venv)
       python -m scripts.hashed_lock r.json "header line" ... > requirements/<name>.lock

One line per package pip chose, `name==version --hash=sha256:<the file it chose>`, sorted by
name, so the lock installs exactly what was resolved and nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def lock_lines(report: dict) -> list[str]:
    lines = []
    for item in report["install"]:
        meta, info = item["metadata"], item["download_info"]
        digest = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        if not digest:
            raise SystemExit(f"{meta['name']}: the report has no sha256 (not from an index?)")
        lines.append(f"{meta['name']}=={meta['version']} --hash=sha256:{digest}")
    return sorted(lines, key=str.lower)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    report = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    header = [f"# {line}" for line in args[1:]]
    sys.stdout.write("\n".join([*header, *lock_lines(report)]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

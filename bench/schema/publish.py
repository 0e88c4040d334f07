"""schemas/: the JSON Schemas of the kit's documents, generated from their pydantic models.

Writes: schemas/point-result.schema.json  a point's result.json, failure.json (bench.schema.record)
        schemas/provenance.schema.json    a run's provenance.json (bench.schema.provenance)
        schemas/summary.schema.json       a run's summary.json (bench.schema.results_schema)
Usage:  python -m bench.schema.publish           (rewrite them after a model changed)
        python -m bench.schema.publish --check   (exit 1 naming each file that differs)
tests/test_schemas.py runs the check, so a committed schema never drifts from its model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.core.fileio import atomic_write_text
from bench.schema import provenance, record, results_schema

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
GENERATORS: dict[str, Callable[[], dict[str, Any]]] = {
    "point-result.schema.json": record.record_json_schema,
    "provenance.schema.json": provenance.provenance_json_schema,
    "summary.schema.json": results_schema.json_schema,
}


def rendered() -> dict[str, str]:
    """File name -> the text it must hold (sorted keys, two-space indent, final newline)."""
    return {
        name: json.dumps(make(), indent=2, sort_keys=True) + "\n"
        for name, make in GENERATORS.items()
    }


def stale(folder: Path = SCHEMAS_DIR) -> list[str]:
    """The schema files in folder that are missing or differ from their model's schema."""
    out = []
    for name, text in rendered().items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.schema.publish", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when stale")
    args = parser.parse_args(argv)
    if args.check:
        differ = stale()
        for name in differ:
            print(
                f"schemas/{name}: differs from its model; run `python -m bench.schema.publish`",
                file=sys.stderr,
            )
        return 1 if differ else 0
    for name, text in rendered().items():
        atomic_write_text(SCHEMAS_DIR / name, text)
        print(f"[schemas] wrote schemas/{name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

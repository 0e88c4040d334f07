"""Published or claimed numbers to hold a run against: one small TOML schema, a loader, and a check
of each reference's own internal consistency.

Reads:  manifests/published/<name>.toml
Usage:  python -m bench.reference manifests/published/seed-report-claims.toml
        (prints the reference and what in it contradicts itself; exit 1 when something does)

A reference says where its numbers come from (source, date), what they claim to measure
(identity: model, TP, GPUs, ...), and the numbers: measured points (output tok/s, optionally
req/s, requests, total tokens, rank in a "top N" table), "best per ISL/OSL" rows and a peak.
A run's point that the reference does not list is NOT PUBLISHED there.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench.errors import KitError, run_main
from bench.tomlconfig import read_toml, validate

SCHEMA = "trtllm-repro/reference/1"
RATE_TOLERANCE = 0.001  # output tok/s vs req/s x OSL: 0.1%
TOTAL_TOKENS_TOLERANCE = 0.01  # "~8.6M" style totals: 1%

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RefIdentity(_Table):
    """What the numbers claim to have been measured with; absent = not stated by the source."""

    model: str | None = None
    checkpoint: str | None = None  # e.g. the pre-quantized checkpoint the source ran
    quantization: str | None = None
    backend: str | None = None
    engine_version: str | None = None
    tp_size: Positive | None = None
    pp_size: Positive | None = None
    gpus: Positive | None = None
    gpu: str | None = None

    def model_ids(self) -> set[str]:
        return {m for m in (self.model, self.checkpoint) if m}


class RefPoint(_Table):
    isl: Positive
    osl: Positive
    requests: Positive | None = None
    output_tok_s: PositiveFloat
    req_s: PositiveFloat | None = None
    total_tokens: Positive | None = None
    rank: Positive | None = None  # position in the source's "top N" table
    tolerance_pct: PositiveFloat | None = None
    note: str = ""


class BestRow(_Table):
    isl: Positive
    osl: Positive
    output_tok_s: PositiveFloat
    requests: Positive | None = None


class Peak(_Table):
    output_tok_s: PositiveFloat | None = None
    req_s: PositiveFloat | None = None
    isl: Positive | None = None
    osl: Positive | None = None


class Reference(_Table):
    schema_: Literal["trtllm-repro/reference/1"] = Field(alias="schema")
    title: str = Field(min_length=1)
    source: str = Field(min_length=1)
    date: str = Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    metric: Literal["output_tok_s"] = "output_tok_s"
    tolerance_pct: PositiveFloat = 5.0
    notes: str = ""
    identity: RefIdentity = RefIdentity()
    points: list[RefPoint] = Field(default_factory=list)
    best_per_isl: list[BestRow] = Field(default_factory=list)
    best_per_osl: list[BestRow] = Field(default_factory=list)
    peak: Peak | None = None

    def tolerance(self, point: RefPoint) -> float:
        return point.tolerance_pct if point.tolerance_pct is not None else self.tolerance_pct


# ----------------------------------------------------------------------------- pure functions


def parse_reference(data: dict[str, Any], path: str = "<reference>") -> Reference:
    ref = validate(Reference, data, path, "see manifests/published/*.toml for valid references")
    seen: dict[tuple[int, int], int] = {}
    for i, p in enumerate(ref.points):
        if (p.isl, p.osl) in seen:
            raise KitError(
                f"duplicate of points[{seen[p.isl, p.osl]}] (isl={p.isl}, osl={p.osl})",
                path=path,
                key=f"points[{i}]",
                fix="list each ISL/OSL once",
            )
        seen[p.isl, p.osl] = i
    return ref


def load_reference(path: str | Path) -> Reference:
    data = read_toml(
        path, "reference", "pass REFERENCE=manifests/published/<name>.toml (see that folder)"
    )
    return parse_reference(data, str(path))


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _facts(ref: Reference) -> dict[tuple[int, int], tuple[float, str]]:
    """Every (ISL, OSL) -> output tok/s the reference states anywhere, with where it says it."""
    facts: dict[tuple[int, int], tuple[float, str]] = {}
    for i, p in enumerate(ref.points):
        facts[p.isl, p.osl] = (p.output_tok_s, f"points[{i}]")
    for table in ("best_per_isl", "best_per_osl"):
        for i, row in enumerate(getattr(ref, table)):
            facts.setdefault((row.isl, row.osl), (row.output_tok_s, f"{table}[{i}]"))
    return facts


def consistency_problems(ref: Reference) -> list[str]:
    """What in the reference contradicts the reference itself (empty when nothing does).

    Checks: output tok/s vs req/s x OSL (0.1%); total tokens vs requests x (ISL + OSL) (1%);
    a value stated twice for one ISL/OSL; each "best per ISL/OSL" row against every number the
    reference states for that ISL/OSL; the peak against every number; a "top N" table's order.
    """
    problems = []
    for i, p in enumerate(ref.points):
        where = f"points[{i}] (ISL {p.isl}, OSL {p.osl})"
        if p.req_s is not None:
            implied = p.req_s * p.osl
            if not _close(p.output_tok_s, implied, RATE_TOLERANCE):
                problems.append(
                    f"{where}: output {p.output_tok_s:,.2f} tok/s but req/s x OSL = "
                    f"{p.req_s:g} x {p.osl} = {implied:,.2f} "
                    f"({abs(p.output_tok_s - implied) / implied:.2%} > 0.1%)"
                )
        if p.total_tokens is not None and p.requests is not None:
            implied_total = p.requests * (p.isl + p.osl)
            if not _close(p.total_tokens, implied_total, TOTAL_TOKENS_TOLERANCE):
                problems.append(
                    f"{where}: total tokens {p.total_tokens:,} but requests x "
                    f"(ISL + OSL) = {implied_total:,}"
                )
    facts = _facts(ref)
    for table in ("best_per_isl", "best_per_osl"):
        for i, row in enumerate(getattr(ref, table)):
            where = f"{table}[{i}] (ISL {row.isl}, OSL {row.osl}, {row.output_tok_s:,.2f})"
            stated = facts.get((row.isl, row.osl))
            if stated is not None and not _close(stated[0], row.output_tok_s, RATE_TOLERANCE):
                problems.append(f"{where}: {stated[1]} states {stated[0]:,.2f} for the same point")
            axis = 0 if table == "best_per_isl" else 1
            value = row.isl if axis == 0 else row.osl
            rivals = [
                (v, k, w)
                for k, (v, w) in facts.items()
                if k[axis] == value and v > row.output_tok_s * (1 + RATE_TOLERANCE)
            ]
            if rivals:
                v, k, w = max(rivals)
                problems.append(
                    f"{where}: not the best; {w} states ISL {k[0]}, OSL {k[1]} at {v:,.2f}"
                )
    if ref.peak is not None and ref.peak.output_tok_s is not None and facts:
        v, k, w = max((v, k, w) for k, (v, w) in facts.items())
        if v > ref.peak.output_tok_s * (1 + RATE_TOLERANCE):
            problems.append(
                f"peak {ref.peak.output_tok_s:,.2f} is below {w} "
                f"(ISL {k[0]}, OSL {k[1]}) at {v:,.2f}"
            )
    ranked = sorted((p for p in ref.points if p.rank is not None), key=lambda p: p.rank or 0)
    for a, b in itertools.pairwise(ranked):
        if b.output_tok_s > a.output_tok_s:
            problems.append(
                f"rank {b.rank} (ISL {b.isl}, OSL {b.osl}, {b.output_tok_s:,.2f}) is "
                f"above rank {a.rank} ({a.output_tok_s:,.2f})"
            )
    return problems


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.reference", description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    args = parser.parse_args(argv)

    def run() -> int:
        ref = load_reference(args.reference)
        problems = consistency_problems(ref)
        print(
            f"{args.reference}: {ref.title} ({ref.source}, {ref.date}); {len(ref.points)} points, "
            f"tolerance {ref.tolerance_pct:g}%"
        )
        for line in problems:
            print(f"  inconsistent: {line}")
        if not problems:
            print("  internally consistent (as far as it can be checked)")
        return 1 if problems else 0

    return run_main(run, "bench.reference")


if __name__ == "__main__":
    raise SystemExit(main())

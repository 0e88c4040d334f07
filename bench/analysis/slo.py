"""A run's points against the manifest's [slo]: met, not met or not evaluable, their goodput, and
per ISL/OSL the highest output throughput that meets the SLO (the serving headline).

Pure: reads records (bench.schema.record.PointResult) and the Slo model, writes nothing. The
report (bench.analysis.serving_report) prints what these functions return.

Rules:
- A limit is judged on the 99th percentile of the point's own distribution: TTFT p99 on
  `metrics.ttft_ms`, TPOT p99 on `metrics.tpot_ms`, end-to-end p99 on `metrics.request_latency_ms`.
- TTFT and TPOT exist only when the point streamed (`record.streaming`): a point that did not, or
  that has no distribution, is "not evaluable", never "met".
- A measured p99 above its limit makes the point "not met" whatever else is missing; with
  repeats, the worst repeat decides (the largest p99; missing in any repeat: not evaluable).
- Goodput (requests/s and output tok/s of the requests within the SLO) is what the producer
  computed from the point's requests.csv (`metrics.goodput_*`); without it: not evaluable.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bench.core.manifest import Slo
from bench.schema.record import Distribution, PointResult

Verdict = Literal["met", "not met", "not evaluable"]
MET: Verdict = "met"
NOT_MET: Verdict = "not met"
NOT_EVALUABLE: Verdict = "not evaluable"

# [slo] key -> (record metric holding the distribution, label)
LIMIT_SOURCES = {
    "ttft_p99_ms": ("ttft_ms", "TTFT p99"),
    "tpot_p99_ms": ("tpot_ms", "TPOT p99"),
    "e2e_p99_ms": ("request_latency_ms", "E2E latency p99"),
}
STREAMED_ONLY = ("ttft_p99_ms", "tpot_p99_ms")
NOT_STREAMED, NOT_MEASURED = "not streamed", "not measured"


@dataclass(frozen=True)
class LimitCheck:
    """One limit of the SLO against a point's measured p99 (None: why_missing says why)."""

    key: str  # the [slo] key, e.g. "ttft_p99_ms"
    label: str  # "TTFT p99"
    limit_ms: float
    measured_ms: float | None
    why_missing: str = ""

    @property
    def broken(self) -> bool:
        return self.measured_ms is not None and self.measured_ms > self.limit_ms


@dataclass(frozen=True)
class PointSlo:
    """One ISL/OSL/concurrency point (its valid repeats together) against the SLO."""

    isl: int
    osl: int
    concurrency: int | None
    repeats: int
    checks: tuple[LimitCheck, ...]
    output_tok_s: float  # mean over the valid repeats
    goodput_req_s: float | None
    goodput_output_tok_s: float | None

    @property
    def verdict(self) -> Verdict:
        if any(c.broken for c in self.checks):
            return NOT_MET
        if any(c.measured_ms is None for c in self.checks):
            return NOT_EVALUABLE
        return MET

    @property
    def reason(self) -> str:
        """Which percentile broke (or why the point cannot be judged); "" when met."""
        broken = [c for c in self.checks if c.broken]
        if broken:
            return "; ".join(
                f"{c.label} {c.measured_ms:,.2f} ms > {c.limit_ms:,.2f} ms" for c in broken
            )
        return "; ".join(f"{c.label} {c.why_missing}" for c in self.checks if c.measured_ms is None)


@dataclass(frozen=True)
class Headline:
    """Per ISL/OSL: the highest output tok/s meeting the SLO, and the highest of any verdict."""

    isl: int
    osl: int
    best: PointSlo | None  # None: no point of this ISL/OSL meets the SLO
    peak: PointSlo
    met: int
    not_met: int
    not_evaluable: int


# ----------------------------------------------------------------------------- pure functions


def _p99(dist: Distribution | None) -> float | None:
    return None if dist is None else dist.p99


def check_record(record: PointResult, slo: Slo) -> tuple[LimitCheck, ...]:
    """Each limit of the SLO against one record's measured p99."""
    checks = []
    for key, limit in slo.limits().items():
        field, label = LIMIT_SOURCES[key]
        measured = _p99(getattr(record.metrics, field))
        why = ""
        if key in STREAMED_ONLY and not record.streaming:
            measured, why = None, NOT_STREAMED  # a non-streamed TTFT is not a first token
        elif measured is None:
            why = NOT_MEASURED
        checks.append(LimitCheck(key, label, limit, measured, why))
    return tuple(checks)


def _worst(per_repeat: Sequence[LimitCheck]) -> LimitCheck:
    """The repeats' checks of one limit as one: the largest p99 decides; a missing one makes
    the limit missing unless another repeat already broke it."""
    broken = [c for c in per_repeat if c.broken]
    if broken:
        return max(broken, key=lambda c: c.measured_ms or 0.0)
    missing = [c for c in per_repeat if c.measured_ms is None]
    if missing:
        return missing[0]
    return max(per_repeat, key=lambda c: c.measured_ms or 0.0)


def _mean_if_all(values: Sequence[float | None]) -> float | None:
    return statistics.fmean(v for v in values if v is not None) if None not in values else None


def judge_points(records: Sequence[PointResult], slo: Slo) -> list[PointSlo]:
    """Every valid point (status ok, with an output tok/s), sorted by ISL, OSL, concurrency."""
    groups: dict[tuple[int, int, int | None], list[PointResult]] = {}
    for r in records:
        if r.status == "ok" and r.metrics.output_tok_s is not None:
            groups.setdefault((r.isl, r.osl, r.concurrency), []).append(r)
    out = []
    for (isl, osl, conc), rs in sorted(groups.items(), key=lambda kv: _key(*kv[0])):
        per_record = [check_record(r, slo) for r in rs]
        checks = tuple(_worst(column) for column in zip(*per_record, strict=True))
        out.append(
            PointSlo(
                isl=isl,
                osl=osl,
                concurrency=conc,
                repeats=len(rs),
                checks=checks,
                output_tok_s=statistics.fmean(r.metrics.output_tok_s or 0.0 for r in rs),
                goodput_req_s=_mean_if_all([r.metrics.goodput_req_s for r in rs]),
                goodput_output_tok_s=_mean_if_all([r.metrics.goodput_output_tok_s for r in rs]),
            )
        )
    return out


def _key(isl: int, osl: int, conc: int | None) -> tuple[int, int, int]:
    return (isl, osl, conc or 0)


def _rank(p: PointSlo) -> tuple[float, int]:
    """Highest output first; on a tie the lower concurrency (fewer users, same tokens)."""
    return (p.output_tok_s, -(p.concurrency or 0))


def max_under_slo(points: Sequence[PointSlo]) -> list[Headline]:
    """Per ISL/OSL (ascending): the highest output tok/s among points that meet the SLO."""
    by_pair: dict[tuple[int, int], list[PointSlo]] = {}
    for p in points:
        by_pair.setdefault((p.isl, p.osl), []).append(p)
    out = []
    for (isl, osl), ps in sorted(by_pair.items()):
        met = [p for p in ps if p.verdict == MET]
        out.append(
            Headline(
                isl=isl,
                osl=osl,
                best=max(met, key=_rank) if met else None,
                peak=max(ps, key=_rank),
                met=len(met),
                not_met=sum(p.verdict == NOT_MET for p in ps),
                not_evaluable=sum(p.verdict == NOT_EVALUABLE for p in ps),
            )
        )
    return out

"""The throughput-interactivity trade-off over a concurrency sweep: per ISL/OSL, output tok/s per
GPU against output tok/s per user, and the points no other point beats on both (the frontier).

Pure: reads records, writes nothing. A point is dominated when another point of the same ISL/OSL
is at least as good on both axes and better on one; the frontier is every point that is not.
Per user: the mean over the point's requests of output tokens / request latency
(`metrics.per_user_output_tok_s.mean`, else the tool's own `metrics.output_tok_s_per_user`).
Per GPU: output tok/s / (TP x PP) as recorded; a run that records no TP is plotted per system and
says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.schema.record import PointResult

PER_GPU, WHOLE_SYSTEM = "per GPU", "whole system (GPU count not recorded)"


@dataclass(frozen=True)
class ParetoPoint:
    isl: int
    osl: int
    concurrency: int | None
    per_user_tok_s: float
    throughput_tok_s: float  # per GPU, or whole system when the GPU count is unknown (basis)
    on_frontier: bool


@dataclass(frozen=True)
class ParetoSet:
    """One ISL/OSL: its points with a per-user rate, and those without one (not plotted)."""

    isl: int
    osl: int
    basis: str  # PER_GPU or WHOLE_SYSTEM
    points: tuple[ParetoPoint, ...]  # by concurrency
    no_per_user_rate: tuple[int | None, ...]  # concurrencies of valid points lacking one

    @property
    def frontier(self) -> list[ParetoPoint]:
        """Frontier points from the most interactive (highest per-user rate) down."""
        return sorted(
            (p for p in self.points if p.on_frontier),
            key=lambda p: (-p.per_user_tok_s, -p.throughput_tok_s),
        )


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a is at least as good as b on both axes and better on one (both axes: higher is better)."""
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def frontier_flags(xy: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (x, y), whether no other point dominates it. Sorted by x descending, then y
    descending, a point is on the frontier iff its y beats every y seen before it (ties on both
    axes: both are on the frontier)."""
    order = sorted(range(len(xy)), key=lambda i: (-xy[i][0], -xy[i][1]))
    flags = [False] * len(xy)
    best_y = float("-inf")
    previous: tuple[float, float] | None = None
    for i in order:
        if xy[i][1] > best_y or xy[i] == previous:
            flags[i] = True
        if xy[i][1] > best_y:
            best_y = xy[i][1]
        previous = xy[i] if flags[i] else previous
    return flags


def _per_user(r: PointResult) -> float | None:
    dist = r.metrics.per_user_output_tok_s
    if dist is not None and dist.mean is not None:
        return dist.mean
    return r.metrics.output_tok_s_per_user


def pareto_sets(records: Sequence[PointResult], gpus: int | None) -> list[ParetoSet]:
    """Per ISL/OSL (ascending), each valid point's mean per-user and per-GPU output rate over its
    repeats, flagged on or off the frontier. gpus: the run's GPU count (TP x PP as recorded,
    bench.analysis.tables.run_gpus); None plots the whole system."""
    groups: dict[tuple[int, int], dict[int | None, list[PointResult]]] = {}
    for r in records:
        if r.status == "ok" and r.metrics.output_tok_s is not None:
            groups.setdefault((r.isl, r.osl), {}).setdefault(r.concurrency, []).append(r)
    out = []
    for (isl, osl), by_conc in sorted(groups.items()):
        rated: list[tuple[int | None, float, float]] = []
        missing: list[int | None] = []
        for conc, rs in sorted(by_conc.items(), key=lambda kv: kv[0] or 0):
            users = [_per_user(r) for r in rs]
            if None in users:
                missing.append(conc)
                continue
            total = statistics.fmean(r.metrics.output_tok_s or 0.0 for r in rs)
            rated.append(
                (
                    conc,
                    statistics.fmean(u for u in users if u is not None),
                    total / gpus if gpus else total,
                )
            )
        flags = frontier_flags([(x, y) for _, x, y in rated])
        out.append(
            ParetoSet(
                isl=isl,
                osl=osl,
                basis=PER_GPU if gpus else WHOLE_SYSTEM,
                points=tuple(
                    ParetoPoint(isl, osl, conc, x, y, flag)
                    for (conc, x, y), flag in zip(rated, flags, strict=True)
                ),
                no_per_user_rate=tuple(missing),
            )
        )
    return out

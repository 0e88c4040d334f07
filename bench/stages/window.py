"""A point's measured window, and what the offline sweep and the online session both compute over
it: goodput under the manifest's [slo] and the GPU telemetry (energy per output token, the load
phase before the window kept apart). One home, so an online record has every field an offline
one has where the data exists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.analysis.latency import RequestRow, goodput
from bench.core.manifest import Slo
from bench.schema.record import Metrics, PointResult


@dataclass(frozen=True)
class Window:
    """The measured window in epoch ns, and how it was found."""

    start_ns: int
    end_ns: int
    source: str

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def with_goodput(
    metrics: Metrics, rows: Sequence[RequestRow], slo: Slo | None, window: Window
) -> Metrics:
    """The metrics with goodput over the window under the SLO; unchanged without an SLO or with
    an empty window (goodput is then not evaluable)."""
    if slo is None or not window.seconds > 0:
        return metrics
    req_s, tok_s = goodput(rows, slo, window.seconds)
    return dataclasses.replace(metrics, goodput_req_s=req_s, goodput_output_tok_s=tok_s)


def output_tokens(result: PointResult) -> float | None:
    m = result.metrics
    return (
        None
        if m.num_requests is None or m.avg_output_len is None
        else (m.num_requests * m.avg_output_len)
    )


def window_telemetry(sampler: Any, window: Window | None, result: PointResult) -> dict[str, Any]:
    """The sampler's summary over the window with its energy per output token, the samples
    before it as the load phase; without a window, every sample and no energy."""
    telemetry: dict[str, Any] = sampler.summary(
        None if window is None else (window.start_ns, window.end_ns), output_tokens(result)
    )
    if window is not None and telemetry.get("window"):
        telemetry["window"]["source"] = window.source
    return telemetry

"""The report's serving sections (issue 12): latency percentiles, the SLO verdicts with goodput
and the highest throughput under the SLO, and the Pareto frontier of throughput per GPU against
throughput per user, with its figures.

Pure, like bench.analysis.report_sections (which calls these): nothing is read or written here.
The sections appear only when the run has something to show: a record with a latency
distribution, or a manifest with an [slo]. A run with neither (every offline throughput run so
far) gets exactly the report it got before.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.analysis import figures
from bench.analysis.markdown import md_table, num
from bench.analysis.pareto import PER_GPU, ParetoSet, pareto_sets
from bench.analysis.slo import (
    MET,
    NOT_MET,
    Headline,
    PointSlo,
    Verdict,
    judge_points,
    max_under_slo,
)
from bench.core.manifest import Slo
from bench.schema.record import DISTRIBUTIONS, Distribution, PointResult, sort_key

NOT_MEASURED, NOT_STREAMED = "not measured", "not streamed"
# (record metric, heading, unit, needs streaming): the percentile tables, in this order
LATENCY_TABLES = (
    ("ttft_ms", "Time to first token (TTFT)", "ms", True),
    ("tpot_ms", "Time per output token (TPOT, first token excluded)", "ms", True),
    ("request_latency_ms", "End-to-end request latency (E2E)", "ms", False),
)
SLO_SOURCE = (
    "MLPerf Inference v5.1 sets, for Llama 3.1 8B, TTFT p99 <= 2000 ms and TPOT p99 <= 100 ms in "
    "its Server scenario and 500 ms / 30 ms in Interactive (mlcommons/inference "
    "loadgen/mlperf.conf, tag v5.1.1)"
)


def has_latency(records: Sequence[PointResult]) -> bool:
    """Whether any record carries a latency distribution (the producers of issue 12 fill them)."""
    return any(getattr(r.metrics, f) is not None for r in records for f in DISTRIBUTIONS)


def shows_serving(records: Sequence[PointResult], slo: Slo | None) -> bool:
    return slo is not None or has_latency(records)


def _conc(c: int | None) -> str:
    return "unlimited" if c is None else str(c)


# ----------------------------------------------------------------------------- latency


def _cell(r: PointResult, field: str, streamed_only: bool, stat: str) -> str:
    dist: Distribution | None = getattr(r.metrics, field)
    if streamed_only and not r.streaming:
        return NOT_STREAMED
    value = None if dist is None else getattr(dist, stat)
    return NOT_MEASURED if value is None else num(value)


def section_latency(records: Sequence[PointResult]) -> str:
    """TTFT, TPOT and E2E p50/p90/p99 (and mean) per valid point and repeat, as measured."""
    valid = sorted((r for r in records if r.status == "ok"), key=sort_key)
    repeats = any(r.repeat for r in valid)
    out = ["## Latency percentiles\n\n"]
    if not has_latency(valid):
        out.append(
            "Not measured: no valid point of this run carries a latency distribution (an offline "
            "throughput run measures none; TTFT and TPOT need a streaming run).\n\n"
        )
        return "".join(out)
    out.append(
        "Per valid point, from the tool's per-request measurements; percentiles are of the "
        "point's requests (warm-up excluded). A p99 over fewer than 100 requests is close to the "
        "maximum. TTFT and TPOT exist only when the point streamed.\n\n"
    )
    for field, heading, unit, streamed_only in LATENCY_TABLES:
        headers = ["ISL", "OSL", "Concurrency", *(["Repeat"] if repeats else [])]
        headers += [f"p50 {unit}", f"p90 {unit}", f"p99 {unit}", f"mean {unit}", "Requests"]
        rows = []
        for r in valid:
            dist: Distribution | None = getattr(r.metrics, field)
            rows.append(
                [
                    r.isl,
                    r.osl,
                    _conc(r.concurrency),
                    *([r.repeat] if repeats else []),
                    *(_cell(r, field, streamed_only, s) for s in ("p50", "p90", "p99", "mean")),
                    num(dist.count) if dist is not None and dist.count is not None else "-",
                ]
            )
        out.append(f"### {heading}\n\n" + md_table(headers, rows, [True] * len(headers)) + "\n")
    return "".join(out)


# ----------------------------------------------------------------------------- SLO


def limits_text(slo: Slo) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in slo.limits().items())


def _verdict_cell(p: PointSlo) -> str:
    if p.verdict == MET:
        return MET
    return f"**{p.verdict}**: {p.reason}" if p.verdict == NOT_MET else f"{p.verdict}: {p.reason}"


def _goodput(value: float | None) -> str:
    return "not evaluable" if value is None else num(value)


def headline_text(h: Headline, per_gpu: int | None) -> str:
    """One ISL/OSL's max throughput under the SLO, in words (the executive summary's line)."""
    pair = f"ISL {h.isl} / OSL {h.osl}"
    if h.best is None:
        why = f"{h.not_met} not met" + (
            f", {h.not_evaluable} not evaluable" if h.not_evaluable else ""
        )
        return f"{pair}: no point meets the SLO ({why} of {h.met + h.not_met + h.not_evaluable})"
    b = h.best
    each = f" ({num(b.output_tok_s / per_gpu)} per GPU)" if per_gpu else ""
    of_peak = (
        ""
        if h.peak is b
        else f"; {b.output_tok_s / h.peak.output_tok_s:.0%} of the point's best "
        f"{num(h.peak.output_tok_s)} at concurrency {_conc(h.peak.concurrency)}, "
        f"which is {h.peak.verdict}"
    )
    return (
        f"{pair}: {num(b.output_tok_s)} output tok/s{each} at concurrency "
        f"{_conc(b.concurrency)}{of_peak}"
    )


def summary_row(records: Sequence[PointResult], slo: Slo | None, gpus: int | None) -> list:
    """The executive summary's row; [] without an [slo] (the table stays as it was)."""
    if slo is None:
        return []
    heads = max_under_slo(judge_points(records, slo))
    text = "; ".join(headline_text(h, gpus) for h in heads) if heads else "no valid point"
    return [(f"Max output throughput under the SLO ({limits_text(slo)})", text)]


def section_slo(records: Sequence[PointResult], slo: Slo | None, gpus: int | None) -> str:
    """Each valid point: every limit's measured p99, the verdict naming what broke, goodput;
    then per ISL/OSL the highest output tok/s that meets the SLO."""
    head = "## Service-level objective (SLO)\n\n"
    if slo is None:
        return (
            head + "No [slo] in the manifest: no point is judged. " + SLO_SOURCE + "; set them "
            "as `[slo] ttft_p99_ms`, `tpot_p99_ms` (and `e2e_p99_ms`).\n\n"
        )
    points = judge_points(records, slo)
    limits = list(slo.limits())
    headers = ["ISL", "OSL", "Concurrency", "Output tok/s"]
    headers += [f"{k} (limit {v:g})" for k, v in slo.limits().items()]
    headers += ["Verdict", "Goodput req/s", "Goodput output tok/s"]
    rows = []
    for p in points:
        measured = {c.key: c for c in p.checks}
        rows.append(
            [
                p.isl,
                p.osl,
                _conc(p.concurrency),
                num(p.output_tok_s),
                *(
                    num(measured[k].measured_ms)
                    if measured[k].measured_ms is not None
                    else measured[k].why_missing
                    for k in limits
                ),
                _verdict_cell(p),
                _goodput(p.goodput_req_s),
                _goodput(p.goodput_output_tok_s),
            ]
        )
    heads = max_under_slo(points)
    best_rows = [
        [
            h.isl,
            h.osl,
            num(h.best.output_tok_s) if h.best else "none meets it",
            _conc(h.best.concurrency) if h.best else "-",
            num(h.best.output_tok_s / gpus) if h.best and gpus else "-",
            f"{num(h.peak.output_tok_s)} at concurrency {_conc(h.peak.concurrency)} "
            f"({h.peak.verdict})",
            f"{h.met} / {h.not_met} / {h.not_evaluable}",
        ]
        for h in heads
    ]
    return (
        head
        + f"Limits: {limits_text(slo)} (99th percentiles over each point's requests). "
        + SLO_SOURCE
        + ".\n\n"
        + "A point meets the SLO when every limit's measured p99 is within it; with repeats the "
        "worst repeat decides. A point without the measurement (no streaming for TTFT/TPOT, no "
        "distribution) is not evaluable, never met. Goodput counts the requests that are each "
        "within every limit, as the producer computed it from the point's requests.csv; "
        "not evaluable where it did not.\n\n"
        + (
            md_table(headers, rows, [True] * (len(headers) - 3) + [False, True, True])
            if rows
            else "No valid point.\n"
        )
        + "\n### Highest output throughput under the SLO, per ISL/OSL\n\n"
        + md_table(
            [
                "ISL",
                "OSL",
                "Max output tok/s meeting the SLO",
                "At concurrency",
                "Per GPU",
                "Best of any verdict",
                "Met / not met / not evaluable",
            ],
            best_rows,
            [True, True, True, True, True, False, False],
        )
        + "\n"
    )


# ----------------------------------------------------------------------------- Pareto


def min_per_user(slo: Slo | None) -> float | None:
    """The per-user output rate a TPOT p99 limit implies (1000 / limit ms), or None."""
    return None if slo is None or slo.tpot_p99_ms is None else 1000.0 / slo.tpot_p99_ms


def section_pareto(records: Sequence[PointResult], slo: Slo | None, gpus: int | None) -> str:
    """Per ISL/OSL: the frontier table and its figure."""
    out = ["## Throughput vs interactivity (Pareto frontier)\n\n"]
    sets = pareto_sets(records, gpus)
    if not any(s.points for s in sets):
        out.append("Not measured: no valid point records an output rate per user.\n\n")
        return "".join(out)
    shade = min_per_user(slo)
    out.append(
        "Per ISL/OSL over the concurrency sweep: output tok/s per GPU against output tok/s per "
        "user (the mean over the point's requests of output tokens / request latency). A point "
        "is on the frontier when no other point of the same ISL/OSL is at least as good on both "
        "and better on one; the others are dominated (faded in the figure)."
        + (
            f" Shaded: per-user rate >= 1000 / tpot_p99_ms = {shade:,.2f} tok/s, where the TPOT "
            "limit can hold. It is a guide, not the verdict: the per-user axis includes the "
            "first token and is a mean, the limit a p99; the SLO table decides."
            if shade is not None
            else ""
        )
        + "\n\n"
    )
    verdicts = (
        {(p.isl, p.osl, p.concurrency): p.verdict for p in judge_points(records, slo)}
        if slo is not None
        else None
    )
    for s in sets:
        out.append(_pareto_table(s, verdicts))
    return "".join(out)


def _pareto_table(s: ParetoSet, verdicts: dict[tuple[int, int, int | None], Verdict] | None) -> str:
    """One ISL/OSL's points by concurrency, on the frontier or not, and (with an [slo]) each
    point's SLO verdict, so the best frontier point within the SLO can be read off."""
    unit = "Output tok/s per GPU" if s.basis == PER_GPU else "Output tok/s (whole system)"
    rows = [
        [
            _conc(p.concurrency),
            num(p.per_user_tok_s),
            num(p.throughput_tok_s),
            "frontier" if p.on_frontier else "dominated",
            *([verdicts.get((p.isl, p.osl, p.concurrency), "-")] if verdicts is not None else []),
        ]
        for p in s.points
    ]
    headers = ["Concurrency", "Output tok/s per user", unit, ""]
    headers += ["SLO"] if verdicts is not None else []
    missing = (
        f"No per-user rate recorded at concurrency {', '.join(map(_conc, s.no_per_user_rate))}: "
        "not plotted.\n\n"
        if s.no_per_user_rate
        else ""
    )
    body = (
        md_table(headers, rows, [True, True, True] + [False] * (len(headers) - 3))
        + "\n"
        + f"![Pareto ISL {s.isl} / OSL {s.osl}]({figures.pareto_name(s.isl, s.osl)})\n\n"
        if rows
        else ""
    )
    return f"### ISL {s.isl} / OSL {s.osl}\n\n" + body + missing


def draw(
    records: Sequence[PointResult], slo: Slo | None, gpus: int | None, identity: str
) -> dict[str, bytes]:
    """Report-relative path -> PNG bytes of each ISL/OSL's Pareto figure ({} when none)."""
    if not shows_serving(records, slo):
        return {}
    out = {}
    for s in pareto_sets(records, gpus):
        if not s.points:
            continue
        label = "output tok/s per GPU" if s.basis == PER_GPU else f"output tok/s, {s.basis}"
        fig = figures.pareto(
            [
                (p.concurrency, p.per_user_tok_s, p.throughput_tok_s, p.on_frontier)
                for p in s.points
            ],
            isl=s.isl,
            osl=s.osl,
            y_label=label,
            identity=identity,
            min_per_user_tok_s=min_per_user(slo),
        )
        out[figures.pareto_name(s.isl, s.osl)] = figures.png(fig)
    return out


def sections(records: Sequence[PointResult], slo: Slo | None, gpus: int | None) -> list[str]:
    """The serving sections in reading order; [] when the run has nothing to show."""
    if not shows_serving(records, slo):
        return []
    return [
        section_latency(records),
        section_slo(records, slo, gpus),
        section_pareto(records, slo, gpus),
    ]

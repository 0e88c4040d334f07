"""`make compare`: one run against another, so a driver, image or engine change shows what moved.

Reads:  results/<base>/ and results/<run>/ (records, artifacts.json, provenance, resolved manifest)
Writes: reports/<run>/compare-<base>.md and reports/<run>/figures/compare-<base>-*.png, recorded
        in results/<run>/artifacts.json as stage `compare-<base>`
Usage:  python -m bench.stages.compare --base BASE --run RUN [--threshold PCT]
        (make compare BASE=<run> RUN=<run> [THRESHOLD=<percent>])

Identity differences come first, so a change of method is never read as a regression. Each point
both runs measured gets a verdict per metric: FASTER, SLOWER, SAME or NOISY. With three or more
valid repeats on both sides the verdict is Welch's t-test on the repeats' logarithms
(significance) plus the metric's noise band (practical size): SLOWER needs both. With fewer only
the noise band can judge, and the report says the verdict is weaker. The threshold and bands are
the BASE run's manifest's, so a change cannot loosen its own gate. Exit 1 when a point's output
tok/s is worse by more than the threshold (SLOWER, or NOISY beyond the threshold), a point lost
its valid result, a BASE point is missing from RUN, or nothing could be compared; 0 otherwise; 2
on bad input.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from bench.analysis.markdown import md_table
from bench.core.errors import EXIT_FAILED, EXIT_OK, KitError, run_main
from bench.core.fileio import atomic_write_bytes, atomic_write_text, read_json, sha256_bytes
from bench.core.manifest import load_manifest
from bench.core.results import load_run_results
from bench.core.run import RunPaths
from bench.core.runlock import locked
from bench.schema.record import PointResult
from bench.schema.results_schema import Provenance, provenance_of

# ----------------------------------------------------------------------------- the kit's rules

Direction = Literal["higher", "lower"]  # which way is better
METRICS: dict[str, tuple[str, Direction]] = {
    "output_tok_s": ("output tok/s", "higher"),
    "avg_request_latency_ms": ("avg request latency (ms)", "lower"),
}
# The gate judges the headline number; latency verdicts are reported beside it. (A 2x slowdown is
# -50% output tok/s but +100% latency: one threshold cannot mean the same on both.)
GATE_METRICS = ("output_tok_s",)
# Run-to-run spread the kit assumes for one run against one run (no repeats to measure it): a
# trtllm-bench throughput point on a quiet, clock-locked H100 repeats within a few percent. A
# manifest states its own in [compare] noise_pct (the CPU demo on a shared machine needs more).
NOISE_PCT: dict[str, float] = {"output_tok_s": 5.0, "avg_request_latency_ms": 5.0}
THRESHOLD_PCT = 5.0  # the gate's default when neither THRESHOLD= nor the manifest states one
# Welch's t-test: significance level for repeats. A run judges many points and two metrics at once;
# at 0.05, 1 in 20 comparisons between identical runs would pass the test by chance.
ALPHA = 0.01
# Welch's test needs a spread on both sides: with 2 repeats a side at alpha 0.01 it almost never
# fires (base [100, 120] against new [50, 65], -48%, gives p = 0.066), so below 3 the band judges.
MIN_REPEATS_FOR_TEST = 3
PERCENTILES = ("p50", "p90", "p99")

FASTER: Final = "FASTER"
SLOWER: Final = "SLOWER"
SAME: Final = "SAME"
NOISY: Final = "NOISY"
Verdict = Literal["FASTER", "SLOWER", "SAME", "NOISY"]
PointKey = tuple[int, int, int | None]  # (isl, osl, concurrency)
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Settings:
    threshold_pct: float
    threshold_source: str  # "THRESHOLD=", "the base run's manifest" or "the kit's default"
    noise_pct: Mapping[str, float]
    # Whether a verdict from the band alone (fewer than MIN_REPEATS_FOR_TEST repeats on a side)
    # can fail the gate; False makes such verdicts advisory (the manifest's [compare]).
    band_only_gates: bool = True


@dataclass(frozen=True)
class MetricComparison:
    point: PointKey
    metric: str
    base: list[float]
    new: list[float]
    change_pct: float  # (mean new - mean base) / mean base, signed as measured
    worse_pct: float  # change in the bad direction (positive = worse), for the gate
    p_value: float | None  # Welch's t-test; None below MIN_REPEATS_FOR_TEST repeats on a side
    verdict: Verdict

    @property
    def band_only(self) -> bool:
        return self.p_value is None


# ----------------------------------------------------------------------------- decisions (pure)


def welch_p_value(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Welch's t-test on the logarithms: timing noise is multiplicative (a loaded
    machine scales a repeat's time), and on logs throughput and latency get one answer.
    Equal constant samples give 1, different constant ones 0."""
    from scipy import stats

    log_base, log_new = [math.log(v) for v in base], [math.log(v) for v in new]
    if statistics.pvariance(log_base) == 0 and statistics.pvariance(log_new) == 0:
        return 1.0 if log_base[0] == log_new[0] else 0.0
    return float(stats.ttest_ind(log_new, log_base, equal_var=False).pvalue)


def judge(
    point: PointKey,
    metric: str,
    base: Sequence[float],
    new: Sequence[float],
    noise_pct: float,
) -> MetricComparison:
    """FASTER/SLOWER only when the change is larger than the noise band and, with enough repeats
    on both sides, also significant; SAME within the band; NOISY when larger but not significant."""
    mean_base, mean_new = statistics.fmean(base), statistics.fmean(new)
    change = 100.0 * (mean_new - mean_base) / mean_base
    worse = -change if METRICS[metric][1] == "higher" else change
    enough = min(len(base), len(new)) >= MIN_REPEATS_FOR_TEST
    p = welch_p_value(base, new) if enough else None
    if abs(change) <= noise_pct:
        verdict: Verdict = SAME
    elif p is not None and p >= ALPHA:
        verdict = NOISY
    else:
        verdict = SLOWER if worse > 0 else FASTER
    return MetricComparison(point, metric, list(base), list(new), change, worse, p, verdict)


def valid_values(records: Sequence[PointResult]) -> dict[PointKey, dict[str, list[float]]]:
    """Per point and metric, the values of its valid repeats (status ok, metric reported)."""
    out: dict[PointKey, dict[str, list[float]]] = {}
    for r in sorted(records, key=lambda r: (r.isl, r.osl, r.concurrency or 0, r.repeat)):
        if r.status != "ok":
            continue
        per_metric = out.setdefault((r.isl, r.osl, r.concurrency), {})
        for metric in METRICS:
            value = getattr(r.metrics, metric)
            if value is not None and value > 0:
                per_metric.setdefault(metric, []).append(float(value))
    return out


def all_points(records: Sequence[PointResult]) -> set[PointKey]:
    return {(r.isl, r.osl, r.concurrency) for r in records}


@dataclass(frozen=True)
class Comparison:
    comparisons: list[MetricComparison]
    only_base: list[PointKey]
    only_new: list[PointKey]
    lost: list[PointKey]  # valid in base, no valid result in new
    gained: list[PointKey]  # no valid result in base, valid in new

    def beyond_threshold(self, settings: Settings) -> list[MetricComparison]:
        """Gate metrics worse than the threshold: SLOWER, or NOISY (the estimate is still the
        best guess; a noisy -48% must not pass). The gate's failures unless advisory."""
        return [
            c
            for c in self.comparisons
            if c.verdict in (SLOWER, NOISY)
            and c.metric in GATE_METRICS
            and c.worse_pct > settings.threshold_pct
        ]

    def gate_failures(self, settings: Settings) -> list[MetricComparison]:
        return [
            c
            for c in self.beyond_threshold(settings)
            if settings.band_only_gates or not c.band_only
        ]

    def gated_metric_compared(self) -> bool:
        return any(c.metric in GATE_METRICS for c in self.comparisons)

    def gate_problems(self, settings: Settings) -> list[str]:
        """One line per reason the gate fails; empty when it passes."""
        problems = []
        if not self.gated_metric_compared():
            problems.append("no point has a valid output tok/s in both runs: nothing was compared")
        if self.only_base:
            problems.append(
                f"{len(self.only_base)} point(s) of the base run missing from the new run: "
                + ", ".join(point_name(p) for p in self.only_base)
            )
        if self.lost:
            problems.append(
                f"{len(self.lost)} point(s) lost their valid result: "
                + ", ".join(point_name(p) for p in self.lost)
            )
        problems += [
            f"{verdict_label(c, settings)} {point_name(c.point)} {METRICS[c.metric][0]}: "
            f"{c.change_pct:+.1f}% (threshold {settings.threshold_pct:g}%)"
            for c in self.gate_failures(settings)
        ]
        return problems


def verdict_label(c: MetricComparison, settings: Settings) -> str:
    """The verdict as the report prints it: NOISY beyond the threshold fails the gate and says
    so; a band-only verdict beyond it is marked advisory where the manifest makes it so."""
    beyond = (
        c.verdict in (SLOWER, NOISY)
        and c.metric in GATE_METRICS
        and c.worse_pct > settings.threshold_pct
    )
    if beyond and c.band_only and not settings.band_only_gates:
        return f"{c.verdict} (advisory)"
    if beyond and c.verdict == NOISY:
        return "NOISY, beyond threshold"
    return c.verdict


def compare_records(
    base: Sequence[PointResult], new: Sequence[PointResult], noise_pct: Mapping[str, float]
) -> Comparison:
    base_values, new_values = valid_values(base), valid_values(new)
    base_points, new_points = all_points(base), all_points(new)
    comparisons = []
    for point in sorted(set(base_values) & set(new_values), key=_point_order):
        for metric in METRICS:
            b, n = base_values[point].get(metric), new_values[point].get(metric)
            if b and n:
                comparisons.append(judge(point, metric, b, n, noise_pct[metric]))
    return Comparison(
        comparisons=comparisons,
        only_base=sorted(base_points - new_points, key=_point_order),
        only_new=sorted(new_points - base_points, key=_point_order),
        lost=sorted((set(base_values) & new_points) - set(new_values), key=_point_order),
        gained=sorted((set(new_values) & base_points) - set(base_values), key=_point_order),
    )


def _point_order(p: PointKey) -> tuple[int, int, int]:
    return (p[0], p[1], p[2] or 0)


def point_name(p: PointKey) -> str:
    return f"{p[0]}/{p[1]}" + (f" c{p[2]}" if p[2] is not None else "")


# ----------------------------------------------------------------------------- identity (pure)


def identity(records: Sequence[PointResult], prov: Provenance) -> dict[str, str]:
    """What produced a run's numbers, field by field, as text ('-' when not recorded)."""

    def joined(values: Sequence[Any]) -> str:
        distinct = sorted({str(v) for v in values if v is not None})
        return ", ".join(distinct) if distinct else "-"

    return {
        "image digest": prov.image_digest or "-",
        "TensorRT-LLM": joined([prov.tensorrt_llm] + [r.identity.engine_version for r in records]),
        "driver": joined(prov.drivers),
        "GPU": joined(prov.gpus),
        "backend": joined([r.identity.backend for r in records]),
        "quantization": joined([r.identity.quantization for r in records]),
        "kv cache dtype": joined([r.identity.kv_cache_dtype for r in records]),
        "TP x PP": joined([f"{r.identity.tp_size}x{r.identity.pp_size}" for r in records]),
        **{
            f"{k} digest": getattr(prov, k) or "-"
            for k in ("model", "checkpoint", "engine", "datasets", "manifest")
        },
    }


def identity_differences(base: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    return [k for k in base if base[k] != new.get(k)]


def manifest_diff(base: str | None, new: str | None) -> list[str]:
    if base is None or new is None or base == new:
        return []
    return [
        line
        for line in difflib.unified_diff(base.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


# ----------------------------------------------------------------------------- markdown (pure)


def _num(v: float) -> str:
    return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.1f}"


def _values(vs: Sequence[float]) -> str:
    mean = statistics.fmean(vs)
    return _num(mean) + (f" (n={len(vs)})" if len(vs) > 1 else "")


def render(
    base_name: str,
    new_name: str,
    base_identity: Mapping[str, str],
    new_identity: Mapping[str, str],
    manifest_lines: Sequence[str],
    result: Comparison,
    settings: Settings,
    percentiles: Mapping[PointKey, tuple[dict[str, float], dict[str, float]]],
    heatmap: str | None,
) -> str:
    problems = result.gate_problems(settings)
    gate = (
        "**FAILED**: " + "; ".join(problems)
        if problems
        else f"**PASSED**: no comparable point's output tok/s is worse by more than "
        f"{settings.threshold_pct:g}%"
    )
    advisory = [
        c for c in result.beyond_threshold(settings) if c not in result.gate_failures(settings)
    ]
    if advisory:
        gate += (
            f" ({len(advisory)} point(s) beyond it on the band alone are advisory: the base "
            "run's manifest sets `[compare] band_only_gates = false`)"
        )
    out = [
        f"# Compare: {new_name} against {base_name}\n",
        f"Gate: {gate} (threshold and noise bands from {settings.threshold_source}).\n",
        "## Identity\n",
    ]
    differing = identity_differences(base_identity, new_identity)
    if differing:
        out.append(
            f"The runs differ in {len(differing)} identity field(s): {', '.join(differing)}. "
            "A difference below may be a change of method, not of speed.\n"
        )
    else:
        out.append(
            "Both runs have the same identity: same image, software, GPU, files, manifest.\n"
        )
    rows = [
        [k, base_identity[k], new_identity.get(k, "-"), "differs" if k in differing else ""]
        for k in base_identity
    ]
    out.append(md_table(["", base_name, new_name, ""], rows, [False] * 4))
    if manifest_lines:
        out += ["\nManifest lines that differ (- base, + new):\n", "```diff"]
        out += [*manifest_lines[:40], "```"]
    out.append("\n## Points\n")
    tested = any(not c.band_only for c in result.comparisons)
    band_only = any(c.band_only for c in result.comparisons)
    rule = [
        f"Verdict per metric: SAME when the change is within the metric's noise band "
        f"({', '.join(f'{METRICS[m][0]} ±{settings.noise_pct[m]:g}%' for m in METRICS)}); "
        "beyond it, FASTER or SLOWER"
    ]
    if tested:
        rule.append(
            f"; with {MIN_REPEATS_FOR_TEST} or more repeats on both sides only when Welch's "
            f"t-test on the repeats gives p < {ALPHA:g}, otherwise NOISY (NOISY beyond the "
            "threshold still fails the gate)"
        )
    rule.append(".")
    if band_only:
        rule.append(
            f" Points marked `band` have fewer than {MIN_REPEATS_FOR_TEST} valid repeats on a "
            "side: their verdict rests on the stated noise band alone, not on measured spread, "
            "and is weaker."
        )
    out.append("".join(rule) + "\n")
    if result.comparisons:
        table = [
            [
                point_name(c.point),
                METRICS[c.metric][0],
                _values(c.base),
                _values(c.new),
                f"{c.change_pct:+.1f}%",
                "band" if c.p_value is None else f"{c.p_value:.3g}",
                f"**{verdict_label(c, settings)}**"
                if c in result.gate_failures(settings) or c.verdict == SLOWER
                else verdict_label(c, settings),
            ]
            for c in result.comparisons
        ]
        out.append(
            md_table(
                ["ISL/OSL", "metric", base_name, new_name, "change", "p", "verdict"],
                table,
                [False, False, True, True, True, True, False],
            )
        )
    else:
        out.append("No point has a valid result in both runs.\n")
    for title, points in (
        (f"Only in {base_name}", result.only_base),
        (f"Only in {new_name}", result.only_new),
        (f"Valid in {base_name}, no valid result in {new_name} (fails the gate)", result.lost),
        (f"No valid result in {base_name}, valid in {new_name}", result.gained),
    ):
        if points:
            out.append(f"\n{title}: " + ", ".join(point_name(p) for p in points) + ".\n")
    if heatmap:
        out.append(f"\n![% change of output tok/s over ISL x OSL]({heatmap})\n")
    if percentiles:
        out.append("\n## Request latency percentiles (ms, mean over valid repeats)\n")
        rows = [
            [point_name(p)]
            + [
                f"{_num(b[q])} / {_num(n[q])} ({100 * (n[q] - b[q]) / b[q]:+.1f}%)"
                for q in PERCENTILES
            ]
            for p, (b, n) in sorted(percentiles.items(), key=lambda kv: _point_order(kv[0]))
        ]
        out.append(f"Each cell: {base_name} / {new_name} (change).\n")
        out.append(md_table(["ISL/OSL", *PERCENTILES], rows, [False, True, True, True]))
    return "\n".join(out) + "\n"


def summary_table(result: Comparison, settings: Settings) -> str:
    """The compact table for CI's job summary: only what is not SAME, plus the gate."""
    moved = [c for c in result.comparisons if c.verdict != SAME]
    rows = [
        [
            point_name(c.point),
            METRICS[c.metric][0],
            f"{c.change_pct:+.1f}%",
            verdict_label(c, settings),
        ]
        for c in moved
    ]
    problems = result.gate_problems(settings)
    head = (
        f"{len(result.comparisons)} comparisons, {len(moved)} not SAME, "
        f"{len(result.gate_failures(settings))} worse beyond {settings.threshold_pct:g}%, "
        f"{len(result.lost)} lost point(s), {len(result.only_base)} missing. "
        + ("Gate FAILED: " + "; ".join(problems) if problems else "Gate passed")
        + ".\n"
    )
    header = ["ISL/OSL", "metric", "change", "verdict"]
    return head + ("\n" + md_table(header, rows, [False, False, True, False]) if rows else "")


# ----------------------------------------------------------------------------- figure


def heatmap_png(result: Comparison, metric: str = "output_tok_s") -> bytes | None:
    """% change of `metric` over ISL x OSL for points without a concurrency limit, or None."""
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    from bench.analysis.figures import png

    cells = {
        (c.point[0], c.point[1]): c
        for c in result.comparisons
        if c.metric == metric and c.point[2] is None
    }
    if not cells:
        return None
    isls = sorted({k[0] for k in cells})
    osls = sorted({k[1] for k in cells})
    values = [
        [cells[(i, o)].change_pct if (i, o) in cells else math.nan for o in osls] for i in isls
    ]
    limit = max(1.0, max(abs(v) for row in values for v in row if not math.isnan(v)))
    fig = Figure(figsize=(1.6 + 1.0 * len(osls), 1.2 + 0.7 * len(isls)))
    ax = fig.add_subplot()
    image = ax.imshow(
        values,
        cmap=colormaps["RdYlGn"].with_extremes(bad="lightgrey"),
        norm=TwoSlopeNorm(0.0, -limit, limit),
        aspect="auto",
    )
    for y, isl in enumerate(isls):
        for x, osl in enumerate(osls):
            if (c := cells.get((isl, osl))) is not None:
                ax.text(
                    x, y, f"{c.change_pct:+.1f}%\n{c.verdict}", ha="center", va="center", fontsize=7
                )
    ax.set_xticks(range(len(osls)), [str(o) for o in osls])
    ax.set_yticks(range(len(isls)), [str(i) for i in isls])
    ax.set_xlabel("OSL")
    ax.set_ylabel("ISL")
    ax.set_title(f"{METRICS[metric][0]}: % change")
    fig.colorbar(image, ax=ax, label="% change")
    fig.tight_layout()
    return png(fig)


# ----------------------------------------------------------------------------- I/O edge


@dataclass(frozen=True)
class LoadedRun:
    paths: RunPaths
    records: list[PointResult]
    provenance: Provenance
    manifest_text: str | None


def load(name: str, role: str) -> LoadedRun:
    try:
        run = load_run_results(name)
    except KitError as exc:
        raise KitError(
            f"{role} run {name!r}: {exc.message}", path=exc.path, key=exc.key, fix=exc.fix
        ) from None
    manifest_text = run.manifest_text
    return LoadedRun(
        paths=run.paths,
        records=run.records(),
        provenance=provenance_of(
            read_json(run.paths.artifacts), manifest_text, run.provenance().record
        ),
        manifest_text=manifest_text,
    )


def latency_percentiles(run: LoadedRun) -> dict[PointKey, dict[str, float]]:
    """Per point, the mean over valid repeats of trtllm-bench's request latency percentiles,
    read from the raw report JSON where the producer wrote one."""
    found: dict[PointKey, list[dict[str, float]]] = {}
    for r in run.records:
        if r.status != "ok":
            continue
        for raw in r.raw_files:
            if not raw.endswith(".json"):
                continue
            path = run.paths.root / raw
            data = read_json(path) if path.is_file() else {}
            if not isinstance(data, dict):  # --request_json is a list of requests
                continue
            pct = data.get("performance", {}).get("request_latency_percentiles_ms")
            if isinstance(pct, dict) and all(
                isinstance(pct.get(q), int | float) for q in PERCENTILES
            ):
                found.setdefault((r.isl, r.osl, r.concurrency), []).append(pct)
    return {
        p: {q: statistics.fmean(float(v[q]) for v in vs) for q in PERCENTILES}
        for p, vs in found.items()
    }


def settings_for(base: LoadedRun, threshold: float | None) -> Settings:
    """THRESHOLD= first, then the BASE run's manifest [compare] table, then the kit's defaults.
    The base's, not the new run's: a change must not be able to loosen its own gate."""
    stated = (
        load_manifest(base.paths.resolved_manifest).compare
        if base.manifest_text is not None
        else None
    )
    noise = dict(NOISE_PCT)
    if stated:
        noise.update(stated.noise_pct.items())
    gates = stated.band_only_gates if stated else True
    if threshold is not None:
        return Settings(threshold, "THRESHOLD=", noise, gates)
    if stated is not None and stated.threshold_pct is not None:
        return Settings(stated.threshold_pct, "the base run's manifest", noise, gates)
    return Settings(THRESHOLD_PCT, "the kit's default", noise, gates)


def parse_threshold(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise KitError(
            f"THRESHOLD={text!r} is not a positive percentage",
            fix="pass THRESHOLD=<percent>, e.g. THRESHOLD=5, or leave it out for the manifest's",
        )
    return value


def compare(base_name: str, new_name: str, threshold: float | None, summary: Path | None) -> int:
    from bench.core.artifacts import Artifacts

    for var, name in (("BASE", base_name), ("RUN", new_name)):
        if not RUN_NAME.fullmatch(name):
            raise KitError(
                f"{var}={name!r} is not a run name (letters, digits, '.', '_', '-')",
                fix="make compare BASE=<a folder under results/> RUN=<run>",
            )
    if base_name == new_name:
        raise KitError(f"BASE and RUN are both {base_name!r}", fix="compare two different runs")
    base, new = load(base_name, "base"), load(new_name, "run")
    settings = settings_for(base, threshold)
    result = compare_records(base.records, new.records, settings.noise_pct)
    base_pct, new_pct = latency_percentiles(base), latency_percentiles(new)
    percentiles = {p: (base_pct[p], new_pct[p]) for p in set(base_pct) & set(new_pct)}
    reports = new.paths.reports
    outputs = []
    heatmap_rel = f"figures/compare-{base_name}-heatmap.png"
    heatmap = heatmap_png(result)
    if heatmap is not None:
        atomic_write_bytes(reports / heatmap_rel, heatmap)
        outputs.append(reports / heatmap_rel)
    text = render(
        base_name,
        new_name,
        identity(base.records, base.provenance),
        identity(new.records, new.provenance),
        manifest_diff(base.manifest_text, new.manifest_text),
        result,
        settings,
        percentiles,
        heatmap_rel if heatmap is not None else None,
    )
    report = reports / f"compare-{base_name}.md"
    atomic_write_text(report, text)
    outputs.append(report)
    arts = Artifacts(new.paths)
    arts.record(
        f"compare-{base_name}",
        {"base:artifacts.json": sha256_bytes(base.paths.artifacts.read_bytes())},
        outputs,
        {"base": base_name, "threshold_pct": settings.threshold_pct},
        stamp=False,
    )
    if summary is not None:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(
                f"## Compare: {new_name} against {base_name}\n\n" + summary_table(result, settings)
            )
    problems = result.gate_problems(settings)
    print(
        f"[compare] {len(result.comparisons)} comparisons, "
        f"{sum(c.verdict == SLOWER for c in result.comparisons)} SLOWER, "
        f"{len(result.gate_failures(settings))} worse beyond {settings.threshold_pct:g}% "
        f"-> {report}",
        file=sys.stderr,
    )
    for problem in problems:
        print(f"[compare] FAILED BASE={base_name} RUN={new_name}: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--base", required=True, help="the run to compare against")
    parser.add_argument("--run", required=True, help="the new run")
    parser.add_argument("--threshold", help="gate: % worse that fails (default: the manifest's)")
    parser.add_argument("--summary", type=Path, help="append a compact table here (CI job summary)")
    args = parser.parse_args(argv)

    def stage() -> int:
        return compare(args.base, args.run, parse_threshold(args.threshold), args.summary)

    return run_main(locked(args.run, "compare", stage, create=False), "bench.stages.compare")


if __name__ == "__main__":
    raise SystemExit(main())

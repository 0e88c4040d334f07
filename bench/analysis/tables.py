"""The report's numbers as pure functions over normalized records (bench.schema.record.PointResult).

Reads and writes nothing. bench.stages.report prints these rows, statistics and statements;
bench.stages.verify
and bench.stages.audit compute with the same functions, so a table can never disagree with a check.
where() names a point as report and verify print it (numbers and tables: bench.analysis.markdown).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench import backends
from bench.analysis.markdown import num
from bench.core.manifest import Manifest
from bench.gpu import gpus
from bench.gpu.gpus import GpuSpec, ModelShape
from bench.schema.provenance import Provenance
from bench.schema.record import PointResult

TOP_N = 10
NEAR_BEST = 0.90  # recommendations: points within 10% of the best
CONFIDENCE = 0.95  # two-sided, for the mean over repeats (Student t)
IDENTITY_FIELDS = (
    "model",
    "backend",
    "engine_version",
    "tp_size",
    "pp_size",
    "quantization",
    "kv_cache_dtype",
    "dtype",
    "max_seq_len",
    "max_batch_size",
    "max_num_tokens",
)


@dataclass(frozen=True)
class PointRow:
    """One ISL/OSL(/concurrency) point of the run: the mean over its valid repeats."""

    isl: int
    osl: int
    concurrency: int | None
    requests: int
    n: int  # valid repeats averaged
    output_tok_s: float
    req_s: float | None
    total_tok_s: float | None
    total_derived: bool  # total tok/s = req/s x (avg ISL + avg OSL), not reported by the tool
    total_tokens: float
    output_tok_s_per_gpu: float | None
    suspect: bool
    evidence: str = "raw"  # or the summary file it comes from: bench.analysis.secondary
    kv_fallback: str = ""  # e.g. "0.95 -> 0.9": measured only after the KV fraction fell back


KV_FLAG = "†"  # marks a number measured after the KV fraction fell back (see kv_fallback)


def kv_fallback(r: PointResult) -> str:
    """ "0.95 -> 0.9" when the record's KV fraction is not the one its first try used, else ""."""
    first = r.attempts[0].get("kv_cache_fraction") if r.attempts else None
    final = r.identity.kv_cache_fraction
    if first is None or final is None or abs(first - final) < 1e-9:
        return ""
    return f"{first:g} -> {final:g}"


def shown_rate(r: PointRow) -> str:
    """A row's output tok/s as every table prints it: flagged when suspect or fallen back."""
    return (
        num(r.output_tok_s)
        + (" (suspect)" if r.suspect else "")
        + (f" {KV_FLAG}" if r.kv_fallback else "")
    )


def kv_fallback_note(rows: Sequence[PointRow]) -> str:
    """The footnote for KV_FLAG: which points, from which fraction to which; "" when none."""
    fell = [r for r in rows if r.kv_fallback]
    if not fell:
        return ""
    return (
        f"{KV_FLAG} Measured only after the KV cache fraction fell back (out of memory at the "
        f"first): {'; '.join(f'{where(r)}: {r.kv_fallback}' for r in fell)} "
        f"({len(fell)} of {len(rows)} valid points).\n\n"
    )


@dataclass(frozen=True)
class RepeatStats:
    isl: int
    osl: int
    concurrency: int | None
    n: int
    mean: float
    ci95: float  # half-width
    cv: float


# ----------------------------------------------------------------------------- formatting


def where(r: PointRow) -> str:
    text = f"ISL {r.isl} / OSL {r.osl}"
    return text + (f" / concurrency {r.concurrency}" if r.concurrency is not None else "")


# ----------------------------------------------------------------------------- tables


def run_gpus(records: Sequence[PointResult]) -> int | None:
    """GPUs used, as recorded: TP x PP of the records (None when no record says)."""
    for r in records:
        if r.identity.tp_size is not None:
            return r.identity.tp_size * (r.identity.pp_size or 1)
    return None


def is_suspect(r: PointResult) -> bool:
    return bool((r.telemetry or {}).get("suspect"))


# The aggregation is pandas (group, mean, first, any, max); the means are statistics.fmean (an
# exactly rounded sum) as before pandas, so the reports of existing runs stay byte-identical.
POINT_KEY = ["isl", "osl", "concurrency"]
MEASURED = ["output_tok_s", "req_s", "total_tok_s", "avg_input_len", "avg_output_len"]


def valid_frame(records: Sequence[PointResult]) -> pd.DataFrame:
    """One row per valid record (status ok, output tok/s known), in the records' order."""
    columns = [*POINT_KEY, "requests", *MEASURED, "suspect", "kv_fallback"]
    return pd.DataFrame(
        [
            (
                r.isl,
                r.osl,
                r.concurrency,
                r.requests,
                *(getattr(r.metrics, name) for name in MEASURED),
                is_suspect(r),
                kv_fallback(r),
            )
            for r in records
            if r.status == "ok" and r.metrics.output_tok_s is not None
        ],
        columns=columns,
    ).astype({"concurrency": "float64", **{name: "float64" for name in MEASURED}})


def _point_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by ISL, OSL, then concurrency (all at once, None, first)."""
    order = frame["concurrency"].fillna(0)
    return frame.assign(_order=order).sort_values(["isl", "osl", "_order"], kind="stable")


def _known(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def point_rows(records: Sequence[PointResult]) -> list[PointRow]:
    """Valid (status ok) results grouped by point, averaged over repeats; sorted by ISL, OSL.
    A mean is None unless every repeat reported the value."""
    valid = valid_frame(records)
    if valid.empty:
        return []
    groups = valid.groupby(POINT_KEY, dropna=False, sort=False)
    means = groups[MEASURED].agg(statistics.fmean)  # NaN when a repeat lacks the value
    points = means.assign(
        n=groups.size(),
        requests=groups["requests"].first(),
        suspect=groups["suspect"].any(),
        kv_fallback=groups["kv_fallback"].agg(lambda f: ", ".join(sorted(set(f) - {""}))),
    )
    n_gpus = run_gpus(records)
    return [_point_row(p, n_gpus) for p in _point_order(points.reset_index()).itertuples()]


def _point_row(p: Any, n_gpus: int | None) -> PointRow:
    """A PointRow from one aggregated point: total tok/s derived where the tool gave none."""
    isl, osl, requests = int(p.isl), int(p.osl), int(p.requests)
    req_s, total = _known(p.req_s), _known(p.total_tok_s)
    avg_in, avg_out = _known(p.avg_input_len), _known(p.avg_output_len)
    derived = False
    if total is None and req_s is not None and avg_in is not None and avg_out is not None:
        total, derived = req_s * (avg_in + avg_out), True
    tokens_each = (avg_in + avg_out) if avg_in is not None and avg_out is not None else isl + osl
    out = float(p.output_tok_s)
    return PointRow(
        isl=isl,
        osl=osl,
        concurrency=None if pd.isna(p.concurrency) else int(p.concurrency),
        requests=requests,
        n=int(p.n),
        output_tok_s=out,
        req_s=req_s,
        total_tok_s=total,
        total_derived=derived,
        total_tokens=requests * tokens_each,
        output_tok_s_per_gpu=out / n_gpus if n_gpus else None,
        suspect=bool(p.suspect),
        kv_fallback=p.kv_fallback,
    )


def _rank_key(r: PointRow) -> tuple[float, int, int, int]:
    return (-r.output_tok_s, r.isl, r.osl, r.concurrency or 0)


def top_rows(rows: Sequence[PointRow], n: int = TOP_N) -> list[PointRow]:
    return sorted(rows, key=_rank_key)[:n]


def fastest(rows: Sequence[PointRow]) -> PointRow | None:
    """The row with the highest req/s (ties: the lowest ISL, then the lowest OSL); None if none."""
    return max(
        (r for r in rows if r.req_s is not None),
        key=lambda r: (r.req_s or 0, -r.isl, -r.osl),
        default=None,
    )


def best_per(rows: Sequence[PointRow], axis: str) -> list[PointRow]:
    """The highest-output row for each ISL (axis 'isl') or OSL (axis 'osl'), ascending by it."""
    ranked = sorted(rows, key=_rank_key)
    firsts = pd.Series([getattr(r, axis) for r in ranked], dtype="int64").drop_duplicates()
    return [ranked[i] for i in firsts.sort_values(kind="stable").index]


def grid(
    rows: Sequence[PointRow], records: Sequence[PointResult]
) -> tuple[list[int], list[int], dict[tuple[int, int], float | str]]:
    """ISL x OSL -> best output tok/s over concurrency, or the failure of a point without one
    (the first failed record's kind, in the records' order)."""
    isls = sorted({r.isl for r in records})
    osls = sorted({r.osl for r in records})
    failed = pd.DataFrame(
        [(r.isl, r.osl, r.failure or r.status) for r in records if r.status != "ok"],
        columns=["isl", "osl", "why"],
    ).drop_duplicates(["isl", "osl"])
    cells: dict[tuple[int, int], float | str] = {
        (int(i), int(o)): str(why) for i, o, why in failed.itertuples(index=False)
    }
    if rows:
        best = pd.DataFrame(
            [(r.isl, r.osl, r.output_tok_s) for r in rows], columns=["isl", "osl", "output_tok_s"]
        ).pivot_table(index="isl", columns="osl", values="output_tok_s", aggfunc="max")
        cells |= {(int(i), int(o)): float(v) for (i, o), v in best.stack().dropna().items()}
    return isls, osls, cells


def t_quantile(df: int) -> float:
    """The two-sided CONFIDENCE Student t quantile, to the 3 decimals t tables print (the
    reports of existing runs used such a table: rounding keeps them byte-identical).
    scipy.stats loads here, not at import: it cost every command importing tables ~0.6 s."""
    import scipy.stats

    return round(float(scipy.stats.t.ppf((1 + CONFIDENCE) / 2, df)), 3)


def repeat_stats(records: Sequence[PointResult]) -> list[RepeatStats]:
    """Mean, 95% CI (Student t) and CV of output tok/s for points with two or more valid repeats."""
    valid = valid_frame(records)
    if valid.empty:
        return []
    spread = (
        valid.groupby(POINT_KEY, dropna=False, sort=False)["output_tok_s"]
        .agg(n="size", mean=statistics.fmean, sd=lambda v: statistics.stdev(v) if len(v) > 1 else 0)
        .reset_index()
    )
    out = []
    for p in _point_order(spread[spread["n"] >= 2]).itertuples():
        n, mean, sd = int(p.n), float(p.mean), float(p.sd)
        out.append(
            RepeatStats(
                int(p.isl),
                int(p.osl),
                None if pd.isna(p.concurrency) else int(p.concurrency),
                n,
                mean,
                t_quantile(n - 1) * sd / math.sqrt(n),
                sd / mean if mean else 0.0,
            )
        )
    return out


# Identity fields every record of one run must share; report and verify both judge by this.
MUST_AGREE = ("model", "backend", "tp_size", "pp_size", "engine_version")


def distinct_identity(records: Sequence[PointResult]) -> dict[str, list[Any]]:
    """Each identity field -> the distinct values the records state (unknown left out)."""
    return {
        f: sorted({getattr(r.identity, f) for r in records} - {None}, key=str)
        for f in IDENTITY_FIELDS
    }


def identity_problems(records: Sequence[PointResult], manifest: Manifest | None) -> list[str]:
    """Where the records disagree with each other or with what the manifest declares."""
    seen = distinct_identity(records)
    problems = [
        f"records disagree on {f}: {', '.join(map(str, v))}"
        for f, v in seen.items()
        if len(v) > 1 and f in MUST_AGREE
    ]
    if manifest is not None:
        declared = {
            "model": manifest.model.repo,
            "backend": manifest.engine.backend,
            "tp_size": manifest.engine.tp_size,
            "pp_size": manifest.engine.pp_size,
        }
        for f, want in declared.items():
            wrong = [v for v in seen[f] if v != want]
            if wrong:
                problems.append(
                    f"{f}: results record {', '.join(map(str, wrong))}, "
                    f"the manifest declares {want}"
                )
    return problems


def gpu_spec(
    provenance: Provenance | None, manifest: Manifest | None
) -> tuple[GpuSpec | None, str]:
    """The GPU's datasheet row and where its identity came from (provenance, then manifest)."""
    for g in provenance.used_gpus() if provenance else []:
        key = gpus.gpu_key(g.name, g.form_factor)
        if key:
            return gpus.GPUS[key], f"provenance.json: {g.name}"
        return None, f"provenance.json names {g.name!r}, which has no datasheet row"
    if manifest is not None:
        key = gpus.gpu_key(manifest.hardware.gpu)
        if key:
            return gpus.GPUS[key], f"manifest hardware.gpu = {manifest.hardware.gpu!r}"
        return None, f"manifest hardware.gpu = {manifest.hardware.gpu!r} has no datasheet row"
    return None, "the GPU model is not recorded (no provenance.json, no manifest)"


def ceilings_do_not_apply(records: Sequence[PointResult], manifest: Manifest | None) -> bool:
    """Measured (or declared) by a backend whose numbers no GPU datasheet describes, such as the
    hf-transformers runner (bench.backends: `gpu_ceilings_apply`)."""
    named = [r.identity.backend for r in records]
    if manifest is not None:
        named.append(manifest.engine.backend)
    return any(b is not None and not b.gpu_ceilings_apply for b in map(backends.find, named))


def efficiency_rows(
    rows: Sequence[PointRow],
    records: Sequence[PointResult],
    shape: ModelShape | None,
    spec: GpuSpec,
) -> list[tuple[PointRow, gpus.Efficiency]]:
    """Each valid point's share of the compute and bandwidth ceilings (bench.gpu.gpus)."""
    out: list[tuple[PointRow, gpus.Efficiency]] = []
    if shape is None:
        return out
    n_gpus = run_gpus(records) or 1
    for row in rows:
        if row.req_s is None:
            continue
        same = [
            r
            for r in records
            if (r.isl, r.osl, r.concurrency) == (row.isl, row.osl, row.concurrency)
            and r.status == "ok"
        ]
        eff = gpus.record_efficiency(
            shape, spec, n_gpus, same[0], req_s=row.req_s, output_tok_s=row.output_tok_s
        )
        out.append((row, eff))
    return out


def _span(values: Iterable[int]) -> str:
    v = sorted(set(values))
    return str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"


def recommendations(rows: Sequence[PointRow], records: Sequence[PointResult]) -> list[str]:
    """Statements derived from this run's numbers only."""
    if not rows:
        return ["No valid point: nothing to recommend; see Failures."]
    out = []
    best = top_rows(rows, 1)[0]
    near = [r for r in rows if r is not best and r.output_tok_s >= NEAR_BEST * best.output_tok_s]
    out.append(
        f"Highest output throughput: {where(best)} at {shown_rate(best)} tok/s; "
        f"{len(near)} of the other {len(rows) - 1} valid point(s) within {1 - NEAR_BEST:.0%} "
        "of it"
        + (
            f", spanning ISL {_span(r.isl for r in near)} and OSL {_span(r.osl for r in near)}."
            if near
            else "."
        )
    )
    fast = fastest(rows)
    if fast is not None:
        rated = [r for r in rows if r.req_s is not None and r is not fast]
        near_rate = [r for r in rated if (r.req_s or 0) >= NEAR_BEST * (fast.req_s or 0)]
        out.append(
            f"Highest request rate: {where(fast)} at {num(fast.req_s)} req/s "
            f"({shown_rate(fast)} output tok/s); {len(near_rate)} of the other {len(rated)} "
            f"point(s) with a request rate within {1 - NEAR_BEST:.0%}"
            + (f": {', '.join(where(r) for r in near_rate)}." if near_rate else ".")
        )
    worst = min(rows, key=lambda r: (r.output_tok_s, r.isl, r.osl))
    out.append(
        f"Lowest output throughput: {where(worst)} at {num(worst.output_tok_s)} tok/s "
        f"({worst.output_tok_s / best.output_tok_s:.1%} of the best)."
    )
    failed = [r for r in records if r.status == "failed"]
    if failed:
        longest_ok = max(rows, key=lambda r: (r.isl + r.osl, r.isl))
        listed = ", ".join(f"ISL {r.isl} / OSL {r.osl}: {r.failure}" for r in failed)
        out.append(
            f"{len(failed)} point(s) failed ({listed}); "
            f"the longest sequence that succeeded is ISL + OSL = {longest_ok.isl + longest_ok.osl} "
            f"({where(longest_ok)}). Rerun failed points after checking their logs below."
        )
    redo = [r for r in records if r.status == "invalid"] + [
        r for r in records if r.status == "ok" and is_suspect(r)
    ]
    if redo:
        out.append(
            "Do not use until rerun: "
            + ", ".join(
                f"ISL {r.isl} / OSL {r.osl}" + (f" (repeat {r.repeat})" if r.repeat else "")
                for r in redo
            )
            + "."
        )
    return out

"""The report's markdown, one pure function per section, joined by render() in reading order.

Reads nothing and writes nothing: bench.stages.report loads a run's records and context, calls
render(),
and writes the result. The numbers come from bench.analysis.tables, so report, verify and audit
share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench import backends
from bench.analysis import figures, secondary, serving_report
from bench.analysis.markdown import md_table, num
from bench.analysis.secondary import SecondaryFile
from bench.analysis.tables import (
    KV_FLAG,
    TOP_N,
    PointRow,
    best_per,
    ceilings_do_not_apply,
    distinct_identity,
    efficiency_rows,
    fastest,
    gpu_spec,
    grid,
    identity_problems,
    is_suspect,
    kv_fallback,
    kv_fallback_note,
    point_rows,
    recommendations,
    repeat_stats,
    run_gpus,
    shown_rate,
    top_rows,
    where,
)
from bench.core.manifest import Manifest, Slo
from bench.gpu import gpus
from bench.gpu.gpus import ModelShape
from bench.schema import record
from bench.schema.provenance import Container, Gpu, KitGit, Provenance, Software
from bench.schema.record import PointResult

CV_FLAG = 0.05  # repeats: coefficient of variation above 5% is flagged
NOT_RECORDED = "not recorded"
METRIC_DEFINITIONS = (
    "## Metric definitions\n\n"
    "- **Output tok/s**: generated tokens of all requests / wall time of the whole "
    "benchmark, for the whole system (all GPUs of the run), as the tool measured it. "
    "trtllm-bench 0.16 prints it as `Token Throughput`; later as "
    "`Total Output Throughput`.\n"
    "- **Total tok/s**: input + output tokens / wall time. Marked `*` where the tool did "
    "not report it and it is derived as req/s x (average ISL + average OSL).\n"
    "- **Per GPU**: output tok/s / (TP x PP) as recorded in the results.\n"
    "- **req/s**: completed requests / wall time. **Total tokens**: requests x (average "
    "ISL + average OSL).\n"
    "- A point is valid when the tool finished, reported numbers, and the average "
    "lengths are within 1% of the target. With repeats, tables show the mean of the "
    "valid repeats.\n\n"
)


@dataclass(frozen=True)
class Context:
    """What the report knows about a run besides its records; absent pieces are None."""

    run: str
    manifest: Manifest | None
    import_summary: dict[str, Any] | None
    provenance: Provenance | None
    provenance_source: str  # "provenance.json", a merged run's first shard's, or "none recorded"
    shard_gpus: tuple[str, ...]  # a merged run: the GPUs each shard ran on
    shape: ModelShape | None
    shape_source: str
    results_digest: str
    recorded_at: str | None
    secondary: tuple[
        SecondaryFile, ...
    ] = ()  # an imported run's summary files (bench.analysis.secondary)
    accuracy: dict[str, Any] | None = (
        None  # results/<run>/accuracy/accuracy.json (bench.stages.accuracy)
    )


def _values(seen: dict[str, list[Any]], field: str) -> str:
    v = seen.get(field) or []
    return ", ".join(map(str, v)) if v else NOT_RECORDED


def _spread(values: Iterable[float | int | None], unit: str) -> str:
    known = sorted({v for v in values if v is not None})
    if not known:
        return NOT_RECORDED
    return (
        f"{num(known[0])} {unit}"
        if len(known) == 1
        else f"{num(known[0])}-{num(known[-1])} {unit} (varies by point)"
    )


def _kv_fractions(records: Sequence[PointResult]) -> str:
    """Each KV fraction with the points that ran at it (and from what it fell back)."""
    by_fraction: dict[float, list[str]] = {}
    for r in records:
        if r.identity.kv_cache_fraction is not None:
            fell = kv_fallback(r)
            label = f"ISL {r.isl} / OSL {r.osl}" + (f" (fell back {fell})" if fell else "")
            by_fraction.setdefault(r.identity.kv_cache_fraction, []).append(label)
    if not by_fraction:
        return NOT_RECORDED
    if len(by_fraction) == 1:
        ((fraction, points),) = by_fraction.items()
        return f"{fraction:g} of free memory, all {len(points)} valid points"
    return "; ".join(
        f"{fraction:g} of free memory: "
        + (
            ", ".join(points)
            if len(points) <= 5
            else ", ".join([f"{len(points)} points", *(x for x in points if "fell back" in x)])
        )
        + f" ({len(points)} of {len(records)})"
        for fraction, points in sorted(by_fraction.items(), reverse=True)
    )


def first_gpu(ctx: Context) -> Gpu:
    """The first GPU CUDA saw (provenance, CUDA_VISIBLE_DEVICES applied), all None when not
    captured: the report names the run's GPU by it, never by what the manifest declares."""
    used = ctx.provenance.used_gpus() if ctx.provenance else []
    return used[0] if used else Gpu()


def section_identity_warning(problems: Sequence[str]) -> str:
    """First, so nobody reads numbers from results that are not what the run declares."""
    if not problems:
        return ""
    return (
        "> **WARNING: identity mismatch.** These results are not what the run declares; "
        "`make verify` fails until this is resolved:\n>\n"
        + "".join(f"> - {p}\n" for p in problems)
        + "\n"
    )


def section_import_note(ctx: Context) -> str:
    """An imported run has no manifest: say that its identity comes from the logs alone."""
    if ctx.manifest is not None:
        return ""
    return (
        "> No manifest: this run was imported"
        + (f" from `{ctx.import_summary.get('source')}`" if ctx.import_summary else "")
        + ". Identity below is what the logs themselves state.\n\n"
    )


def chunked_context_note(manifest: Manifest | None) -> str:
    """The backend's note on its runtime settings (TensorRT-LLM: chunked context, whose default
    changed and which decides the prompts the TensorRT runtime accepts)."""
    return "" if manifest is None else backends.get(manifest.engine.backend).runtime_note(manifest)


def repeats_note(records: Sequence[PointResult]) -> str:
    """How many times each point ran, when more than once: the tables show means."""
    repeats = 1 + max((r.repeat for r in records), default=0)
    if repeats < 2:
        return ""
    points = len({(r.isl, r.osl, r.concurrency) for r in records})
    return (
        f" ({points} points x {repeats} repeats: each throughput is the mean of its valid "
        "repeats; 95% CI under Repeats)"
    )


def section_executive_summary(
    records: Sequence[PointResult], rows: Sequence[PointRow], ctx: Context, no_ceilings: bool
) -> str:
    """What ran (model, precision, engine, GPUs) and its headline numbers, in one table."""
    seen = distinct_identity(records)
    n_gpus = run_gpus(records)
    best = top_rows(rows, 1)[0] if rows else None
    fast = fastest(rows)
    ok = sum(r.status == "ok" for r in records)
    failed_kinds = sorted({r.failure or r.status for r in records if r.status != "ok"})
    gpu_name = first_gpu(ctx).name or (
        f"{ctx.manifest.hardware.gpu}, declared by the manifest (no provenance recorded)"
        if ctx.manifest
        else None
    )
    if no_ceilings:
        on_cuda = ctx.manifest is not None and ctx.manifest.runtime.device == "cuda"
        gpu = (
            f"{gpu_name or NOT_RECORDED} (the {_values(seen, 'backend')} runner on CUDA)"
            if on_cuda
            else f"none: the {_values(seen, 'backend')} runner ran on the CPU"
        )
    else:
        gpu = f"{gpu_name or NOT_RECORDED} x {n_gpus if n_gpus else NOT_RECORDED}" + (
            "" if n_gpus is None else " (TP x PP as recorded)"
        )
    if best:
        peak = f"{num(best.output_tok_s)} tok/s at {where(best)}, {num(best.requests)} requests" + (
            f" ({num(best.output_tok_s_per_gpu)} per GPU)"
            if best.output_tok_s_per_gpu is not None and not no_ceilings
            else ""
        )
    else:
        peak = "no valid point"
    table = [
        (
            "Model",
            _values(seen, "model")
            + (
                f" (manifest: {ctx.manifest.model.repo} @ {ctx.manifest.model.revision})"
                if ctx.manifest
                else ""
            ),
        ),
        (
            "Precision",
            f"weights {_values(seen, 'quantization')}, KV cache "
            f"{_values(seen, 'kv_cache_dtype')}, compute dtype {_values(seen, 'dtype')}",
        ),
        (
            "Engine",
            f"backend {_values(seen, 'backend')}, version {_values(seen, 'engine_version')}"
            + chunked_context_note(ctx.manifest),
        ),
        ("GPU", gpu),
        ("TP / PP", f"{_values(seen, 'tp_size')} / {_values(seen, 'pp_size')}"),
        ("Peak output throughput", peak),
        ("Peak request rate", f"{num(fast.req_s)} req/s at {where(fast)}" if fast else "-"),
        *serving_report.summary_row(records, slo_of(ctx), None if no_ceilings else n_gpus),
        (
            "Points",
            f"{ok}/{len(records)} valid"
            + (f"; not valid: {', '.join(failed_kinds)}" if failed_kinds else "")
            + _summary_only_count(records, ctx)
            + repeats_note(records),
        ),
        ("Results recorded", ctx.recorded_at or NOT_RECORDED),
        *_import_dating(ctx),
        ("Accuracy gate", accuracy_verdict(ctx)),
    ]
    return "## Executive summary\n\n" + md_table(["", ""], table, [False, False]) + "\n"


def _summary_only_count(records: Sequence[PointResult], ctx: Context) -> str:
    """ "; 16 more points in summary files only (no raw log)", or "" when there are none."""
    raw = {(r.isl, r.osl) for r in records}
    more = {(r.isl, r.osl) for f in ctx.secondary for r in f.rows} - raw
    if not more:
        return ""
    names = ", ".join(f.name for f in ctx.secondary)
    return f"; {len(more)} more points in summary files only, no raw log ({names})"


def _import_dating(ctx: Context) -> list[tuple[str, str]]:
    """An imported run: when its logs say it was measured, and which kit commit imported it."""
    summary = ctx.import_summary or {}
    measured, kit = summary.get("measured"), summary.get("imported_by_kit") or {}
    if not measured:
        return []
    logs = (
        f"{measured['console_logs_first']} to {measured['console_logs_last']} (console log "
        f"timestamps, time zone {measured.get('time_zone', 'not stated')})"
        if measured.get("console_logs_first")
        else "no timestamps in the console logs"
    )
    if measured.get("summary_start_time"):
        logs += f"; summary log start: {measured['summary_start_time']}"
    commit = kit.get("commit") or NOT_RECORDED
    return [
        ("Measured (by the logs)", logs),
        ("Imported by kit commit", commit + (" (dirty)" if kit.get("dirty") else "")),
    ]


def slo_of(ctx: Context) -> Slo | None:
    """The manifest's [slo] (issue 12), None without one or without a manifest."""
    return ctx.manifest.slo if ctx.manifest is not None else None


def serving_gpus(records: Sequence[PointResult], no_ceilings: bool) -> int | None:
    """The GPU count serving figures divide by: None where GPU ceilings do not apply (a CPU run)."""
    return None if no_ceilings else run_gpus(records)


def section_top_points(rows: Sequence[PointRow]) -> str:
    """The TOP_N points by output tok/s, with every rate the run measured or derived for them."""
    headers = [
        "Rank",
        "ISL",
        "OSL",
        "Requests",
        "Output tok/s",
        "Total tok/s",
        "req/s",
        "Total tokens",
        "Output tok/s per GPU",
    ]
    table = [
        [
            i,
            r.isl,
            r.osl,
            num(r.requests),
            shown_rate(r),
            num(r.total_tok_s) + ("*" if r.total_derived else ""),
            num(r.req_s),
            num(round(r.total_tokens)),
            num(r.output_tok_s_per_gpu),
        ]
        for i, r in enumerate(top_rows(rows), 1)
    ]
    body = (
        md_table(headers, table, [True] * len(headers)) + "\n" if table else "No valid point.\n\n"
    )
    shown = top_rows(rows)
    return (
        f"## Top {TOP_N} points by output tok/s\n\n"
        + (f"{len(shown)} of {len(rows)} valid points.\n\n" if rows else "")
        + body
        + kv_fallback_note(shown)
    )


def section_best_per(rows: Sequence[PointRow], axis: str) -> str:
    """For each ISL (axis 'isl') or OSL (axis 'osl'), the other length that serves it best."""
    other = "osl" if axis == "isl" else "isl"
    table = [
        [
            getattr(r, axis),
            shown_rate(r),
            f"{other.upper()} {getattr(r, other)}",
            num(r.requests),
            num(r.req_s),
        ]
        for r in best_per(rows, axis)
    ]
    return (
        f"## Best per {axis.upper()}\n\n"
        + md_table(
            [axis.upper(), "Best output tok/s", "At", "Requests", "req/s"],
            table,
            [True, True, False, True, True],
        )
        + "\n"
        + kv_fallback_note(best_per(rows, axis))
    )


def run_identity(records: Sequence[PointResult], ctx: Context) -> str:
    """One line naming what a figure shows: model, TP x PP = GPUs, backend release, GPU, run."""
    seen = distinct_identity(records)
    n_gpus = run_gpus(records)
    if ctx.manifest is not None and ctx.manifest.runtime.device == "cpu":
        gpu = "no GPU: ran on the CPU"
    else:
        gpu = first_gpu(ctx).name or (
            f"{ctx.manifest.hardware.gpu} (declared)" if ctx.manifest else "GPU not recorded"
        )
    return (
        f"{_values(seen, 'model')}; TP {_values(seen, 'tp_size')} x PP {_values(seen, 'pp_size')}"
        f" = {n_gpus if n_gpus else '?'} GPU(s); {_values(seen, 'backend')} "
        f"{_values(seen, 'engine_version')}; {gpu}; run {ctx.run}"
    )


def serving_identity(records: Sequence[PointResult], ctx: Context) -> str:
    """run_identity and the manifest's pinned release (manifests/pins.toml), for the serving
    figures: a Pareto plot copied out of the report still names model, GPU, backend, release."""
    release = f"; pinned release {ctx.manifest.release}" if ctx.manifest is not None else ""
    return run_identity(records, ctx) + release


def figure_grid(
    records: Sequence[PointResult], ctx: Context
) -> tuple[list[int], list[int], dict[tuple[int, int], float | str], str]:
    """The whole grid the run set out to measure (the manifest's points, else every point the
    records and summary files name), each cell a number or why it has none; and the identity."""
    isls, osls, cells = grid(point_rows(records), records)
    planned = {(p.isl, p.osl) for p in ctx.manifest.sweep.points} if ctx.manifest else set()
    summarized = {(r.isl, r.osl): r for f in ctx.secondary for r in f.rows}
    for isl, osl in planned | set(summarized):
        if (isl, osl) not in cells:
            row = summarized.get((isl, osl))
            cells[isl, osl] = (
                "not run"
                if row is None
                else ("summary only" if row.output_tok_s is not None else "failed (summary)")
            )
    isls = sorted({k[0] for k in cells} | set(isls))
    osls = sorted({k[1] for k in cells} | set(osls))
    for key in [(i, o) for i in isls for o in osls if (i, o) not in cells]:
        cells[key] = figures.NOT_PLANNED if planned or summarized else "not run"
    return isls, osls, cells, run_identity(records, ctx)


def section_grid(rows: Sequence[PointRow], records: Sequence[PointResult], ctx: Context) -> str:
    """The whole sweep at a glance, failures and missing points in place, then its figures."""
    isls, osls, cells, _ = figure_grid(records, ctx)
    fell_back = {(r.isl, r.osl) for r in rows if r.kv_fallback}
    summarized = {
        (r.isl, r.osl): r.output_tok_s
        for f in sorted(ctx.secondary, key=lambda f: -secondary.PREFERENCE.index(f.name))
        for r in f.rows
    }  # the preferred file's number last, so it wins
    table = []
    for isl in isls:
        row = []
        for osl in osls:
            c = cells.get((isl, osl))
            row.append("" if c is None else (num(c) if isinstance(c, float) else f"**{c}**"))
            if c == "summary only":
                row[-1] += f": {num(summarized.get((isl, osl)))}"
            if (isl, osl) in fell_back:
                row[-1] += f" {KV_FLAG}"
        table.append([f"**{isl}**", *row])
    heatmap, vs_osl = figures.FIGURES
    counted = sum(isinstance(c, float) for c in cells.values())
    return (
        "## Output tok/s over ISL x OSL\n\n"
        + f"{counted} of {len(cells)} cells have a number from a raw result.\n\n"
        + md_table(["ISL \\ OSL", *map(str, osls)], table, [False] + [True] * len(osls))
        + "\nBold: why a cell has no number (not run; the point's failure; summary only: a "
        "summary file states it but no raw log is here; not in grid: no point planned).\n\n"
        + kv_fallback_note([r for r in rows if r.kv_fallback])
        + f"![output tok/s heatmap]({heatmap})\n\n![output tok/s vs OSL]({vs_osl})\n\n"
    )


def section_efficiency(
    rows: Sequence[PointRow], records: Sequence[PointResult], ctx: Context, no_ceilings: bool
) -> str:
    """How far each point is from the GPU's compute and bandwidth ceilings, or why not computed."""
    spec, spec_source = gpu_spec(ctx.provenance, ctx.manifest)
    head = "## Efficiency vs the physical limit\n\n"
    if no_ceilings:
        named = _values(distinct_identity(records), "backend")
        return head + f"Not applicable ({named}): GPU ceilings do not describe this run.\n\n"
    if spec is None:
        return (
            head + f"Not computed: {spec_source}. Record it with provenance (`make env`) or the "
            "manifest's hardware.gpu.\n\n"
        )
    if ctx.shape is None:
        return head + f"Not computed: {ctx.shape_source}.\n\n"
    table = [
        [
            r.isl,
            r.osl,
            num(r.output_tok_s),
            f"{e.compute_pct:.1f}%",
            f"{e.bandwidth_pct:.1f}%",
            e.bound,
            num(e.batch),
        ]
        for r, e in efficiency_rows(rows, records, ctx.shape, spec)
    ]
    basis = (
        f"GPU: {spec.key} ({spec_source}); datasheet {spec.fp8_dense_tflops:g} TFLOP/s "
        f"FP8 dense, {spec.bf16_dense_tflops:g} BF16 dense, {spec.hbm_tb_s:g} TB/s HBM, "
        f"{spec.memory_gb:g} GB ({spec.source}); x {run_gpus(records) or 1} GPU(s). Model shape "
        f"from {ctx.shape_source}: {ctx.shape.all_params / 1e9:.2f} B parameters, "
        f"{ctx.shape.layers} layers.\n\n"
    )
    return (
        head
        + basis
        + gpus.CEILING_DEFINITIONS
        + "\n"
        + md_table(
            [
                "ISL",
                "OSL",
                "Output tok/s",
                "% of compute ceiling",
                "% of bandwidth ceiling",
                "Bound",
                "B (decode batch)",
            ],
            table,
            [True, True, True, True, True, False, True],
        )
        + "\n"
    )


def section_memory(records: Sequence[PointResult], ctx: Context, no_ceilings: bool) -> str:
    """Engine and KV cache sizes as the logs state them; the GPU's total, measured if captured."""
    ok_records = [r for r in records if r.status == "ok"]
    spec, _ = gpu_spec(ctx.provenance, ctx.manifest)
    mem_total = first_gpu(ctx).memory_total_mib
    if mem_total:
        total = f"{num(mem_total)} MiB (provenance.json)"
    elif spec and not no_ceilings:
        total = f"{spec.memory_gb:g} GB (datasheet; not measured)"
    else:
        total = NOT_RECORDED
    table = [
        (
            "Engine size (per rank, from the log)",
            _spread((r.memory.engine_size_mib for r in ok_records), "MiB"),
        ),
        ("KV cache allocated", _spread((r.memory.kv_cache_gib for r in ok_records), "GiB")),
        (
            "KV cache capacity",
            _spread((r.memory.kv_cache_max_tokens for r in ok_records), "tokens"),
        ),
        ("KV cache fraction", _kv_fractions(ok_records)),
        ("GPU memory total", total),
    ]
    return "## Memory\n\n" + md_table(["", ""], table, [False, False]) + "\n"


THROTTLE_REASONS = (
    "sw_power_cap",
    "sw_thermal_slowdown",
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
)


def section_telemetry(records: Sequence[PointResult]) -> str:
    """Per point: what NVML saw while it ran, and whether the point is suspect
    (bench.gpu.telemetry)."""
    out = ["## GPU telemetry during each point\n\n"]
    ordered = sorted(records, key=record.sort_key)
    sampled = [r for r in ordered if (r.telemetry or {}).get("available")]
    if not sampled:
        reasons = {str((r.telemetry or {}).get("reason") or "no sampler") for r in records}
        return out[0] + f"Not recorded: {'; '.join(sorted(reasons))}.\n\n"
    rows = []
    for r in sampled:
        t = r.telemetry or {}
        throttled = t.get("throttled_s") or {}
        slow = ", ".join(f"{k} {throttled[k]:g} s" for k in THROTTLE_REASONS if throttled.get(k))
        rows.append(
            [
                r.isl,
                r.osl,
                "all" if r.concurrency is None else r.concurrency,
                f"{t.get('samples')} over {len(t['gpus'])} GPUs"
                if t.get("gpus")
                else t.get("samples"),
                f"{num(t.get('power_w_mean'), 1)} / {num(t.get('power_w_max'), 1)}",
                num(t.get("sm_clock_mhz_mean"), 0),
                num(t.get("app_clock_mhz"), 0),
                num(t.get("below_application_clock_s"), 1),
                t.get("temperature_c_max"),
                window_cell(t),
                energy_cell(t),
                slow or "none",
                "**suspect**: " + "; ".join(t.get("reasons") or []) if t.get("suspect") else "ok",
            ]
        )
    out.append(
        md_table(
            [
                "ISL",
                "OSL",
                "Concurrency",
                "Samples",
                "Power mean / max W",
                "SM clock mean MHz",
                "App clock MHz",
                "Below app clock s",
                "Max temp C",
                "Window s (load s, W)",
                "Energy J (J / output token)",
                "Throttled",
                "Verdict",
            ],
            rows,
            [True, True, True, True, True, True, True, True, True, True, True, False, False],
        )
    )
    if any((r.telemetry or {}).get("window") for r in sampled):
        out.append(
            "\nMeans, maxima and verdicts cover only the samples inside the window the tool "
            "measured (first request sent to last response); the samples before it (model load, "
            "set-up, warm-up) are the load phase, shown apart. Energy is the GPU board power "
            "(NVML) integrated over that window by the trapezoid rule, over the output tokens "
            "of the point; a window with fewer than two samples gives none (window shorter "
            "than sampling).\n"
        )
    out.append(
        "\nSampled with NVML while each point ran. Power capping at the default limit is "
        "reported but not suspect (NVIDIA's published runs meet it too); thermal or hardware "
        "slowdowns, power capping under a lowered limit, and SM clocks below the application "
        "clock make a point suspect, and `make verify` fails on suspect points.\n\n"
    )
    if any("gpus" in (r.telemetry or {}) for r in sampled):
        out.append(
            "Points on several GPUs: every GPU of the point was sampled (telemetry.csv, "
            "telemetry.gpu<k>.csv); the numbers pool them (means and maxima per GPU, samples "
            "and throttled seconds summed over GPUs), and a point is suspect if any GPU is.\n\n"
        )
    return "".join(out)


def window_cell(t: dict) -> str:
    """The measured window's seconds, and the load phase's seconds and mean power."""
    window = t.get("window")
    if not window:
        return "whole process"
    load = t.get("load_phase") or {}
    return (
        f"{num(window.get('seconds'), 2)} ({num(load.get('seconds'), 1)} s, "
        f"{num(load.get('power_w_mean'), 0)} W)"
    )


def energy_cell(t: dict) -> str:
    if t.get("energy_j") is None:
        return "window shorter than sampling" if t.get("window") else "n/a"
    return f"{num(t['energy_j'], 1)} ({num(t.get('j_per_output_token'), 4)})"


def section_failures(records: Sequence[PointResult], log_tails: dict[str, list[str]]) -> str:
    """Every failed, invalid or suspect repeat with its reason and its log's last lines."""
    out = ["## Failures and invalid points\n\n"]
    bad = [r for r in sorted(records, key=record.sort_key) if r.status != "ok" or is_suspect(r)]
    if not bad:
        out.append("None: every point finished with valid numbers.\n\n")
    for r in bad:
        kind = r.failure or ("suspect" if is_suspect(r) else r.status)
        out.append(
            f"### ISL {r.isl} / OSL {r.osl}"
            + (f" / repeat {r.repeat}" if r.repeat else "")
            + f": {r.status}, {kind}\n\n{r.failure_detail or ''}\n\n"
        )
        if is_suspect(r):
            reasons = (r.telemetry or {}).get("reasons") or []
            out.append(
                "Telemetry marks it suspect: "
                + ("; ".join(map(str, reasons)) or "no reason given")
                + "\n\n"
            )
        for raw in r.raw_files:
            tail = log_tails.get(raw)
            if tail is not None:
                out.append(f"Last lines of `{raw}`:\n\n```\n" + "\n".join(tail) + "\n```\n\n")
    return "".join(out)


def section_repeats(records: Sequence[PointResult]) -> str:
    """How repeatable each repeated point is: 95% CI and CV, flagged above CV_FLAG."""
    stats = repeat_stats(records)
    if not stats:
        return "## Repeats\n\nNo point has two or more valid repeats: no confidence interval.\n\n"
    table = [
        [
            s.isl,
            s.osl,
            s.n,
            num(s.mean),
            f"± {num(s.ci95)}",
            f"{s.cv:.1%}",
            f"CV > {CV_FLAG:.0%}" if s.cv > CV_FLAG else "",
        ]
        for s in stats
    ]
    return (
        "## Repeats\n\n"
        + md_table(
            ["ISL", "OSL", "n", "Mean output tok/s", "95% CI (Student t)", "CV", "Flag"],
            table,
            [True, True, True, True, True, True, False],
        )
        + "\n"
    )


def section_recommendations(rows: Sequence[PointRow], records: Sequence[PointResult]) -> str:
    """What to run next or distrust, from recommendations(): this run's numbers only."""
    return (
        "## Recommendations (from this run's data)\n\n"
        + "".join(f"- {line}\n" for line in recommendations(rows, records))
        + "\n"
    )


def kit_commit(kit: KitGit, container: Container) -> str:
    """The checkout's commit, else the one the image was built from (the image has no .git)."""
    if kit.commit:
        return kit.commit + (" (dirty)" if kit.dirty else "")
    if container.kit_commit:
        return f"{container.kit_commit} (image build)"
    return NOT_RECORDED


def section_provenance(records: Sequence[PointResult], ctx: Context) -> str:
    """Image, software, GPU, weights and kit commit as captured, and the digest verify checks."""
    software = ctx.provenance.software if ctx.provenance else Software()
    container, packages, kit = software.container, software.packages, software.kit_git
    gpu = first_gpu(ctx)
    weights = (
        f"{ctx.manifest.model.repo} @ {ctx.manifest.model.revision}"
        if ctx.manifest
        else NOT_RECORDED
    )
    table = [
        ("Image", container.image or NOT_RECORDED),
        ("Image digest", container.digest or NOT_RECORDED),
        ("TensorRT-LLM (installed)", packages.get("tensorrt_llm") or NOT_RECORDED),
        # online runs: the load generator measured the points (provenance --aiperf)
        *(
            [("AIPerf (load generator)", packages["aiperf"] or NOT_RECORDED)]
            if "aiperf" in packages
            else []
        ),
        ("Engine version (results)", _values(distinct_identity(records), "engine_version")),
        (
            "GPU",
            f"{gpu.name} ({gpu.form_factor or 'form factor unknown'})"
            if gpu != Gpu()
            else NOT_RECORDED,
        ),
        ("Driver", gpu.driver_version or NOT_RECORDED),
        ("Provenance from", ctx.provenance_source),
        *([("Shards ran on", "; ".join(ctx.shard_gpus))] if ctx.shard_gpus else []),
        ("Weights", weights),
        ("Kit commit", kit_commit(kit, container)),
        ("Source of imported logs", (ctx.import_summary or {}).get("source") or "-"),
        ("Results digest", f"`{ctx.results_digest}`"),
    ]
    return (
        "## Provenance\n\n"
        + md_table(["", ""], table, [False, False])
        + "\nResults digest: sha256 of the canonical JSON of the `files` entries of "
        "artifacts.json written by the stages before the report (report and verify "
        "excluded); `make verify` re-hashes every one of those files.\n"
    )


# ----------------------------------------------------------------------------- accuracy (issue 14)

ACCURACY_FAILED = "accuracy gate failed"
# Sections whose figures are throughput: a failed gate marks each of their headings.
THROUGHPUT_HEADINGS = (
    "## Executive",
    "## Top ",
    "## Best ",
    "## Output tok/s",
    "## Efficiency",
    "## Repeats",
    "## Recommendations",
    "## Service-level",
    "## Throughput vs",
)


def accuracy_failed(ctx: Context) -> bool:
    return ctx.accuracy is not None and not ctx.accuracy.get("passed")


def accuracy_verdict(ctx: Context) -> str:
    """The gate's verdict in one line, for the executive summary."""
    acc = ctx.accuracy
    if acc is None:
        return "accuracy: not evidenced (no accuracy record: imported, merged or no [accuracy])"
    failed = [c for c in acc["checks"] if not c["passed"]]
    if not failed:
        return f"PASSED ({len(acc['checks'])} checks, see Accuracy)"
    c = failed[0]
    return (
        f"**FAILED**: {c['metric']} = {_num4(c['value'])}, required {c['op']} "
        f"{_num4(c['threshold'])}; every throughput figure below: {ACCURACY_FAILED}"
    )


def _num4(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _ci(ci: Sequence[float] | None, scale: float = 1.0) -> str:
    return "-" if not ci else f"{ci[0] * scale:.4g}..{ci[1] * scale:.4g}"


def section_accuracy(ctx: Context) -> str:
    """Task, subset, FP8 and reference scores, their ratio with its CI, every check, the verdict."""
    acc = ctx.accuracy
    if acc is None:
        return (
            "## Accuracy\n\naccuracy: not evidenced. This run holds no accuracy record, so "
            "nothing shows that the measured model still answers like the unquantized one.\n\n"
        )
    conf = f"{acc['confidence']:.0%} CI"
    fp8, bf16 = acc["fp8"], acc["bf16"]
    summary = [
        ("Task", acc["task"]),
        ("Subset", acc["subset"]),
        ("FP8 score", f"{_num4(fp8['score'])} ({conf} {_ci(fp8.get('ci'))}, n = {fp8['n']})"),
        (
            "Reference score (unquantized)",
            f"{_num4(bf16['score'])} ({conf} {_ci(bf16.get('ci'))}, n = {bf16['n']})",
        ),
        ("Ratio FP8 / reference", f"{_num4(acc['ratio'])} ({conf} {_ci(acc.get('ratio_ci'))})"),
        ("Verdict", "PASSED" if acc["passed"] else f"**FAILED**: {ACCURACY_FAILED}"),
    ]
    checks = [
        [
            c["metric"],
            _num4(c["value"]),
            f"{c['op']} {_num4(c['threshold'])}",
            _ci(c.get("ci")),
            "pass" if c["passed"] else "**FAIL**",
        ]
        for c in acc["checks"]
    ]
    return (
        "## Accuracy\n\n"
        + md_table(["", ""], summary, [False, False])
        + "\n"
        + md_table(["Check", "Value", "Required", conf, ""], checks, [False] * 5)
        + "\n"
    )


def join_marked(ctx: Context, sections: Sequence[str]) -> str:
    """The report's sections joined; after a failed gate, throughput headings are marked."""
    return "".join(map(mark_throughput, sections) if accuracy_failed(ctx) else sections)


def mark_throughput(section: str) -> str:
    """A failed gate puts its words on the heading of every section that shows throughput."""
    if section.startswith(THROUGHPUT_HEADINGS):
        heading, _, rest = section.partition("\n")
        return f"{heading} ({ACCURACY_FAILED})\n{rest}"
    return section


def render(records: Sequence[PointResult], ctx: Context, log_tails: dict[str, list[str]]) -> str:
    """The whole report.md: its sections in reading order."""
    rows = point_rows(records)
    no_ceilings = ceilings_do_not_apply(records, ctx.manifest)
    return join_marked(
        ctx,
        [
            f"# Benchmark report: {ctx.run}\n\n",
            section_identity_warning(identity_problems(records, ctx.manifest)),
            section_import_note(ctx),
            section_executive_summary(records, rows, ctx, no_ceilings),
            section_accuracy(ctx),
            METRIC_DEFINITIONS,
            section_top_points(rows),
            section_best_per(rows, "isl"),
            section_best_per(rows, "osl"),
            section_grid(rows, records, ctx),
            *serving_report.sections(records, slo_of(ctx), serving_gpus(records, no_ceilings)),
            section_efficiency(rows, records, ctx, no_ceilings),
            section_memory(records, ctx, no_ceilings),
            section_telemetry(records),
            section_failures(records, log_tails),
            section_repeats(records),
            section_recommendations(rows, records),
            section_provenance(records, ctx),
        ],
    )

"""Stage `report`: a run's results as one markdown report with figures, computed from records.

Reads:  results/<run>/points/*/{result,failure}.json, summary.csv, manifest.resolved.toml (or
        import.json for an imported run), provenance.json and the model's config.json when present,
        each failed point's raw log (its last lines)
Writes: reports/<run>/report.md, reports/<run>/figures/{throughput_heatmap,throughput_vs_osl}.png;
        recorded as stage "report" in results/<run>/artifacts.json
Usage:  python -m bench.report --run demo          (make report RUN=demo)

Every number comes from the records (bench.record.PointResult); nothing is copied from a log's
name or a previous report. The tables are pure functions of the records (bench.tables); render()
joins one pure function per report section, in reading order; bench.figures draws the figures.
The same records give byte-identical output: no clock is read, times come from the run's own
artifact record.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import figures, gpus, record, tables
from bench.artifacts import Artifacts, code_digest
from bench.errors import KitError, run_main
from bench.fileio import atomic_write_bytes, atomic_write_text, read_json, sha256_bytes
from bench.gpus import ModelShape
from bench.manifest import Manifest
from bench.record import PointResult, load_records
from bench.run import RunPaths, load_run
from bench.tables import (
    TOP_N,
    PointRow,
    best_per,
    distinct_identity,
    efficiency_rows,
    fastest,
    gpu_spec,
    grid,
    identity_problems,
    is_reference_run,
    is_suspect,
    md_table,
    num,
    point_rows,
    recommendations,
    repeat_stats,
    run_gpus,
    top_rows,
    where,
)

STAGE = "report"
REPORT_NAME = "report.md"
CV_FLAG = 0.05  # repeats: coefficient of variation above 5% is flagged
LOG_TAIL_LINES = 6
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
    provenance: dict[str, Any] | None
    shape: ModelShape | None
    shape_source: str
    results_digest: str
    recorded_at: str | None


# ----------------------------------------------------------------------------- markdown (pure)


def _get(data: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(k)
    return data


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


def first_gpu(ctx: Context) -> dict[str, Any]:
    """provenance.json's first GPU, {} when not captured: the report names the run's GPU by it."""
    gpu_list = _get(ctx.provenance, "gpus") or []
    return gpu_list[0] if gpu_list else {}


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


def section_executive_summary(
    records: Sequence[PointResult], rows: Sequence[PointRow], ctx: Context, reference: bool
) -> str:
    """What ran (model, precision, engine, GPUs) and its headline numbers, in one table."""
    seen = distinct_identity(records)
    n_gpus = run_gpus(records)
    best = top_rows(rows, 1)[0] if rows else None
    fast = fastest(rows)
    ok = sum(r.status == "ok" for r in records)
    failed_kinds = sorted({r.failure or r.status for r in records if r.status != "ok"})
    gpu_name = first_gpu(ctx).get("name") or (ctx.manifest.hardware.gpu if ctx.manifest else None)
    if reference:
        on_cuda = ctx.manifest is not None and ctx.manifest.runtime.device == "cuda"
        gpu = (
            f"{gpu_name or NOT_RECORDED} (the reference runner on CUDA)"
            if on_cuda
            else "none: the reference runner ran on the CPU"
        )
    else:
        gpu = f"{gpu_name or NOT_RECORDED} x {n_gpus if n_gpus else NOT_RECORDED}" + (
            "" if n_gpus is None else " (TP x PP as recorded)"
        )
    if best:
        peak = f"{num(best.output_tok_s)} tok/s at {where(best)}, {num(best.requests)} requests" + (
            f" ({num(best.output_tok_s_per_gpu)} per GPU)"
            if best.output_tok_s_per_gpu is not None and not reference
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
            f"backend {_values(seen, 'backend')}, version {_values(seen, 'engine_version')}",
        ),
        ("GPU", gpu),
        ("TP / PP", f"{_values(seen, 'tp_size')} / {_values(seen, 'pp_size')}"),
        ("Peak output throughput", peak),
        ("Peak request rate", f"{num(fast.req_s)} req/s at {where(fast)}" if fast else "-"),
        (
            "Points",
            f"{ok}/{len(records)} valid"
            + (f"; not valid: {', '.join(failed_kinds)}" if failed_kinds else ""),
        ),
        ("Results recorded", ctx.recorded_at or NOT_RECORDED),
    ]
    return "## Executive summary\n\n" + md_table(["", ""], table, [False, False]) + "\n"


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
            num(r.output_tok_s) + (" (suspect)" if r.suspect else ""),
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
    return f"## Top {TOP_N} points by output tok/s\n\n" + body


def section_best_per(rows: Sequence[PointRow], axis: str) -> str:
    """For each ISL (axis 'isl') or OSL (axis 'osl'), the other length that serves it best."""
    other = "osl" if axis == "isl" else "isl"
    table = [
        [
            getattr(r, axis),
            num(r.output_tok_s),
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
    )


def section_grid(rows: Sequence[PointRow], records: Sequence[PointResult]) -> str:
    """The whole sweep at a glance, failures in place, then links to its two figures."""
    isls, osls, cells = grid(rows, records)
    table = []
    for isl in isls:
        row = []
        for osl in osls:
            c = cells.get((isl, osl))
            row.append("" if c is None else (num(c) if isinstance(c, float) else f"**{c}**"))
        table.append([f"**{isl}**", *row])
    heatmap, vs_osl = figures.FIGURES
    return (
        "## Output tok/s over ISL x OSL\n\n"
        + md_table(["ISL \\ OSL", *map(str, osls)], table, [False] + [True] * len(osls))
        + "\nEmpty: not run; bold word: the point's failure.\n\n"
        + f"![output tok/s heatmap]({heatmap})\n\n![output tok/s vs OSL]({vs_osl})\n\n"
    )


def section_efficiency(
    rows: Sequence[PointRow], records: Sequence[PointResult], ctx: Context, reference: bool
) -> str:
    """How far each point is from the GPU's compute and bandwidth ceilings, or why not computed."""
    spec, spec_source = gpu_spec(ctx.provenance, ctx.manifest)
    head = "## Efficiency vs the physical limit\n\n"
    if reference:
        return (
            head + "Not applicable (reference runner): GPU ceilings do not describe this run.\n\n"
        )
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


def section_memory(records: Sequence[PointResult], ctx: Context, reference: bool) -> str:
    """Engine and KV cache sizes as the logs state them; the GPU's total, measured if captured."""
    ok_records = [r for r in records if r.status == "ok"]
    spec, _ = gpu_spec(ctx.provenance, ctx.manifest)
    mem_total = first_gpu(ctx).get("memory_total_mib")
    if mem_total:
        total = f"{num(mem_total)} MiB (provenance.json)"
    elif spec and not reference:
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
        (
            "KV cache fraction",
            _spread((r.identity.kv_cache_fraction for r in ok_records), "of free memory"),
        ),
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
    """Per point: what NVML saw while it ran, and whether the point is suspect (bench.telemetry)."""
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
                t.get("samples"),
                f"{num(t.get('power_w_mean'), 1)} / {num(t.get('power_w_max'), 1)}",
                num(t.get("sm_clock_mhz_mean"), 0),
                num(t.get("app_clock_mhz"), 0),
                num(t.get("below_application_clock_s"), 1),
                t.get("temperature_c_max"),
                slow or "none",
                "**suspect**: " + "; ".join(t.get("reasons") or []) if t.get("suspect") else "ok",
            ]
        )
    out.append(
        md_table(
            [
                "ISL",
                "OSL",
                "Samples",
                "Power mean / max W",
                "SM clock mean MHz",
                "App clock MHz",
                "Below app clock s",
                "Max temp C",
                "Throttled",
                "Verdict",
            ],
            rows,
            [True, True, True, True, True, True, True, True, False, False],
        )
    )
    out.append(
        "\nSampled with NVML while each point ran. Power capping at the default limit is "
        "reported but not suspect (NVIDIA's published runs meet it too); thermal or hardware "
        "slowdowns, power capping under a lowered limit, and SM clocks below the application "
        "clock make a point suspect, and `make verify` fails on suspect points.\n\n"
    )
    return "".join(out)


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


def kit_commit(kit: dict[str, Any], container: dict[str, Any]) -> str:
    """The checkout's commit, else the one the image was built from (the image has no .git)."""
    if kit.get("commit"):
        return kit["commit"] + (" (dirty)" if kit.get("dirty") else "")
    if container.get("kit_commit"):
        return f"{container['kit_commit']} (image build)"
    return NOT_RECORDED


def section_provenance(records: Sequence[PointResult], ctx: Context) -> str:
    """Image, software, GPU, weights and kit commit as captured, and the digest verify checks."""
    container = _get(ctx.provenance, "software", "container") or {}
    packages = _get(ctx.provenance, "software", "packages") or {}
    kit = _get(ctx.provenance, "software", "kit_git") or {}
    gpu = first_gpu(ctx)
    weights = (
        f"{ctx.manifest.model.repo} @ {ctx.manifest.model.revision}"
        if ctx.manifest
        else NOT_RECORDED
    )
    table = [
        ("Image", container.get("image") or NOT_RECORDED),
        ("Image digest", container.get("digest") or NOT_RECORDED),
        ("TensorRT-LLM (installed)", packages.get("tensorrt_llm") or NOT_RECORDED),
        ("Engine version (results)", _values(distinct_identity(records), "engine_version")),
        (
            "GPU",
            f"{gpu.get('name')} ({gpu.get('form_factor') or 'form factor unknown'})"
            if gpu
            else NOT_RECORDED,
        ),
        ("Driver", gpu.get("driver_version") or NOT_RECORDED),
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


def render(records: Sequence[PointResult], ctx: Context, log_tails: dict[str, list[str]]) -> str:
    """The whole report.md: its sections in reading order."""
    rows = point_rows(records)
    reference = is_reference_run(records, ctx.manifest)
    return "".join(
        [
            f"# Benchmark report: {ctx.run}\n\n",
            section_identity_warning(identity_problems(records, ctx.manifest)),
            section_import_note(ctx),
            section_executive_summary(records, rows, ctx, reference),
            METRIC_DEFINITIONS,
            section_top_points(rows),
            section_best_per(rows, "isl"),
            section_best_per(rows, "osl"),
            section_grid(rows, records),
            section_efficiency(rows, records, ctx, reference),
            section_memory(records, ctx, reference),
            section_telemetry(records),
            section_failures(records, log_tails),
            section_repeats(records),
            section_recommendations(rows, records),
            section_provenance(records, ctx),
        ]
    )


# ----------------------------------------------------------------------------- I/O edge


def results_digest(arts: Artifacts) -> str:
    files = {
        k: dataclasses.asdict(v)
        for k, v in sorted(arts.files.items())
        if v.stage not in (STAGE, "verify")
    }
    return sha256_bytes(json.dumps(files, sort_keys=True).encode())


def recorded_at(arts: Artifacts) -> str | None:
    for stage in ("sweep", "import"):
        when = arts.stages.get(stage, {}).get("finished_at")
        if when:
            return f"{when} (stage {stage} finished)"
    return None


def record_files(paths: RunPaths) -> list[Path]:
    """The record files the report reads, one per finished point."""
    out = []
    for folder in sorted(paths.points.glob("*")):
        if folder.name.endswith(".partial"):
            continue
        for name in (record.RESULT, record.FAILURE):
            if (folder / name).is_file():
                out.append(folder / name)
                break
    return out


def model_shape(
    paths: RunPaths, manifest: Manifest | None, records: Sequence[PointResult]
) -> tuple[ModelShape | None, str, Path | None]:
    """config.json of the manifest's model when on this machine, else the table by recorded id."""
    if manifest is not None:
        config = paths.model_dir(manifest.model.repo, manifest.model.revision) / "config.json"
        if config.is_file():
            try:
                return gpus.shape_from_config(read_json(config)), f"{config}", config
            except KeyError as exc:
                raise KitError(f"config.json lacks {exc}", path=str(config)) from None
    models = sorted({r.identity.model for r in records} - {None}, key=str)
    for m in models:
        if m in gpus.MODELS:
            return gpus.MODELS[m], f"the table in bench/gpus.py for {m} (recorded model id)", None
    if not models:
        return None, "the model id is not recorded in the results", None
    return None, f"no config.json on this machine and no table row for {', '.join(models)}", None


def load_context(run_name: str) -> tuple[RunPaths, Context, list[PointResult], list[Path]]:
    paths = RunPaths.for_run(run_name)
    manifest = None
    import_summary = None
    inputs: list[Path] = []
    if paths.resolved_manifest.is_file():
        manifest = load_run(run_name).manifest
        inputs.append(paths.resolved_manifest)
    if (paths.root / "import.json").is_file():
        import_summary = read_json(paths.root / "import.json")
        inputs.append(paths.root / "import.json")
    if manifest is None and import_summary is None:
        raise KitError(
            "no such run (neither manifest.resolved.toml nor import.json)",
            path=str(paths.root),
            fix="name a folder under results/ with RUN=, or run `make import` first",
        )
    if not paths.artifacts.is_file():
        raise KitError(
            "artifacts.json is missing",
            path=str(paths.root),
            fix="the run's stages record it; rerun them",
        )
    records = load_records(paths.points)
    if not records:
        raise KitError(
            "no point records",
            path=str(paths.points),
            fix="run the sweep (make sweep) or import logs first",
        )
    provenance = read_json(paths.provenance) if paths.provenance.is_file() else None
    if provenance is not None:
        inputs.append(paths.provenance)
    shape, shape_source, config = model_shape(paths, manifest, records)
    if config is not None:
        inputs.append(config)
    arts = Artifacts(paths)
    ctx = Context(
        run=run_name,
        manifest=manifest,
        import_summary=import_summary,
        provenance=provenance,
        shape=shape,
        shape_source=shape_source,
        results_digest=results_digest(arts),
        recorded_at=recorded_at(arts),
    )
    inputs += record_files(paths)
    if paths.summary.is_file():
        inputs.append(paths.summary)
    return paths, ctx, records, inputs


def read_log_tails(paths: RunPaths, records: Sequence[PointResult]) -> dict[str, list[str]]:
    tails = {}
    for r in records:
        if r.status == "ok" and not is_suspect(r):
            continue
        for raw in r.raw_files:
            f = paths.root / raw
            if f.is_file() and f.suffix in (".txt", ".log"):
                lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
                tails[raw] = [line[:240] for line in lines[-LOG_TAIL_LINES:]]
    return tails


def make_report(run_name: str) -> Path:
    paths, ctx, records, input_files = load_context(run_name)
    arts = Artifacts(paths)
    inputs = arts.input_digests(
        input_files,
        {
            "code": code_digest(
                __file__, tables.__file__, figures.__file__, gpus.__file__, record.__file__
            )
        },
    )
    report = paths.reports / REPORT_NAME
    if arts.stage_is_current(STAGE, inputs):
        print(f"[report] up to date: {report}", file=sys.stderr)
        return report
    text = render(records, ctx, read_log_tails(paths, records))
    outputs = []
    for name, data in figures.draw(*grid(point_rows(records), records)).items():
        atomic_write_bytes(paths.reports / name, data)
        outputs.append(paths.reports / name)
    atomic_write_text(report, text)
    outputs.append(report)
    arts.record(STAGE, inputs, outputs, {"points": len(records)})
    print(f"[report] wrote {report} and {len(figures.FIGURES)} figures", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run name: results/<run>/")
    args = parser.parse_args(argv)

    def stage() -> int:
        make_report(args.run)
        return 0

    return run_main(stage, "bench.report")


if __name__ == "__main__":
    raise SystemExit(main())

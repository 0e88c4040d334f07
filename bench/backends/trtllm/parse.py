"""Read what `trtllm-bench throughput` produced into one normalized `PointResult`.

Reads:  a `--report_json` document (already loaded as a dict) or the text of a console log;
        only `parse_file(path)` touches the disk.
Writes: nothing.
Example:
    parse_file(Path("result_128_128_30000.txt"), isl=128, osl=128, requests=30000)

Rules (each one decided here, once):
- Prefer the report JSON; console logs are parsed for runs that have nothing else (0.16).
- Every value comes from what the tool printed about itself. A value that was not printed is
  None; nothing is derived. 0.16 prints no total (input+output) token throughput, so
  `total_tok_s` is None there; a report that wants it computes req/s x (ISL+OSL) and labels the
  column derived.
- 0.16 `Token Throughput (tokens/sec)` is OUTPUT tokens per second (7,500 x 1,024 / 388.12 s in
  the seed logs), so it maps to `output_tok_s`.
- KV cache share (`kv_cache_fraction`, 0-1): 1.x JSON writes the fraction itself
  (`free_gpu_memory_fraction`, e.g. 0.9) and the console prints it x100 with a `%`. A value with
  `%`, or a bare number above 1, is a percentage and is divided by 100; a bare number <= 1 is a
  fraction.
- Backend is written in the manifest's words (bench.backends' names): the JSON's "TRT" and the
  console's `= ENGINE DETAILS` block mean "trtllm-tensorrt"; "Pytorch" and `= PYTORCH BACKEND`
  mean "trtllm-pytorch" (the tool writes "Pytorch" for _autodeploy too). Any other name is kept
  as printed.
- `TensorRT-LLM Version` from the report block wins; the start-up banner
  `[TensorRT-LLM] TensorRT-LLM version: X` is the fallback (and the only identity a log that
  died early has).
- Memory from the log, one line per rank: engine size is the largest rank's
  (`Loaded engine size: N MiB`; the shards differ by a few MiB and the largest bounds memory);
  the KV cache is the last `Allocated X GiB for max tokens in paged KV cache (N)` line (the
  PyTorch backend first allocates a small cache to measure memory, then the real one; TRT ranks
  print identical lines).
- Console labels are matched in the report's own blocks only (`= ENGINE DETAILS`,
  `= WORLD + RUNTIME INFORMATION`, `= PERFORMANCE OVERVIEW`, ...). A label printed twice (a rerun
  appended to the same log) keeps its last value. A PERFORMANCE OVERVIEW without any known output
  throughput label is an error naming the labels seen, so a new label set is one table line.
- Only `trtllm-bench throughput` output is read; `trtllm-bench latency` prints other blocks.
- A parsed point is evidence only when every REQUIRED value is printed, finite and positive, the
  log is not cut mid-report, and the rate is below CEILING_MARGIN x bench.gpu.gpus' ceiling; else it
  is "invalid" with the reason ("incomplete", "implausible"). A JSON and a log of one point that
  disagree are "disagreement" (bench.stages.import_logs compares them with `disagreements`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import signal
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.analysis.latency import RequestRow, RequestTimes
from bench.core.errors import KitError
from bench.gpu import gpus
from bench.schema.record import (
    Distribution,
    FailureKind,
    Identity,
    Memory,
    Metrics,
    PointResult,
    judge,
)

SOURCE_JSON = "trtllm-bench-json"
SOURCE_CONSOLE = "trtllm-bench-console"

# --report_json: (section, key) -> record field. Sections other than `performance` may be absent.
REPORT_JSON_FIELDS: dict[tuple[str, str], str] = {
    ("engine", "model"): "identity.model",
    ("engine", "backend"): "identity.backend",
    ("engine", "version"): "identity.engine_version",
    ("engine", "dtype"): "identity.dtype",
    ("engine", "kv_cache_dtype"): "identity.kv_cache_dtype",
    ("engine", "quantization"): "identity.quantization",
    ("engine", "max_sequence_length"): "identity.max_seq_len",
    ("world_info", "tp_size"): "identity.tp_size",
    ("world_info", "pp_size"): "identity.pp_size",
    ("world_info", "max_batch_size"): "identity.max_batch_size",
    ("world_info", "max_num_tokens"): "identity.max_num_tokens",
    ("world_info", "kv_cache_percentage"): "identity.kv_cache_fraction",
    ("request_info", "num_requests"): "metrics.num_requests",
    ("request_info", "avg_input_length"): "metrics.avg_input_len",
    ("request_info", "avg_output_length"): "metrics.avg_output_len",
    ("performance", "system_output_throughput_tok_s"): "metrics.output_tok_s",
    ("performance", "system_total_throughput_tok_s"): "metrics.total_tok_s",
    ("performance", "request_throughput_req_s"): "metrics.req_s",
    ("performance", "output_throughput_per_gpu_tok_s"): "metrics.output_tok_s_per_gpu",
    ("performance", "output_throughput_per_user_tok_s"): "metrics.output_tok_s_per_user",
    ("performance", "total_latency_ms"): "metrics.total_latency_ms",
    ("performance", "avg_request_latency_ms"): "metrics.avg_request_latency_ms",
    ("streaming_metrics", "avg_ttft_ms"): "metrics.avg_ttft_ms",
    ("streaming_metrics", "avg_tpot_ms"): "metrics.avg_tpot_ms",
}
REPORT_JSON_HEADLINE = ("performance", "system_output_throughput_tok_s")
# --report_json percentile dicts (PercentileStats: p50, p90, p95, p99, minimum, maximum, average;
# nearest rank) -> record distributions. All in ms (convert_to_ms of perf_counter_ns), the same in
# 1.0 and 1.2 (tensorrt_llm/bench/dataclasses/reporting.py, read at the commits that
# tests/fakes/trtllm_options.py names). streaming_metrics exists only with --streaming; its
# dicts have no `_ms` suffix. Not mapped: gen_tps_percentiles, which is
# 1000 / tpot per request (nothing new); per-user tok/s with the first token comes from
# --request_json (bench.analysis.latency). `itl_percentiles` is no trtllm-bench key: the kit's CPU
# runner writes it (it has per-token times; trtllm-bench's "ITL" is its TPOT).
REPORT_JSON_DISTRIBUTIONS: dict[tuple[str, str], str] = {
    ("performance", "request_latency_percentiles_ms"): "request_latency_ms",
    ("streaming_metrics", "ttft_percentiles"): "ttft_ms",
    ("streaming_metrics", "tpot_percentiles"): "tpot_ms",
    ("streaming_metrics", "itl_percentiles"): "itl_ms",
}
PERCENTILE_KEYS = {
    "p50": "p50",
    "p90": "p90",
    "p95": "p95",
    "p99": "p99",
    "minimum": "min",
    "maximum": "max",
    "average": "mean",
}

# Console report label -> record field, every known label set (a new rename is one line).
# 0.16: fixtures/trtllm-bench-0.16-logs; 0.17-0.21: NVIDIA docs samples; 1.x: reporting.py.
CONSOLE_LABELS: dict[str, str] = {
    "Model": "identity.model",
    "Backend": "identity.backend",
    "TensorRT-LLM Version": "identity.engine_version",  # up to 1.0
    "TensorRT LLM Version": "identity.engine_version",  # later ("TensorRT LLM" branding)
    "Dtype": "identity.dtype",
    "KV Cache Dtype": "identity.kv_cache_dtype",
    "Quantization": "identity.quantization",
    "Max Sequence Length": "identity.max_seq_len",
    "TP Size": "identity.tp_size",
    "PP Size": "identity.pp_size",
    "Max Runtime Batch Size": "identity.max_batch_size",
    "Max Runtime Tokens": "identity.max_num_tokens",
    "KV Memory Percentage": "identity.kv_cache_fraction",
    "Number of requests": "metrics.num_requests",
    "Average Input Length (tokens)": "metrics.avg_input_len",
    "Average Output Length (tokens)": "metrics.avg_output_len",
    "Token Throughput (tokens/sec)": "metrics.output_tok_s",  # 0.16: output tokens only
    "Total Output Throughput (tokens/sec)": "metrics.output_tok_s",  # 0.17+
    "Total Token Throughput (tokens/sec)": "metrics.total_tok_s",
    "Request Throughput (req/sec)": "metrics.req_s",
    "Per GPU Output Throughput (tokens/sec/gpu)": "metrics.output_tok_s_per_gpu",  # 0.19-0.21
    "Per GPU Output Throughput (tps/gpu)": "metrics.output_tok_s_per_gpu",  # 1.x
    "Per User Output Throughput (tokens/sec/user)": "metrics.output_tok_s_per_user",
    "Per User Output Throughput [w/ ctx] (tps/user)": "metrics.output_tok_s_per_user",
    "Total Latency (ms)": "metrics.total_latency_ms",
    "Average request latency (ms)": "metrics.avg_request_latency_ms",
    "Average time-to-first-token (ms)": "metrics.avg_ttft_ms",  # 0.16-0.17 STREAMING STATISTICS
    "Average time-to-first-token [TTFT] (ms)": "metrics.avg_ttft_ms",
    "Average time-per-output-token [TPOT] (ms)": "metrics.avg_tpot_ms",
    # Not mapped: 0.16 "Average inter-token latency (ms)" is not defined like later TPOT.
}
# Report blocks whose `Label: value` lines are read; the title names the backend where it can.
CONSOLE_SECTIONS: dict[str, str | None] = {
    "ENGINE DETAILS": "trtllm-tensorrt",
    "PYTORCH BACKEND": "trtllm-pytorch",
    "HF TRANSFORMERS RUNNER": None,  # the kit's CPU/CUDA runner; its Backend line names it
    "WORLD + RUNTIME INFORMATION": None,
    "REQUEST DETAILS": None,
    "PERFORMANCE OVERVIEW": None,
    "STREAMING STATISTICS": None,
}
PERFORMANCE_SECTION = "PERFORMANCE OVERVIEW"
BACKEND_NAMES = {
    "trt": "trtllm-tensorrt",
    "tensorrt": "trtllm-tensorrt",
    "pytorch": "trtllm-pytorch",
}
NOT_PRINTED = {"", "none", "n/a"}

# Console percentile lines of 1.x: "[Latency] P50    : 1490.0000", "[TTFT] MINIMUM: ...".
CONSOLE_PERCENTILE = re.compile(
    r"^\[(?P<tag>Latency|TTFT|TPOT)\]\s+(?P<stat>MINIMUM|MAXIMUM|AVERAGE|P50|P90|P95|P99)\s*:"
    r"\s*(?P<value>\S+)\s*$"
)
CONSOLE_DISTRIBUTIONS = {"Latency": "request_latency_ms", "TTFT": "ttft_ms", "TPOT": "tpot_ms"}
BANNER = re.compile(r"^=\s+(?P<title>\S.*?)\s*$")  # "= PERFORMANCE OVERVIEW " (not "=====")
LOG_PREFIX = re.compile(r"^\[(\d\d/\d\d/\d{4}-|TensorRT[- ]LLM\]|TRT-LLM\])")  # ends a report block
LABEL_LINE = re.compile(r"^(?P<label>[^:]+?)\s*:\s*(?P<value>.*?)\s*$")
VERSION_BANNER = re.compile(r"\[TensorRT[- ]LLM\] TensorRT[- ]LLM version: (?P<version>\S+)")
ENGINE_SIZE = re.compile(r"Loaded engine size: (?P<mib>[\d.]+) MiB")
KV_CACHE = re.compile(
    r"Allocated (?P<size>[\d.]+) (?P<unit>GiB|MiB) for max tokens in paged KV cache"
    r" \((?P<tokens>\d+)\)"
)
OUT_OF_MEMORY = re.compile(
    r"out of memory|CUDA_ERROR_OUT_OF_MEMORY|OutOfMemoryError|std::bad_alloc"
    r"|Requested amount of GPU memory|cudaErrorMemoryAllocation",
    re.IGNORECASE,
)
ERROR_LINE = re.compile(
    r"\[ERROR\]|\b\w*(Error|Exception)\b:|Segmentation fault|core dumped|Aborted|^Killed"
)
SHELL_SIGNAL_BASE = 128  # a shell reports a child killed by signal N as exit code 128+N
EVIDENCE_CHARS = 240

# Any: pydantic sets __pydantic_fields__ on its dataclasses, which mypy does not see
_GROUPS: dict[str, Any] = {"identity": Identity, "metrics": Metrics, "memory": Memory}


def _field_type(target: str) -> type:
    """int, float or str: the record's own declared type for "group.field" (pydantic's field)."""
    group, name = target.split(".")
    declared = _GROUPS[group].__pydantic_fields__[name].annotation
    return next(t for t in typing.get_args(declared) if t is not type(None))


# ----------------------------------------------------------------------------- values


def _kv_fraction(raw: Any) -> float | None:
    """0-1 from "90.00%", 90.0 or 0.9 (see the module rules)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() in NOT_PRINTED:
            return None
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        raw = float(text)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"expected a number, got {raw!r}")
    if not math.isfinite(raw):
        return None
    return raw / 100.0 if raw > 1.0 else float(raw)


def _backend_name(raw: Any) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    if raw is None or raw.strip().lower() in NOT_PRINTED:
        return None
    return BACKEND_NAMES.get(raw.strip().lower(), raw.strip())


SPECIAL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "identity.kv_cache_fraction": _kv_fraction,
    "identity.backend": _backend_name,
}


def _json_value(raw: Any, target: str) -> Any:
    """A JSON value as the record's type; raises ValueError for a value of the wrong kind."""
    if target in SPECIAL_FIELDS:
        return SPECIAL_FIELDS[target](raw)
    if raw is None:
        return None
    kind = _field_type(target)
    if kind is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"expected a number, got {raw!r}")
    if not math.isfinite(raw):
        return float(raw)  # judged by value_problems: unknown, or invalid where required
    if kind is int:
        if raw != int(raw):
            raise ValueError(f"expected a whole number, got {raw!r}")
        return int(raw)
    return float(raw)


def _text_value(text: str, target: str) -> Any:
    """A printed value as the record's type; "None"/"N/A" are None; raises ValueError."""
    if target in SPECIAL_FIELDS:
        return SPECIAL_FIELDS[target](text)
    if text.lower() in NOT_PRINTED:
        return None
    kind = _field_type(target)
    if kind is str:
        return text
    number = float(text)
    if not math.isfinite(number):
        return number  # judged by value_problems: unknown, or invalid where required
    if kind is int:
        if number != int(number):
            raise ValueError(f"expected a whole number, got {text!r}")
        return int(number)
    return number


def _build(
    values: dict[str, Any],
    where: dict[str, str],
    point: dict[str, Any],
    *,
    source: str,
    streaming: bool,
    cut_off: str | None = None,
) -> PointResult:
    """The PointResult of `point` (isl, osl, requests, ...) from {"group.field": value}: invalid
    when a value is missing, cut off, impossible or above the GPU's ceiling (see check_evidence),
    else judged for lengths."""
    problems = value_problems(values, where)  # sets the bad values to None
    if cut_off:
        problems.insert(0, ("incomplete", cut_off))
    groups: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
    for target, value in values.items():
        group, name = target.split(".")
        groups[group][name] = value
    result = PointResult(
        status="ok",
        identity=Identity(**groups["identity"]),
        metrics=Metrics(**groups["metrics"]),
        memory=Memory(**groups["memory"]),
        source=source,
        streaming=streaming,
        **point,
    )
    ceiling = None if problems else over_ceiling(result)
    if ceiling:
        problems.append(("implausible", ceiling))
    if problems:
        return invalid(result, problems[0][0], "; ".join(why for _, why in problems))
    return judge(result)


def invalid(result: PointResult, kind: FailureKind, detail: str) -> PointResult:
    return dataclasses.replace(result, status="invalid", failure=kind, failure_detail=detail)


# ----------------------------------------------------------------------------- evidence checks
# What makes a parsed number evidence: every required field present, finite and positive, and
# the rate physically possible on the GPUs the point ran on.
REQUIRED: dict[str, str] = {
    "metrics.output_tok_s": "output throughput",
    "metrics.req_s": "request throughput",
    "metrics.num_requests": "request count",
    "metrics.avg_input_len": "average input length",
    "metrics.avg_output_len": "average output length",
}
POSITIVE = (*REQUIRED, "metrics.total_tok_s", "metrics.total_latency_ms")
# A measured rate may exceed the optimistic ceilings of bench.gpu.gpus by this factor before it is
# called impossible: the ceilings leave out no work a real run could skip, but the batch and the
# GPU are guesses for imported logs, so the margin is wide. 1.28e30 tok/s is far outside it.
CEILING_MARGIN = 2.0
# For a model the kit has no shape for: the fastest GPU's FP8 dense peak over 2 FLOPs per
# parameter per token of a 100M-parameter model (smaller than anything served this way).
SMALLEST_PARAMS = 100e6
# When the log does not say how many GPUs ran the point: one full node.
GPUS_IF_UNKNOWN = 8


def value_problems(values: dict[str, Any], where: dict[str, str]) -> list[tuple[FailureKind, str]]:
    """Missing, non-finite, negative or zero values; bad ones are set to None in place.
    A non-finite value outside REQUIRED stays "unknown" (None), as the tool means it."""
    problems: list[tuple[FailureKind, str]] = []
    for target, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        shown = f"{where.get(target, target)} = {value!r}"
        if not math.isfinite(value):
            values[target] = None
            if target in POSITIVE:
                problems.append(("implausible", f"{shown} is not a finite number"))
        elif value < 0 or (value == 0 and target in POSITIVE):
            values[target] = None
            problems.append(("implausible", f"{shown} is impossible (must be > 0)"))
    missing = [name for target, name in REQUIRED.items() if values.get(target) is None]
    if missing and not problems:
        problems.append(("incomplete", f"not reported: {', '.join(missing)}"))
    return problems


def rate_limit_any_model(n_gpus: int) -> float:
    """The most output tok/s n_gpus of the fastest GPU could reach on the smallest model served
    this way, times the margin: above it a rate is impossible whatever the model."""
    fastest = max(gpus.GPUS.values(), key=lambda g: (g.fp8_dense_tflops, g.hbm_tb_s))
    return fastest.fp8_dense_tflops * 1e12 * n_gpus / (2 * SMALLEST_PARAMS) * CEILING_MARGIN


def over_ceiling(result: PointResult) -> str | None:
    """Why the point's rate is physically impossible, or None (bench.gpu.gpus' ceilings x
    margin)."""
    m, ident = result.metrics, result.identity
    if m.req_s is None or m.output_tok_s is None:
        return None
    n_gpus = (ident.tp_size or GPUS_IF_UNKNOWN) * (ident.pp_size or 1)
    fastest = max(gpus.GPUS.values(), key=lambda g: (g.fp8_dense_tflops, g.hbm_tb_s))
    shape = gpus.MODELS.get(ident.model or "")
    if shape is None:
        limit = rate_limit_any_model(n_gpus)
        if m.output_tok_s > limit:
            return (
                f"{m.output_tok_s:.4g} output tok/s is above {limit:.3g}, what {n_gpus} "
                f"{fastest.key} GPU(s) could reach on a 100M-parameter model"
            )
        return None
    eff = gpus.record_efficiency(
        shape, fastest, n_gpus, result, req_s=m.req_s, output_tok_s=m.output_tok_s
    )
    worst = max(eff.compute_pct, eff.bandwidth_pct)
    if worst > 100 * CEILING_MARGIN:
        return (
            f"{m.output_tok_s:.4g} output tok/s at {m.req_s:.4g} req/s is {worst:.3g}% of the "
            f"{eff.bound} ceiling of {n_gpus} {fastest.key} GPU(s) for {ident.model} "
            f"(more than {CEILING_MARGIN:g}x: impossible)"
        )
    return None


# Fields two sources of one point must agree on; numbers within the console's 4 decimals.
AGREEING_IDENTITY = (
    "model",
    "backend",
    "engine_version",
    "tp_size",
    "pp_size",
    "dtype",
    "kv_cache_dtype",
    "quantization",
    "max_batch_size",
    "max_num_tokens",
)
AGREEING_METRICS = (
    "num_requests",
    "avg_input_len",
    "avg_output_len",
    "output_tok_s",
    "total_tok_s",
    "req_s",
    "total_latency_ms",
)
AGREEMENT_TOLERANCE = 1e-3


def _differ(name: str, x: Any, y: Any) -> list[str]:
    """ "name x vs y" when both sources state the field and differ, else nothing."""
    if x is None or y is None:
        return []
    if isinstance(x, str) or isinstance(y, str):
        same = str(x).casefold() == str(y).casefold()
    else:
        same = math.isclose(x, y, rel_tol=AGREEMENT_TOLERANCE, abs_tol=1e-4)
    return [] if same else [f"{name} {x!r} vs {y!r}"]


def disagreements(a: PointResult, b: PointResult) -> list[str]:
    """ "field: a-value vs b-value" for every field both sources report and differ on."""
    return [
        problem
        for group, fields in (("identity", AGREEING_IDENTITY), ("metrics", AGREEING_METRICS))
        for name in fields
        for problem in _differ(
            name, getattr(getattr(a, group), name), getattr(getattr(b, group), name)
        )
    ]


def identity_disagreements(identity: Identity, text: str) -> list[str]:
    """What a console log states about the point's identity (model, TP, ...) against `identity`,
    even when the log was cut before its PERFORMANCE OVERVIEW: a JSON report must not carry a
    model or parallelism its own log contradicts."""
    stated = identity_from_console(text)
    return [
        p
        for name in AGREEING_IDENTITY
        for p in _differ(name, getattr(identity, name), stated.get(name))
    ]


# ----------------------------------------------------------------------------- report JSON


def parse_report_json(data: dict[str, Any], *, source_file: str, **point: Any) -> PointResult:
    """A `--report_json` document (0.16-1.x sections) as a judged PointResult; `point` is its
    isl, osl, requests (and concurrency, repeat)."""
    if not isinstance(data, dict):
        raise KitError(
            "not a trtllm-bench report (the top level is not an object)", path=source_file
        )
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for (section, key), target in REPORT_JSON_FIELDS.items():
        block = data.get(section)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise KitError(f"expected an object, got {block!r}", path=source_file, key=section)
        try:
            values[target] = _json_value(block.get(key), target)
        except ValueError as exc:
            raise KitError(str(exc), path=source_file, key=f"{section}.{key}") from None
        where[target] = f"{section}.{key}"
    section, key = REPORT_JSON_HEADLINE
    if section not in data or key not in data[section] or data[section][key] is None:
        raise KitError(
            "no output throughput: not a finished trtllm-bench throughput report",
            path=source_file,
            key=f"{section}.{key}",
            fix="re-run the point, or import its console log instead",
        )
    result = _build(values, where, point, source=SOURCE_JSON, streaming="streaming_metrics" in data)
    # Any: Metrics fields named at run time, so mypy cannot match them to replace's keywords
    found: dict[str, Any] = report_distributions(data, source_file, result.metrics.num_requests)
    return dataclasses.replace(result, metrics=dataclasses.replace(result.metrics, **found))


def _distribution(raw: Any, count: int | None, where: str, key: str) -> Distribution | None:
    """A PercentileStats dict as a Distribution; a non-finite value is unknown (None)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise KitError(f"expected a percentile object, got {raw!r}", path=where, key=key)
    picked: dict[str, float | None] = {}
    for name, field in PERCENTILE_KEYS.items():
        value = raw.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise KitError(f"expected a number, got {value!r}", path=where, key=f"{key}.{name}")
        picked[field] = float(value) if value is not None and math.isfinite(value) else None
    # `count`: only the CPU runner's itl_percentiles state it (token gaps, not requests)
    own = raw.get("count")
    return Distribution(**picked, count=own if isinstance(own, int) and own >= 0 else count)


def report_distributions(
    data: dict[str, Any], source_file: str, count: int | None
) -> dict[str, Distribution]:
    """The report's percentile dicts that are present, by record field (count: the requests)."""
    found = {}
    for (section, key), target in REPORT_JSON_DISTRIBUTIONS.items():
        block = data.get(section)
        if isinstance(block, dict) and block.get(key) is not None:
            dist = _distribution(block[key], count, source_file, f"{section}.{key}")
            if dist is not None:  # always: None only for a None block[key]
                found[target] = dist
    return found


# ----------------------------------------------------------------------------- --request_json
# A JSON list, one RequestRecord.model_dump() per request (tokens dropped, `output` and
# `output_tokens` added), in completion order. Timestamps and durations are raw
# time.perf_counter_ns() values (ns; CLOCK_MONOTONIC on Linux, so comparable with the sweep's own
# monotonic clock); first_token_timestamp is unset (<= 0 or < start) without streaming. 1.0 writes
# it without indent, 1.2 with indent=4 (generate_json_report); the content is the same.


def _int_field(item: dict[str, Any], key: str, where: str, index: int) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise KitError(
            f"request {index}: {key} is {value!r}, expected a number",
            path=where,
            key=f"[{index}].{key}",
            fix="re-run the point (its --request_json is damaged)",
        )
    return int(value)


def parse_request_json(data: Any, *, streaming: bool, source_file: str) -> RequestTimes:
    """--request_json -> requests.csv rows (ms, start relative to the first request) and the
    window [first start, last end] in the tool's ns clock."""
    if not isinstance(data, list) or not data:
        raise KitError(
            "not a trtllm-bench --request_json document (expected a non-empty list)",
            path=source_file,
        )
    raw = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise KitError(f"request {index} is not an object", path=source_file)
        start = _int_field(item, "start_timestamp", source_file, index)
        end = _int_field(item, "end_timestamp", source_file, index)
        if end < start:
            raise KitError(
                f"request {index} ends before it starts ({end} < {start} ns)", path=source_file
            )
        first = item.get("first_token_timestamp")
        out_key = "output_tokens" if "output_tokens" in item else "num_total_output_tokens"
        raw.append(
            (
                _int_field(item, "id", source_file, index),
                _int_field(item, "num_input_tokens", source_file, index),
                _int_field(item, out_key, source_file, index),
                start,
                first if streaming and isinstance(first, int) and first >= start else None,
                end,
            )
        )
    first_start = min(r[3] for r in raw)
    rows = [
        RequestRow(
            request=rid,
            input_tokens=isl,
            output_tokens=osl,
            start_ms=(start - first_start) / 1e6,
            ttft_ms=None if first is None else (first - start) / 1e6,
            latency_ms=(end - start) / 1e6,
        )
        for rid, isl, osl, start, first, end in sorted(raw, key=lambda r: (r[3], r[0]))
    ]
    return RequestTimes(rows, first_start, max(r[5] for r in raw))


def read_request_json(path: Path, *, streaming: bool) -> RequestTimes:
    try:
        data = json.loads(read_bytes(path))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise KitError(f"not valid JSON: {exc}", path=str(path)) from None
    return parse_request_json(data, streaming=streaming, source_file=str(path))


# ----------------------------------------------------------------------------- console log


def _report_lines(text: str) -> list[tuple[str, int, str]]:
    """(section title, line number, line) for each line inside a known report block."""
    out = []
    section: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        banner = BANNER.match(line)
        if banner:
            title = banner.group("title").upper()
            section = title if title in CONSOLE_SECTIONS else None
            if section:
                out.append((section, number, ""))
            continue
        if LOG_PREFIX.match(line):
            section = None
        elif section and line.strip() and not line.startswith("="):
            out.append((section, number, line))
    return out


def identity_from_console(text: str) -> dict[str, Any]:
    """The identity fields a console log's report blocks state (an unreadable value: unstated)."""
    stated: dict[str, Any] = {}
    for section, _, line in _report_lines(text):
        if not line:  # a block's banner; some name the backend
            if CONSOLE_SECTIONS[section]:
                stated["backend"] = CONSOLE_SECTIONS[section]
            continue
        match = LABEL_LINE.match(line)
        target = CONSOLE_LABELS.get(match.group("label").strip(), "") if match else ""
        if match and target.startswith("identity."):
            with contextlib.suppress(ValueError):
                stated[target.removeprefix("identity.")] = _text_value(match.group("value"), target)
    return stated


def has_performance_section(text: str) -> bool:
    """True when the log printed a `= PERFORMANCE OVERVIEW` block (the run reported a result)."""
    return any(section == PERFORMANCE_SECTION for section, _, _ in _report_lines(text))


def version_from_log(text: str) -> str | None:
    """The version in the start-up banner `[TensorRT-LLM] TensorRT-LLM version: X`."""
    match = VERSION_BANNER.search(text)
    return match.group("version") if match else None


def memory_from_log(text: str) -> Memory:
    """Engine size (largest rank) and KV cache allocation (last line) printed by the runtime."""
    engine = [float(m.group("mib")) for m in ENGINE_SIZE.finditer(text)]
    kv = list(KV_CACHE.finditer(text))
    kv_gib = kv_tokens = None
    if kv:
        last = kv[-1]
        size = float(last.group("size"))
        kv_gib = size / 1024.0 if last.group("unit") == "MiB" else size
        kv_tokens = int(last.group("tokens"))
    return Memory(
        engine_size_mib=max(engine) if engine else None,
        kv_cache_gib=kv_gib,
        kv_cache_max_tokens=kv_tokens,
    )


def parse_console(text: str, *, source_file: str = "<console>", **point: Any) -> PointResult:
    """A console log that printed its report (any known label set) as a judged PointResult;
    `point` as parse_report_json's."""
    lines = _report_lines(text)
    if not any(section == PERFORMANCE_SECTION for section, _, _ in lines):
        raise KitError(
            "no PERFORMANCE OVERVIEW block: the run printed no result",
            path=source_file,
            fix="classify it with classify_failure (parse_file does this)",
        )
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    seen: list[str] = []
    for section, number, line in lines:
        backend = CONSOLE_SECTIONS[section]
        if not line:  # a block's banner
            if backend:
                values["identity.backend"] = backend
            continue
        match = LABEL_LINE.match(line)
        if not match:
            continue
        label, raw = match.group("label").strip(), match.group("value")
        if section == PERFORMANCE_SECTION and not label.startswith("["):  # not "[TPOT] P50"
            seen.append(label)
        target = CONSOLE_LABELS.get(label)
        if target is None:
            continue
        try:
            values[target] = _text_value(raw, target)
        except ValueError as exc:
            raise KitError(f"{exc} (line {number})", path=source_file, key=label) from None
        where[target] = f"{label} (line {number})"
    if "metrics.output_tok_s" not in values:
        raise KitError(
            f"PERFORMANCE OVERVIEW has no known output throughput label; it printed: "
            f"{', '.join(seen) or 'nothing'}",
            path=source_file,
            fix="add the new label to CONSOLE_LABELS in bench/backends/trtllm/parse.py",
        )
    if values.get("identity.engine_version") is None:
        values["identity.engine_version"] = version_from_log(text)
    # Any: Metrics fields named at run time, so mypy cannot match them to replace's keywords
    found: dict[str, Any] = console_distributions(lines, values.get("metrics.num_requests"))
    values.update({f"memory.{k}": v for k, v in dataclasses.asdict(memory_from_log(text)).items()})
    result = _build(
        values,
        where,
        point,
        source=SOURCE_CONSOLE,
        streaming="ttft_ms" in found,
        cut_off=cut_off(text, lines),
    )
    return dataclasses.replace(result, metrics=dataclasses.replace(result.metrics, **found))


def console_distributions(lines: list[tuple[str, int, str]], count: Any) -> dict[str, Distribution]:
    """The 1.x console's [Latency]/[TTFT]/[TPOT] percentile lines (ms), as distributions."""
    stats: dict[str, dict[str, float]] = {}
    for section, _, line in lines:
        match = CONSOLE_PERCENTILE.match(line.strip()) if section == PERFORMANCE_SECTION else None
        if match:
            with contextlib.suppress(ValueError):
                value = float(match.group("value"))
                stats.setdefault(match.group("tag"), {})[match.group("stat").lower()] = value
    return {
        CONSOLE_DISTRIBUTIONS[tag]: Distribution(
            **{PERCENTILE_KEYS[k]: v if math.isfinite(v) else None for k, v in raw.items()},
            count=count if isinstance(count, int) else None,
        )
        for tag, raw in stats.items()
    }


def cut_off(text: str, lines: list[tuple[str, int, str]]) -> str | None:
    """Why the log looks cut mid-report (its last line is a report line with no newline)."""
    if not lines or text.endswith("\n") or text.count("\n") + 1 != lines[-1][1]:
        return None
    return (
        f"the log ends mid-line at line {lines[-1][1]} ({lines[-1][2].strip()!r}): "
        "cut off, its last value may be partial"
    )


# ----------------------------------------------------------------------------- failures


def _evidence(number: int, line: str) -> str:
    line = line.strip()
    if len(line) > EVIDENCE_CHARS:
        line = line[: EVIDENCE_CHARS - 1] + "…"
    return f"line {number}: {line}"


def _last_line(lines: list[str]) -> str:
    for number in range(len(lines), 0, -1):
        if lines[number - 1].strip():
            return _evidence(number, lines[number - 1])
    return "the log is empty"


def _first_match(lines: list[str], pattern: re.Pattern[str]) -> str | None:
    for number, line in enumerate(lines, start=1):
        if pattern.search(line):
            return _evidence(number, line)
    return None


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"exit code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code} (killed by signal {-code})"
    if code > SHELL_SIGNAL_BASE:
        try:
            name = signal.Signals(code - SHELL_SIGNAL_BASE).name
        except ValueError:
            return f"exit code {code}"
        hint = ", e.g. by the host's OOM killer" if name == "SIGKILL" else ""
        return f"exit code {code} (128+{code - SHELL_SIGNAL_BASE}: {name}{hint})"
    return f"exit code {code}"


def classify_failure(
    log_text: str, exit_code: int | None, timed_out: bool
) -> tuple[FailureKind, str]:
    """Why a run gave no result, and the evidence line. Checked in this order:

    interrupted (SIGINT, or 130 from a shell), oom (a known out-of-memory message anywhere; a run
    whose rank died of it often hangs until the timeout), timeout, crash (non-zero exit code,
    with the first error line), silent (exit code 0 or unknown and no PERFORMANCE OVERVIEW, like
    0.16's 16384/16384 which ends after "Preparing to run throughput benchmark...").
    A log that printed its result and exited 0 (or unknown) is not a failure: ValueError.
    """
    lines = log_text.splitlines()
    if exit_code in (-signal.SIGINT, SHELL_SIGNAL_BASE + signal.SIGINT):
        return "interrupted", f"{_exit_description(exit_code)}; {_last_line(lines)}"
    oom = _first_match(lines, OUT_OF_MEMORY)
    if oom:
        then = "; then timed out" if timed_out else ""
        return "oom", f"out of memory at {oom}{then}"
    if timed_out:
        return "timeout", f"timed out; last output {_last_line(lines)}"
    if exit_code:
        error = _first_match(lines, ERROR_LINE)
        where = f"first error at {error}" if error else f"last output {_last_line(lines)}"
        return "crash", f"{_exit_description(exit_code)}; {where}"
    if has_performance_section(log_text):
        raise ValueError("the log has a PERFORMANCE OVERVIEW and no failure: parse it instead")
    code = "exit code unknown" if exit_code is None else "exit code 0"
    return "silent", f"{code} and no PERFORMANCE OVERVIEW; the log ends at {_last_line(lines)}"


# ----------------------------------------------------------------------------- I/O edge


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KitError(f"cannot read: {exc.strerror}", path=str(path)) from None


def decode_log(data: bytes) -> str:
    """A console log's text: UTF-16 when it says so with a BOM (PowerShell's `>` writes that) or
    when every other byte is NUL; else UTF-8, undecodable bytes replaced."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    head = data[:512]
    if len(head) >= 4 and head[1::2].count(0) > len(head) // 4:
        return data.decode("utf-16-le", errors="replace")
    if len(head) >= 4 and head[0::2].count(0) > len(head) // 4:
        return data.decode("utf-16-be", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def read_log(path: Path) -> str:
    return decode_log(read_bytes(path))


def parse_file(path: Path, **point: Any) -> PointResult:
    """One tool output: `.json` is a report; anything else a console log, failed if it has
    no PERFORMANCE OVERVIEW (classified with exit code unknown). `point` as parse_report_json's."""
    if path.suffix == ".json":
        try:
            data = json.loads(read_bytes(path))  # bytes: UTF-8, -16 or -32, BOM or not
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise KitError(
                f"not valid JSON: {exc}",
                path=str(path),
                fix="import the point's console log instead",
            ) from None
        return parse_report_json(data, source_file=str(path), **point)
    text = read_log(path)
    if has_performance_section(text):
        return parse_console(text, source_file=str(path), **point)
    kind, detail = classify_failure(text, exit_code=None, timed_out=False)
    return PointResult.failed(
        kind,
        detail,
        source=SOURCE_CONSOLE,
        identity=Identity(engine_version=version_from_log(text)),
        memory=memory_from_log(text),
        **point,
    )

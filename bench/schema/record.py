"""The one normalized result record, whatever produced it, and the run's summary.csv.

Producers (trtllm-bench report JSON, 0.16-1.x console logs, the hf-transformers runner) map into
`PointResult`; report, verify and plots read only these records. Keys carry units; unknown is
None (null in JSON), never NaN, inf or a string.

The record types are pydantic dataclasses: frozen, unknown keys refused, non-finite floats
refused, every field validated on construction (also by `dataclasses.replace`), and their JSON
Schema is published in schemas/point-result.schema.json (bench.schema.publish writes it).
Dataclasses, not BaseModel, so that producers keep `dataclasses.replace` and `asdict`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from bench.core.errors import KitError
from bench.core.fileio import atomic_write_text, read_json

# /2 added the latency fields (Distribution, scenario, streaming, the measured window): a /1
# reader refuses their keys, so the string says so. A /1 record reads as /2 with them at defaults.
SCHEMA: Final = "trtllm-repro/point-result/2"
READABLE_SCHEMAS = ("trtllm-repro/point-result/1", SCHEMA)
# In results/<run>/points/<point>/: a point is done iff RESULT exists; FAILURE marks a failed try.
RESULT, FAILURE = "result.json", "failure.json"

Status = Literal["ok", "invalid", "failed"]
# Why a point has no valid number. "silent": the tool exited without printing a result.
# Imported evidence: "incomplete" (a required field missing, the log cut off), "implausible"
# (non-finite, zero, negative or above the GPU's ceiling), "disagreement" (two files of one point).
FailureKind = Literal[
    "oom",
    "timeout",
    "crash",
    "silent",
    "length_mismatch",
    "interrupted",
    "incomplete",
    "implausible",
    "disagreement",
]
LENGTH_TOLERANCE = 0.01  # a result whose average ISL/OSL is off target by more than 1% is invalid

# Frozen, no unknown keys, no NaN/inf in float fields. Lax for producers in Python (a list
# becomes a tuple, an int a float); files are read strictly (read_record: a string is no number).
RECORD_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True, config=RECORD_CONFIG)
class Identity:
    """What produced a number, as recorded by the producer itself (never inferred from names)."""

    model: str | None = None
    backend: str | None = None
    engine_version: str | None = None
    tp_size: int | None = None
    pp_size: int | None = None
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    quantization: str | None = None
    max_seq_len: int | None = None
    max_batch_size: int | None = None
    max_num_tokens: int | None = None
    kv_cache_fraction: float | None = None


@dataclass(frozen=True, config=RECORD_CONFIG)
class Distribution:
    """One measured distribution (issue 12); its unit is in the name of the field holding it.

    Percentiles are what the producer reported (trtllm-bench: nearest rank, sorted[int(n*q)]);
    bench.analysis.latency computes the same from requests.csv."""

    mean: float | None = None
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    count: int | None = None  # samples behind it (requests; token gaps for itl)


DISTRIBUTIONS = ("request_latency_ms", "ttft_ms", "tpot_ms", "itl_ms", "per_user_output_tok_s")


@dataclass(frozen=True, config=RECORD_CONFIG)
class Metrics:
    num_requests: int | None = None
    avg_input_len: float | None = None
    avg_output_len: float | None = None
    output_tok_s: float | None = None
    total_tok_s: float | None = None
    req_s: float | None = None
    output_tok_s_per_gpu: float | None = None
    output_tok_s_per_user: float | None = None
    total_latency_ms: float | None = None
    avg_request_latency_ms: float | None = None
    avg_ttft_ms: float | None = None
    avg_tpot_ms: float | None = None
    request_latency_ms: Distribution | None = None  # end-to-end per request
    ttft_ms: Distribution | None = None  # time to first token (streaming only)
    tpot_ms: Distribution | None = None  # per request: (latency - ttft) / (output_tokens - 1)
    itl_ms: Distribution | None = None  # inter-token gaps pooled over requests (where measured)
    per_user_output_tok_s: Distribution | None = None  # per request output tokens / latency
    goodput_req_s: float | None = None  # under the manifest's [slo]; None without one
    goodput_output_tok_s: float | None = None


@dataclass(frozen=True, config=RECORD_CONFIG)
class Memory:
    engine_size_mib: float | None = None
    kv_cache_gib: float | None = None
    kv_cache_max_tokens: int | None = None


@dataclass(frozen=True, config=RECORD_CONFIG)
class PointResult:
    isl: int
    osl: int
    requests: int
    status: Status
    source: str  # the format it was read from, e.g. "trtllm-bench-json", "trtllm-bench-console"
    concurrency: int | None = None  # None: all requests at once
    repeat: int = 0
    failure: FailureKind | None = None
    failure_detail: str | None = None
    identity: Identity = field(default_factory=Identity)
    metrics: Metrics = field(default_factory=Metrics)
    memory: Memory = field(default_factory=Memory)
    raw_files: tuple[str, ...] = ()  # run-relative paths of the untouched tool outputs
    attempts: tuple[dict[str, Any], ...] = ()  # e.g. kv cache fractions tried, with their outcome
    telemetry: dict[str, Any] | None = None
    scenario: Literal["offline", "online"] = "offline"
    streaming: bool = False
    # Epoch ns (time.time_ns clock) of the window the tool measured: first request sent .. last
    # response done; telemetry is aligned to it.
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    # /1 in a summary.json written before /2 (export reads it); the kit writes /2.
    schema: Literal["trtllm-repro/point-result/1", "trtllm-repro/point-result/2"] = SCHEMA

    @classmethod
    def failed(
        cls,
        kind: FailureKind,
        detail: str,
        *,
        source: str,
        isl: int,
        osl: int,
        requests: int,
        **fields: Any,
    ) -> PointResult:
        """The record of a point that gave no number: the one place a "failed" record is made,
        whichever tool or log it comes from (fields: identity, memory, scenario, ...)."""
        return cls(
            isl=isl, osl=osl, requests=requests, status="failed", source=source, failure=kind,
            failure_detail=detail, **fields,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        _check_finite(data, "record")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], path: str = "<record>") -> PointResult:
        """A record from its JSON object: validated strictly, one KitError naming the field."""
        if data.get("schema") not in READABLE_SCHEMAS:
            raise KitError(
                f"schema {data.get('schema')!r} is not {SCHEMA!r}",
                path=path,
                fix="re-import the raw outputs with this version of the kit",
            )
        try:
            text = json.dumps({**data, "schema": SCHEMA}, allow_nan=True)
            return _RECORD.validate_json(text, strict=True)
        except ValidationError as exc:
            key, problem = validation_problem(exc)
            raise KitError(f"not a point record: {problem}", path=path, key=key) from None


_RECORD = TypeAdapter(PointResult)


def validation_problem(exc: ValidationError) -> tuple[str | None, str]:
    """The first problem pydantic found: its dotted key path and what is wrong, in one line."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or None
    value = first.get("input")
    got = "" if isinstance(value, dict | list) else f" (got {value!r})"
    if first["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return key, f"unknown key{got}"
    more = f"; {exc.error_count() - 1} more problem(s)" if exc.error_count() > 1 else ""
    return key, f"{first['msg'].lower()}{got}{more}"


def record_json_schema() -> dict[str, Any]:
    """The JSON Schema of a result.json / failure.json, as published in schemas/."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA,
        **_RECORD.json_schema(),
    }


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where}: {obj} is not finite; unknown values must be None")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


def length_problem(isl: int, osl: int, metrics: Metrics, requests: int | None = None) -> str | None:
    """Why the measured requests or average lengths miss the point's target, or None."""
    if (
        requests is not None
        and metrics.num_requests is not None
        and metrics.num_requests != requests
    ):
        return f"{metrics.num_requests} requests completed, {requests} asked"
    for name, target, got in (
        ("input", isl, metrics.avg_input_len),
        ("output", osl, metrics.avg_output_len),
    ):
        if got is None:
            return f"average {name} length was not reported"
        if abs(got - target) > LENGTH_TOLERANCE * target:
            return (
                f"average {name} length {got:g} differs from target {target} by "
                f"{abs(got - target) / target:.1%} (> {LENGTH_TOLERANCE:.0%})"
            )
    return None


def judge(result: PointResult) -> PointResult:
    """Mark an otherwise successful result invalid when its lengths miss the target."""
    if result.status != "ok":
        return result
    problem = length_problem(result.isl, result.osl, result.metrics, result.requests)
    if problem is None:
        return result
    return dataclasses.replace(
        result, status="invalid", failure="length_mismatch", failure_detail=problem
    )


# ----------------------------------------------------------------------------- summary.csv

SUMMARY_COLUMNS = (
    "isl",
    "osl",
    "requests",
    "concurrency",
    "repeat",
    "status",
    "failure",
    "output_tok_s",
    "total_tok_s",
    "req_s",
    "avg_input_len",
    "avg_output_len",
    "total_latency_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "e2e_p99_ms",
    "output_tok_s_per_user",
    "j_per_output_token",
    "model",
    "tp_size",
    "pp_size",
    "backend",
    "engine_version",
    "quantization",
    "kv_cache_dtype",
    "max_seq_len",
)


def headline_latency(m: Metrics) -> dict[str, float | None]:
    """The serving headline columns: TTFT and TPOT p50/p99, end-to-end p99 (ms)."""

    def pick(d: Distribution | None, q: str) -> float | None:
        return None if d is None else getattr(d, q)

    return {
        "ttft_p50_ms": pick(m.ttft_ms, "p50"),
        "ttft_p99_ms": pick(m.ttft_ms, "p99"),
        "tpot_p50_ms": pick(m.tpot_ms, "p50"),
        "tpot_p99_ms": pick(m.tpot_ms, "p99"),
        "e2e_p99_ms": pick(m.request_latency_ms, "p99"),
    }


def summary_row(r: PointResult) -> dict[str, Any]:
    flat = {
        **dataclasses.asdict(r.identity),
        **dataclasses.asdict(r.metrics),
        **dataclasses.asdict(r),
        **headline_latency(r.metrics),
        "j_per_output_token": (r.telemetry or {}).get("j_per_output_token"),
    }
    return {c: flat[c] for c in SUMMARY_COLUMNS}


def sort_key(r: PointResult) -> tuple[int, int, int, int]:
    return (r.isl, r.osl, r.concurrency or 0, r.repeat)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_csv(records: list[PointResult]) -> str:
    """One row per point, sorted by (isl, osl, concurrency, repeat); floats to 4 decimals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for r in sorted(records, key=sort_key):
        writer.writerow([_cell(v) for v in summary_row(r).values()])
    return out.getvalue()


def write_summary(path: Path, records: list[PointResult]) -> None:
    """summary.csv and, beside it, summary.json (bench.schema.results_schema): record both as
    outputs."""
    from bench.schema.results_schema import write_summary_json  # it builds on this module

    atomic_write_text(path, summary_csv(records))
    write_summary_json(path.parent, records)


def read_record(path: Path) -> PointResult:
    """One point record; an unreadable or malformed one stops the reader, naming the file."""
    fix = "restore the file from the run's copy, or remove the point folder and rerun the sweep"
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KitError(f"unreadable point record: {exc}", path=str(path), fix=fix) from None
    if not isinstance(data, dict):
        raise KitError("not a point record: not a JSON object", path=str(path), fix=fix)
    try:
        return PointResult.from_json(data, str(path))
    except KitError as exc:
        raise KitError(exc.message, path=exc.path, key=exc.key, fix=exc.fix or fix) from None


def record_files(points_dir: Path) -> list[Path]:
    """Each finished point folder's record file, result or recorded failure, sorted by folder;
    a `.partial` folder (a point still running, or interrupted) is not finished."""
    out = []
    for folder in sorted(points_dir.glob("*")):
        if folder.name.endswith(".partial"):
            continue
        found = next((folder / n for n in (RESULT, FAILURE) if (folder / n).is_file()), None)
        if found is not None:
            out.append(found)
    return out


def load_records(points_dir: Path) -> list[PointResult]:
    """Every point folder's record (ok, invalid and failed alike); unfinished ones skipped."""
    return [read_record(path) for path in record_files(points_dir)]

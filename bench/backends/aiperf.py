"""NVIDIA AIPerf (pinned 0.13.0) as the online load generator: its command line and its exports.

Reads:  an AIPerf artifact folder: profile_export_aiperf.json (aggregates, display units: ms,
        sec, tokens/sec), phase_manifest.json (the measured window, epoch ns),
        profile_export.jsonl (one record per request, warmup included)
Writes: nothing itself; `parse_exports` returns the point's record and its per-request rows
        (bench.stages.serve writes them to requests.csv with bench.analysis.latency)

Every flag but the route is fixed here (the names were read from `aiperf profile --help` of
0.13.0); the route, chat or completions, is the backend's (bench.backends.server.Serving):
synthetic prompts from random token ids (`--prompt-corpus random`, re-encoded by AIPerf to the
exact ISL), a fixed output length sent as `max_tokens` (on chat, `--use-legacy-max-tokens`:
transformers serve ignores `max_completion_tokens`), streaming (TTFT and inter-token gaps need
it), no scrape of server or GPU metrics (the kit samples the GPU itself, aligned to the window
read here).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.analysis.latency import RequestRow
from bench.backends.server import Endpoint
from bench.core.errors import KitError
from bench.schema.record import Distribution, Identity, Metrics, PointResult, judge

VERSION = "0.13.0"
VERSION_TIMEOUT_S = 60  # `aiperf --version` imports its CLI: 0.4 s idle, seconds on a loaded host
SOURCE = "aiperf"
AGGREGATE = "profile_export_aiperf.json"
PHASES = "phase_manifest.json"
PER_REQUEST = "profile_export.jsonl"
PROFILING = "profiling"
# AIPerf metric tag -> record field; all in ms except per-user throughput (tokens/sec/user).
# tpot: AIPerf's inter_token_latency is per request (latency - TTFT) / (OSL - 1), the record's
# TPOT. itl: inter_chunk_latency pools the gaps between streamed chunks of every request; the
# servers the kit drives stream one token per chunk, so these are the inter-token gaps.
DISTRIBUTIONS = {
    "request_latency_ms": ("request_latency", "ms"),
    "ttft_ms": ("time_to_first_token", "ms"),
    "tpot_ms": ("inter_token_latency", "ms"),
    "itl_ms": ("inter_chunk_latency", "ms"),
    "per_user_output_tok_s": ("e2e_output_token_throughput", "tokens/sec/user"),
}


def installed_version(aiperf: str) -> str:
    """The version of the AIPerf that measures, as it prints it (`aiperf --version`): the online
    sweep's stage key and the run's provenance carry it, so another AIPerf reruns the sweep."""
    found = shutil.which(aiperf)
    if found is None:
        raise KitError(
            f"AIPerf not found: {aiperf}",
            fix="run the online scenario through make (`make sweep` builds .venv-aiperf), "
            "or pass --aiperf <path to aiperf>",
        )
    try:
        proc = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise KitError(f"`{found} --version` did not answer in {VERSION_TIMEOUT_S} s") from None
    said = proc.stdout.strip()
    if proc.returncode != 0 or not said or len(said.split()) != 1:
        raise KitError(
            f"`{found} --version` exited {proc.returncode} saying {said or proc.stderr.strip()!r}",
            fix=f"rebuild AIPerf's venv (requirements/aiperf.lock: AIPerf {VERSION})",
        )
    return said


def profile_argv(
    aiperf: str,
    *,
    model_name: str,
    base_url: str,
    endpoint_type: Endpoint,
    tokenizer: Path,
    isl: int,
    osl: int,
    requests: int,
    concurrency: int,
    warmup: int,
    seed: int,
    artifact_dir: Path,
    extra_inputs: dict[str, Any] | None = None,
) -> list[str]:
    """`aiperf profile` for one point: closed loop at `concurrency`, exact ISL/OSL, streaming,
    on the backend's route (bench.backends.server.Endpoint)."""
    argv = [
        aiperf,
        "profile",
        "--model",
        model_name,
        "--url",
        base_url,
        "--endpoint-type",
        endpoint_type,
        "--streaming",
        "--tokenizer",
        str(tokenizer),
        "--prompt-corpus",
        "random",
        "--isl",
        str(isl),
        "--isl-stddev",
        "0",
        "--osl",
        str(osl),
        "--osl-stddev",
        "0",
        "--concurrency",
        str(concurrency),
        "--request-count",
        str(requests),
        "--random-seed",
        str(seed),
        "--no-server-metrics",
        "--no-gpu-telemetry",
        "--ui",
        "none",
        "--artifact-dir",
        str(artifact_dir),
    ]
    if endpoint_type == "chat":  # completions always sends max_tokens
        argv.append("--use-legacy-max-tokens")
    if warmup:
        argv += ["--warmup-request-count", str(warmup)]
    for key, value in (extra_inputs or {}).items():
        argv += ["--extra-inputs", f"{key}:{json.dumps(value)}"]
    return argv


# ----------------------------------------------------------------------------- parsing


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def metric(data: dict, tag: str, unit: str, stat: str = "avg") -> float | None:
    """One statistic of one metric, checked against the unit the kit expects (None if absent)."""
    entry = data.get(tag)
    if not isinstance(entry, dict):
        return None
    if entry.get("unit") != unit:
        raise KitError(
            f"AIPerf metric {tag!r} is in {entry.get('unit')!r}, expected {unit!r}",
            path=AGGREGATE,
            fix=f"use AIPerf {VERSION} (the version the kit's parser was written for)",
        )
    return _number(entry.get(stat))


def distribution(data: dict, tag: str, unit: str) -> Distribution | None:
    if not isinstance(data.get(tag), dict):
        return None
    stats = {s: metric(data, tag, unit, s) for s in ("p50", "p90", "p95", "p99", "min", "max")}
    count = data[tag].get("count")
    return Distribution(
        mean=metric(data, tag, unit),
        count=int(count) if isinstance(count, int | float) else None,
        **stats,
    )


def profiling_window(phases: dict) -> tuple[int, int]:
    """The profiling phase's [start_ns, end_ns] (epoch ns, wall clock) from phase_manifest.json:
    the origin of requests.csv's start_ms and the window telemetry is aligned to."""
    for phase in phases.get("phases", []):
        if isinstance(phase, dict) and phase.get("phase_kind") == PROFILING:
            start, end = phase.get("start_ns"), phase.get("end_ns")
            if isinstance(start, int) and isinstance(end, int):
                return start, end
    raise KitError(
        "no profiling phase with start_ns and end_ns",
        path=PHASES,
        fix=f"use AIPerf {VERSION} (the version the kit's parser was written for)",
    )


# AIPerf's --isl is what the server sees: with a tokenizer that adds BOS it sends ISL - 1 tokens
# of text, and its own input_sequence_length counts that text only. The server's count (its usage
# reply, where it sends one: trtllm-serve does) is the point's input length; without one, AIPerf's.
INPUT_LENGTH = ("usage_prompt_tokens", "input_sequence_length")


def input_length(get: Any) -> float | None:
    """The first of INPUT_LENGTH that `get(tag)` finds."""
    for tag in INPUT_LENGTH:
        if (value := get(tag)) is not None:
            return value
    return None


def metrics_from(data: dict, gpus: int) -> Metrics:
    out_tok_s = metric(data, "output_token_throughput", "tokens/sec")
    avg_in = input_length(lambda tag: metric(data, tag, "tokens"))
    avg_out = metric(data, "output_sequence_length", "tokens")
    # AIPerf's total_token_throughput is output_token_throughput x (ISL + OSL) / OSL over its own
    # counts; the same with the input length above
    total_tok_s = (
        out_tok_s * (avg_in + avg_out) / avg_out
        if out_tok_s is not None and avg_in is not None and avg_out
        else None
    )
    duration_s = metric(data, "benchmark_duration", "sec")
    count = metric(data, "request_count", "requests")
    # Any: Metrics fields named at run time, so mypy cannot match them to its keywords
    dists: dict[str, Any] = {
        field: distribution(data, tag, unit) for field, (tag, unit) in DISTRIBUTIONS.items()
    }
    return Metrics(
        num_requests=int(count) if count is not None else None,
        avg_input_len=avg_in,
        avg_output_len=avg_out,
        output_tok_s=out_tok_s,
        total_tok_s=total_tok_s,
        req_s=metric(data, "request_throughput", "requests/sec"),
        output_tok_s_per_gpu=out_tok_s / gpus if out_tok_s is not None else None,
        output_tok_s_per_user=metric(data, "e2e_output_token_throughput", "tokens/sec/user"),
        total_latency_ms=duration_s * 1000.0 if duration_s is not None else None,
        avg_request_latency_ms=metric(data, "request_latency", "ms"),
        avg_ttft_ms=metric(data, "time_to_first_token", "ms"),
        avg_tpot_ms=metric(data, "inter_token_latency", "ms"),
        **dists,
    )


def _value(record: dict, tag: str) -> float | None:
    entry = record.get("metrics", {}).get(tag)
    return _number(entry.get("value")) if isinstance(entry, dict) else None


def request_rows(jsonl_text: str, window_start_ns: int | None) -> list[RequestRow]:
    """One row per profiling request that completed (warmup and errors excluded), in the order
    they started; start_ms relative to the window's start (without one, a cancelled run's, to
    the first request's)."""
    records = []
    for n, line in enumerate(jsonl_text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise KitError(f"line {n} is not JSON", path=PER_REQUEST) from None
        meta = record.get("metadata", {})
        if meta.get("benchmark_phase") != PROFILING or record.get("error"):
            continue
        records.append((n, record))
    records.sort(key=lambda r: r[1]["metadata"].get("request_start_ns") or 0)
    rows = []
    if window_start_ns is None and records:
        window_start_ns = records[0][1]["metadata"].get("request_start_ns")
    for i, (n, record) in enumerate(records):
        start_ns = record["metadata"].get("request_start_ns")
        isl = input_length(lambda tag, record=record: _value(record, tag))
        osl = _value(record, "output_sequence_length")
        latency = _value(record, "request_latency")
        if (
            not isinstance(start_ns, int)
            or not isinstance(window_start_ns, int)
            or isl is None
            or osl is None
            or latency is None
        ):
            raise KitError(
                f"line {n}: a completed request without its start, lengths or latency",
                path=PER_REQUEST,
                fix=f"use AIPerf {VERSION} (the version the kit's parser was written for)",
            )
        rows.append(
            RequestRow(
                request=i,
                input_tokens=int(isl),
                output_tokens=int(osl),
                start_ms=(start_ns - window_start_ns) / 1e6,
                ttft_ms=_value(record, "time_to_first_token"),
                latency_ms=latency,
            )
        )
    return rows


def failure_detail(data: dict) -> str | None:
    """Why AIPerf's own summary says the run is not a measurement, or None."""
    if data.get("was_cancelled"):
        return "AIPerf reports the run cancelled"
    errors = metric(data, "error_request_count", "requests") or 0.0
    if errors:
        summary = data.get("error_summary") or []
        first = summary[0] if summary and isinstance(summary[0], dict) else {}
        return f"{int(errors)} request(s) failed: {json.dumps(first)[:300]}"
    return None


def parse_exports(
    folder: Path,
    *,
    isl: int,
    osl: int,
    requests: int,
    concurrency: int | None,
    repeat: int,
    identity: Identity,
    gpus: int,
) -> tuple[PointResult, list[RequestRow]]:
    """The point's record (judged: lengths within 1% and every request answered) and its
    per-request rows, from one AIPerf artifact folder."""
    try:
        data = json.loads((folder / AGGREGATE).read_text(encoding="utf-8"))
        phases = json.loads((folder / PHASES).read_text(encoding="utf-8"))
        jsonl = (folder / PER_REQUEST).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise KitError(f"AIPerf wrote no {Path(exc.filename).name}", path=str(folder)) from None
    except ValueError as exc:
        raise KitError(f"AIPerf export is not JSON: {exc}", path=str(folder)) from None
    if not isinstance(data, dict) or not isinstance(phases, dict):
        raise KitError("AIPerf export is not a JSON object", path=str(folder))
    problem = failure_detail(data)
    start_ns: int | None
    end_ns: int | None
    try:
        start_ns, end_ns = profiling_window(phases)
    except KitError:
        if problem is None:
            raise
        start_ns = end_ns = None  # a cancelled run may end without a window: invalid below
    result = PointResult(
        isl=isl,
        osl=osl,
        requests=requests,
        concurrency=concurrency,
        repeat=repeat,
        status="ok",
        source=SOURCE,
        identity=identity,
        metrics=metrics_from(data, gpus),
        scenario="online",
        streaming=True,
        window_start_ns=start_ns,
        window_end_ns=end_ns,
    )
    result = judge(result)
    if problem and result.status == "ok":
        result = dataclasses.replace(
            result, status="invalid", failure="incomplete", failure_detail=problem
        )
    return result, request_rows(jsonl, start_ns)

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
- Backend is written in the manifest's words: the JSON's "TRT" and the console's
  `= ENGINE DETAILS` block mean "tensorrt"; "Pytorch" and `= PYTORCH BACKEND` mean "pytorch"
  (the tool writes "Pytorch" for _autodeploy too). Any other name is kept as printed.
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
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import signal
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import KitError
from bench.record import FailureKind, Identity, Memory, Metrics, PointResult, judge

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
    "ENGINE DETAILS": "tensorrt",
    "PYTORCH BACKEND": "pytorch",
    "WORLD + RUNTIME INFORMATION": None,
    "REQUEST DETAILS": None,
    "PERFORMANCE OVERVIEW": None,
    "STREAMING STATISTICS": None,
}
PERFORMANCE_SECTION = "PERFORMANCE OVERVIEW"
BACKEND_NAMES = {"trt": "tensorrt", "tensorrt": "tensorrt", "pytorch": "pytorch"}
NOT_PRINTED = {"", "none", "n/a"}

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

_GROUPS = {"identity": Identity, "metrics": Metrics, "memory": Memory}


def _field_type(target: str) -> type:
    """int, float or str: the record's own annotation for "group.field"."""
    group, name = target.split(".")
    hint = typing.get_type_hints(_GROUPS[group])[name]
    return next(t for t in typing.get_args(hint) if t is not type(None))


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
        return None  # the tool could not compute it: unknown
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
        return None
    if kind is int:
        if number != int(number):
            raise ValueError(f"expected a whole number, got {text!r}")
        return int(number)
    return number


def _build(values: dict[str, Any], base: dict[str, Any]) -> PointResult:
    """An "ok" PointResult from {"group.field": value}, judged for length mismatch."""
    groups: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
    for target, value in values.items():
        group, name = target.split(".")
        groups[group][name] = value
    result = PointResult(
        status="ok",
        identity=Identity(**groups["identity"]),
        metrics=Metrics(**groups["metrics"]),
        memory=Memory(**groups["memory"]),
        **base,
    )
    return judge(result)


# ----------------------------------------------------------------------------- report JSON


def parse_report_json(
    data: dict[str, Any],
    *,
    isl: int,
    osl: int,
    requests: int,
    concurrency: int | None = None,
    repeat: int = 0,
    source_file: str,
) -> PointResult:
    """A `--report_json` document (0.16-1.x sections) as a judged PointResult."""
    if not isinstance(data, dict):
        raise KitError(
            "not a trtllm-bench report (the top level is not an object)", path=source_file
        )
    values: dict[str, Any] = {}
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
    section, key = REPORT_JSON_HEADLINE
    if values.get("metrics.output_tok_s") is None:
        raise KitError(
            "no output throughput: not a finished trtllm-bench throughput report",
            path=source_file,
            key=f"{section}.{key}",
            fix="re-run the point, or import its console log instead",
        )
    base = dict(
        isl=isl,
        osl=osl,
        requests=requests,
        concurrency=concurrency,
        repeat=repeat,
        source=SOURCE_JSON,
    )
    return _build(values, base)


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


def parse_console(
    text: str,
    *,
    isl: int,
    osl: int,
    requests: int,
    concurrency: int | None = None,
    repeat: int = 0,
    source_file: str = "<console>",
) -> PointResult:
    """A console log that printed its report (any known label set) as a judged PointResult."""
    lines = _report_lines(text)
    if not any(section == PERFORMANCE_SECTION for section, _, _ in lines):
        raise KitError(
            "no PERFORMANCE OVERVIEW block: the run printed no result",
            path=source_file,
            fix="classify it with classify_failure (parse_file does this)",
        )
    values: dict[str, Any] = {}
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
    if values.get("metrics.output_tok_s") is None:
        raise KitError(
            f"PERFORMANCE OVERVIEW has no known output throughput label; it printed: "
            f"{', '.join(seen) or 'nothing'}",
            path=source_file,
            fix="add the new label to CONSOLE_LABELS in bench/parse_trtllm.py",
        )
    if values.get("identity.engine_version") is None:
        values["identity.engine_version"] = version_from_log(text)
    values.update({f"memory.{k}": v for k, v in dataclasses.asdict(memory_from_log(text)).items()})
    base = dict(
        isl=isl,
        osl=osl,
        requests=requests,
        concurrency=concurrency,
        repeat=repeat,
        source=SOURCE_CONSOLE,
    )
    return _build(values, base)


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


def failed_result(
    isl: int,
    osl: int,
    requests: int,
    kind: FailureKind,
    detail: str,
    *,
    concurrency: int | None = None,
    repeat: int = 0,
    source: str = SOURCE_CONSOLE,
    identity: Identity | None = None,
    memory: Memory | None = None,
) -> PointResult:
    """A "failed" record; identity and memory hold what the log printed before it stopped."""
    return PointResult(
        isl=isl,
        osl=osl,
        requests=requests,
        status="failed",
        source=source,
        concurrency=concurrency,
        repeat=repeat,
        failure=kind,
        failure_detail=detail,
        identity=identity or Identity(),
        memory=memory or Memory(),
    )


# ----------------------------------------------------------------------------- I/O edge


def parse_file(
    path: Path,
    *,
    isl: int,
    osl: int,
    requests: int,
    concurrency: int | None = None,
    repeat: int = 0,
) -> PointResult:
    """One tool output: `.json` is a report; anything else a console log, failed if it has
    no PERFORMANCE OVERVIEW (classified with exit code unknown)."""
    point = dict(isl=isl, osl=osl, requests=requests, concurrency=concurrency, repeat=repeat)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KitError(
                f"not valid JSON: {exc}",
                path=str(path),
                fix="import the point's console log instead",
            ) from None
        return parse_report_json(data, source_file=str(path), **point)
    text = path.read_text(encoding="utf-8", errors="replace")
    if has_performance_section(text):
        return parse_console(text, source_file=str(path), **point)
    kind, detail = classify_failure(text, exit_code=None, timed_out=False)
    return failed_result(
        kind=kind,
        detail=detail,
        identity=Identity(engine_version=version_from_log(text)),
        memory=memory_from_log(text),
        **point,
    )

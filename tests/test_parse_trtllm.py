"""bench.backends.trtllm.parse: every label set, report JSON, failure classes and the seed's 0.16
logs."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from bench.backends.trtllm import parse as parse_trtllm
from bench.backends.trtllm.parse import (
    classify_failure,
    parse_console,
    parse_file,
    parse_report_json,
)
from bench.core.errors import KitError
from tests.conftest import SHARED

DATA = Path(__file__).parent / "data" / "trtllm"
SEED_LOGS = SHARED / "fixtures" / "trtllm-bench-0.16-logs"
POINT = dict(isl=128, osl=128, requests=200)


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def report() -> dict:
    return json.loads(text("report_1.0.json"))


@pytest.fixture
def seed_logs() -> Path:
    if not SEED_LOGS.is_dir():
        pytest.skip(f"{SEED_LOGS} is absent (needs ../shared)")
    return SEED_LOGS


# ----------------------------------------------------------------------------- console


def test_console_016_label_set():
    r = parse_console(text("console_0.16.txt"), isl=128, osl=128, requests=100)
    assert (r.status, r.source, r.failure) == ("ok", "trtllm-bench-console", None)
    i = r.identity
    assert (i.model, i.backend, i.engine_version) == (
        "meta-llama/Llama-3.1-8B-Instruct",
        "trtllm-tensorrt",
        "0.16.0",
    )
    assert (i.tp_size, i.pp_size, i.max_seq_len, i.max_batch_size, i.max_num_tokens) == (
        2,
        1,
        4096,
        1024,
        8192,
    )
    assert (i.dtype, i.kv_cache_dtype, i.quantization, i.kv_cache_fraction) == (
        "bfloat16",
        "FP8",
        "FP8",
        0.9,
    )
    m = r.metrics
    assert (m.num_requests, m.avg_input_len, m.avg_output_len) == (100, 128.0, 128.0)
    assert (m.output_tok_s, m.req_s, m.total_latency_ms) == (1280.5, 10.0039, 9996.095)
    assert m.total_tok_s is None  # 0.16 does not print it; nothing is derived
    assert m.output_tok_s_per_gpu is None and m.avg_ttft_ms is None
    # Engine size: the largest rank's; KV cache: the allocation line.
    assert (r.memory.engine_size_mib, r.memory.kv_cache_gib, r.memory.kv_cache_max_tokens) == (
        4216.0,
        63.11,
        1033984,
    )


def test_console_10_label_set():
    r = parse_console(text("console_1.0.txt"), **POINT)
    assert r.status == "ok"
    assert (r.identity.backend, r.identity.engine_version, r.identity.max_seq_len) == (
        "trtllm-pytorch",
        "1.0.0",
        None,
    )
    assert r.identity.kv_cache_fraction == pytest.approx(0.95)
    m = r.metrics
    assert (m.num_requests, m.output_tok_s, m.total_tok_s, m.req_s) == (
        200,
        12800.0,
        25600.0,
        100.0,
    )
    assert (m.output_tok_s_per_gpu, m.output_tok_s_per_user) == (12800.0, 85.32)
    assert (m.total_latency_ms, m.avg_request_latency_ms) == (2000.0, 1500.25)
    assert (m.avg_ttft_ms, m.avg_tpot_ms) == (120.5, 10.86)
    # The PyTorch backend's first allocation only measures memory; the last one is the cache.
    assert (r.memory.kv_cache_gib, r.memory.kv_cache_max_tokens) == (61.75, 505856)
    assert r.memory.engine_size_mib is None


def test_console_and_json_of_one_run_agree():
    console = parse_console(text("console_1.0.txt"), **POINT)
    from_json = parse_report_json(report(), source_file="report_1.0.json", **POINT)
    assert console.metrics == from_json.metrics


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("TensorRT-LLM Version:", "TensorRT LLM Version:"),
        (
            "Per User Output Throughput [w/ ctx] (tps/user):",
            "Per User Output Throughput (tokens/sec/user):",
        ),
        ("Per GPU Output Throughput (tps/gpu):", "Per GPU Output Throughput (tokens/sec/gpu):"),
        ("= PYTORCH BACKEND", "= PyTorch backend"),
    ],
)
def test_console_renamed_labels(old, new):
    log = text("console_1.0.txt")
    assert old in log
    assert parse_console(log.replace(old, new), **POINT) == parse_console(log, **POINT)


def test_console_whitespace_and_tabs_do_not_matter():
    log = text("console_0.16.txt").replace("\t", "    ")
    assert parse_console(log, isl=128, osl=128, requests=100).identity.tp_size == 2


def test_console_version_falls_back_to_banner():
    log = text("console_1.0.txt").replace("TensorRT-LLM Version:\t1.0.0\n", "")
    log = log.replace("version: 1.0.0", "version: 1.0.0rc4")
    assert parse_console(log, **POINT).identity.engine_version == "1.0.0rc4"


def test_console_unknown_output_label_names_the_table(monkeypatch):
    renamed = text("console_1.0.txt").replace(
        "Total Output Throughput (tokens/sec)", "System Output Throughput (tok/s)"
    )
    with pytest.raises(KitError, match=r"(?s)System Output Throughput \(tok/s\).*CONSOLE_LABELS"):
        parse_console(renamed, **POINT, source_file="x.txt")
    # A new label set is one line in the table.
    labels = {
        **parse_trtllm.CONSOLE_LABELS,
        "System Output Throughput (tok/s)": "metrics.output_tok_s",
    }
    monkeypatch.setattr(parse_trtllm, "CONSOLE_LABELS", labels)
    assert parse_console(renamed, **POINT).metrics.output_tok_s == 12800.0


def test_console_bad_value_names_label_and_line():
    log = text("console_0.16.txt").replace("TP Size:\t\t2", "TP Size:\t\ttwo")
    with pytest.raises(KitError, match=r"x\.txt: TP Size: .*\(line 3[0-9]\)"):
        parse_console(log, isl=128, osl=128, requests=100, source_file="x.txt")


def test_console_labels_outside_report_blocks_are_ignored():
    log = "Model: not-this-one\nTP Size: 99\n" + text("console_0.16.txt")
    r = parse_console(log, isl=128, osl=128, requests=100)
    assert (r.identity.model, r.identity.tp_size) == ("meta-llama/Llama-3.1-8B-Instruct", 2)


def test_console_without_result_is_an_error():
    with pytest.raises(KitError, match="no PERFORMANCE OVERVIEW"):
        parse_console(text("silent.txt"), **POINT)


def test_console_length_mismatch_is_invalid():
    r = parse_console(text("console_0.16.txt"), isl=128, osl=256, requests=100)
    assert (r.status, r.failure) == ("invalid", "length_mismatch")
    assert r.failure_detail.startswith("average output length 128 differs from target 256")
    assert r.metrics.output_tok_s == 1280.5  # the numbers stay, marked invalid


# ----------------------------------------------------------------------------- report JSON


def test_report_json_maps_every_section():
    r = parse_report_json(report(), source_file="report_1.0.json", **POINT)
    assert (r.status, r.source) == ("ok", "trtllm-bench-json")
    i = r.identity
    assert (i.model, i.backend, i.engine_version, i.max_seq_len) == (
        "meta-llama/Llama-3.1-8B-Instruct",
        "trtllm-tensorrt",
        "1.0.0",
        4096,
    )
    assert (i.tp_size, i.pp_size, i.max_batch_size, i.max_num_tokens) == (1, 1, 2048, 8192)
    assert (i.dtype, i.kv_cache_dtype, i.quantization, i.kv_cache_fraction) == (
        "bfloat16",
        "FP8",
        "FP8",
        0.9,
    )
    m = r.metrics
    assert (m.num_requests, m.avg_input_len, m.avg_output_len) == (200, 128.0, 128.0)
    assert (m.output_tok_s, m.total_tok_s, m.req_s) == (12800.0, 25600.0, 100.0)
    assert (m.avg_ttft_ms, m.avg_tpot_ms) == (120.5, 10.86)


def test_report_json_optional_sections_and_keys_are_none():
    data = report()
    for section in ("streaming_metrics", "dataset", "world_info"):
        del data[section]
    del data["engine"]["max_sequence_length"]
    data["engine"]["backend"] = "Pytorch"
    r = parse_report_json(data, source_file="r.json", **POINT)
    assert r.status == "ok"
    assert (r.identity.backend, r.identity.max_seq_len, r.identity.tp_size) == (
        "trtllm-pytorch",
        None,
        None,
    )
    assert (r.metrics.avg_ttft_ms, r.identity.kv_cache_fraction) == (None, None)


@pytest.mark.parametrize(("written", "fraction"), [(0.9, 0.9), (90, 0.9), (1.0, 1.0), (None, None)])
def test_report_json_kv_cache_percentage_or_fraction(written, fraction):
    data = report()
    data["world_info"]["kv_cache_percentage"] = written
    r = parse_report_json(data, source_file="r.json", **POINT)
    assert r.identity.kv_cache_fraction == pytest.approx(fraction)


def test_report_json_not_finite_is_unknown():
    data = report()
    data["performance"]["output_throughput_per_user_tok_s"] = float("nan")
    r = parse_report_json(data, source_file="r.json", **POINT)
    assert r.metrics.output_tok_s_per_user is None
    r.to_json()  # still serializable: no NaN


def test_report_json_without_output_throughput():
    data = report()
    del data["performance"]["system_output_throughput_tok_s"]
    with pytest.raises(KitError, match=r"r\.json: performance\.system_output_throughput_tok_s"):
        parse_report_json(data, source_file="r.json", **POINT)


@pytest.mark.parametrize(
    ("section", "key", "value", "match"),
    [
        ("world_info", "tp_size", "8", r"world_info\.tp_size: expected a number"),
        ("world_info", "tp_size", 1.5, r"world_info\.tp_size: expected a whole number"),
        ("engine", "model", 7, r"engine\.model: expected a string"),
        ("performance", "request_throughput_req_s", True, r"request_throughput_req_s: expected"),
        ("world_info", "kv_cache_percentage", [90], r"kv_cache_percentage: expected a number"),
        ("engine", "backend", 1, r"engine\.backend: expected a string"),
    ],
)
def test_report_json_wrong_types(section, key, value, match):
    data = copy.deepcopy(report())
    data[section][key] = value
    with pytest.raises(KitError, match=match):
        parse_report_json(data, source_file="r.json", **POINT)


def test_report_json_length_mismatch_is_invalid():
    data = report()
    data["request_info"]["avg_output_length"] = 100.0
    r = parse_report_json(data, source_file="r.json", **POINT)
    assert (r.status, r.failure) == ("invalid", "length_mismatch")
    assert "output length 100" in r.failure_detail


# ----------------------------------------------------------------------------- failures


def test_classify_oom_names_the_line():
    kind, detail = classify_failure(text("oom.txt"), exit_code=1, timed_out=False)
    assert kind == "oom"
    assert detail.startswith("out of memory at line 5: [TensorRT-LLM][ERROR] CUDA runtime error")


@pytest.mark.parametrize(
    "line",
    [
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "[TRT] [E] 1: [defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime"
        " (out of memory)",
        "CUDA_ERROR_OUT_OF_MEMORY",
        "terminate called after throwing an instance of 'std::bad_alloc'",
        "Requested amount of GPU memory (1073741824 bytes) could not be allocated.",
        "cudaErrorMemoryAllocation",
    ],
)
def test_classify_oom_patterns(line):
    assert classify_failure(f"start\n{line}\n", exit_code=1, timed_out=False)[0] == "oom"


def test_classify_oom_then_hang_is_oom():
    kind, detail = classify_failure(text("oom.txt"), exit_code=None, timed_out=True)
    assert kind == "oom" and detail.endswith("; then timed out")


def test_classify_timeout():
    kind, detail = classify_failure("a\nBenchmark started.\n\n", exit_code=None, timed_out=True)
    assert (kind, detail) == ("timeout", "timed out; last output line 2: Benchmark started.")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (-11, "exit code -11 (killed by SIGSEGV)"),
        (137, "exit code 137 (128+9: SIGKILL, e.g. by the host's OOM killer)"),
        (1, "exit code 1"),
    ],
)
def test_classify_crash_names_exit_code(code, expected):
    log = "ok\nRuntimeError: [TensorRT-LLM][ERROR] Assertion failed: x\nmore\n"
    kind, detail = classify_failure(log, exit_code=code, timed_out=False)
    assert kind == "crash"
    assert detail == f"{expected}; first error at line 2: {log.splitlines()[1]}"


def test_classify_crash_without_error_line_shows_last_line():
    kind, detail = classify_failure("a\nlast words\n", exit_code=3, timed_out=False)
    assert (kind, detail) == ("crash", "exit code 3; last output line 2: last words")


@pytest.mark.parametrize("code", [-2, 130])
def test_classify_interrupted(code):
    assert classify_failure("a\n", exit_code=code, timed_out=False)[0] == "interrupted"


@pytest.mark.parametrize(("code", "said"), [(0, "exit code 0"), (None, "exit code unknown")])
def test_classify_silent(code, said):
    kind, detail = classify_failure(text("silent.txt"), exit_code=code, timed_out=False)
    assert kind == "silent"
    assert detail.startswith(f"{said} and no PERFORMANCE OVERVIEW; the log ends at line 2: ")
    assert detail.endswith("Preparing to run throughput benchmark...")


def test_classify_a_finished_run_is_not_a_failure():
    with pytest.raises(ValueError, match="parse it instead"):
        classify_failure(text("console_0.16.txt"), exit_code=0, timed_out=False)


# ----------------------------------------------------------------------------- parse_file


def test_parse_file_dispatches_on_suffix():
    assert parse_file(DATA / "report_1.0.json", **POINT).source == "trtllm-bench-json"
    assert parse_file(DATA / "console_1.0.txt", **POINT).source == "trtllm-bench-console"


def test_parse_file_without_result_is_failed_with_what_it_printed():
    r = parse_file(DATA / "oom.txt", **POINT)
    assert (r.status, r.failure) == ("failed", "oom")
    assert r.identity.engine_version == "0.16.0"
    assert (r.memory.engine_size_mib, r.memory.kv_cache_gib) == (4210.0, 63.11)
    r = parse_file(DATA / "silent.txt", **POINT)
    assert (r.status, r.failure) == ("failed", "silent")


def test_parse_file_bad_json(tmp_path):
    bad = tmp_path / "result_1_1_1.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(KitError, match=r"result_1_1_1\.json: not valid JSON"):
        parse_file(bad, isl=1, osl=1, requests=1)


# ----------------------------------------------------------------------------- the seed's logs


def _seed_name(path: Path) -> tuple[int, int, int]:
    isl, osl, requests = path.stem.split("_")[1:]
    return int(isl), int(osl), int(requests)


def test_seed_logs_reproduce_throughput_summary(seed_logs):
    """Every log gives its row of the seed's throughput_summary.csv, to the last digit."""
    with open(seed_logs / "throughput_summary.csv", newline="") as f:
        expected = {(row[0], row[1]): row for row in list(csv.reader(f))[1:]}
    produced = {}
    for path in sorted(seed_logs.glob("result_*.txt")):
        isl, osl, requests = _seed_name(path)
        r = parse_file(path, isl=isl, osl=osl, requests=requests)
        if r.status == "failed":
            continue
        m = r.metrics
        produced[(str(isl), str(osl))] = [
            str(isl),
            str(osl),
            str(m.num_requests),
            *(f"{v:.4f}" for v in (m.output_tok_s, m.req_s, m.avg_input_len, m.avg_output_len)),
        ]
    assert len(produced) == 47
    assert produced == {key: expected[key] for key in produced}
    # The CSV's other rows are the points whose logs are not among the fixtures (OSL 512, 8192).
    assert {osl for _, osl in set(expected) - set(produced)} == {"512", "8192"}


def test_seed_logs_identity_and_the_silent_failure(seed_logs):
    results = {}
    for path in sorted(seed_logs.glob("result_*.txt")):
        isl, osl, requests = _seed_name(path)
        results[(isl, osl)] = parse_file(path, isl=isl, osl=osl, requests=requests)
    assert len(results) == 48
    failed = results.pop((16384, 16384))
    assert (failed.status, failed.failure, failed.identity.engine_version) == (
        "failed",
        "silent",
        "0.16.0",
    )
    assert failed.failure_detail.endswith("Preparing to run throughput benchmark...")
    for r in results.values():
        assert r.status == "ok"
        i = r.identity
        assert (i.model, i.tp_size, i.engine_version) == (
            "meta-llama/Llama-3.1-70B-Instruct",
            8,
            "0.16.0",
        )
        assert (i.backend, i.max_seq_len, i.quantization) == ("trtllm-tensorrt", 25000, "FP8")
        assert (r.memory.engine_size_mib, r.memory.kv_cache_gib) == (8941.0, 52.08)

"""AIPerf 0.13.0 exports -> the kit's record, and the pinned command line.

tests/data/aiperf/ holds real exports: AIPerf 0.13.0 against `transformers serve` (4.57.3)
serving the demo model's served copy on this CPU (c=2, 8 requests + 2 warmup, ISL 32, OSL 16).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from bench.analysis import latency
from bench.backends import aiperf
from bench.core.errors import KitError
from bench.schema.record import Identity, PointResult

DATA = Path(__file__).parent / "data" / "aiperf"
KEY = {"isl": 32, "osl": 16, "requests": 8, "concurrency": 2, "repeat": 0}


def exports(tmp_path: Path, edit=None) -> Path:
    folder = tmp_path / "exports"
    shutil.copytree(DATA, folder)
    if edit is not None:
        path = folder / aiperf.AGGREGATE
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    return folder


def parse(folder: Path, **overrides):
    return aiperf.parse_exports(folder, **{**KEY, **overrides}, identity=Identity(), gpus=1)


def test_real_export_becomes_an_online_streaming_record(tmp_path):
    result, _ = parse(exports(tmp_path))
    raw = json.loads((DATA / aiperf.AGGREGATE).read_text())
    m = result.metrics
    assert (result.status, result.source, result.scenario, result.streaming) == (
        "ok",
        "aiperf",
        "online",
        True,
    )
    assert m.num_requests == 8 and m.avg_input_len == 32.0 and m.avg_output_len == 16.0
    assert m.output_tok_s == raw["output_token_throughput"]["avg"]
    assert m.req_s == raw["request_throughput"]["avg"]
    assert m.total_latency_ms == pytest.approx(raw["benchmark_duration"]["avg"] * 1000)
    assert m.ttft_ms.p99 == raw["time_to_first_token"]["p99"]
    assert m.ttft_ms.count == 8
    assert m.tpot_ms.mean == raw["inter_token_latency"]["avg"] == m.avg_tpot_ms
    assert m.itl_ms.count == 8 * 15  # every gap between 16 streamed tokens, pooled
    assert m.request_latency_ms.max == raw["request_latency"]["max"]
    assert m.per_user_output_tok_s.p50 == raw["e2e_output_token_throughput"]["p50"]
    phases = json.loads((DATA / aiperf.PHASES).read_text())["phases"]
    profiling = next(p for p in phases if p["phase_kind"] == "profiling")
    assert (result.window_start_ns, result.window_end_ns) == (
        profiling["start_ns"],
        profiling["end_ns"],
    )
    # the record survives its JSON round trip with its distributions
    assert PointResult.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_requests_csv_has_the_profiling_requests_only(tmp_path):
    result, rows = parse(exports(tmp_path))
    latency.write_requests(tmp_path / "requests.csv", rows)  # the one writer of requests.csv
    back = latency.read_requests(tmp_path / "requests.csv")
    assert [r.latency_ms for r in back] == pytest.approx([r.latency_ms for r in rows], abs=1e-6)
    text = (tmp_path / "requests.csv").read_text()
    table = list(csv.DictReader(io.StringIO(text)))
    lines = (DATA / aiperf.PER_REQUEST).read_text().splitlines()
    warmup = sum(json.loads(line)["metadata"]["benchmark_phase"] == "warmup" for line in lines)
    assert warmup == 2 and len(lines) == 10
    assert len(table) == 8
    starts = [float(r["start_ms"]) for r in table]
    assert starts == sorted(starts) and starts[0] >= 0
    assert all(r["output_tokens"] == "16" and r["input_tokens"] == "32" for r in table)
    mean_latency = sum(float(r["latency_ms"]) for r in table) / 8
    assert mean_latency == pytest.approx(result.metrics.avg_request_latency_ms, abs=1e-2)


def test_the_servers_prompt_count_is_the_input_length(tmp_path):
    """AIPerf sends ISL - 1 tokens of text to a server that adds BOS: the server's usage count
    is what the engine saw, so it is the record's (and the total throughput's) input length."""

    def edit(data):
        data["input_sequence_length"]["avg"] = 31.0
        data["usage_prompt_tokens"] = {"unit": "tokens", "avg": 32.0}

    result, _ = parse(exports(tmp_path, edit))
    m = result.metrics
    assert result.status == "ok" and m.avg_input_len == 32.0
    assert m.total_tok_s == pytest.approx(m.output_tok_s * (32 + 16) / 16)


@pytest.mark.parametrize(
    ("avg_osl", "status"), [(15.9, "ok"), (15.8, "invalid"), (16.2, "invalid")]
)
def test_output_length_within_one_percent_or_invalid(tmp_path, avg_osl, status):
    def edit(data):
        data["output_sequence_length"]["avg"] = avg_osl

    result, _ = parse(exports(tmp_path, edit))
    assert result.status == status
    if status == "invalid":
        assert result.failure == "length_mismatch" and "output length" in result.failure_detail


def test_failed_requests_make_the_point_invalid(tmp_path):
    def edit(data):
        data["request_count"]["avg"] = 7.0
        data["error_request_count"] = {"unit": "requests", "avg": 1.0}
        data["error_summary"] = [{"error_details": {"code": 422}, "count": 1}]

    result, _ = parse(exports(tmp_path, edit))
    assert result.status == "invalid"
    assert "7 requests completed, 8 asked" in result.failure_detail


def test_cancelled_run_is_not_a_measurement(tmp_path):
    def edit(data):
        data["was_cancelled"] = True

    result, _ = parse(exports(tmp_path, edit))
    assert result.status == "invalid" and "cancelled" in result.failure_detail


def test_a_changed_unit_stops_the_parser(tmp_path):
    def edit(data):
        data["time_to_first_token"]["unit"] = "sec"

    with pytest.raises(KitError, match=r"time_to_first_token.*'sec', expected 'ms'"):
        parse(exports(tmp_path, edit))


def test_missing_export_is_named(tmp_path):
    folder = exports(tmp_path)
    (folder / aiperf.PHASES).unlink()
    with pytest.raises(KitError, match=r"phase_manifest\.json"):
        parse(folder)


def test_profile_argv_pins_exact_lengths_and_streaming(tmp_path):
    argv = aiperf.profile_argv(
        "aiperf",
        model_name="m",
        base_url="http://127.0.0.1:9",
        endpoint_type="chat",
        tokenizer=tmp_path,
        isl=128,
        osl=64,
        requests=40,
        concurrency=4,
        warmup=2,
        seed=7,
        artifact_dir=tmp_path / "a",
        extra_inputs={"ignore_eos": True, "min_tokens": 64},
    )
    joined = " ".join(argv)
    for flag in (
        "--endpoint-type chat",
        "--streaming",
        "--isl 128 --isl-stddev 0",
        "--osl 64 --osl-stddev 0",
        "--use-legacy-max-tokens",
        "--concurrency 4",
        "--request-count 40",
        "--warmup-request-count 2",
        "--prompt-corpus random",
        "--random-seed 7",
        "--no-server-metrics",
        "--no-gpu-telemetry",
        "--extra-inputs ignore_eos:true",
        "--extra-inputs min_tokens:64",
    ):
        assert flag in joined
    no_warmup = aiperf.profile_argv(
        "aiperf",
        model_name="m",
        base_url="u",
        endpoint_type="completions",
        tokenizer=tmp_path,
        isl=1,
        osl=1,
        requests=1,
        concurrency=1,
        warmup=0,
        seed=0,
        artifact_dir=tmp_path,
    )
    assert "--warmup-request-count" not in no_warmup and "--extra-inputs" not in no_warmup
    # completions always sends max_tokens: the chat-only flag is not passed
    assert "--endpoint-type completions" in " ".join(no_warmup)
    assert "--use-legacy-max-tokens" not in no_warmup

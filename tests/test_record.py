"""bench.schema.record: one normalized record; invalid when lengths or counts miss; summary.csv."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench.core.errors import KitError
from bench.core.fileio import dumps_json
from bench.schema.record import (
    SUMMARY_COLUMNS,
    Distribution,
    Identity,
    Metrics,
    PointResult,
    judge,
    read_record,
    summary_csv,
)


def ok(isl=128, osl=128, requests=10, out_len=128.0, n=10, tok_s=1000.0) -> PointResult:
    return PointResult(
        isl=isl,
        osl=osl,
        requests=requests,
        status="ok",
        source="test",
        identity=Identity(model="m", tp_size=1, backend="trtllm-pytorch"),
        metrics=Metrics(
            num_requests=n, avg_input_len=float(isl), avg_output_len=out_len, output_tok_s=tok_s
        ),
    )


def test_judge_keeps_matching_results():
    assert judge(ok()).status == "ok"
    assert judge(ok(out_len=128.0 * 1.009)).status == "ok"


@pytest.mark.parametrize(
    ("result", "detail"),
    [
        (ok(out_len=28.0), r"average output length 28 differs from target 128 by 78.1%"),
        (ok(n=9), r"9 requests completed, 10 asked"),
        (
            dataclasses.replace(ok(), metrics=Metrics(num_requests=10, output_tok_s=1.0)),
            r"average input length was not reported",
        ),
    ],
)
def test_judge_marks_invalid(result, detail):
    judged = judge(result)
    assert judged.status == "invalid" and judged.failure == "length_mismatch"
    assert pytest.approx(0) == 0 and __import__("re").search(detail, judged.failure_detail)


def test_json_round_trip_and_no_nan():
    r = ok()
    assert PointResult.from_json(r.to_json()) == r
    with pytest.raises(ValueError, match=r"output_tok_s\n  Input should be a finite number"):
        Metrics(output_tok_s=float("nan"))
    with pytest.raises(ValueError, match=r"window_end_ns\n  Input should be a valid integer"):
        dataclasses.replace(r, window_end_ns="soon")  # replace validates like construction
    untyped = dataclasses.replace(r, telemetry={"gpu_util": [1.0, float("inf")]})
    with pytest.raises(ValueError, match=r"record\.telemetry\.gpu_util\[1\]: inf is not finite"):
        untyped.to_json()


def test_latency_fields_round_trip():
    spread = Distribution(mean=12.5, p50=12.0, p99=30.0, count=64)
    r = dataclasses.replace(
        ok(),
        metrics=dataclasses.replace(ok().metrics, ttft_ms=spread, goodput_req_s=3.5),
        scenario="online",
        streaming=True,
        window_start_ns=1_700_000_000_000_000_000,
        window_end_ns=1_700_000_001_000_000_000,
    )
    data = json.loads(dumps_json(r.to_json()))
    assert data["metrics"]["ttft_ms"]["p99"] == 30.0 and data["scenario"] == "online"
    assert PointResult.from_json(data) == r


def test_unknown_schema_is_refused():
    data = ok().to_json() | {"schema": "other/9"}
    with pytest.raises(KitError, match=r"schema 'other/9' is not 'trtllm-repro/point-result/2'"):
        PointResult.from_json(data, "p.json")


def test_a_version_1_record_reads_with_the_latency_fields_at_their_defaults():
    """Runs recorded before /2 hold /1 records without the latency keys: still readable."""
    data = ok().to_json()
    for key in ("scenario", "streaming", "window_start_ns", "window_end_ns"):
        del data[key]
    for key in LATENCY_METRICS:
        del data["metrics"][key]
    data["schema"] = "trtllm-repro/point-result/1"
    assert PointResult.from_json(data) == ok()


LATENCY_METRICS = (
    "request_latency_ms",
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "per_user_output_tok_s",
    "goodput_req_s",
    "goodput_output_tok_s",
)


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ({"metrics": {"output_tok_s": "1000"}}, "metrics.output_tok_s", "valid number"),
        ({"metrics": {"output_tok_s": float("nan")}}, "metrics.output_tok_s", "finite number"),
        ({"metrics": {"ttft_ms": {"p99": "1"}}}, "metrics.ttft_ms.p99", "valid number"),
        ({"identity": {"tp_size": 1.5}}, "identity.tp_size", "valid integer"),
        ({"identity": {"gpu": "H100"}}, "identity.gpu", "unknown key"),
        ({"status": "good"}, "status", "'ok', 'invalid' or 'failed'"),
        ({"scenario": "server"}, "scenario", "'offline' or 'online'"),
        ({"streaming": "yes"}, "streaming", "valid boolean"),
        ({"raw_files": "log.txt"}, "raw_files", "valid array"),
        ({"isl": None}, "isl", "valid integer"),
    ],
)
def test_a_malformed_record_is_one_line_naming_file_and_key(tmp_path, change, key, problem):
    data = ok().to_json()
    for name, value in change.items():
        data[name] = {**data[name], **value} if isinstance(value, dict) else value
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data), encoding="utf-8")  # NaN written as the bare token
    with pytest.raises(KitError) as err:
        read_record(path)
    assert (err.value.path, err.value.key) == (str(path), key)
    assert problem in err.value.message and "\n" not in err.value.message
    assert err.value.fix  # what to do about it


def test_a_record_missing_a_required_key_is_named(tmp_path):
    data = ok().to_json()
    del data["requests"]
    path = tmp_path / "failure.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(KitError, match="requests") as err:
        read_record(path)
    assert err.value.key == "requests"


def test_summary_csv_sorted_with_required_columns():
    text = summary_csv([ok(isl=256), ok(isl=128, tok_s=1234.56789)])
    header, first, second = text.splitlines()
    assert header.split(",") == list(SUMMARY_COLUMNS)
    for column in (
        "isl",
        "osl",
        "requests",
        "status",
        "output_tok_s",
        "total_tok_s",
        "req_s",
        "avg_input_len",
        "avg_output_len",
        "model",
        "tp_size",
        "backend",
        "engine_version",
    ):
        assert column in SUMMARY_COLUMNS
    assert first.startswith("128,128,10,,0,ok,,1234.5679,")
    assert second.startswith("256,")


def test_a_failed_record_is_made_in_one_place():
    r = PointResult.failed(
        "timeout", "timed out", source="s", isl=128, osl=128, requests=10, concurrency=4, repeat=1
    )
    assert (r.status, r.source, r.failure, r.failure_detail, r.concurrency, r.repeat) == (
        "failed",
        "s",
        "timeout",
        "timed out",
        4,
        1,
    )
    assert r.metrics.output_tok_s is None
    assert PointResult.from_json(r.to_json()) == r

"""bench.schema.record: one normalized record; invalid when lengths or counts miss; summary.csv."""

from __future__ import annotations

import dataclasses

import pytest

from bench.core.errors import KitError
from bench.schema.record import SUMMARY_COLUMNS, Identity, Metrics, PointResult, judge, summary_csv


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
    bad = dataclasses.replace(r, metrics=Metrics(output_tok_s=float("nan")))
    with pytest.raises(ValueError, match=r"record\.metrics\.output_tok_s: nan is not finite"):
        bad.to_json()


def test_unknown_schema_is_refused():
    data = ok().to_json() | {"schema": "other/9"}
    with pytest.raises(KitError, match=r"schema 'other/9' is not 'trtllm-repro/point-result/1'"):
        PointResult.from_json(data, "p.json")


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

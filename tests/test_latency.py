"""bench.analysis.latency and the serving fields of parse_trtllm: trtllm-bench 1.0 and 1.2 report
and --request_json documents (tests/data/trtllm, keys and units as the source writes them) into
record distributions, requests.csv and the measured window."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.analysis.latency import (
    REQUESTS_HEADER,
    RequestRow,
    distribution,
    distributions,
    goodput,
    parse_requests_csv,
    read_requests,
    requests_csv,
    write_requests,
)
from bench.backends.trtllm import parse as parse_trtllm
from bench.core.errors import KitError
from bench.schema.record import Distribution, PointResult

DATA = Path(__file__).parent / "data" / "trtllm"
POINT = dict(isl=128, osl=128, requests=4, concurrency=2)


def row(i: int, ttft: float | None, latency: float, out: int = 128) -> RequestRow:
    return RequestRow(i, 128, out, float(i), ttft, latency)


def test_nearest_rank_percentiles_like_trtllm_bench():
    values = [float(v) for v in range(1, 11)]  # 1..10
    d = distribution(values)
    # sorted[int(n * q)]: p50 -> index 5 (6.0), p90 -> 9 (10.0), p99 -> min(9, 9) (10.0)
    assert d == Distribution(
        mean=5.5, min=1.0, p50=6.0, p90=10.0, p95=10.0, p99=10.0, max=10.0, count=10
    )
    assert distribution([]) is None
    assert distribution([3.0]) == Distribution(3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 1)


def test_distributions_of_requests():
    rows = [row(0, 20.0, 1290.0), row(1, 30.0, 1300.0, out=2), row(2, None, 1000.0, out=1)]
    d = distributions(rows, itl_gaps_ms=[10.0, 12.0])
    assert d["request_latency_ms"].count == 3
    assert d["ttft_ms"].count == 2  # the unstreamed request has none
    # tpot = (latency - ttft) / (out - 1): 1270/127 = 10.0 and 1270/1 = 1270.0
    assert d["tpot_ms"].min == pytest.approx(10.0) and d["tpot_ms"].max == pytest.approx(1270.0)
    assert d["per_user_output_tok_s"].max == pytest.approx(128 / 1.29)
    assert d["itl_ms"].count == 2
    assert "ttft_ms" not in distributions([row(0, None, 5.0)])


def test_goodput_counts_requests_within_each_limit():
    rows = [row(0, 100.0, 1370.0), row(1, 3000.0, 4270.0), row(2, 100.0, 100.0 + 127 * 200.0)]
    slo = SimpleNamespace(ttft_p99_ms=2000, tpot_p99_ms=100)
    # row 0: ttft 100, tpot 10 -> met; row 1: ttft over; row 2: tpot 200 over
    assert goodput(rows, slo, window_s=2.0) == (0.5, 64.0)
    assert goodput(rows, SimpleNamespace(), window_s=1.0) == (3.0, 384.0)
    unstreamed = [row(0, None, 10.0)]
    assert goodput(unstreamed, slo, 1.0) == (0.0, 0.0)  # a TTFT limit needs a measured TTFT
    with pytest.raises(ValueError, match="window_s"):
        goodput(rows, slo, 0.0)


def test_requests_csv_round_trip_and_exact_header(tmp_path):
    rows = [row(0, 20.5, 1290.0), row(1, None, 1300.25)]
    text = requests_csv(rows)
    assert text.splitlines()[0] == ",".join(REQUESTS_HEADER)
    assert text.splitlines()[0] == "request,input_tokens,output_tokens,start_ms,ttft_ms,latency_ms"
    assert text.splitlines()[2] == "1,128,128,1.000000,,1300.250000"
    write_requests(tmp_path / "requests.csv", rows)
    assert read_requests(tmp_path / "requests.csv") == rows


@pytest.mark.parametrize(
    "text,match",
    [
        ("request,input_tokens\n", "header"),
        (",".join(REQUESTS_HEADER) + "\n0,128,x,0,,1\n", "line 2: output_tokens"),
        (",".join(REQUESTS_HEADER) + "\n0,128,1\n", "line 2: 3 cells"),
    ],
)
def test_a_damaged_requests_csv_is_one_error(text, match):
    with pytest.raises(KitError, match=match):
        parse_requests_csv(text, "requests.csv")


# ----------------------------------------------------------------------------- trtllm-bench


@pytest.mark.parametrize("release", ["1.0", "1.2"])
def test_report_distributions_per_release(release):
    data = json.loads((DATA / f"report_{release}_streaming.json").read_text())
    r = parse_trtllm.parse_report_json(data, source_file="r.json", **POINT)
    assert r.status == "ok" and r.streaming
    m = r.metrics
    assert m.request_latency_ms == Distribution(
        mean=1286.375,
        min=1270.0,
        p50=1290.0,
        p90=1310.0,
        p95=1310.0,
        p99=1310.0,
        max=1310.0,
        count=4,
    )
    assert (m.ttft_ms.p50, m.ttft_ms.p99, m.ttft_ms.mean) == (21.0, 23.0, 20.375)
    assert m.tpot_ms.p50 == pytest.approx((1290.0 - 21.0) / 127)
    assert m.itl_ms is None  # trtllm-bench reports no inter-token gaps (its "ITL" is TPOT)
    assert m.avg_ttft_ms == 20.375


def test_offline_report_has_no_streaming_distributions():
    data = json.loads((DATA / "report_1.0_streaming.json").read_text())
    del data["streaming_metrics"]
    r = parse_trtllm.parse_report_json(data, source_file="r.json", **POINT)
    assert not r.streaming and r.metrics.ttft_ms is None and r.metrics.tpot_ms is None
    assert r.metrics.request_latency_ms.p99 == 1310.0


def test_a_bad_percentile_value_names_its_key():
    data = json.loads((DATA / "report_1.0_streaming.json").read_text())
    data["streaming_metrics"]["ttft_percentiles"]["p99"] = "fast"
    with pytest.raises(KitError, match=r"streaming_metrics\.ttft_percentiles\.p99"):
        parse_trtllm.parse_report_json(data, source_file="r.json", **POINT)


@pytest.mark.parametrize("release", ["1.0", "1.2"])
def test_request_json_per_release_gives_the_reports_own_percentiles(release):
    text = (DATA / f"request_{release}.json").read_text()
    assert ("\n" in text) is (release == "1.2")  # 1.0 writes it without indent
    times = parse_trtllm.read_request_json(DATA / f"request_{release}.json", streaming=True)
    assert [r.request for r in times.rows] == [0, 1, 2, 3]  # by start, not completion order
    assert times.rows[0].start_ms == 0.0 and times.rows[3].start_ms == pytest.approx(1310.5)
    assert times.last_end_ns - times.first_start_ns == round(2586.0 * 1e6)
    report = json.loads((DATA / f"report_{release}_streaming.json").read_text())
    mine = distributions(times.rows)
    tool = parse_trtllm.report_distributions(report, "r.json", 4)
    for key in ("request_latency_ms", "ttft_ms", "tpot_ms"):
        for q in ("p50", "p90", "p99", "min", "max", "mean"):
            assert getattr(mine[key], q) == pytest.approx(getattr(tool[key], q)), (key, q)
    per_user = report["performance"]["output_throughput_per_user_tok_s"]
    assert mine["per_user_output_tok_s"].mean == pytest.approx(per_user)


def test_request_json_without_streaming_has_no_ttft():
    times = parse_trtllm.read_request_json(DATA / "request_1.0.json", streaming=False)
    assert all(r.ttft_ms is None for r in times.rows)


@pytest.mark.parametrize(
    "data,match",
    [
        ({}, "non-empty list"),
        ([], "non-empty list"),
        ([{"id": 0}], r"start_timestamp is None"),
        (
            [
                {
                    "id": 0,
                    "num_input_tokens": 1,
                    "output_tokens": 1,
                    "start_timestamp": 10,
                    "end_timestamp": 5,
                }
            ],
            "ends before it starts",
        ),
    ],
)
def test_a_damaged_request_json_is_one_error(data, match):
    with pytest.raises(KitError, match=match):
        parse_trtllm.parse_request_json(data, streaming=True, source_file="request.json")


def test_record_round_trips_distributions():
    data = json.loads((DATA / "report_1.2_streaming.json").read_text())
    r = parse_trtllm.parse_report_json(data, source_file="r.json", **POINT)
    back = PointResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r and isinstance(back.metrics.ttft_ms, Distribution)

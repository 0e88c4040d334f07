"""bench.analysis.slo and the manifest's [slo]: verdicts name the percentile that broke, a point
without the measurement is never "met", goodput only from the producer, the headline per ISL/OSL."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.analysis.slo import (
    MET,
    NOT_EVALUABLE,
    NOT_MET,
    judge_points,
    max_under_slo,
)
from bench.core.errors import KitError
from bench.core.manifest import Slo, parse_manifest, resolved_toml
from bench.schema.record import Distribution, Metrics, PointResult
from tests.conftest import DEMO_MANIFEST

SERVER = Slo(ttft_p99_ms=2000.0, tpot_p99_ms=100.0)  # MLPerf v5.1 Llama 3.1 8B Server


def dist(p99: float, p50: float | None = None, count: int = 200) -> Distribution:
    return Distribution(mean=p99 / 2, p50=p50 or p99 / 2, p90=p99 * 0.9, p99=p99, count=count)


def point(
    conc: int | None,
    out: float,
    ttft: float | None = 100.0,
    tpot: float | None = 20.0,
    e2e: float | None = 3000.0,
    streaming: bool = True,
    isl: int = 1000,
    osl: int = 1000,
    repeat: int = 0,
    goodput: tuple[float, float] | None = None,
    per_user: float | None = None,
) -> PointResult:
    return PointResult(
        isl=isl,
        osl=osl,
        requests=100,
        status="ok",
        source="synthetic",
        concurrency=conc,
        repeat=repeat,
        scenario="online",
        streaming=streaming,
        metrics=Metrics(
            num_requests=100,
            avg_input_len=float(isl),
            avg_output_len=float(osl),
            output_tok_s=out,
            req_s=out / osl,
            ttft_ms=None if ttft is None else dist(ttft),
            tpot_ms=None if tpot is None else dist(tpot),
            request_latency_ms=None if e2e is None else dist(e2e),
            per_user_output_tok_s=None if per_user is None else Distribution(mean=per_user),
            goodput_req_s=goodput[0] if goodput else None,
            goodput_output_tok_s=goodput[1] if goodput else None,
        ),
    )


def test_verdicts_name_the_percentile_that_broke() -> None:
    met, slow_first, slow_tokens = judge_points(
        [point(1, 100.0), point(8, 700.0, ttft=2500.0), point(64, 3000.0, tpot=130.5)], SERVER
    )
    assert met.verdict == MET and met.reason == ""
    assert slow_first.verdict == NOT_MET
    assert slow_first.reason == "TTFT p99 2,500.00 ms > 2,000.00 ms"
    assert slow_tokens.verdict == NOT_MET and slow_tokens.reason.startswith("TPOT p99 130.50 ms")


def test_a_point_that_did_not_stream_is_never_met() -> None:
    # a TTFT number on a non-streamed point (trtllm-bench records 0) must not pass the SLO
    (p,) = judge_points([point(4, 500.0, ttft=0.0, tpot=0.0, streaming=False)], SERVER)
    assert p.verdict == NOT_EVALUABLE
    assert p.reason == "TTFT p99 not streamed; TPOT p99 not streamed"
    (q,) = judge_points([point(4, 500.0, ttft=None)], SERVER)
    assert q.verdict == NOT_EVALUABLE and q.reason == "TTFT p99 not measured"


def test_a_broken_limit_wins_over_a_missing_one() -> None:
    (p,) = judge_points([point(4, 500.0, ttft=None, tpot=150.0)], SERVER)
    assert p.verdict == NOT_MET and p.reason == "TPOT p99 150.00 ms > 100.00 ms"


def test_e2e_limit_needs_no_streaming() -> None:
    slo = Slo(e2e_p99_ms=5000.0)
    ok, slow = judge_points([point(1, 10.0, streaming=False), point(2, 20.0, e2e=6000.0)], slo)
    assert ok.verdict == MET
    assert slow.verdict == NOT_MET and "E2E latency p99 6,000.00 ms" in slow.reason


def test_the_worst_repeat_decides() -> None:
    reps = [point(8, 700.0, ttft=1500.0), point(8, 720.0, ttft=2100.0, repeat=1)]
    (p,) = judge_points(reps, SERVER)
    assert p.repeats == 2 and p.output_tok_s == 710.0
    assert p.verdict == NOT_MET and "2,100.00" in p.reason
    missing = [point(8, 700.0), point(8, 700.0, ttft=None, repeat=1)]
    assert judge_points(missing, SERVER)[0].verdict == NOT_EVALUABLE


def test_goodput_comes_from_the_producer_or_is_not_evaluable() -> None:
    with_it, without = judge_points([point(1, 100.0, goodput=(0.1, 95.0)), point(2, 200.0)], SERVER)
    assert (with_it.goodput_req_s, with_it.goodput_output_tok_s) == (0.1, 95.0)
    assert without.goodput_req_s is None and without.goodput_output_tok_s is None
    reps = [point(1, 100.0, goodput=(0.1, 95.0)), point(1, 100.0, repeat=1)]
    assert judge_points(reps, SERVER)[0].goodput_req_s is None  # not all repeats: not invented


def test_failed_points_are_not_judged() -> None:
    bad = dataclasses.replace(point(1, 100.0), status="failed", failure="oom")
    assert judge_points([bad], SERVER) == []


def test_headline_per_isl_osl() -> None:
    sweep = [
        point(1, 150.0),
        point(16, 2000.0),
        point(64, 5000.0, tpot=140.0),
        point(1, 90.0, isl=128, osl=128, ttft=3000.0),
    ]
    short, long_ = max_under_slo(judge_points(sweep, SERVER))
    assert (short.isl, short.best, short.not_met) == (128, None, 1)
    assert long_.best is not None and long_.best.concurrency == 16
    assert long_.best.output_tok_s == 2000.0 and long_.peak.concurrency == 64
    assert (long_.met, long_.not_met, long_.not_evaluable) == (2, 1, 0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(1.0, 1e5),  # output tok/s
            st.one_of(st.none(), st.floats(1.0, 5000.0)),  # TTFT p99
            st.floats(1.0, 300.0),  # TPOT p99
            st.booleans(),  # streamed
        ),
        min_size=1,
        max_size=8,
    )
)
def test_max_under_slo_never_exceeds_the_max_overall(sweep) -> None:
    records = [
        point(c + 1, out, ttft=ttft, tpot=tpot, streaming=s)
        for c, (out, ttft, tpot, s) in enumerate(sweep)
    ]
    points = judge_points(records, SERVER)
    (h,) = max_under_slo(points)
    assert h.peak.output_tok_s == max(out for out, *_ in sweep)
    if h.best is not None:
        assert h.best.output_tok_s <= h.peak.output_tok_s
        assert h.best.verdict == MET
        assert all(c.measured_ms is not None and not c.broken for c in h.best.checks)
    met = [p for p in points if p.verdict == MET]
    assert (h.best is None) == (not met)
    for p in met:  # never met without a streamed measurement
        assert records[(p.concurrency or 1) - 1].streaming


# ----------------------------------------------------------------------------- the manifest


def _demo(**changes: dict) -> dict:
    data = tomllib.loads(DEMO_MANIFEST.read_text(encoding="utf-8"))
    data.pop("slo", None)  # the demo's own [slo]: each test sets the one it means
    for table, values in changes.items():
        data[table] = {**data.get(table, {}), **values}
    return data


def test_slo_loads_with_streaming() -> None:
    m = parse_manifest(
        _demo(slo={"ttft_p99_ms": 2000, "tpot_p99_ms": 100}, sweep={"streaming": True})
    )
    assert m.slo == SERVER and m.slo.limits() == {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 100.0}


@pytest.mark.parametrize(
    ("slo", "match"),
    [
        ({"ttft_p99_ms": 2000}, r"slo: TTFT and TPOT limits need streaming measurements"),
        ({}, r"slo: names no limit"),
        ({"tpot_p99_ms": -1}, r"slo\.tpot_p99_ms = -1: .*greater than 0"),
        ({"e2e_p99_ms": 0}, r"slo\.e2e_p99_ms = 0: .*greater than 0"),
        ({"e2e_p99_ms": float("inf")}, r"slo\.e2e_p99_ms = inf: .*finite"),
        ({"e2e_p99_ms": float("nan")}, r"slo\.e2e_p99_ms = nan: .*finite"),
        ({"ttft_p99_ms": "2000"}, r"slo\.ttft_p99_ms = '2000'"),
        ({"ttft_p90_ms": 5}, r"slo\.ttft_p90_ms: unknown key; allowed here: e2e_p99_ms"),
    ],
)
def test_bad_slo_is_named(slo: dict, match: str) -> None:
    data = _demo(sweep={"streaming": False})
    data["slo"] = slo
    with pytest.raises(KitError, match=match):
        parse_manifest(data, "m.toml")


def test_resolved_form_keeps_the_slo_and_offline_manifests_unchanged() -> None:
    m = parse_manifest(
        _demo(slo={"ttft_p99_ms": 500, "tpot_p99_ms": 30}, sweep={"streaming": True})
    )
    text = resolved_toml(m)
    assert "[slo]\nttft_p99_ms = 500.0\ntpot_p99_ms = 30.0\n" in text
    assert parse_manifest(tomllib.loads(text)) == m
    assert "slo" not in resolved_toml(parse_manifest(_demo()))  # a run without [slo]: as before


def test_e2e_only_slo_needs_no_streaming() -> None:
    m = parse_manifest(_demo(slo={"e2e_p99_ms": 5000}))
    assert m.slo is not None and not m.slo.needs_streaming

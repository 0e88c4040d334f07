"""bench.analysis.tables' aggregation is pandas now: it must give what the hand-written loops it
replaced gave, exactly (types included), on any records, so existing runs' reports keep their
bytes. The loops below are the kit's code before pandas (commit 69a49d1), kept as the oracle."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.analysis import report_sections, tables
from bench.analysis.tables import PointRow, RepeatStats, _rank_key, is_suspect, kv_fallback
from bench.schema.record import Identity, Metrics, PointResult
from tests.test_report import RECORDS, ok

T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)  # df 1..10


def legacy_point_rows(records: Sequence[PointResult]) -> list[PointRow]:
    groups: dict[tuple[int, int, int | None], list[PointResult]] = {}
    for r in records:
        if r.status == "ok" and r.metrics.output_tok_s is not None:
            groups.setdefault((r.isl, r.osl, r.concurrency), []).append(r)
    n_gpus = tables.run_gpus(records)
    rows = []
    for (isl, osl, conc), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)
    ):

        def mean(values):
            known = [v for v in values if v is not None]
            return statistics.fmean(known) if len(known) == len(values) else None

        req_s = mean([r.metrics.req_s for r in rs])
        total = mean([r.metrics.total_tok_s for r in rs])
        avg_in = mean([r.metrics.avg_input_len for r in rs])
        avg_out = mean([r.metrics.avg_output_len for r in rs])
        derived = total is None and req_s is not None and avg_in is not None and avg_out is not None
        if derived:
            total = req_s * (avg_in + avg_out)
        tokens_each = (
            (avg_in + avg_out) if avg_in is not None and avg_out is not None else isl + osl
        )
        out = statistics.fmean(r.metrics.output_tok_s or 0.0 for r in rs)
        rows.append(
            PointRow(
                isl=isl,
                osl=osl,
                concurrency=conc,
                requests=rs[0].requests,
                n=len(rs),
                output_tok_s=out,
                req_s=req_s,
                total_tok_s=total,
                total_derived=derived,
                total_tokens=rs[0].requests * tokens_each,
                output_tok_s_per_gpu=out / n_gpus if n_gpus else None,
                suspect=any(is_suspect(r) for r in rs),
                kv_fallback=", ".join(sorted({f for r in rs if (f := kv_fallback(r))})),
            )
        )
    return rows


def legacy_best_per(rows, axis):
    best = {}
    for r in sorted(rows, key=_rank_key):
        best.setdefault(getattr(r, axis), r)
    return [best[k] for k in sorted(best)]


def legacy_grid(rows, records):
    isls = sorted({r.isl for r in records})
    osls = sorted({r.osl for r in records})
    cells = {}
    for r in records:
        if r.status != "ok":
            cells.setdefault((r.isl, r.osl), r.failure or r.status)
    for r in sorted(rows, key=_rank_key, reverse=True):
        cells[r.isl, r.osl] = r.output_tok_s
    return isls, osls, cells


def legacy_repeat_stats(records):
    groups = {}
    for r in records:
        if r.status == "ok" and r.metrics.output_tok_s is not None:
            groups.setdefault((r.isl, r.osl, r.concurrency), []).append(r.metrics.output_tok_s)
    out = []
    for (isl, osl, conc), values in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)
    ):
        if len(values) < 2:
            continue
        mean, sd = statistics.fmean(values), statistics.stdev(values)
        t = T95[min(len(values) - 1, len(T95)) - 1]
        n = len(values)
        out.append(
            RepeatStats(isl, osl, conc, n, mean, t * sd / math.sqrt(n), sd / mean if mean else 0.0)
        )
    return out


# ----------------------------------------------------------------------------- records


maybe = lambda strategy: st.none() | strategy  # noqa: E731
rate = st.floats(min_value=0.001, max_value=1e6, allow_nan=False)


@st.composite
def a_record(draw) -> PointResult:
    status = draw(st.sampled_from(["ok", "ok", "ok", "invalid", "failed"]))
    return PointResult(
        isl=draw(st.sampled_from([128, 256, 1024])),
        osl=draw(st.sampled_from([128, 2048])),
        requests=draw(st.sampled_from([10, 100])),
        status=status,
        source="hypothesis",
        concurrency=draw(st.sampled_from([None, 1, 8])),
        repeat=draw(st.integers(0, 4)),
        failure=None if status == "ok" else draw(st.sampled_from(["oom", "silent", None])),
        identity=Identity(
            tp_size=draw(st.sampled_from([None, 1, 2])),
            kv_cache_fraction=draw(st.sampled_from([None, 0.9, 0.95])),
        ),
        metrics=Metrics(
            output_tok_s=draw(maybe(rate)),
            req_s=draw(maybe(rate)),
            total_tok_s=draw(maybe(rate)),
            avg_input_len=draw(maybe(rate)),
            avg_output_len=draw(maybe(rate)),
        ),
        attempts=draw(st.sampled_from([(), ({"kv_cache_fraction": 0.95},)])),
        telemetry=draw(st.sampled_from([None, {"suspect": True}, {"suspect": False}])),
    )


def python_types(row) -> bool:
    """No numpy scalar may leak into a row: the report formats ints and floats differently."""
    return all(v is None or type(v) in (int, float, str, bool) for v in dataclasses.astuple(row))


@settings(max_examples=150, deadline=None)
@given(st.lists(a_record(), max_size=24))
def test_pandas_aggregation_equals_the_loops_it_replaced(records):
    rows = tables.point_rows(records)
    assert rows == legacy_point_rows(records)
    assert all(python_types(r) for r in rows)
    for axis in ("isl", "osl"):
        assert tables.best_per(rows, axis) == legacy_best_per(rows, axis)
    isls, osls, cells = tables.grid(rows, records)
    assert (isls, osls, cells) == legacy_grid(rows, records)
    assert all(type(v) in (float, str) for v in cells.values())
    stats = tables.repeat_stats(records)
    assert stats == legacy_repeat_stats(records)
    assert all(python_types(s) for s in stats)


def test_the_t_quantile_is_the_printed_table_for_every_df_it_had():
    assert [tables.t_quantile(df) for df in range(1, 11)] == list(T95)
    assert tables.t_quantile(30) == 2.042 and tables.t_quantile(120) == 1.980  # no table cut-off


WITH_REPEATS = [
    *RECORDS,
    *(ok(512, 128, v, repeat=i) for i, v in enumerate((1000.0, 1100.0, 900.0, 1033.3))),
]


@pytest.mark.parametrize("records", [RECORDS, WITH_REPEATS], ids=["fixture", "with repeats"])
def test_the_report_keeps_its_bytes(monkeypatch, records):
    ctx = report_sections.Context(
        run="t",
        manifest=None,
        import_summary={"source": "/logs"},
        provenance=None,
        provenance_source="none recorded",
        shard_gpus=(),
        shape=None,
        shape_source="-",
        results_digest="0" * 64,
        recorded_at=None,
    )
    now = report_sections.render(records, ctx, {})
    for name, legacy in (
        ("point_rows", legacy_point_rows),
        ("best_per", legacy_best_per),
        ("grid", legacy_grid),
        ("repeat_stats", legacy_repeat_stats),
    ):
        monkeypatch.setattr(report_sections, name, legacy, raising=False)
        monkeypatch.setattr(tables, name, legacy)
    assert report_sections.render(records, ctx, {}) == now

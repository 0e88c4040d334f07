"""bench.analysis.pareto: frontier points are never dominated, every dominated point is, and the
per-user rate comes from the record (never invented)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from test_slo import point

from bench.analysis.pareto import PER_GPU, WHOLE_SYSTEM, dominates, frontier_flags, pareto_sets
from bench.schema.record import Metrics

coords = st.tuples(st.integers(1, 30).map(float), st.integers(1, 30).map(float))


@settings(max_examples=200, deadline=None)
@given(st.lists(coords, max_size=12))
def test_frontier_is_exactly_the_undominated_points(xy) -> None:
    flags = frontier_flags(xy)
    for i, a in enumerate(xy):
        beaten = any(dominates(b, a) for j, b in enumerate(xy) if j != i)
        assert flags[i] is not beaten
    if xy:
        assert any(flags)  # a non-empty set always has a frontier


def test_frontier_by_hand() -> None:
    #            most interactive     knee         saturated     dominated   duplicate of knee
    xy = [(200.0, 200.0), (60.0, 3000.0), (10.0, 4000.0), (50.0, 2000.0), (60.0, 3000.0)]
    assert frontier_flags(xy) == [True, True, True, False, True]


def test_sets_per_isl_osl_per_gpu() -> None:
    records = [
        point(1, 200.0, per_user=200.0),
        point(16, 3000.0, per_user=180.0),
        point(64, 2500.0, per_user=40.0),  # less throughput and less interactive than c=16
        point(4, 900.0, per_user=None),  # no rate: listed, not plotted
        point(1, 100.0, per_user=100.0, isl=128, osl=128),
    ]
    short, long_ = pareto_sets(records, gpus=2)
    assert (short.isl, short.basis) == (128, PER_GPU)
    assert [(p.concurrency, p.on_frontier) for p in long_.points] == [
        (1, True),
        (16, True),
        (64, False),
    ]
    assert long_.points[1].throughput_tok_s == 1500.0  # per GPU
    assert long_.no_per_user_rate == (4,)
    assert [p.concurrency for p in long_.frontier] == [1, 16]
    (only,) = pareto_sets(records[:1], gpus=None)
    assert only.basis == WHOLE_SYSTEM and only.points[0].throughput_tok_s == 200.0


def test_the_tools_own_per_user_rate_is_the_fallback() -> None:
    r = point(8, 800.0)
    r = dataclasses.replace(r, metrics=dataclasses.replace(r.metrics, output_tok_s_per_user=75.0))
    assert isinstance(r.metrics, Metrics)
    (s,) = pareto_sets([r], gpus=1)
    assert s.points[0].per_user_tok_s == 75.0


def test_repeats_are_averaged() -> None:
    reps = [point(8, 800.0, per_user=50.0), point(8, 1000.0, per_user=70.0, repeat=1)]
    (s,) = pareto_sets(reps, gpus=1)
    (p,) = s.points
    assert (p.per_user_tok_s, p.throughput_tok_s) == (60.0, 900.0)

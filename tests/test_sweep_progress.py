"""The sweep's console: one line per finished point, with its result, times and an ETA."""

from __future__ import annotations

from bench.schema.record import Metrics, PointResult
from bench.stages.sweep import Progress, eta_s, progress_line


def result(**kw) -> PointResult:
    return PointResult(isl=32, osl=16, requests=16, source="test", **kw)


def test_an_ok_point_shows_its_throughput_times_and_eta():
    ok = result(status="ok", metrics=Metrics(output_tok_s=54.84))
    line = progress_line("isl32_osl16", ok, Progress(2, 12, 3.26, 7.0), 35.0)
    assert line == (
        "[sweep] 2/12 isl32_osl16: ok 54.8 output tok/s in 3.3 s | elapsed 0:00:07, ETA 0:00:35"
    )
    assert "\n" not in line


def test_a_failed_point_names_the_failure_and_its_logs():
    failed = result(
        status="failed",
        failure="oom",
        failure_detail="CUDA out of memory",
        attempts=({"outcome": "oom"}, {"outcome": "oom"}),
    )
    line = progress_line("isl32_osl16_r1", failed, Progress(1, 3, 9.0, 9.0), 18.0, "p/x/")
    assert line.startswith("[sweep] 1/3 isl32_osl16_r1: FAILED oom: CUDA out of memory")
    assert "(logs: p/x/)" in line and "(after 2 tries)" in line


def test_eta_scales_the_estimate_by_the_pace_so_far():
    # the cost model said 10 s for the first point, it took 40 s: the remaining 30 s estimate
    # becomes 120 s; the last point leaves nothing; no estimate yet: the model's own
    assert eta_s(Progress(1, 4, 40.0, 40.0), 10.0, 30.0) == 120.0
    assert eta_s(Progress(4, 4, 5.0, 60.0), 40.0, 0.0) == 0.0
    assert eta_s(Progress(1, 4, 1.0, 1.0), 0.0, 30.0) == 30.0

"""bench.gpu.telemetry over the measured window (issue 12): only samples inside it are summarized,
the load phase is kept apart, and board power is integrated into energy per output token."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.gpu.telemetry import (
    PointSamplers,
    integrate_power_j,
    read_csv,
    summarize_window,
    window_energy,
)
from tests.test_telemetry import FakeNVML, row

S = 1_000_000_000  # ns per second


def stamped(t_s: float, power: float, util: float = 100, mem: float = 70000) -> dict:
    return row(power=power, util=util) | {"time_ns": round(t_s * S), "mem_used_mib": mem}


def load_then_window() -> list[dict]:
    """12 s of model load at 120 W and 5% utilization, then a 3 s window at 600 W."""
    idle = [stamped(t, 120.0, util=5, mem=2000) for t in range(12)]
    busy = [stamped(12 + t * 0.5, 600.0) for t in range(7)]  # 12.0 .. 15.0
    return idle + busy + [stamped(16.0, 130.0, util=0)]


def test_trapezoid_over_the_window_with_interpolated_edges():
    points = [(0, 100.0), (2 * S, 300.0), (4 * S, 300.0)]
    # window 1 s .. 3 s: edge at 1 s interpolates to 200 W; 0.5*(200+300)*1 + 300*1 = 550 J
    assert integrate_power_j(points, 1 * S, 3 * S) == pytest.approx(550.0)
    assert integrate_power_j(points, 0, 4 * S) == pytest.approx(400.0 + 600.0)
    # past the last sample the power is held flat
    assert integrate_power_j(points, 3 * S, 5 * S) == pytest.approx(600.0)


def test_window_summary_leaves_the_load_phase_apart():
    rows = load_then_window()
    t = summarize_window(rows, 0.5, 1980, (12 * S, 15 * S), output_tokens=3000)
    assert t["samples"] == 7 and t["power_w_mean"] == 600.0  # not diluted by 12 s at 120 W
    assert t["load_phase"] == {
        "samples": 12,
        "seconds": 6.0,
        "power_w_mean": 120.0,
        "mem_used_mib_max": 2000,
    }
    assert t["window"]["seconds"] == 3.0 and t["window"]["samples_after"] == 1
    assert t["energy_j"] == pytest.approx(1800.0)  # 600 W x 3 s
    assert t["j_per_output_token"] == pytest.approx(0.6)
    assert t["output_tokens_per_j"] == pytest.approx(1 / 0.6, rel=1e-4)
    assert "trapezoid" in t["energy_note"]
    whole = summarize_window(rows, 0.5, 1980, None)
    assert whole["samples"] == len(rows) and whole["window"] is None and "energy_j" not in whole


def test_a_window_shorter_than_the_sampling_gives_no_energy():
    rows = [stamped(t, 600.0) for t in range(5)]
    e = window_energy(rows, round(1.2 * S), round(1.5 * S), 100)
    assert e["energy_j"] is None and e["j_per_output_token"] is None
    assert e["energy_note"].startswith("window shorter than sampling: 0 power sample(s)")
    one = window_energy(rows, round(0.9 * S), round(1.5 * S), 100)
    assert one["energy_j"] is None and "1 power sample(s)" in one["energy_note"]


def test_no_output_tokens_gives_energy_but_no_ratio():
    rows = [stamped(t, 500.0) for t in range(5)]
    e = window_energy(rows, 0, 4 * S, None)
    assert e["energy_j"] == pytest.approx(2000.0) and e["j_per_output_token"] is None


def test_sampler_stamps_rows_and_summarizes_the_window(tmp_path: Path):
    import time

    fake = FakeNVML()
    with PointSamplers(tmp_path / "telemetry.csv", 0.01, [0], nvml=fake) as samplers:
        time.sleep(0.05)
        start = time.time_ns()
        time.sleep(0.1)
        end = time.time_ns()
        time.sleep(0.03)
    rows = read_csv(tmp_path / "telemetry.csv")
    assert all(r["time_ns"] is not None for r in rows)
    t = samplers.summary((start, end), output_tokens=1000)
    assert t["load_phase"]["samples"] >= 1 and t["window"]["samples_after"] >= 1
    assert 0 < t["samples"] < len(rows)
    # the fake GPU draws a constant power: energy = power x window
    power = rows[0]["power_w"]
    assert t["energy_j"] == pytest.approx(power * (end - start) / S, rel=1e-3)

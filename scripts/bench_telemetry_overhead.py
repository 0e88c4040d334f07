"""Overhead of bench.gpu.telemetry.Sampler on a CPU-bound Python loop (target: < 1% of wall time).

Usage:  python -m scripts.bench_telemetry_overhead [--seconds 1.0] [--repeats 7]
        (from the repository root)
Prints: one line per configuration, then one JSON document as the last line.

Three measures, since a shared machine's run-to-run noise is larger than the effect at 1 Hz:
  wall:   fastest of N runs of a fixed amount of work with the sampler running, against the
          fastest without it (timeit's convention: noise only adds time), runs interleaved so
          drift hits both alike; the baseline's spread is printed as the resolution;
  cost:   time of one sample (all NVML reads + one CSV row + flush), from a sampler run flat
          out; the sampler's share of one core is cost / interval;
  fixed:  one start and stop (thread, CSV open, rename; with the real NVML also nvmlInit and
          nvmlShutdown), paid once per sweep point, as this script prints: noise next to a
          point of minutes, but a visible share of this script's second-long runs.
Configurations: a fake NVML (pure Python, no driver time) at 1 s and 0.1 s, and the real NVML at
the same intervals where a GPU is present. ctypes releases the GIL during a real NVML call, so
the driver's own time does not stall Python threads; the Python part of each sample does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.gpu.gpu_info import open_nvml
from bench.gpu.telemetry import Sampler

TARGET_PCT = 1.0


class FakeNVML:
    """The calls Sampler makes, answered at once."""

    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetApplicationsClock(self, h: int, clock: int) -> int:
        return 1980

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 650_000

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return 1980

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 60

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=100, memory=80)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(total=80 * 2**30, used=70 * 2**30)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return 0x4


def work(n: int) -> int:
    """CPU-bound, holds the GIL: the worst case for a Python sampling thread."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    n = 100_000
    while True:
        start = time.perf_counter()
        work(n)
        took = time.perf_counter() - start
        if took > 0.2:
            return int(n * seconds / took)
        n *= 2


def timed(n: int, nvml: Any | None, interval_s: float, folder: Path) -> float:
    start = time.perf_counter()
    if nvml is None:
        work(n)
    else:
        with Sampler(folder / "telemetry.csv", interval_s=interval_s, nvml=nvml):
            work(n)
    return time.perf_counter() - start


def sample_cost_s(nvml: Any, folder: Path, seconds: float = 0.5) -> float:
    """Seconds per sample on the sampler's whole path (reads, CSV row, flush): run it flat out."""
    with Sampler(folder / "cost.csv", interval_s=1e-6, nvml=nvml) as sampler:
        time.sleep(seconds)
    return seconds / max(1, sampler.summary()["samples"])


def start_stop_s(nvml: Any, folder: Path, times: int = 20) -> float:
    runs = []
    for _ in range(times):
        start = time.perf_counter()
        with Sampler(folder / "fixed.csv", interval_s=1.0, nvml=nvml):
            pass
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    real, reason = open_nvml()
    if real is not None:
        real.nvmlShutdown()  # each Sampler opens its own session
    factories: dict[str, Any] = {"fake NVML": FakeNVML}
    if real is not None:
        factories["real NVML"] = lambda: real
    configs = [
        (f"{source}, {interval:g} s", source, interval)
        for interval in (1.0, 0.1)
        for source in factories
    ]

    n = calibrate(args.seconds)
    times: dict[str, list[float]] = {"baseline": [], **{name: [] for name, _, _ in configs}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(args.repeats):  # interleaved, so drift hits every configuration alike
            times["baseline"].append(timed(n, None, 0.0, folder))
            for name, source, interval in configs:
                times[name].append(timed(n, factories[source](), interval, folder))
        costs = {source: sample_cost_s(make(), folder) for source, make in factories.items()}
        fixed = {source: start_stop_s(make(), folder) for source, make in factories.items()}

    base = min(times["baseline"])
    spread_pct = (statistics.median(times["baseline"]) / base - 1) * 100
    results: dict[str, Any] = {
        "baseline_s": round(base, 4),
        "baseline_spread_pct": round(spread_pct, 2),
        "repeats": args.repeats,
        "real_nvml": reason or "available",
        "configs": {},
    }
    print(
        f"baseline: fastest {base:.3f} s of {args.repeats}; median is {spread_pct:.1f}% slower "
        f"(the wall measure's resolution); real NVML: {reason or 'available'}"
    )
    for name, source, interval in configs:
        fastest = min(times[name])
        wall_pct = (fastest / base - 1) * 100
        cost = costs[source]
        cost_pct = cost / interval * 100
        results["configs"][name] = {
            "fastest_s": round(fastest, 4),
            "wall_overhead_pct": round(wall_pct, 3),
            "sample_cost_us": round(cost * 1e6, 1),
            "cost_share_pct": round(cost_pct, 4),
            "start_stop_ms": round(fixed[source] * 1e3, 3),
        }
        print(
            f"{name:<18} wall {wall_pct:+6.2f}%   one sample {cost * 1e6:7.1f} us "
            f"= {cost_pct:.4f}% of a core   start+stop {fixed[source] * 1e3:.2f} ms"
        )
    worst = max(c["cost_share_pct"] for c in results["configs"].values())
    results["within_target"] = worst < TARGET_PCT
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

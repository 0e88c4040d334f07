"""bench.gpu.telemetry: the pure summary on synthetic rows; the Sampler with an injected fake
NVML."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.gpu.telemetry import (
    CSV_FIELDS,
    PointSamplers,
    Sampler,
    read_csv,
    summarize,
    watched_gpu,
    watched_gpus,
)


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """pynvml-shaped: one busy GPU at 1980 MHz; `fail` names calls that raise NVMLError,
    `crash_after` makes power reads raise a non-NVML error after that many samples."""

    NVMLError = FakeNVMLError

    def __init__(
        self,
        *,
        fail: tuple[str, ...] = (),
        crash_after: int | None = None,
        devices: int = 1,
        init_error: str | None = None,
    ) -> None:
        self.fail, self.crash_after, self.devices = set(fail), crash_after, devices
        self.init_error = init_error
        self.inits = self.shutdowns = self.power_reads = 0

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise FakeNVMLError(f"{name}: Not Supported")

    def nvmlInit(self) -> None:
        if self.init_error:
            raise FakeNVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index >= self.devices:
            raise FakeNVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetCount(self) -> int:
        return self.devices

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}{h}{h}{h}aaaa-0000-0000-0000-000000000000"

    def nvmlDeviceGetIndex(self, h: int) -> int:
        return h

    def nvmlDeviceGetApplicationsClock(self, h: int, clock: int) -> int:
        self._maybe_fail("nvmlDeviceGetApplicationsClock")
        return 1980

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock: int) -> int:
        return 1995

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self.power_reads += 1
        if self.crash_after is not None and self.power_reads > self.crash_after:
            raise RuntimeError("driver went away")
        return 650_500

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return {1: 1980, 2: 2619}[clock]

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        self._maybe_fail("nvmlDeviceGetTemperature")
        return 61

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=100, memory=80)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(total=85520809984, used=70_000 * 2**20)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return 0x4  # sw_power_cap

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: int) -> int:
        return 700_000


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "telemetry-sampler"]


def wait_for_rows(sampler: Sampler, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(sampler.rows) < n and time.monotonic() < deadline:
        time.sleep(0.005)


# ----------------------------------------------------------------------------- summarize (pure)


def row(
    sm: float = 1980,
    reasons: tuple[str, ...] = (),
    power: float = 600.0,
    temp: float = 60,
    util: float = 100,
) -> dict:
    return {
        "elapsed_s": 0.0,
        "power_w": power,
        "sm_clock_mhz": sm,
        "mem_clock_mhz": 2619,
        "temperature_c": temp,
        "gpu_util_pct": util,
        "mem_used_mib": 70000,
        "clock_event_reasons_mask": None,
        "clock_event_reasons": list(reasons),
    }


def test_summary_of_a_healthy_point() -> None:
    rows = [row(power=100, sm=345, reasons=("gpu_idle",), util=0)] * 2 + [row()] * 10
    s = summarize(rows, 1.0, 1980)
    assert (s["samples"], s["busy_s"]) == (12, 10.0)
    assert s["power_w_mean"] == 600.0  # busy samples only
    assert s["power_w_max"] == 600.0
    assert s["sm_clock_mhz_mean"] == 1980.0
    assert s["temperature_c_max"] == 60
    assert s["below_application_clock_s"] == 0.0
    assert set(s["throttled_s"].values()) == {0.0}
    assert (s["suspect"], s["reasons"]) == (False, [])


def test_power_capping_at_the_default_limit_is_reported_not_suspect() -> None:
    rows = [row()] * 5 + [row(sm=1700, reasons=("sw_power_cap",))] * 5
    s = summarize(rows, 0.5, 1980, power_limit_w=700.0, default_power_limit_w=700.0)
    assert s["throttled_s"]["sw_power_cap"] == 2.5
    assert s["below_application_clock_s"] == 2.5
    assert s["sm_clock_mhz_mean"] == 1840.0
    assert (s["suspect"], s["reasons"]) == (False, [])


def test_power_capping_under_a_lowered_limit_is_suspect() -> None:
    rows = [row(sm=1500, reasons=("sw_power_cap",))] * 4
    s = summarize(rows, 1.0, 1980, power_limit_w=400.0, default_power_limit_w=700.0)
    assert s["reasons"] == [
        "power-capped for 4 s under a power limit of 400 W, below the default 700 W"
    ]


def test_low_clocks_without_a_reason_are_suspect() -> None:
    rows = [row()] * 8 + [row(sm=1410)] * 2
    s = summarize(rows, 1.0, 1980)
    assert s["below_application_clock_s"] == 2.0
    assert s["reasons"] == [
        "SM clock below the application clock (1980 MHz) with no power or thermal event for "
        "20% of busy time: clocks locked or limited?"
    ]
    assert summarize([row()] * 19 + [row(sm=1410)], 1.0, 1980)["suspect"] is False


def test_thermal_slowdown_is_suspect() -> None:
    rows = [row()] * 7 + [row(reasons=("hw_thermal_slowdown",), temp=92)] * 3
    s = summarize(rows, 1.0, 1980)
    assert s["throttled_s"]["hw_thermal_slowdown"] == 3.0
    assert s["temperature_c_max"] == 92
    assert s["reasons"] == ["hw_thermal_slowdown for 3 s"]


def test_a_gpu_idle_throughout_is_suspect() -> None:
    s = summarize([row(reasons=("gpu_idle",), util=0)] * 3, 1.0, 1980)
    assert s["busy_s"] == 0.0
    assert s["sm_clock_mhz_mean"] is None
    assert s["reasons"] == ["GPU idle in all 3 samples: was the right GPU watched?"]


def test_busy_is_told_by_utilization_first() -> None:
    context_open_but_idle = row(reasons=(), util=1, power=90)  # mask 0x0, as a real H200 showed
    s = summarize([context_open_but_idle] * 4 + [row()] * 6, 1.0, 1980)
    assert (s["busy_s"], s["power_w_mean"]) == (6.0, 600.0)
    no_util = {**row(reasons=("gpu_idle",)), "gpu_util_pct": None}
    assert summarize([no_util, row()], 1.0, 1980)["busy_s"] == 1.0


def test_no_rows_and_unknown_readings() -> None:
    empty = summarize([], 1.0, None)
    assert (empty["samples"], empty["power_w_max"], empty["suspect"]) == (0, None, False)
    unknown = {k: None for k in CSV_FIELDS}
    s = summarize([unknown, unknown], 1.0, 1980)
    assert (s["busy_s"], s["power_w_mean"], s["temperature_c_max"]) == (2.0, None, None)


# ----------------------------------------------------------------------------- Sampler


def test_sampler_writes_rows_and_summary(tmp_path: Path) -> None:
    fake = FakeNVML()
    csv_path = tmp_path / "points" / "isl128_osl128" / "telemetry.csv"
    with Sampler(csv_path, interval_s=0.01, nvml=fake) as sampler:
        assert sampler_threads()[0].daemon is True
        wait_for_rows(sampler, 3)
        assert csv_path.with_name("telemetry.csv.tmp").is_file()  # rows land as they come
    assert sampler_threads() == []
    assert not csv_path.with_name("telemetry.csv.tmp").exists()
    assert sampler.output == csv_path
    assert (fake.inits, fake.shutdowns) == (1, 1)
    rows = read_csv(csv_path)
    assert rows == sampler.rows
    assert len(rows) >= 3
    assert ",0x4,sw_power_cap," in csv_path.read_text().splitlines()[1]
    first = rows[0]
    assert (first["power_w"], first["sm_clock_mhz"], first["mem_used_mib"]) == (650.5, 1980, 70000)
    assert first["clock_event_reasons"] == ["sw_power_cap"]
    s = sampler.summary()
    assert (s["available"], s["samples"], s["device_index"]) == (True, len(rows), 0)
    assert (s["app_clock_mhz"], s["power_limit_w"], s["default_power_limit_w"]) == (1980, 700, 700)
    assert s["throttled_s"]["sw_power_cap"] == pytest.approx(0.01 * len(rows))
    assert s["suspect"] is False  # capped at the default limit: normal


def test_sampler_stops_when_the_point_raises(tmp_path: Path) -> None:
    fake = FakeNVML()
    with (
        pytest.raises(RuntimeError, match="point failed"),
        Sampler(tmp_path / "t.csv", interval_s=0.01, nvml=fake) as sampler,
    ):
        wait_for_rows(sampler, 1)
        raise RuntimeError("point failed")
    assert sampler_threads() == []
    assert (tmp_path / "t.csv").is_file()
    assert fake.shutdowns == 1
    sampler.stop()  # idempotent
    assert fake.shutdowns == 1


def test_unsupported_readings_leave_empty_cells(tmp_path: Path) -> None:
    fake = FakeNVML(fail=("nvmlDeviceGetTemperature", "nvmlDeviceGetApplicationsClock"))
    with Sampler(tmp_path / "t.csv", interval_s=0.01, nvml=fake) as sampler:
        wait_for_rows(sampler, 1)
    assert sampler.rows[0]["temperature_c"] is None
    assert read_csv(tmp_path / "t.csv")[0]["temperature_c"] is None
    s = sampler.summary()
    assert s["app_clock_mhz"] == 1995  # max SM clock when application clocks are not reported
    assert s["temperature_c_max"] is None


def test_an_error_in_the_thread_ends_sampling_not_the_point(tmp_path: Path) -> None:
    fake = FakeNVML(crash_after=2)
    with Sampler(tmp_path / "t.csv", interval_s=0.01, nvml=fake) as sampler:
        deadline = time.monotonic() + 5
        while sampler_threads() and time.monotonic() < deadline:
            time.sleep(0.005)
    s = sampler.summary()
    assert s["samples"] == 2
    assert s["suspect"] is True
    assert s["reasons"][-1] == ("telemetry stopped after 2 samples: RuntimeError: driver went away")


def test_without_nvml_nothing_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with Sampler(tmp_path / "t.csv") as sampler:
        pass
    assert sampler.summary()["available"] is False
    assert sampler.summary()["reason"].startswith("NVML unavailable: pynvml not importable")
    assert sampler.output is None
    assert list(tmp_path.iterdir()) == []


def test_nvml_errors_at_start_make_it_unavailable(tmp_path: Path) -> None:
    with Sampler(tmp_path / "t.csv", nvml=FakeNVML(init_error="Driver Not Loaded")) as s:
        pass
    assert s.summary() == {"available": False, "reason": "NVML unavailable: Driver Not Loaded"}
    fake = FakeNVML(devices=1)
    with Sampler(tmp_path / "t.csv", device=3, nvml=fake) as s:
        pass
    assert s.summary() == {"available": False, "reason": "no GPU 3 in NVML: Invalid Argument"}
    assert fake.shutdowns == 1


@pytest.mark.parametrize(
    ("spec", "gpu"),
    [(None, 0), ("", 0), ("3", 3), ("2,0", 2), (" 1 ", 1), ("GPU-8f2e", "GPU-8f2e"), ("x", 0)],
)
def test_the_watched_gpu_is_cudas_first_visible_one(spec: str | None, gpu: int | str) -> None:
    assert watched_gpu(spec) == gpu


@pytest.mark.parametrize("device", [2, "GPU-2222"])
def test_the_sampler_watches_the_gpu_it_is_given(tmp_path: Path, device: int | str) -> None:
    fake = FakeNVML(devices=4)
    with Sampler(tmp_path / "t.csv", interval_s=0.01, device=device, nvml=fake) as sampler:
        wait_for_rows(sampler, 2)
    assert sampler.summary()["device_index"] == 2
    with Sampler(tmp_path / "u.csv", device="GPU-9999", nvml=fake) as missing:
        pass
    assert missing.summary() == {
        "available": False,
        "reason": "no GPU GPU-9999 in NVML: no device has this UUID",
    }


@pytest.mark.parametrize("interval", [0, -1.0])
def test_interval_must_be_positive(tmp_path: Path, interval: float) -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        Sampler(tmp_path / "t.csv", interval_s=interval)


def test_real_nvml_when_present(tmp_path: Path) -> None:
    """Runs only where NVML works (a GPU machine): the real driver answers every field."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVML here: {exc}")
    pynvml.nvmlShutdown()
    with Sampler(tmp_path / "t.csv", interval_s=0.05) as sampler:
        wait_for_rows(sampler, 3)
    first = read_csv(tmp_path / "t.csv")[0]
    for key in ("power_w", "sm_clock_mhz", "mem_clock_mhz", "temperature_c", "mem_used_mib"):
        assert first[key] is not None, key
    assert first["clock_event_reasons"] is not None
    assert sampler.summary()["app_clock_mhz"]


@pytest.mark.parametrize(
    ("spec", "count", "gpus"),
    [
        (None, 2, [0, 1]),
        ("", 8, list(range(8))),
        ("4,5,6,7", 2, [4, 5]),
        ("GPU-aa,GPU-bb", 2, ["GPU-aa", "GPU-bb"]),
        ("2,x,3", 3, [2]),  # CUDA stops at the first entry it cannot read
        ("1", 2, [1]),  # fewer visible than TP x PP: preflight reports it; watch what there is
    ],
)
def test_watched_gpus_are_cudas_first_visible_ones(spec, count, gpus) -> None:
    assert watched_gpus(spec, count) == gpus


class IdleSecondGPU(FakeNVML):
    """GPU 2 does nothing while the others work: a TP run watching the wrong GPUs looks so."""

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=0 if h == 2 else 100, memory=0)


def test_several_gpus_are_watched_together_and_pooled(tmp_path: Path) -> None:
    csv_path = tmp_path / "telemetry.csv"
    with PointSamplers(csv_path, 0.01, [1, 2], nvml=IdleSecondGPU(devices=4)) as samplers:
        for sampler in samplers.samplers:
            wait_for_rows(sampler, 3)
    assert not sampler_threads()
    assert csv_path.is_file() and (tmp_path / "telemetry.gpu1.csv").is_file()
    s = samplers.summary()
    per_gpu = {g["device_index"]: g for g in s["gpus"]}
    assert set(per_gpu) == {1, 2}
    assert s["samples"] == sum(g["samples"] for g in s["gpus"])
    assert per_gpu[1]["suspect"] is False and per_gpu[2]["suspect"] is True
    assert s["suspect"] is True
    assert s["reasons"] == [
        f"GPU 2: GPU idle in all {per_gpu[2]['samples']} samples: was the right GPU watched?"
    ]


def test_one_gpu_summary_is_that_gpus(tmp_path: Path) -> None:
    with PointSamplers(tmp_path / "t.csv", 0.01, [0], nvml=FakeNVML()) as samplers:
        wait_for_rows(samplers.samplers[0], 2)
    s = samplers.summary()
    assert "gpus" not in s and s["device_index"] == 0 and s["suspect"] is False


def test_a_gpu_that_cannot_be_watched_makes_the_point_suspect(tmp_path: Path) -> None:
    with PointSamplers(tmp_path / "t.csv", 0.01, [0, 7], nvml=FakeNVML(devices=2)) as samplers:
        wait_for_rows(samplers.samplers[0], 2)
    s = samplers.summary()
    assert s["available"] and s["suspect"]
    assert s["reasons"] == ["GPU 7: not watched (no GPU 7 in NVML: Invalid Argument)"]

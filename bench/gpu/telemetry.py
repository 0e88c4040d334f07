"""GPU telemetry during a sweep point: power, clocks, temperature and clock events, once a second.

The sampler runs around the whole tool process, model load included; the summary covers only the
samples inside the window the tool measured (first request sent .. last response, epoch ns from
the record), keeps the samples before it apart (`load_phase`), and integrates board power over
the window into energy per output token (`window_energy`).

Writes: results/<run>/points/<point>/telemetry.csv (one row per sample, CSV_FIELDS), through
        telemetry.csv.tmp, renamed when the sampler stops; telemetry.gpu<k>.csv for the k-th
        further GPU of a point on several GPUs.
Usage (the sweep, per point):

    gpus = watched_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), tp_size * pp_size)
    with PointSamplers(point_dir / "telemetry.csv", 1.0, gpus) as samplers:
        run_the_point()
    record["telemetry"] = samplers.summary()   # JSON-ready; {"available": False, ...} without NVML

A background daemon thread per GPU polls NVML; it starts in __enter__ and is stopped and joined
in __exit__, also when the point raises. A failing NVML read leaves an empty cell; an unexpected
error ends the sampling (never the benchmark) and marks the summary suspect. `summarize` is the
pure core: the same numbers can be recomputed from the CSV with `read_csv`.
"""

from __future__ import annotations

import csv
import itertools
import os
import statistics
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.gpu.gpu_info import (
    NVML_CLOCK_GRAPHICS,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_TEMPERATURE_GPU,
    cuda_visible_entries,
    decode_clock_event_reasons,
    open_nvml,
)

CSV_FIELDS = (
    "elapsed_s",
    "power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temperature_c",
    "gpu_util_pct",
    "mem_used_mib",
    "clock_event_reasons_mask",
    "clock_event_reasons",
    "time_ns",  # epoch ns (time.time_ns) of the reading: aligns samples to the measured window
)
# Clock events that cost throughput; the others (gpu_idle, applications_clocks_setting,
# sync_boost, display_clocks_setting) are normal.
LIMITING_REASONS = (
    "sw_power_cap",
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
)
# When a point is suspect (the report lists it apart, with these reasons):
#  - any time under a protective event: the GPU protected itself (heat, hardware), so the number
#    is not what this GPU does in a healthy machine;
#  - the SM clock under the application clock, with no limiting event to explain it, for more
#    than SUSPECT_UNEXPLAINED_FRACTION of busy time (clocks locked low, or limited unseen);
#  - power capping under a power limit below the board's default.
# Power capping at the default limit is not suspect: compute-bound work at 700 W runs into it
# (a bf16 GEMM on a lent H200 drew 630-692 W at a mean SM clock of 1465-1499 MHz against 1980;
# docs/gpu-demo-run.md), and NVIDIA's published runs ran under the same cap. It is reported in
# throttled_s and below_application_clock_s.
PROTECTIVE_REASONS = (
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
)
SUSPECT_UNEXPLAINED_FRACTION = 0.10
BUSY_UTIL_PCT = 5  # a sample counts as busy from this GPU utilization up
SUSPECT_MIN_IDLE_SAMPLES = 3  # a point idle in every one of this many samples watched the wrong GPU
JOIN_GRACE_S = 5.0


# Energy needs the power curve inside the measured window: fewer samples than this in it and the
# window is shorter than the sampling (a 1 s sampler against a 0.3 s window), so no number is
# given rather than a wrong one.
MIN_WINDOW_SAMPLES = 2

# ----------------------------------------------------------------------------- summary (pure)


def _busy(row: dict[str, Any]) -> bool:
    """The GPU had work: utilization at least BUSY_UTIL_PCT; where that is unknown, no gpu_idle
    event. (The driver drops gpu_idle while any CUDA context is open, even an idle one: a lent
    H200 reported 0x0 at 0-1% utilization, so the event alone counts idle time as busy.)"""
    util = row.get("gpu_util_pct")
    if util is not None:
        return util >= BUSY_UTIL_PCT
    reasons = row.get("clock_event_reasons")
    return reasons is None or "gpu_idle" not in reasons


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def summarize(
    rows: list[dict[str, Any]],
    interval_s: float,
    app_clock_mhz: float | None,
    *,
    power_limit_w: float | None = None,
    default_power_limit_w: float | None = None,
) -> dict[str, Any]:
    """Samples -> the point's telemetry summary. Each sample stands for interval_s seconds.

    Means of power and SM clock are over busy samples (the GPU idles while a point loads its
    engine); maxima over all samples. Power limits are the ones in force when sampling started.
    """
    busy = [r for r in rows if _busy(r)]

    def values(key: str, subset: list[dict[str, Any]]) -> list[float]:
        return [r[key] for r in subset if r.get(key) is not None]

    def seconds(subset: list[dict[str, Any]]) -> float:
        return round(interval_s * len(subset), 3)

    throttled = {
        reason: seconds([r for r in rows if reason in (r.get("clock_event_reasons") or ())])
        for reason in LIMITING_REASONS
    }
    below = [
        r
        for r in busy
        if app_clock_mhz and r.get("sm_clock_mhz") is not None and r["sm_clock_mhz"] < app_clock_mhz
    ]
    unexplained = [
        r for r in below if not set(r.get("clock_event_reasons") or ()) & set(LIMITING_REASONS)
    ]
    busy_s = seconds(busy)
    reasons = [f"{r} for {throttled[r]:g} s" for r in PROTECTIVE_REASONS if throttled[r] > 0]
    if busy_s and seconds(unexplained) / busy_s > SUSPECT_UNEXPLAINED_FRACTION:
        reasons.append(
            f"SM clock below the application clock ({app_clock_mhz:g} MHz) with no power or "
            f"thermal event for {seconds(unexplained) / busy_s:.0%} of busy time: clocks locked "
            "or limited?"
        )
    if (
        power_limit_w is not None
        and default_power_limit_w is not None
        and power_limit_w < default_power_limit_w - 0.5
        and throttled["sw_power_cap"] > 0
    ):
        reasons.append(
            f"power-capped for {throttled['sw_power_cap']:g} s under a power limit of "
            f"{power_limit_w:g} W, below the default {default_power_limit_w:g} W"
        )
    if len(rows) >= SUSPECT_MIN_IDLE_SAMPLES and not busy:
        reasons.append(f"GPU idle in all {len(rows)} samples: was the right GPU watched?")
    power, temps = values("power_w", rows), values("temperature_c", rows)
    return {
        "available": True,
        "samples": len(rows),
        "interval_s": interval_s,
        "busy_s": round(busy_s, 3),
        "power_w_mean": _mean(values("power_w", busy)),
        "power_w_max": max(power) if power else None,
        "sm_clock_mhz_mean": _mean(values("sm_clock_mhz", busy)),
        "mem_clock_mhz_mean": _mean(values("mem_clock_mhz", busy)),
        "gpu_util_pct_mean": _mean(values("gpu_util_pct", busy)),
        "temperature_c_max": max(temps) if temps else None,
        "mem_used_mib_max": max(values("mem_used_mib", rows), default=None),
        "app_clock_mhz": app_clock_mhz,
        "power_limit_w": power_limit_w,
        "default_power_limit_w": default_power_limit_w,
        "throttled_s": throttled,
        "below_application_clock_s": seconds(below),
        "suspect": bool(reasons),
        "reasons": reasons,
    }


def integrate_power_j(points: list[tuple[int, float]], start_ns: int, end_ns: int) -> float:
    """Board power integrated over [start_ns, end_ns] by the trapezoid rule, in joules.

    points: (time_ns, watts) sorted by time, the window's samples and, where there are, the one
    just before and the one just after it; the power at each window edge is interpolated
    linearly between its neighbours (held flat past the first or last sample)."""

    def at(t: int) -> float:
        before = [(x, w) for x, w in points if x <= t]
        after = [(x, w) for x, w in points if x >= t]
        if not before:
            return after[0][1]
        if not after:
            return before[-1][1]
        (x0, w0), (x1, w1) = before[-1], after[0]
        return w0 if x1 == x0 else w0 + (w1 - w0) * (t - x0) / (x1 - x0)

    curve = [(start_ns, at(start_ns))]
    curve += [(x, w) for x, w in points if start_ns < x < end_ns]
    curve.append((end_ns, at(end_ns)))
    return sum((x1 - x0) / 1e9 * (w0 + w1) / 2 for (x0, w0), (x1, w1) in itertools.pairwise(curve))


def window_energy(
    rows: list[dict[str, Any]], start_ns: int, end_ns: int, output_tokens: float | None
) -> dict[str, Any]:
    """GPU board power integrated over the measured window: energy_j, j_per_output_token,
    output_tokens_per_j; None with the reason when the window holds too few power samples."""
    powered = sorted(
        (int(r["time_ns"]), float(r["power_w"]))
        for r in rows
        if r.get("time_ns") is not None and r.get("power_w") is not None
    )
    inside = [p for p in powered if start_ns <= p[0] <= end_ns]
    none = {"energy_j": None, "j_per_output_token": None, "output_tokens_per_j": None}
    window_s = (end_ns - start_ns) / 1e9
    if len(inside) < MIN_WINDOW_SAMPLES:
        return none | {
            "energy_note": f"window shorter than sampling: {len(inside)} power sample(s) in a "
            f"{window_s:.3g} s window (need {MIN_WINDOW_SAMPLES}; lower "
            "runtime.telemetry_interval_s)"
        }
    before = [p for p in powered if p[0] < start_ns][-1:]
    after = [p for p in powered if p[0] > end_ns][:1]
    energy = integrate_power_j(before + inside + after, start_ns, end_ns)
    per_token = energy / output_tokens if output_tokens and energy > 0 else None
    return {
        "energy_j": round(energy, 3),
        "j_per_output_token": None if per_token is None else round(per_token, 6),
        "output_tokens_per_j": None if per_token is None else round(1 / per_token, 4),
        "energy_note": "GPU board power (NVML) integrated over the measured window, trapezoid "
        f"rule over {len(inside)} samples",
    }


def load_phase(rows: list[dict[str, Any]], interval_s: float) -> dict[str, Any]:
    """The samples before the measured window (model load, engine set-up, warm-up), kept apart."""
    power = [r["power_w"] for r in rows if r.get("power_w") is not None]
    return {
        "samples": len(rows),
        "seconds": round(interval_s * len(rows), 3),
        "power_w_mean": _mean(power),
        "mem_used_mib_max": max(
            (r["mem_used_mib"] for r in rows if r.get("mem_used_mib") is not None), default=None
        ),
    }


def summarize_window(
    rows: list[dict[str, Any]],
    interval_s: float,
    app_clock_mhz: float | None,
    window_ns: tuple[int, int] | None,
    output_tokens: float | None = None,
    *,
    power_limit_w: float | None = None,
    default_power_limit_w: float | None = None,
) -> dict[str, Any]:
    """summarize() over the samples inside the measured window only, with the load phase (the
    samples before it) apart and the window's energy. Without a window: every sample, as
    before, and no energy."""
    limits = {"power_limit_w": power_limit_w, "default_power_limit_w": default_power_limit_w}
    if window_ns is None:
        return summarize(rows, interval_s, app_clock_mhz, **limits) | {"window": None}
    start, end = window_ns
    stamped = [r for r in rows if r.get("time_ns") is not None]
    inside = [r for r in stamped if start <= r["time_ns"] <= end]
    out = summarize(inside, interval_s, app_clock_mhz, **limits)
    return out | {
        "window": {
            "start_ns": start,
            "end_ns": end,
            "seconds": round((end - start) / 1e9, 6),
            "samples_after": sum(1 for r in stamped if r["time_ns"] > end),
        },
        "load_phase": load_phase([r for r in stamped if r["time_ns"] < start], interval_s),
        **window_energy(rows, start, end, output_tokens),
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "|".join(value)
    return str(value)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """telemetry.csv -> rows as the sampler holds them (numbers, reason lists, None)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key in CSV_FIELDS:
                text = raw.get(key) or ""
                if key == "clock_event_reasons":
                    row[key] = (
                        None
                        if not raw.get("clock_event_reasons_mask")
                        else (text.split("|") if text else [])
                    )
                elif key == "clock_event_reasons_mask":
                    row[key] = int(text, 16) if text else None
                elif key == "time_ns":
                    row[key] = int(text) if text else None
                else:
                    row[key] = float(text) if text else None
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- sampler


def watched_gpus(cuda_visible_devices: str | None, count: int = 1) -> list[int | str]:
    """The GPUs a point on `count` GPUs (TP x PP) runs on, as NVML names them: CUDA's first
    `count` visible devices.

    Under CUDA_VISIBLE_DEVICES=3 (a Slurm allocation, one runner per GPU) the point runs on GPU 3,
    and watching NVML's GPU 0 would record another job's clocks. Entries are NVML indices (CUDA's
    order with CUDA_DEVICE_ORDER=PCI_BUS_ID) or UUID prefixes; CUDA stops at the first entry it
    cannot read. Unset or empty: GPUs 0 .. count-1.
    """
    entries = cuda_visible_entries(cuda_visible_devices or None)
    if entries is None:
        return list(range(count))
    return entries[:count] or [0]


def watched_gpu(cuda_visible_devices: str | None) -> int | str:
    """The GPU a one-GPU point runs on (watched_gpus for one)."""
    return watched_gpus(cuda_visible_devices, 1)[0]


class Sampler:
    """Poll one GPU (an NVML index or a UUID prefix) in a daemon thread while `with` runs.

    nvml: a pynvml-like module; None imports pynvml. Without NVML (no library, no driver, no
    such device) nothing is written and summary() says {"available": False, "reason": ...}.
    """

    def __init__(
        self, csv_path: Path, interval_s: float = 1.0, device: int | str = 0, *, nvml: Any = None
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.csv_path = Path(csv_path)
        self.interval_s = float(interval_s)
        self.device = device
        self.device_index: int | None = device if isinstance(device, int) else None
        self._nvml_arg = nvml
        self._nvml: Any = None
        self._handle: Any = None
        self._reason: str | None = "not started"
        self._app_clock: float | None = None
        self._power_limits: tuple[float | None, float | None] = (None, None)
        self._rows: list[dict[str, Any]] = []
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: Any = None
        self._writer: Any = None
        self.output: Path | None = None  # csv_path once samples were written and renamed

    @property
    def _tmp(self) -> Path:
        return self.csv_path.with_name(self.csv_path.name + ".tmp")

    # -- context manager ----------------------------------------------------------------------

    def __enter__(self) -> Sampler:
        nvml, reason = open_nvml(self._nvml_arg)
        if nvml is None:
            self._reason = f"NVML unavailable: {reason}"
            return self
        try:
            self._handle = self._find(nvml)
            missing = "no device has this UUID" if self._handle is None else None
        except nvml.NVMLError as exc:
            missing = str(exc)
        if missing is not None:
            nvml.nvmlShutdown()
            self._reason = f"no GPU {self.device} in NVML: {missing}"
            return self
        self._nvml, self._reason = nvml, None
        index = self._query("nvmlDeviceGetIndex")
        self.device_index = self.device_index if index is None else index
        self._app_clock = self._query("nvmlDeviceGetApplicationsClock", NVML_CLOCK_GRAPHICS)
        if self._app_clock is None:  # deprecated in newer drivers: the max clock then
            self._app_clock = self._query("nvmlDeviceGetMaxClockInfo", NVML_CLOCK_SM)
        limit = self._query("nvmlDeviceGetEnforcedPowerLimit")
        default = self._query("nvmlDeviceGetPowerManagementDefaultLimit")
        self._power_limits = (
            None if limit is None else limit / 1000,
            None if default is None else default / 1000,
        )
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_FIELDS)
        self._file.flush()
        self._thread = threading.Thread(target=self._loop, name="telemetry-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop and join the thread, close and rename the CSV, shut NVML down. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + JOIN_GRACE_S)
            if self._thread.is_alive():  # a hung NVML call; the daemon thread dies with us
                self._error = self._error or "sampler thread did not stop in time"
            self._thread = None
        if self._file is not None:
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.csv_path)
            self.output = self.csv_path
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None

    # -- sampling -----------------------------------------------------------------------------

    def _find(self, nvml: Any) -> Any:
        """The device's handle; None when no device has the UUID prefix (devices that cannot
        be read, e.g. lost ones, are passed over)."""
        if isinstance(self.device, int):
            return nvml.nvmlDeviceGetHandleByIndex(self.device)
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = nvml.nvmlDeviceGetUUID(handle)
            except nvml.NVMLError:
                continue
            if (uuid.decode() if isinstance(uuid, bytes) else uuid).startswith(self.device):
                return handle
        return None

    def _query(self, fn_name: str, *args: Any) -> Any:
        """One NVML reading; None where unsupported (or missing from an older pynvml)."""
        fn = getattr(self._nvml, fn_name, None)
        if fn is None:
            return None
        try:
            return fn(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def sample(self, elapsed_s: float) -> dict[str, Any]:
        """One reading of the watched GPU."""
        power = self._query("nvmlDeviceGetPowerUsage")
        util = self._query("nvmlDeviceGetUtilizationRates")
        memory = self._query("nvmlDeviceGetMemoryInfo")
        mask = self._query("nvmlDeviceGetCurrentClocksEventReasons")
        if mask is None:  # the name before nvidia-ml-py 12.535
            mask = self._query("nvmlDeviceGetCurrentClocksThrottleReasons")
        return {
            "time_ns": time.time_ns(),
            "elapsed_s": round(elapsed_s, 3),
            "power_w": None if power is None else power / 1000,
            "sm_clock_mhz": self._query("nvmlDeviceGetClockInfo", NVML_CLOCK_SM),
            "mem_clock_mhz": self._query("nvmlDeviceGetClockInfo", NVML_CLOCK_MEM),
            "temperature_c": self._query("nvmlDeviceGetTemperature", NVML_TEMPERATURE_GPU),
            "gpu_util_pct": None if util is None else util.gpu,
            "mem_used_mib": None if memory is None else round(memory.used / 2**20),
            "clock_event_reasons_mask": mask,
            "clock_event_reasons": None if mask is None else decode_clock_event_reasons(mask),
        }

    def _loop(self) -> None:
        start = time.monotonic()
        next_at = start
        try:
            while True:
                row = self.sample(time.monotonic() - start)
                self._rows.append(row)
                cells = [_cell(row[k]) for k in CSV_FIELDS]
                if row["clock_event_reasons_mask"] is not None:
                    cells[CSV_FIELDS.index("clock_event_reasons_mask")] = (
                        f"{row['clock_event_reasons_mask']:#x}"
                    )
                self._writer.writerow(cells)
                self._file.flush()
                next_at += self.interval_s
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    return
        except Exception as exc:  # telemetry must never end the benchmark
            self._error = f"{type(exc).__name__}: {exc}"

    # -- results ------------------------------------------------------------------------------

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def summary(
        self, window_ns: tuple[int, int] | None = None, output_tokens: float | None = None
    ) -> dict[str, Any]:
        """The point's telemetry over the measured window (summarize_window)."""
        if self._reason is not None:
            return {"available": False, "reason": self._reason}
        limit, default = self._power_limits
        result = summarize_window(
            self.rows,
            self.interval_s,
            self._app_clock,
            window_ns,
            output_tokens,
            power_limit_w=limit,
            default_power_limit_w=default,
        )
        result["device_index"] = self.device_index
        if self._error:
            result["suspect"] = True
            result["reasons"].append(
                f"telemetry stopped after {result['samples']} samples: {self._error}"
            )
        return result


# ----------------------------------------------------------------------------- several GPUs


def csv_for_gpu(csv_path: Path, position: int) -> Path:
    """telemetry.csv for a point's first GPU, telemetry.gpu<k>.csv for its k-th (k from 1)."""
    return csv_path if position == 0 else csv_path.with_name(f"{csv_path.stem}.gpu{position}.csv")


class PointSamplers:
    """One Sampler per GPU of a point (TP x PP of them), started and stopped together.

    With one GPU, summary() is that GPU's. With several, the numbers pool every GPU's samples
    (means and maxima per GPU; throttled seconds are GPU-seconds), `gpus` lists each GPU's own
    summary, and the point is suspect if any GPU is, its reasons naming the GPU.
    """

    def __init__(
        self, csv_path: Path, interval_s: float, devices: list[int | str], *, nvml: Any = None
    ) -> None:
        if not devices:
            raise ValueError("no GPU to watch")
        self.samplers = [
            Sampler(csv_for_gpu(Path(csv_path), k), interval_s, device, nvml=nvml)
            for k, device in enumerate(devices)
        ]

    def __enter__(self) -> PointSamplers:
        for sampler in self.samplers:
            sampler.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sampler in self.samplers:
            sampler.stop()

    def summary(
        self, window_ns: tuple[int, int] | None = None, output_tokens: float | None = None
    ) -> dict[str, Any]:
        """One GPU's summary, or every GPU's pooled; energy is the sum over the GPUs."""
        summaries = [s.summary(window_ns, output_tokens) for s in self.samplers]
        if len(summaries) == 1:
            return summaries[0]
        watched = [s for s, one in zip(self.samplers, summaries, strict=True) if one["available"]]
        if not watched:
            return summaries[0]
        first = watched[0]
        limit, default = first._power_limits
        pooled = summarize_window(
            [row for s in watched for row in s.rows],
            first.interval_s,
            first._app_clock,
            window_ns,
            output_tokens,
            power_limit_w=limit,
            default_power_limit_w=default,
        )
        if window_ns is not None:  # energy: each GPU's own curve integrated, then summed
            energies = [one.get("energy_j") for one in summaries if one["available"]]
            known = [e for e in energies if e is not None]
            if energies and len(known) == len(energies):
                energy = sum(known)
                per_token = energy / output_tokens if output_tokens and energy > 0 else None
                pooled |= {
                    "energy_j": round(energy, 3),
                    "j_per_output_token": None if per_token is None else round(per_token, 6),
                    "output_tokens_per_j": None if per_token is None else round(1 / per_token, 4),
                    "energy_note": f"sum over {len(energies)} GPUs of each GPU's board power "
                    "integrated over the measured window (trapezoid rule)",
                }
        reasons = []
        for position, one in enumerate(summaries):
            name = f"GPU {one.get('device_index', self.samplers[position].device)}"
            if not one["available"]:
                reasons.append(f"{name}: not watched ({one['reason']})")
            reasons += [f"{name}: {reason}" for reason in one.get("reasons", [])]
        keep = (
            "device_index",
            "samples",
            "busy_s",
            "power_w_mean",
            "sm_clock_mhz_mean",
            "energy_j",
        )
        return {
            **pooled,
            "gpus": [
                {k: one.get(k) for k in keep} | {"suspect": one.get("suspect", True)}
                for one in summaries
            ],
            "suspect": bool(reasons),
            "reasons": reasons,
        }

"""Telemetry over the measured window on a real GPU (issue 12): sample, then summarize here.

On the GPU machine (needs torch with CUDA and pynvml; nothing from the kit, so it runs on any
checkout):  OUT=/tmp/out python3 scripts/gpu_window_samples.py
  four stand-in points: 3 s idle with a CUDA context open (the load phase), a bf16 8192x8192
  matmul loop of 0.3 s or 2 s (the measured window, time.time_ns at its first and last matmul),
  1 s idle; NVML read every 1 s and every 0.1 s, each sample stamped with time.time_ns.
  Writes $OUT/samples.json.
Here:  python -m scripts.gpu_window_samples --summarize samples.json
  prints, per case, the whole-process summary against bench.gpu.telemetry.summarize_window:
  the window's samples and mean power, the load phase apart, energy (trapezoid) and J per matmul.
"""

import json
import os
import sys
import threading
import time


def sample_on_gpu() -> None:
    import pynvml as nvml
    import torch

    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)

    def case(window_s: float, interval_s: float) -> dict:
        rows: list[dict] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                rows.append(
                    {
                        "time_ns": time.time_ns(),
                        "power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                        "sm_clock_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                        "gpu_util_pct": util.gpu,
                        "mem_used_mib": nvml.nvmlDeviceGetMemoryInfo(handle).used // 2**20,
                        "temperature_c": nvml.nvmlDeviceGetTemperature(handle, 0),
                    }
                )
                stop.wait(interval_s)

        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        torch.cuda.synchronize()
        sampler = threading.Thread(target=loop)
        sampler.start()
        time.sleep(3)
        start, done = time.time_ns(), 0
        while time.time_ns() - start < window_s * 1e9:
            a @ a
            done += 1
            torch.cuda.synchronize()
        end = time.time_ns()
        time.sleep(1)
        stop.set()
        sampler.join()
        return {
            "window_s": window_s,
            "interval_s": interval_s,
            "start_ns": start,
            "end_ns": end,
            "matmuls": done,
            "rows": rows,
        }

    cases = [case(w, i) for w in (0.3, 2.0) for i in (1.0, 0.1)]
    with open(os.path.join(os.environ["OUT"], "samples.json"), "w") as f:
        json.dump({"gpu": nvml.nvmlDeviceGetName(handle), "cases": cases}, f)


def summarize(path: str) -> None:
    from bench.gpu.telemetry import summarize_window

    with open(path) as f:
        doc = json.load(f)
    print(doc["gpu"])
    for c in doc["cases"]:
        rows = [r | {"clock_event_reasons": None} for r in c["rows"]]
        whole = summarize_window(rows, c["interval_s"], None, None)
        window = (c["start_ns"], c["end_ns"])
        w = summarize_window(rows, c["interval_s"], None, window, c["matmuls"])
        print(
            f"window {(c['end_ns'] - c['start_ns']) / 1e9:.3f} s at {c['interval_s']:g} s "
            f"sampling, {c['matmuls']} matmuls: whole process {whole['samples']} samples, "
            f"busy mean {whole['power_w_mean']} W; window {w['samples']} samples, mean "
            f"{w['power_w_mean']} W; load phase {w['load_phase']['samples']} samples, "
            f"{w['load_phase']['power_w_mean']} W; energy {w['energy_j']} J, "
            f"{w['j_per_output_token']} J/matmul ({w['energy_note'][:40]}...)"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summarize"]:
        summarize(sys.argv[2])
    else:
        sample_on_gpu()

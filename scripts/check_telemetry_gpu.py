"""On a machine with two GPUs: the telemetry sampler watches the GPU it is given.

A bf16 matmul loop runs on GPU 1 only, three times, while the sampler watches the GPU that
`watched_gpu` picks for CUDA_VISIBLE_DEVICES=1, for GPU 1's UUID prefix, and for 0. The first two
must see GPU 1 busy; the third must see GPU 0 idle, and call the point suspect. Last, both GPUs
are watched together, as for a point on two GPUs (TP 2): the pooled summary must be suspect,
naming GPU 0.

Usage: PYTHONPATH=. python3 scripts/check_telemetry_gpu.py   (needs torch with CUDA, nvidia-ml-py)
"""

import threading
import time
from pathlib import Path

import pynvml
import torch

from bench.gpu.telemetry import PointSamplers, Sampler, watched_gpu, watched_gpus

pynvml.nvmlInit()
n = pynvml.nvmlDeviceGetCount()
uuids = [pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(n)]
print("NVML devices:", n, "UUID type from nvmlDeviceGetUUID:", type(uuids[0]).__name__)
uuid1 = uuids[1].decode() if isinstance(uuids[1], bytes) else uuids[1]
pynvml.nvmlShutdown()


def work() -> None:
    a = torch.randn(8192, 8192, device="cuda:1", dtype=torch.bfloat16)
    t = time.time()
    while time.time() - t < 4:
        a @ a
    torch.cuda.synchronize(1)


for label, device in [
    ("CUDA_VISIBLE_DEVICES=1 ->", watched_gpu("1")),
    ("CUDA_VISIBLE_DEVICES=<GPU 1 UUID prefix> ->", watched_gpu(uuid1[:12])),
    ("GPU 0 (idle) ->", watched_gpu("0")),
]:
    th = threading.Thread(target=work)
    with Sampler(Path(f"/tmp/watch-{device}.csv"), interval_s=0.2, device=device) as s:
        th.start()
        th.join()
    r = s.summary()
    shown = device if isinstance(device, int) else "GPU-<prefix>"
    print(
        f"{label} device={shown} device_index={r['device_index']} samples={r['samples']} "
        f"busy_s={r['busy_s']} util_mean={r['gpu_util_pct_mean']} power_mean={r['power_w_mean']} "
        f"sm_clock_mean={r['sm_clock_mhz_mean']} suspect={r['suspect']} reasons={r['reasons']}"
    )

th = threading.Thread(target=work)
with PointSamplers(Path("/tmp/watch-both.csv"), 0.2, watched_gpus(None, 2)) as both:
    th.start()
    th.join()
r = both.summary()
print(
    f"both GPUs (TP 2) -> samples={r['samples']} busy_s={r['busy_s']} "
    f"per GPU={[(g['device_index'], g['busy_s'], g['suspect']) for g in r['gpus']]} "
    f"suspect={r['suspect']} reasons={r['reasons']}"
)

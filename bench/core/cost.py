"""Estimated time per sweep point, for progress, `make plan` and cost-balanced shards.

A point's time is modelled as startup + requests x (isl x prefill + osl x decode
+ osl x (isl + osl/2) x attention): prefill and decode cost per token, plus attention reads that
grow with the context each output token sees. Fitted by least squares to the 63 measured points of
the seed sweep (70B, TP8, 8x H100, TensorRT-LLM 0.16; ../shared/fixtures), the model predicts
every point's latency within 15% (scripts/fit_cost_model.py reproduces the fit; start-up is
added apart). Absolute times scale with model and GPU; only the ratios matter for balancing.
A 16384/16384 request costs about 1000x a 128/128 request, so shards are balanced by this
estimate, not by count (an online manifest's by `online_seconds`, which adds the latency bound
of a low concurrency). Each backend brings its coefficients (bench.backends: `cost`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import backends
from bench.backends.base import Coefficients
from bench.core.manifest import Manifest, Point

if TYPE_CHECKING:
    from bench.stages.sweep import Task


class Estimator:
    def __init__(self, manifest: Manifest) -> None:
        self.c: Coefficients = backends.get(manifest.engine.backend).cost
        self.scale = self.c.scale
        self.online = manifest.sweep.scenario == "online"
        self.warmup = manifest.runtime.warmup

    def sweep_seconds(self, p: Point) -> float:
        """One sweep point of this manifest, as progress, `make plan` and shards count it: the
        offline model, or for an online manifest online_seconds over its requests and warm-up
        requests (the server's start-up is counted once per sweep: `startup_once_s`)."""
        if not self.online:
            return self.seconds(p)
        measured = p.model_copy(update={"requests": p.requests + self.warmup})
        return online_seconds(self, measured, p.concurrency)

    @property
    def startup_once_s(self) -> float:
        """What a sweep pays once besides its points: the online server's start-up."""
        return self.c.startup_s if self.online else 0.0

    def seconds(self, p: Point) -> float:
        """The offline model: the tool started for this point alone."""
        c = self.c
        per_request = (
            p.isl * c.prefill_s_per_token
            + p.osl * c.decode_s_per_token
            + p.osl * (p.isl + p.osl / 2) * c.attention_s_per_token_pair
        )
        return c.startup_s + self.scale * p.requests * per_request


# Online points (issue 12): one decode step of a lightly loaded server. NVIDIA's NIM tables for
# Llama 3.1 8B on H100 (AIPerf) give an inter-token latency of 4.4-4.6 ms at concurrency 1-5.
LOW_LOAD_STEP_S = 0.005


def online_seconds(estimator: Estimator, p: Point, concurrency: int | None) -> float:
    """A point driven at a fixed concurrency: the longer of the offline model's time for its
    requests (throughput-bound, start-up excluded: the server starts once) and its requests in
    ceil(requests / concurrency) waves, each one request's latency at low load (prefill at the
    model's rate, osl steps of LOW_LOAD_STEP_S)."""
    c = estimator.c
    bound = estimator.seconds(p) - c.startup_s
    waves = -(-p.requests // (concurrency or p.requests))
    per_request = estimator.scale * p.isl * c.prefill_s_per_token + p.osl * LOW_LOAD_STEP_S
    return max(bound, waves * per_request)


def shard_tasks(
    tasks: list[Task], index: int, count: int, estimator: Estimator | None = None
) -> list[Task]:
    """Shard `index` of `count` (from 1): longest-first greedy onto the least-loaded shard.

    Deterministic: ties break by task order, so every shard computes the same partition.
    """
    cost = (lambda t: estimator.sweep_seconds(t.point)) if estimator else (lambda t: 1.0)
    loads = [0.0] * count
    owner: dict[int, int] = {}
    order = sorted(range(len(tasks)), key=lambda i: (-cost(tasks[i]), i))
    for i in order:
        target = min(range(count), key=lambda s: (loads[s], s))
        owner[i] = target
        loads[target] += cost(tasks[i])
    return [t for i, t in enumerate(tasks) if owner[i] == index - 1]


def hms(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"

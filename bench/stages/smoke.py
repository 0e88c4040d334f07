"""`make smoke`: the whole real path in minutes, on two points, before the full sweep.

Writes: $WORK_DIR/smoke/<manifest file> (the smoke manifest; `make smoke` then runs `make all` on
        it as run <manifest>-smoke)
Usage:  python -m bench.stages.smoke --manifest M                      (write it, print its plan
time)
        python -m bench.stages.smoke --manifest M --readiness --run R  (after the run: ready or not,
                                                                 and the full sweep's GPU time)

The smoke manifest is the manifest with two points: the cheapest (least estimated time) and the
most demanding (longest ISL + OSL, then the most requests), each cut to a few requests. Model,
quantization, engine limits and runtime options are unchanged, so every stage (fetch, quantize,
build, datasets, sweep, report, verify) runs exactly as in the full run, and the engine is built
with the full run's limits. Readiness scales the cost model by what the smoke points measured.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from bench import backends
from bench.core import cost
from bench.core.errors import KitError, run_main
from bench.core.manifest import Manifest, Point, load_manifest, parse_manifest
from bench.core.run import RunPaths
from bench.schema.record import load_records

SMOKE_REQUESTS = 16  # enough for a steady batch of long requests, few enough for minutes


def smoke_points(manifest: Manifest) -> list[Point]:
    """The cheapest point (shortest ISL + OSL: smoke requests are cut, so length is the cost) and
    the most demanding one (longest ISL + OSL, then most requests); they may be one point."""
    points = manifest.sweep.points
    cheapest = min(points, key=lambda p: (p.isl + p.osl, p.requests))
    demanding = max(points, key=lambda p: (p.isl + p.osl, p.requests, p.concurrency or 0))
    return [cheapest] if cheapest == demanding else [cheapest, demanding]


def smoke_data(data: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
    """The manifest's TOML data with the smoke points and name; everything else kept."""
    out = {**data, "name": f"{manifest.name}-smoke"}
    out.pop("reference", None)  # a few requests are not comparable with published numbers
    points = [
        {**p.model_dump(exclude_none=True), "requests": min(p.requests, SMOKE_REQUESTS)}
        for p in smoke_points(manifest)
    ]
    # requests_per_concurrency 1: a smoke point keeps its 16 requests, or one per slot when its
    # concurrency is higher (the full sweep's 10 per slot would be 2,560 at concurrency 256)
    out["sweep"] = {**data["sweep"], "repeats": 1, "points": points, "requests_per_concurrency": 1}
    return out


def smoke_path(manifest_path: Path) -> Path:
    return Path(os.environ.get("WORK_DIR", "work")) / "smoke" / manifest_path.name


def write_smoke_manifest(manifest_path: Path) -> tuple[Path, Manifest]:
    manifest = load_manifest(manifest_path)
    data = smoke_data(tomllib.loads(manifest_path.read_text(encoding="utf-8")), manifest)
    smoke = parse_manifest(data, str(manifest_path))  # still a valid manifest
    target = smoke_path(manifest_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f"# `make smoke MANIFEST={manifest_path}` wrote this; do not edit.\n" + tomli_w.dumps(data),
        encoding="utf-8",
    )
    return target, smoke


def total_seconds(manifest: Manifest) -> float:
    estimator = cost.Estimator(manifest)
    return sum(estimator.seconds(p) for p in manifest.sweep.points) * manifest.sweep.repeats


def readiness(manifest: Manifest, smoke: Manifest, points_dir: Path) -> tuple[bool, list[str]]:
    """Ready iff every smoke point has an ok result; the estimate scales by measured/estimated."""
    records = load_records(points_dir) if points_dir.is_dir() else []
    ok = [r for r in records if r.status == "ok"]
    lines = [
        f"smoke {r.isl}/{r.osl}: {r.status}"
        + (f" ({r.failure}: {r.failure_detail})" if r.status != "ok" else "")
        for r in records
    ]
    ready = len(ok) == len(smoke.sweep.points) and bool(ok)
    if not ready:
        missing = len(smoke.sweep.points) - len(ok)
        lines.append(f"NOT READY: {missing} of {len(smoke.sweep.points)} smoke point(s) not ok")
    device = "GPU" if backends.get(manifest.engine.backend).needs_gpu else "CPU"
    estimate = total_seconds(manifest)
    lines.append(
        f"full sweep, cost model: {cost.hms(estimate)} {device} time for "
        f"{len(manifest.sweep.points) * manifest.sweep.repeats} points"
    )
    estimator = cost.Estimator(smoke)
    measured = [
        (r.metrics.total_latency_ms / 1000.0, estimator.seconds(point_of(smoke, r.isl, r.osl)))
        for r in ok
        if r.metrics.total_latency_ms is not None
    ]
    if measured:
        start = estimator.c.startup_s
        ratio = sum(m for m, _ in measured) / sum(e - start for _, e in measured)
        lines.append(
            f"full sweep, scaled by the smoke points (measured/estimated = {ratio:.2f}): "
            f"{cost.hms(scaled_total(manifest, ratio))} {device} time"
        )
    lines.append("READY: run the full sweep" if ready else "fix the failures above first")
    return ready, lines


def point_of(manifest: Manifest, isl: int, osl: int) -> Point:
    return next(p for p in manifest.sweep.points if (p.isl, p.osl) == (isl, osl))


def scaled_total(manifest: Manifest, ratio: float) -> float:
    estimator = cost.Estimator(manifest)
    start = estimator.c.startup_s
    per_point = [start + ratio * (estimator.seconds(p) - start) for p in manifest.sweep.points]
    return sum(per_point) * manifest.sweep.repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--readiness", action="store_true", help="after the smoke run")
    parser.add_argument("--run", help="the smoke run's name (with --readiness)")
    args = parser.parse_args(argv)

    def smoke() -> int:
        if not args.readiness:
            target, manifest = write_smoke_manifest(args.manifest)
            shown = ", ".join(f"{p.isl}/{p.osl} x{p.requests}" for p in manifest.sweep.points)
            print(
                f"smoke: {target}: {shown}; est. sweep {cost.hms(total_seconds(manifest))} "
                "(plus fetch, quantize and the engine build on a cold cache)"
            )
            return 0
        if not args.run:
            raise KitError("--readiness needs --run", fix="pass --run <manifest>-smoke")
        full = load_manifest(args.manifest)
        smoke_manifest = load_manifest(smoke_path(args.manifest))
        ready, lines = readiness(full, smoke_manifest, RunPaths.for_run(args.run).points)
        print("\n".join(lines))
        return 0 if ready else 1

    return run_main(smoke, "bench.stages.smoke")


if __name__ == "__main__":
    raise SystemExit(main())

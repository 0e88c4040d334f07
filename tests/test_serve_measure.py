"""One online point end to end without AIPerf: goodput under the manifest's [slo] and energy over
AIPerf's profiling window, computed as the offline sweep computes them.

A stand-in `aiperf` writes the real exports of tests/data/aiperf with their clock moved to now
(the profiling phase after a pause, as AIPerf's warm-up would be); the stand-in server of
tests/test_serve.py takes a while to answer /health; the sampler is the real one over a fake NVML
at constant power, so the energy says which seconds it covers.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from bench.analysis.latency import read_requests
from bench.backends import aiperf
from bench.backends.server import Serving
from bench.core.manifest import Point, Slo, load_manifest
from bench.core.run import Run, RunPaths
from bench.gpu.telemetry import Sampler
from bench.schema.record import PointResult
from bench.stages import serve
from bench.stages.sweep import PARTIAL, Task
from tests.conftest import ROOT
from tests.test_serve import fake_command
from tests.test_telemetry import FakeNVML

DATA = Path(__file__).parent / "data" / "aiperf"
WATTS = 650.5  # FakeNVML's board power
FAKE_AIPERF = textwrap.dedent(
    """
    import json, shutil, sys, time
    from pathlib import Path
    data = Path(sys.argv[0]).with_name("exports")  # beside this script
    out = Path(sys.argv[sys.argv.index("--artifact-dir") + 1])
    time.sleep(WARMUP_S)  # AIPerf's own start and warm-up: before the profiling window
    start = time.time_ns()
    time.sleep(WINDOW_S)
    end = time.time_ns()
    out.mkdir(parents=True)
    phases = json.loads((data / "phase_manifest.json").read_text())
    profiling = next(p for p in phases["phases"] if p["phase_kind"] == "profiling")
    shift = start - profiling["start_ns"]
    for phase in phases["phases"]:
        phase["start_ns"] += shift
        phase["end_ns"] += shift
    profiling["end_ns"] = end
    (out / "phase_manifest.json").write_text(json.dumps(phases))
    lines = []
    for line in (data / "profile_export.jsonl").read_text().splitlines():
        record = json.loads(line)
        record["metadata"]["request_start_ns"] += shift
        lines.append(json.dumps(record))
    (out / "profile_export.jsonl").write_text("\\n".join(lines) + "\\n")
    shutil.copyfile(data / "profile_export_aiperf.json", out / "profile_export_aiperf.json")
    """
)


def stand_in_aiperf(tmp_path: Path, warmup_s: float = 0.3, window_s: float = 0.6) -> str:
    shutil.copytree(DATA, tmp_path / "exports")
    script = tmp_path / "aiperf"
    text = FAKE_AIPERF.replace("WARMUP_S", repr(warmup_s)).replace("WINDOW_S", repr(window_s))
    script.write_text(f"#!{sys.executable}\n{text}")
    script.chmod(0o755)
    return str(script)


def measure_one(
    run: Run, tmp_path: Path, aiperf_bin: str, server_delay_s: float
) -> tuple[PointResult, Task]:
    """One concurrency-2 point measured by serve.measure against the stand-in server and AIPerf,
    with a fake NVML sampled every 20 ms; the server is stopped however it ends."""
    serving = Serving(
        command=fake_command(delay=server_delay_s),
        endpoint="chat",
        tokenizer=tmp_path,
        fixed_length_inputs=lambda osl: {},
        prepared=[],
        engine_version="stand-in",
    )
    srv = serve.Server(serving.command, tmp_path / "server.log", start_timeout_s=30)
    task = Task(Point(isl=32, osl=16, requests=8, concurrency=2), 0)
    try:
        result = serve.measure(
            run, task, srv, serving, lambda csv: Sampler(csv, 0.02, 0, nvml=FakeNVML()),
            aiperf_bin, tmp_path / "scratch",
        )  # fmt: skip
    finally:
        srv.stop()
    return result, task


def test_an_online_point_gets_goodput_and_energy_over_aiperfs_window(tmp_path, run_roots):
    ttfts = sorted(
        json.loads(line)["metrics"]["time_to_first_token"]["value"]
        for line in (DATA / aiperf.PER_REQUEST).read_text().splitlines()
        if json.loads(line)["metadata"]["benchmark_phase"] == "profiling"
    )
    limit = (ttfts[3] + ttfts[4]) / 2
    slo = Slo(ttft_p99_ms=limit)  # the four fastest first tokens meet it
    path = ROOT / "manifests" / "demo-online.toml"
    manifest = load_manifest(path).model_copy(update={"slo": slo})
    run = Run(RunPaths.for_run("online"), manifest, path)
    # a start-up: 0.5 s before /health answers
    result, task = measure_one(run, tmp_path, stand_in_aiperf(tmp_path), server_delay_s=0.5)
    assert result.status == "ok", result.failure_detail
    workdir = run.paths.points / (task.name + PARTIAL)
    phases = json.loads((workdir / aiperf.PHASES).read_text())
    start, end = aiperf.profiling_window(phases)
    assert (result.window_start_ns, result.window_end_ns) == (start, end)
    window_s = (end - start) / 1e9

    met = [r for r in read_requests(workdir / "requests.csv") if r.ttft_ms <= limit]
    assert len(met) == 4
    assert result.metrics.goodput_req_s == pytest.approx(4 / window_s)
    assert result.metrics.goodput_output_tok_s == pytest.approx(4 * 16 / window_s)

    t = result.telemetry
    assert t["window"]["start_ns"] == start and t["window"]["source"] == aiperf.PHASES
    # the server's start-up and AIPerf's warm-up are the load phase (> 0.5 s: the warm-up alone
    # is ~0.35 s); the energy is the window's
    assert t["load_phase"]["samples"] * 0.02 > 0.5
    assert t["energy_j"] == pytest.approx(WATTS * window_s, rel=0.02)
    assert t["j_per_output_token"] == pytest.approx(t["energy_j"] / (8 * 16), rel=1e-4)


def test_unreadable_exports_fail_the_point_not_the_sweep(tmp_path, run_roots):
    """AIPerf exits 0 but its aggregate export is not JSON: this point is a recorded failure
    naming why; the sweep goes on (a KitError here once stopped every later point)."""
    path = ROOT / "manifests" / "demo-online.toml"
    run = Run(RunPaths.for_run("online"), load_manifest(path), path)
    aiperf_bin = stand_in_aiperf(tmp_path, warmup_s=0.05, window_s=0.1)  # its timing is moot
    (tmp_path / "exports" / aiperf.AGGREGATE).write_text("{truncated")
    result, _ = measure_one(run, tmp_path, aiperf_bin, server_delay_s=0.0)
    assert result.status == "failed" and result.failure == "crash"
    assert "AIPerf's exports cannot be read" in (result.failure_detail or "")

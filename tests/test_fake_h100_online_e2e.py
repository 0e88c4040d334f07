"""The H100 online path end to end on a CPU machine: `make all` on the fake online manifest with
the fake TensorRT-LLM 1.0 tools first on PATH, as tests/test_fake_h100_e2e.py runs the offline one.

Real fetch / quantize stages, the fake trtllm-build engine served by the fake trtllm-serve, driven
by the kit's AIPerf 0.13 on /v1/completions; then report and verify, and a second `make all` that
must rerun nothing.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_fake_h100_e2e import REPO, no_process_reads, pipeline_env

from bench.analysis.latency import REQUESTS_CSV, read_requests
from tests.conftest import needs_aiperf

pytestmark = pytest.mark.slow
MANIFEST = REPO / "tests" / "data" / "manifests" / "fake-h100-online.toml"
RUN = MANIFEST.stem
POINTS = ["isl128_osl64_c8", "isl32_osl32_c1", "isl64_osl32_c2", "isl64_osl32_c4"]
STAGES = ("env", "fetch", "quantize", "build", "accuracy", "datasets", "sweep", "report")


def make_all(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = ["make", "all", f"MANIFEST={MANIFEST.relative_to(REPO)}", f"PYTHON={sys.executable}"]
    # 90 s on an idle 2-core machine; several times that under the other suites' load
    return subprocess.run(argv, cwd=REPO, env=env, text=True, capture_output=True, timeout=900)


def stage_status(out: str) -> dict[str, str]:
    """Each stage's word in the status lines `make all` ends with ("ran", "skipped", ...)."""
    lines = out[out.rindex(f"run {RUN}:") :].splitlines()[1:]
    return {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}


@pytest.fixture(scope="module")
def online(
    tmp_path_factory,
) -> tuple[Path, subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    needs_aiperf()  # make builds it; under xdist, `make test` has built it before any worker
    base = tmp_path_factory.mktemp("fake-h100-online")
    env = pipeline_env(base, fakes=True, inject={})
    first = make_all(env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    second = make_all(env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return base, first, second


def record(base: Path, point: str) -> dict:
    return json.loads((base / "results" / RUN / "points" / point / "result.json").read_text())


def test_every_point_is_an_aiperf_record_with_its_latency_distributions(online):
    base, _, _ = online
    folders = sorted(p.name for p in (base / "results" / RUN / "points").iterdir())
    assert folders == POINTS
    for point in POINTS:
        r = record(base, point)
        assert (r["status"], r["source"], r["scenario"], r["streaming"]) == (
            "ok",
            "aiperf",
            "online",
            True,
        ), r.get("failure_detail")
        # the server's count of each prompt is the point's ISL (AIPerf sends ISL - 1 + BOS)
        assert r["metrics"]["avg_input_len"] == r["isl"]
        assert r["metrics"]["avg_output_len"] == r["osl"]
        for name in ("ttft_ms", "tpot_ms", "request_latency_ms", "per_user_output_tok_s"):
            dist = r["metrics"][name]
            assert dist["count"] == r["requests"] and 0 < dist["p50"] <= dist["p99"], name
        assert r["window_start_ns"] < r["window_end_ns"]
        rows = read_requests(base / "results" / RUN / "points" / point / REQUESTS_CSV)
        assert len(rows) == r["requests"]
        assert {(row.input_tokens, row.output_tokens) for row in rows} == {(r["isl"], r["osl"])}
        # the route the plan prints: completions, exact output lengths forced by the server
        argv = r["attempts"][0]["argv"]
        assert "--endpoint-type completions" in argv and "--extra-inputs ignore_eos:true" in argv
        assert r["attempts"][0]["server_argv"].startswith("trtllm-serve ")


def test_the_report_shows_latency_slo_and_pareto(online):
    base, _, _ = online
    reports = base / "reports" / RUN
    report = (reports / "report.md").read_text()
    for heading in (
        "### Time to first token (TTFT)",
        "### Time per output token (TPOT, first token excluded)",
        "## Service-level objective (SLO)",
        "## Throughput vs interactivity (Pareto frontier)",
    ):
        assert heading in report, heading
    slo = report.split("## Service-level objective (SLO)")[1].split("\n## ")[0]
    verdicts = [line for line in slo.splitlines() if re.match(r"\| \d+ \| \d+ \| \d+ \|", line)]
    assert len(verdicts) == len(POINTS) and all("| met |" in line for line in verdicts)
    for isl, osl in ((32, 32), (64, 32), (128, 64)):
        figure = f"figures/pareto_isl{isl}_osl{osl}.png"
        assert f"]({figure})" in report and (reports / figure).stat().st_size > 0
    # the load generator is named beside the engine
    assert re.search(r"\| AIPerf \(load generator\) \| 0\.13\.0 \|", report)
    provenance = json.loads((base / "results" / RUN / "provenance.json").read_text())
    assert provenance["software"]["packages"]["aiperf"] == "0.13.0"


def test_verify_passes(online):
    base, first, _ = online
    assert "Result: PASSED" in first.stdout
    assert "**Result: PASSED**" in (base / "reports" / RUN / "verify.md").read_text()


def test_no_server_is_left_listening(online):
    base, _, _ = online
    for point in POINTS:
        port = int(re.search(r"--port (\d+)", record(base, point)["attempts"][0]["server_argv"])[1])
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listens"
    assert no_process_reads(str(base / "work" / RUN / "engine"))  # no trtllm-serve of this run


def test_a_second_make_all_reruns_nothing(online):
    base, first, second = online
    assert stage_status(first.stdout) == dict.fromkeys(STAGES, "ran")
    assert stage_status(second.stdout) == dict.fromkeys(STAGES, "skipped")
    assert "[serve] server up" not in second.stderr and "aiperf profile" not in second.stderr
    key = json.loads((base / "results" / RUN / "artifacts.json").read_text())["stages"]["sweep"]
    assert key["key"]["tools"]["aiperf"] == "0.13.0"  # another AIPerf would rerun the sweep


def test_the_terminal_gets_one_line_per_point_and_aiperfs_console_its_log(online):
    """AIPerf's console (its command, progress and tables) goes to the point's console.log, as
    every tool's does offline; the terminal gets the sweep's one line per point."""
    base, first, _ = online
    assert "aiperf profile" not in first.stderr and "aiperf profile" not in first.stdout
    progress = re.findall(r"^\[sweep\] \d+/\d+ (\S+): ok ", first.stderr, flags=re.M)
    assert sorted(progress) == POINTS
    for point in POINTS:
        console = base / "results" / RUN / "points" / point / "console.log"
        assert console.stat().st_size > 0, point

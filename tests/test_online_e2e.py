"""End to end, online: `make all MANIFEST=manifests/demo-online.toml`, a real `transformers serve`
driven by a real AIPerf 0.13.0, as a user runs it.

The run is first killed with SIGKILL in the middle of its first point (the server must go down
with it, through the parent-death signal: nothing may still listen on its port), then resumed by
`make all`, whose finished run the other tests read. On first use Make builds .venv-aiperf from
requirements/aiperf.lock and adds requirements/serve.lock to the venv the tests run in.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.analysis import latency
from bench.backends import aiperf
from bench.core.fileio import read_json
from tests.conftest import AIPERF_VENV, ROOT, aiperf_venv
from tests.procwait import alive
from tests.test_demo_e2e import roots_env

pytestmark = pytest.mark.slow
MANIFEST = ROOT / "manifests" / "demo-online.toml"
RUN = "demo-online"
SERVER_UP = re.compile(r"\[serve\] server up at http://127\.0\.0\.1:(\d+) \(pid (\d+)\)")


def make(base: Path, *targets: str) -> subprocess.CompletedProcess:
    argv = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        *targets,
        f"PYTHON={sys.executable}",
        f"MANIFEST={MANIFEST}",
        f"RUN={RUN}",
    ]
    # the first use builds .venv-aiperf (minutes on a loaded 2-core machine)
    return subprocess.run(argv, env=roots_env(base), capture_output=True, text=True, timeout=2400)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def has_bytes(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:  # the point finished between the glob and the stat
        return False


def kill_mid_point(base: Path) -> tuple[int, int]:
    """Start the sweep stage, SIGKILL it once AIPerf is measuring; return the server's port, pid."""
    stage = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.stages.sweep",
            "--manifest",
            str(MANIFEST),
            "--run",
            RUN,
            "--aiperf",
            str(aiperf_venv() / "bin" / "aiperf"),
        ],
        cwd=ROOT,
        env=roots_env(base),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    port = pid = None
    seen = []
    points = base / "results" / RUN / "points"
    try:
        deadline = time.monotonic() + 600
        for line in stage.stderr:
            seen.append(line)
            if m := SERVER_UP.search(line):
                port, pid = int(m[1]), int(m[2])
                break
            assert time.monotonic() < deadline, "".join(seen[-20:])
        assert port and pid, "".join(seen[-20:])
        # AIPerf's console goes to the point's log only: it has started once that log has bytes
        while not any(has_bytes(log) for log in points.glob("*.partial/console.log")):
            assert stage.poll() is None and time.monotonic() < deadline, "".join(seen[-20:])
            time.sleep(0.1)
        time.sleep(3)  # AIPerf is starting or measuring: mid-point
        assert listening(port)
        stage.send_signal(signal.SIGKILL)
        stage.wait(timeout=30)
    finally:
        stage.kill()
        stage.wait()
    return port, pid


@pytest.fixture(scope="module")
def online(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, tuple[int, int]]:
    base = tmp_path_factory.mktemp("online")
    # the online tools first: the killed sweep below runs the stage without Make
    ready = make(base, "datasets", f"{AIPERF_VENV}/.installed", ".venv/.serve-installed")
    assert ready.returncode == 0, ready.stdout[-3000:] + ready.stderr[-6000:]
    killed = kill_mid_point(base)
    started = time.monotonic()
    first = make(base, "all")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    print(f"online resume + report + verify: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return base, first, killed


def test_sigkill_mid_point_leaves_no_server(online):
    _, _, (port, pid) = online
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), f"the server (pid {pid}) outlived the killed sweep"
    assert not listening(port)


def test_resume_discards_the_killed_point_and_finishes(online):
    base, first, _ = online
    assert "discarding interrupted point" in first.stderr
    points = base / "results" / RUN / "points"
    assert not list(points.glob("*.partial"))
    assert "verify" in first.stdout and "FAIL" not in first.stdout.split("## Totals")[-1]


def test_every_point_is_an_online_aiperf_record_with_exact_lengths(online):
    base, _, _ = online
    run = base / "results" / RUN
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    arts = read_json(run / "artifacts.json")["files"]
    for row in rows:
        assert float(row["avg_output_len"]) == float(row["osl"])
        assert float(row["avg_input_len"]) == float(row["isl"])
        folder = run / "points" / f"isl{row['isl']}_osl{row['osl']}_c{row['concurrency']}"
        record = read_json(folder / "result.json")
        assert (record["source"], record["scenario"], record["streaming"]) == (
            "aiperf",
            "online",
            True,
        )
        assert record["window_start_ns"] < record["window_end_ns"]
        assert record["metrics"]["ttft_ms"]["count"] == int(row["requests"])
        requests = list(csv.DictReader((folder / latency.REQUESTS_CSV).open()))
        assert len(requests) == int(row["requests"])
        assert {int(r["output_tokens"]) for r in requests} == {int(row["osl"])}
        for name in (aiperf.AGGREGATE, aiperf.PER_REQUEST, aiperf.PHASES, "server.log"):
            assert (folder / name).is_file(), name
        for f in folder.iterdir():  # every raw file checksummed in the run's record
            assert f"run:points/{folder.name}/{f.name}" in arts, f.name
        assert any(k.startswith("work:served-model/") for k in arts)


def test_no_server_left_after_the_run(online):
    base, _, _ = online
    for folder in (base / "results" / RUN / "points").iterdir():
        record = read_json(folder / "result.json")
        server_argv = record["attempts"][0]["server_argv"]
        port = int(re.search(r"--port (\d+)", server_argv)[1])
        assert not listening(port)
    argv = json.dumps(sys.argv)  # the test's own processes are not servers
    leftovers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and (p / "cmdline").exists()
        and str(base) in (p / "cmdline").read_bytes().decode(errors="replace")
        and "transformers_cli" in (p / "cmdline").read_bytes().decode(errors="replace")
    ]
    assert not leftovers, argv

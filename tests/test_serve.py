"""The online runner's server lifecycle: up only when healthy, down on every way out.

A tiny loopback HTTP server stands in for `transformers serve` / `trtllm-serve` (the real one
runs in tests/test_online_e2e.py); each test tries to leave it running and checks it is gone.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.backends.server import ServerCommand, transformers_serve_command
from bench.core.errors import KitError
from bench.stages import serve
from tests.procwait import gone

# Serves /health after `delay` seconds; ignores SIGTERM when asked (the hung server of the notes).
FAKE = textwrap.dedent(
    """
    import http.server, signal, sys, time
    port, delay, ignore_term = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(delay)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            print("request", self.path, flush=True)
    print("fake server listening", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def fake_command(delay: float = 0.0, ignore_term: bool = False, exit_code: int | None = None):
    def make(port: int) -> ServerCommand:
        if exit_code is not None:
            argv = [
                sys.executable,
                "-c",
                f"print('boom: no fastapi'); raise SystemExit({exit_code})",
            ]
        else:
            argv = [sys.executable, "-c", FAKE, str(port), str(delay), "1" if ignore_term else "0"]
        return ServerCommand(
            argv=argv, env={}, base_url=f"http://127.0.0.1:{port}", health_path="/health",
            model_name="m",
        )  # fmt: skip

    return make


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_server_is_used_only_once_healthy_and_stopped(tmp_path):
    srv = serve.Server(fake_command(delay=0.3), tmp_path / "server.log", start_timeout_s=30)
    started = time.monotonic()
    command = srv.ensure_up()
    assert time.monotonic() - started >= 0.3  # not before the server's own start-up
    port = int(command.base_url.rsplit(":", 1)[1])
    pid = srv.proc.pid
    assert listening(port) and srv.alive()
    assert srv.ensure_up() is command and srv.proc.pid == pid  # one server for every point
    assert b"fake server listening" in srv.take_log()
    assert srv.take_log() == b""  # each point gets only its own share of the log
    srv.stop()
    assert gone(pid) and not listening(port)


def test_health_polls_start_fast_then_back_off():
    """A server up in 0.3 s is used within ~10% of that; a slow one is polled every 0.25 s."""
    assert serve.health_pause(0.0) == serve.HEALTH_FIRST_POLL_S == 0.02
    assert serve.health_pause(0.3) == pytest.approx(0.03)
    assert serve.health_pause(60.0) == serve.HEALTH_POLL_S == 0.25


def test_server_ignoring_sigterm_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "SERVER_GRACE_S", 0.2)
    srv = serve.Server(fake_command(ignore_term=True), tmp_path / "server.log", 30)
    port = int(srv.ensure_up().base_url.rsplit(":", 1)[1])
    pid = srv.proc.pid
    srv.stop()
    assert gone(pid) and not listening(port)


def test_server_that_exits_at_start_is_one_clear_error(tmp_path):
    srv = serve.Server(fake_command(exit_code=3), tmp_path / "server.log", 30)
    with pytest.raises(KitError, match=r"exited \(3\) before answering /health: boom"):
        srv.ensure_up()
    assert srv.proc is None


def test_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    srv = serve.Server(fake_command(delay=60), tmp_path / "server.log", start_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(KitError, match=r"did not answer .*/health within 0\.5 s"):
        srv.ensure_up()
    assert 0.5 <= time.monotonic() - started < 20
    assert srv.proc is None


# The kit's side, in its own process, so the test can kill it as make or a user would.
HOLDER = textwrap.dedent(
    """
    import json, signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from tests.test_serve import fake_command
    from bench.stages import serve
    signal_kind = sys.argv[3]
    srv = serve.Server(fake_command(), Path(sys.argv[2]), 30)
    # Ctrl-C as a terminal's kit gets it: pytest started in the background (no job control)
    # inherits SIGINT ignored, and so would this process
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal_kind == "term":
        signal.signal(signal.SIGTERM, serve._interrupt)
    try:
        command = srv.ensure_up()
        print(json.dumps({"pid": srv.proc.pid, "url": command.base_url}), flush=True)
        time.sleep(120)
    finally:
        srv.stop()
    """
)


@pytest.mark.parametrize("how", ["kill", "term", "int"])
def test_no_server_survives_the_kit(tmp_path, how):
    """SIGKILL: the parent-death signal takes the server down; SIGTERM/SIGINT: the finally."""
    root = str(Path(__file__).resolve().parents[1])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, root, str(tmp_path / "server.log"), how],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        info = json.loads(holder.stdout.readline())
        port = int(info["url"].rsplit(":", 1)[1])
        assert listening(port)
        sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[how]
        holder.send_signal(sig)
        holder.wait(timeout=30)
        assert gone(info["pid"]), f"server {info['pid']} survived {how}"
        assert not listening(port)
    finally:
        holder.kill()
        holder.wait()


def test_transformers_serve_command_is_pinned_to_the_loopback_and_one_model(tmp_path):
    command = transformers_serve_command(tmp_path, "org/model", 8123, python="py")
    assert command.argv[:5] == [
        "py",
        "-m",
        "transformers.commands.transformers_cli",
        "serve",
        "--host",
    ]
    joined = " ".join(command.argv)
    assert "--host 127.0.0.1 --port 8123" in joined
    assert f"--force_model {tmp_path.resolve()}" in joined
    assert "--continuous_batching" not in joined  # fails on the CPU (4.57.3)
    assert command.health_url == "http://127.0.0.1:8123/health"
    assert command.model_name == "org/model"
    assert command.env["HF_HUB_OFFLINE"] == "1"


def test_aiperf_env_drops_offline_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    env = serve.aiperf_env(tmp_path)
    assert "HF_HUB_OFFLINE" not in env and "TRANSFORMERS_OFFLINE" not in env
    assert env["AIPERF_DATASET_MMAP_BASE_PATH"] == env["TMPDIR"] == str(tmp_path)


def test_word_level_tokenizer_round_trips_every_count():
    """Streamed text re-tokenized by AIPerf must give back exactly the tokens generated."""
    import random

    from tokenizers import Tokenizer

    from bench.backends.server import word_level_tokenizer

    special = {100: "<|begin_of_text|>", 101: "<|end_of_text|>"}
    tok = Tokenizer.from_str(json.dumps(word_level_tokenizer(102, special)))
    rng = random.Random(0)
    for n in (1, 2, 16, 33):
        ids = [rng.randrange(100) for _ in range(n)]
        text = tok.decode(ids)
        assert tok.encode(text, add_special_tokens=False).ids == ids
    # a special token is never text: skipped when decoding (and never generated)
    assert tok.decode([5, 101, 6]) == "t5 t6"


def test_served_generation_config_forbids_every_special_token():
    from bench.backends.server import served_generation_config

    cfg = served_generation_config({"bos_token_id": 1, "eos_token_id": [2, 3]}, [3, 1, 2, 9])
    assert cfg["suppress_tokens"] == [1, 2, 3, 9]
    assert cfg["do_sample"] is False and cfg["pad_token_id"] == 2


def test_scenario_is_read_before_any_venv(tmp_path):
    from bench.core.edge import scenario_of

    path = tmp_path / "m.toml"
    path.write_text('[sweep]\nscenario = "online"\n')
    assert scenario_of(path) == "online"
    path.write_text("[sweep]\nseed = 1\n")
    assert scenario_of(path) == "offline"
    path.write_text("not toml [")
    assert scenario_of(path) == ""
    path.write_text('[sweep]\nscenario = "on line $(x)"\n')
    assert scenario_of(path) == ""  # Make reads one word


def test_manifest_rejects_an_unknown_scenario():
    import tomllib

    from bench.core.manifest import parse_manifest
    from tests.conftest import ROOT

    data = tomllib.loads((ROOT / "manifests" / "demo-online.toml").read_text())
    assert parse_manifest(data).sweep.scenario == "online"
    data["sweep"]["scenario"] = "server"
    with pytest.raises(KitError, match=r"sweep\.scenario"):
        parse_manifest(data)


def test_online_points_are_never_graded_against_an_offline_reference():
    import dataclasses

    from bench.analysis.reference import RefIdentity, compare_method, run_method
    from bench.schema.record import PointResult

    online = PointResult(isl=1, osl=1, requests=1, status="ok", source="aiperf", scenario="online")
    check = compare_method(RefIdentity(), run_method(None, [online], None))
    assert not check.comparable
    assert [f.field for f in check.differences] == ["scenario"]
    offline = dataclasses.replace(online, scenario="offline")
    assert compare_method(RefIdentity(), run_method(None, [offline], None)).comparable


def test_plan_shows_the_server_and_one_aiperf_run_per_point(run_roots):
    from bench.core.manifest import load_manifest
    from bench.core.run import Run, RunPaths
    from bench.stages.plan import plan_lines
    from tests.conftest import ROOT

    path = ROOT / "manifests" / "demo-online.toml"
    run = Run(RunPaths.for_run(path.stem), load_manifest(path), path)
    lines = plan_lines(run, None)
    servers = [line for line in lines if "transformers_cli serve" in line]
    assert len(servers) == 1 and "OMP_NUM_THREADS=1" in servers[0]
    profiles = [line for line in lines if line.startswith("aiperf profile")]
    assert len(profiles) == 4 and all("--streaming" in line for line in profiles)
    assert not any("hf_runner" in line for line in lines)
    assert not (run.paths.work / "served-model").exists()  # the plan writes nothing


def fake_aiperf(tmp_path: Path, body: str = "echo 0.13.0") -> Path:
    tool = tmp_path / "aiperf"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return tool


def test_aiperf_version_is_what_aiperf_says(tmp_path):
    from bench.backends import aiperf

    assert aiperf.installed_version(str(fake_aiperf(tmp_path))) == "0.13.0"
    broken = fake_aiperf(tmp_path, "echo 'No module named aiperf' >&2; exit 1")
    with pytest.raises(KitError, match=r"--version` exited 1 saying 'No module named aiperf'"):
        aiperf.installed_version(str(broken))
    with pytest.raises(KitError, match=r"AIPerf not found: .*absent"):
        aiperf.installed_version(str(tmp_path / "absent"))


def test_the_online_sweep_key_names_aiperf(run_roots, tmp_path):
    """Another AIPerf is another measuring tool: the online sweep's stage key carries its
    version; the offline sweep never asks for one."""
    from bench.core.manifest import load_manifest
    from bench.core.run import Run, RunPaths
    from bench.stages import sweep
    from tests.conftest import DEMO_MANIFEST, ROOT

    online = ROOT / "manifests" / "demo-online.toml"
    run = Run(RunPaths.for_run(online.stem), load_manifest(online), online)
    assert sweep.sweep_tools(run, str(fake_aiperf(tmp_path)))["aiperf"] == "0.13.0"
    offline = Run(RunPaths.for_run("demo"), load_manifest(DEMO_MANIFEST), DEMO_MANIFEST)
    assert "aiperf" not in sweep.sweep_tools(offline, str(tmp_path / "absent"))

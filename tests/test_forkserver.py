"""bench.core.forkserver: a point run as a fork of a preloaded interpreter must look, to the
sweep, exactly like a fresh process: same exit code (or signal), output on its own fds, its env
and cwd; and it must never outlive the command the sweep started (killed client, stopped server).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core import forkserver
from tests.conftest import ROOT
from tests.procwait import gone

TARGET = "tests.forkserver_target"
CLIENT = [
    sys.executable,
    "-c",
    "import sys; from bench.core import forkserver; "
    f"code = forkserver.delegate({TARGET!r}, sys.argv[1:]); "
    "print('in-process' if code is None else 'delegated', file=sys.stderr); "
    "sys.exit(3 if code is None else code)",
]


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(tmp_path)
    with forkserver.running([f"{TARGET}:preload"], tmp_path / "server.log") as path:
        assert os.environ[forkserver.ENV] == path
        yield path
    assert forkserver.ENV not in os.environ
    assert not Path(path).exists()


def client(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLIENT, *args], capture_output=True, text=True, timeout=60, env=kw.get("env")
    )


def test_the_fork_runs_with_the_clients_fds_env_cwd_and_exit_code(server, tmp_path):
    env = dict(os.environ, FORKSERVER_PROBE="from the client")
    done = client("echo", "7", env=env)
    assert done.returncode == 7
    assert (
        "delegated" in done.stderr and "a fork of the sweep's preloaded interpreter" in done.stderr
    )
    pid, preloaded, probe, cwd = done.stdout.split("|")
    assert preloaded == "True"  # imported once, by the server
    assert probe == "from the client" and Path(cwd.strip()) == tmp_path
    assert int(pid) != os.getpid()


def test_a_signal_death_is_the_clients_too(server):
    assert client("die", str(int(signal.SIGTERM))).returncode == -signal.SIGTERM
    assert client("die", str(int(signal.SIGKILL))).returncode == -signal.SIGKILL


def test_sys_exit_is_relayed_as_cpython_exits(server):
    assert client("exit", "none").returncode == 0
    done = client("exit", "fatal: something")
    assert done.returncode == 1 and "fatal: something" in done.stderr


def test_a_request_it_cannot_run_is_refused_so_the_client_runs_it_itself(server):
    import socket

    assert forkserver._ready(server)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(server)
        raw.sendall((5).to_bytes(8, "big") + b"{}{}{")  # no fds, not JSON
        assert raw.recv(8) == forkserver.REFUSED


def test_an_exception_is_a_traceback_and_exit_1(server):
    done = client("raise")
    assert done.returncode == 1 and "RuntimeError: boom" in done.stderr


def test_killing_the_client_kills_the_fork(server):
    proc = subprocess.Popen([*CLIENT, "sleep"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    proc.kill()  # what a point timeout or a SIGKILL of the kit does to the command
    proc.wait()
    assert gone(pid), "the fork outlived its client"


def test_stopping_the_server_stops_a_running_fork(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    with forkserver.running([TARGET], tmp_path / "server.log"):
        proc = subprocess.Popen([*CLIENT, "sleep"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
    assert gone(pid), "the fork outlived its server"
    assert proc.wait(timeout=30) != 0


def test_without_a_server_the_command_runs_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv(forkserver.ENV, raising=False)
    assert client("echo", "0").returncode == 3  # delegate said None: run it here
    env = dict(os.environ, **{forkserver.ENV: str(tmp_path / "no-such-socket")})
    done = client("echo", "0", env=env)
    assert done.returncode == 3 and "in-process" in done.stderr


def test_a_server_that_cannot_preload_says_so_and_commands_run_afresh(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    with forkserver.running(["no_such_module_anywhere"], tmp_path / "server.log") as path:
        done = client("echo", "0")  # waits while the server preloads, then sees it died
        assert done.returncode == 3 and "in-process" in done.stderr
        # the client goes on once the failed preload is marked, maybe before the server's exit
        assert gone(int(Path(path).with_name(forkserver.PID_FILE).read_text()))
    assert "each command started afresh" in capsys.readouterr().err
    assert "ModuleNotFoundError" in (tmp_path / "server.log").read_text()


def test_a_block_that_runs_nothing_does_not_wait_for_the_preload(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    started = time.monotonic()
    with forkserver.running([f"{TARGET}:slow_preload"], tmp_path / "server.log"):
        pass
    assert time.monotonic() - started < 5  # slow_preload sleeps 30 s


def test_folders_of_sweeps_that_are_gone_are_removed_at_the_next_start(tmp_path, monkeypatch):
    """A SIGKILLed sweep leaves its folder behind; the next sweep removes it and nothing else:
    not the folder of a sweep that runs (its lock is held, even if its server died)."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    an_hour_ago = time.time() - 3600

    def folder(name: str, *, lock: bool = True, old: bool = True, extra: str = "") -> Path:
        path = tmp_path / (forkserver.PREFIX + name)
        path.mkdir()
        for leftover in ("socket", "socket.failed", *([extra] if extra else [])):
            (path / leftover).write_text("")
        (path / forkserver.PID_FILE).write_text(str(dead.pid))  # its server is gone too
        if lock:
            (path / forkserver.OWNER_LOCK).write_text("")
        if old:
            os.utime(path, (an_hour_ago, an_hour_ago))
        return path

    stale, no_lock = folder("gone"), folder("gone-before-locking", lock=False)
    running, young = folder("running"), folder("young", old=False)
    holds_more = folder("holds-more", extra="notes.txt")
    other = tmp_path / "trtllm-repro-other"
    other.mkdir()
    with open(running / forkserver.OWNER_LOCK) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as running() holds it: its server's pid is dead
        forkserver.remove_stale_folders()
        assert (running / "socket").exists() and (running / forkserver.PID_FILE).exists()
    assert not stale.exists() and not no_lock.exists()
    assert young.is_dir() and other.is_dir()
    assert (holds_more / "notes.txt").is_file()  # never removes what it did not make
    forkserver.remove_stale_folders()  # the lock released: the sweep is gone
    assert not running.exists()


def test_a_running_sweeps_folder_survives_another_sweeps_start(server):
    assert "delegated" in client("echo", "0").stderr  # the server is up
    forkserver.remove_stale_folders(min_age_s=0)
    assert "delegated" in client("echo", "0").stderr

"""bench.core.proc: the whole tree dies on a timeout or with the kit; no unsafe preexec_fn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.core import proc
from bench.core.errors import KitError
from tests.procwait import alive, gone

ROOT = Path(__file__).resolve().parents[1]


def test_output_and_exit_code_are_kept(tmp_path):
    log = tmp_path / "log.txt"
    result = proc.run_logged(
        ["sh", "-c", "echo out; echo err >&2; exit 3"], log, timeout_s=30, echo=False
    )
    assert result.exit_code == 3 and not result.timed_out
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    assert set(log.read_text().split()) == {"out", "err"}


def test_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    result = proc.run_logged(["sh", "-c", script], tmp_path / "log", timeout_s=1, echo=False)
    assert result.timed_out and result.exit_code is None
    assert pid_file.exists() and pid_file.read_text().strip(), "killed before the grandchild ran"
    assert gone(int(pid_file.read_text()), 5)


def test_a_missing_command_is_a_kit_error_naming_it(tmp_path):
    with pytest.raises(KitError, match="command not found: no-such-tool-xyz"):
        proc.run_logged(["no-such-tool-xyz"], tmp_path / "log", timeout_s=5, echo=False)


def test_no_preexec_fn_is_used_while_threads_run(tmp_path, monkeypatch):
    """preexec_fn is unsafe with threads (CPython docs); the session comes from Popen itself."""
    seen: dict[str, object] = {}
    real_popen = subprocess.Popen

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    proc.run_logged(["true"], tmp_path / "log", timeout_s=10, echo=False)
    assert seen.get("preexec_fn") is None
    assert seen.get("start_new_session") is True


def test_the_command_dies_when_the_kit_is_killed(tmp_path):
    """SIGKILL of the kit (no cleanup can run) still takes the command down: parent-death signal."""
    pid_file = tmp_path / "child.pid"
    kit = textwrap.dedent(
        f"""
        import threading, time
        from pathlib import Path
        from bench.core import proc
        # a busy thread, as the telemetry sampler is during a point
        threading.Thread(target=lambda: time.sleep(120), daemon=True).start()
        proc.run_logged(["sh", "-c", "echo $$ > {pid_file}; exec sleep 120"],
                        Path({str(tmp_path / "log")!r}), timeout_s=120, echo=False)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", kit], cwd=ROOT)
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.01)
    child = int(pid_file.read_text())
    assert alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert gone(child, 5), "the command outlived the kit"


def test_a_quiet_run_leaves_the_console_alone_and_logs_everything(tmp_path, capfd):
    log = tmp_path / "tool.log"
    argv = ["sh", "-c", "echo tool-out; echo tool-err >&2"]
    proc.run_logged(argv, log, timeout_s=30, echo=False, announce=False)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert set(log.read_text().split()) == {"tool-out", "tool-err"}
    proc.run_logged(argv, log, timeout_s=30, echo=True)
    err = capfd.readouterr().err
    assert err.startswith("+ sh -c") and "tool-out" in err and "tool-err" in err

"""Run one external command the way a benchmark needs: logged, bounded, and never left behind.

The command runs in its own session (so its own process group) with the parent-death signal
set, so a timeout, a Ctrl-C or a SIGKILL of the kit takes the whole tree down with it. Its output
is kept whole in a log file and echoed to stderr, and the exact command is printed before it starts.

The parent-death signal is set by a tiny trampoline that then execs the command, not by a
`preexec_fn`: CPython documents `preexec_fn` as unsafe while other threads run (the telemetry
sampler and the log pump do), and a child that deadlocks before exec would surface as a point
timeout hours later.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import KitError

GRACE_S = 10.0
# Runs in the child, single-threaded, before exec: ask for SIGKILL when the parent dies, and exit
# at once if the parent is already gone (it died between the spawn and the prctl).
_DEATHSIG_TRAMPOLINE = """\
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(137)
os.execvp(sys.argv[2], sys.argv[2:])
"""


@dataclass(frozen=True)
class ProcResult:
    argv: tuple[str, ...]
    exit_code: int | None  # negative: killed by that signal; None: timed out
    timed_out: bool
    seconds: float


def guarded_argv(argv: list[str]) -> list[str]:
    """argv wrapped in the trampoline that ties the command's life to this process."""
    return [sys.executable, "-I", "-c", _DEATHSIG_TRAMPOLINE, str(os.getpid()), *argv]


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    """SIGTERM to the command's whole process group, SIGKILL after grace_s: nothing survives."""
    _kill_group(proc, grace_s)


def _pump(source: int, log, echo: bool) -> None:
    while chunk := os.read(source, 65536):
        log.write(chunk)
        log.flush()
        if echo:
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()


def run_logged(
    argv: list[str],
    log_path: Path,
    *,
    timeout_s: float,
    env: dict[str, str] | None = None,
    stdout_path: Path | None = None,
    echo: bool = True,
    announce: bool = True,
) -> ProcResult:
    """Run argv with its output in log_path (stdout in stdout_path when given); kill on timeout.
    echo: also copy the output to stderr; announce: print the command line first."""
    if announce:
        print("+ " + shlex.join(argv), file=sys.stderr, flush=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    search_path = (env if env is not None else os.environ).get("PATH", os.defpath)
    if shutil.which(argv[0], path=search_path) is None:
        raise KitError(
            f"command not found: {argv[0]}",
            fix="run inside the pinned container (`make docker-all`) or install the tool",
        )
    read_end, write_end = os.pipe()
    stdout_file = open(stdout_path, "wb") if stdout_path else None  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            guarded_argv(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout_file or write_end,
            stderr=write_end,
            env=env,
            start_new_session=True,
        )
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    finally:
        if stdout_file:
            stdout_file.close()
    os.close(write_end)
    with open(log_path, "ab") as log:
        pump = threading.Thread(target=_pump, args=(read_end, log, echo), daemon=True)
        pump.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            print(f"[proc] timed out after {timeout_s:g} s: {shlex.join(argv)}", file=sys.stderr)
            _kill_group(proc)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            pump.join(timeout=5)
            os.close(read_end)
    return ProcResult(
        argv=tuple(argv),
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        seconds=time.monotonic() - start,
    )

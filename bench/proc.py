"""Run one external command the way a benchmark needs: logged, bounded, and never left behind.

The command runs in its own process group with the parent-death signal set, so a timeout, a
Ctrl-C or a SIGKILL of the kit takes the whole tree down with it. Its output is kept whole in a
log file and echoed to stderr, and the exact command is printed before it starts.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.errors import KitError

PR_SET_PDEATHSIG = 1
GRACE_S = 10.0


@dataclass(frozen=True)
class ProcResult:
    argv: tuple[str, ...]
    exit_code: int | None  # negative: killed by that signal; None: timed out
    timed_out: bool
    seconds: float


def _own_group_and_die_with_parent() -> None:
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


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
) -> ProcResult:
    """Run argv with its output in log_path (stdout in stdout_path when given); kill on timeout."""
    print("+ " + shlex.join(argv), file=sys.stderr, flush=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    read_end, write_end = os.pipe()
    stdout_file = open(stdout_path, "wb") if stdout_path else None  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout_file or write_end,
            stderr=write_end,
            env=env,
            preexec_fn=_own_group_and_die_with_parent,
        )
    except FileNotFoundError:
        os.close(read_end)
        os.close(write_end)
        raise KitError(
            f"command not found: {argv[0]}",
            fix="run inside the pinned container (`make docker-all`) or install the tool",
        ) from None
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

"""One writer per run: a stage that writes results/<run>/ holds an flock on a file in it.

Two `make sweep` on one run at once once appended two reports to one finished point's log and
deleted each other's live `.partial` folder. Now the second process stops at once with one line
naming the holder (PID, host, stage, since when) instead of waiting: a sweep can run for hours.
The kernel drops the lock when the holder exits, however it exits, so a stale lock file never
blocks anyone. flock is per host on local disks; on NFS, Linux maps it to a POSIX lock.

Lock file: results/<run>/.stamps/writer.lock (under .stamps/, which artifacts.json never records).
Usage in a stage's main:  return run_main(locked(run_name, "sweep", stage), "bench.stages.sweep")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.core.errors import KitError
from bench.core.run import RunPaths

LOCK_NAME = "writer.lock"


def lock_path(paths: RunPaths) -> Path:
    return paths.root / ".stamps" / LOCK_NAME


@contextlib.contextmanager
def writer_lock(paths: RunPaths, stage: str, *, create: bool = True) -> Iterator[None]:
    """Hold the run's writer lock for the block, or raise KitError naming who holds it.
    With create=False a run that does not exist is not made (the stage reports it missing)."""
    path = lock_path(paths)
    if not create and not paths.root.is_dir():
        yield
        return
    created = not paths.root.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode("utf-8", errors="replace").strip()
            raise KitError(
                f"another process is writing this run: {holder or 'holder unknown'}",
                path=str(paths.root),
                fix="wait for it to finish (or stop it), then rerun: two writers corrupt points",
            ) from None
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        holder = f"pid {os.getpid()} on {socket.gethostname()}, {stage}, since {since}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # still held: a finished holder is never named
    finally:
        os.close(fd)  # releases the lock
        if created:  # a stage that refused before writing leaves no empty run behind
            with contextlib.suppress(OSError):
                path.unlink()
                path.parent.rmdir()
                paths.root.rmdir()


def locked(
    run_name: str, stage: str, work: Callable[[], int], *, create: bool = True
) -> Callable[[], int]:
    """`work` under the run's writer lock, for run_main (which turns a refusal into one line)."""

    def run() -> int:
        with writer_lock(RunPaths.for_run(run_name), stage, create=create):
            return work()

    return run

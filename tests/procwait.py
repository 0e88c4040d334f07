"""Waiting for a process to be gone: one home for the tests that check nothing survives.

A zombie counts as gone: it runs no code and holds no port, only an exit status until its parent
collects it, and an orphan's new parent (PID 1 here) may take a second or more to. Polls every
10 ms, so a prompt death is seen at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POLL_S = 0.01


def alive(pid: int) -> bool:
    """pid exists and is not a zombie (without /proc: pid exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # it died since kill(0), or no /proc here
        return not Path("/proc/self").exists()
    return stat.rpartition(")")[2].split()[0] != "Z"  # the state follows "(comm)"


def gone(pid: int, within_s: float = 15.0) -> bool:
    """Whether pid is dead (or a zombie) within within_s."""
    deadline = time.monotonic() + within_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True

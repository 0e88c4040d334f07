"""What a library says while a stage calls it goes to the stage's log file, not the terminal.

ModelOpt, torch and transformers talk: Python warnings ("accelerate is not installed", "To copy
construct from a tensor"), their logging ("`torch_dtype` is deprecated!"), print() and C-level
writes. The console keeps the stage's own lines; the log (results/<run>/logs/<stage>.log, recorded
with the stage's outputs) keeps everything the library said. Redirected at the file descriptors,
so output of any kind lands there; the terminal is back before an error is printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def library_output_to(log: Path) -> Iterator[None]:
    """stdout and stderr (fds 1 and 2, so Python warnings and logging too) appended to `log`
    while the block runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with log.open("ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)

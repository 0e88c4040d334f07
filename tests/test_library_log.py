"""A library's warnings, logging and prints during a stage land in the stage's log, not on the
terminal; the terminal is back after the block, an error included. Run in a child process, as a
stage runs, so pytest's own capture of warnings and logging stays out of the way."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

STAGE = """
import logging, os, sys, warnings
from pathlib import Path
from bench.core.library_log import library_output_to

print("[quantize] the stage's own line", file=sys.stderr)
with library_output_to(Path(sys.argv[1])):
    warnings.warn("accelerate is not installed, hooks will not be removed")
    logging.getLogger("library").warning("`torch_dtype` is deprecated!")
    print("Inserted 51 quantizers")
    os.write(2, b"a C extension writes to fd 2\\n")
    if sys.argv[2] == "raise":
        raise RuntimeError("export failed")
print("[quantize] done")
"""


def run_stage(log: Path, how: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", textwrap.dedent(STAGE), str(log), how]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_what_a_library_says_goes_to_the_log_and_the_terminal_stays_quiet(tmp_path):
    log = tmp_path / "logs" / "quantize.log"
    done = run_stage(log, "talk")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["[quantize] the stage's own line"]
    assert done.stdout.splitlines() == ["[quantize] done"]
    text = log.read_text()
    for said in ("accelerate is not installed", "torch_dtype", "Inserted 51", "fd 2"):
        assert said in text, said


def test_the_terminal_is_back_when_the_library_raises(tmp_path):
    done = run_stage(tmp_path / "quantize.log", "raise")
    assert done.returncode == 1
    assert "RuntimeError: export failed" in done.stderr  # the error reaches the terminal
    assert "accelerate" not in done.stderr

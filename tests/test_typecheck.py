"""The fakes are linted and type-checked although they have no .py suffix."""

from __future__ import annotations

import subprocess
import sys

from scripts import typecheck
from tests.conftest import ROOT

FAKES = sorted(p for p in (ROOT / "tests/fakes/bin").iterdir() if p.is_file())


def test_ruff_reads_every_fake():
    shown = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", "tests/fakes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert FAKES and all(str(fake) in shown for fake in FAKES)


def test_typecheck_runs_mypy_on_the_kit_then_each_fake_alone():
    runs = typecheck.runs()
    assert runs[0] == []  # pyproject's [tool.mypy] files
    assert runs[1:] == [[fake.relative_to(ROOT).as_posix()] for fake in FAKES]

"""bench.stages.status: which stages ran in this make, even when one ended in the second it
started."""

from __future__ import annotations

import os

import pytest

from bench.core.artifacts import Artifacts
from bench.core.fileio import atomic_write_bytes
from bench.core.run import open_run
from bench.stages.status import main, unix_time
from tests.conftest import DEMO_MANIFEST


def test_unix_time_reads_gnu_and_bsd_date():
    assert unix_time("1700000000.25") == pytest.approx(1700000000.25)
    assert unix_time("1700000000.N") == 1700000000.0  # BSD date has no %N


def test_a_stage_finished_before_the_make_in_the_same_second_was_skipped(run_roots, capsys):
    run = open_run(DEMO_MANIFEST, "s")
    out = run.paths.root / "x.txt"
    atomic_write_bytes(out, b"x")
    Artifacts(run.paths).record("fetch", {}, [out])
    stamp = run.paths.stamp("fetch")
    finished = stamp.stat().st_mtime
    os.utime(stamp, (finished, finished))
    assert main(["--run", "s", "--since", f"{finished + 0.5:.9f}"]) == 0
    assert "fetch     skipped" in capsys.readouterr().out
    assert main(["--run", "s", "--since", f"{finished - 0.5:.9f}"]) == 0
    assert "fetch     ran" in capsys.readouterr().out

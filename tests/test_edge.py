"""Make's variables at the edge: every hostile value stops make with one line and exit 2, before
any recipe runs, and nothing outside the named run is touched. Make runs in a temp copy of the
kit's Makefile so a failure here can never delete a real run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench import edge
from bench.errors import KitError
from bench.run import RunPaths
from tests.conftest import ROOT

LONG = "a" * 300


@pytest.fixture
def kit(tmp_path) -> Path:
    """A copy of the Makefile and the edge check, with two runs and a stage cache to lose."""
    for name in ("Makefile", "docker.mk", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "bench").mkdir()
    for name in ("__init__.py", "edge.py"):
        shutil.copy(ROOT / "bench" / name, tmp_path / "bench" / name)
    for folder in ("results/keep", "results/other", "work/keep", "work/.cache/build", "reports/x"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "finished.txt").write_text("measured\n")
    return tmp_path


def make(kit: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args, "ENV_READY="],
        cwd=kit,
        capture_output=True,
        text=True,
        timeout=60,
    )


def survivors(kit: Path) -> list[str]:
    return sorted(str(p.relative_to(kit)) for p in kit.rglob("finished.txt"))


# One row per hostile value: (make arguments, words the one-line message must hold).
REFUSED = [
    (["clean-run", "RUN="], "RUN='' is empty"),
    (["clean-run"], "RUN is not set"),
    (["clean-run", "RUN=../results"], "one folder name"),
    (["clean-run", "RUN=../../x"], "one folder name"),
    (["clean-run", "RUN=.."], "one folder name"),
    (["clean-run", "RUN=`touch pwned`"], "one folder name"),
    (["clean-run", "RUN=$(touch pwned)"], "one folder name"),
    (["clean-run", "RUN=$(shell touch pwned)"], "one folder name"),
    (["clean-run", "RUN=keep other"], "one folder name"),
    (["clean-run", "RUN=-rf"], "one folder name"),
    (["clean-run", f"RUN={LONG}"], "300 characters long"),
    (["clean-run", "RUN=missing"], "results/missing is not an existing run folder"),
    (["info", "RUN=a;touch pwned"], "one folder name"),
    (["plan", "SHARD=-1/3"], "SHARD='-1/3' must be i/N"),
    (["plan", "SHARD=4/3"], "shard 4 of 3 does not exist"),
    (["plan", "SHARD=0/3"], "must be i/N"),
    (["plan", "SHARD=1/3;touch pwned"], "must be i/N"),
    (["info", "MANIFEST=$(shell touch pwned)"], "MANIFEST="),
    (["info", "MANIFEST=manifests/a b.toml"], "holds a character outside"),
    (["import", "LOGS=`touch pwned`"], "LOGS="),
    (["import", "LOGS=--help"], "starts with -"),
    (["audit", "LOGS=logs", "REFERENCE=x'y"], "REFERENCE="),
    (["merge", "RUN=m", "SHARDS=results/a $(touch pwned)"], "SHARDS="),
    (["clean-cache", "CACHE_DIR=$(shell touch pwned)"], "CACHE_DIR="),
    (["clean-cache", "WORK_DIR=$(shell touch pwned)"], "WORK_DIR="),  # CACHE_DIR's default
    (["clean-run", "RUN=keep", "RESULTS_DIR=/ `touch pwned`"], "RESULTS_DIR="),
    (["slurm", "SHARDS=2", "PARTITION=`touch pwned`"], "PARTITION="),
    (["slurm", "SHARDS=2", 'TIME=1:00:00"; touch pwned; "'], "TIME="),
    (["slurm", "SHARDS=2", "CONTAINER=none $(touch pwned)"], "CONTAINER="),
    (["test", "TEST_WORKERS=2 --pdb"], "TEST_WORKERS="),
    (["merge", "RUN=m", "SHARDS=results/a", "PARTIAL=1 `touch pwned`"], "PARTIAL="),
    (["docker-all", "DOCKER_GPUS=all' --privileged '"], "DOCKER_GPUS="),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_hostile_variables_stop_make_before_any_recipe(kit, args, message):
    before = survivors(kit)
    done = make(kit, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and message in lines[0] and "fix:" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (kit / "pwned").exists()
    assert survivors(kit) == before


def test_clean_run_deletes_exactly_the_named_run(kit):
    done = make(kit, "clean-run", "RUN=keep")
    assert done.returncode == 0, done.stderr
    assert survivors(kit) == [
        "reports/x/finished.txt",
        "results/other/finished.txt",
        "work/.cache/build/finished.txt",
    ]


def test_clean_run_refuses_a_symlinked_run(kit):
    (kit / "results" / "link").symlink_to(kit / "results" / "other")
    done = make(kit, "clean-run", "RUN=link")
    assert done.returncode == 2
    assert "results/link is not an existing run folder" in done.stderr


def test_valid_values_pass_and_reach_the_recipe_as_given(kit):
    done = make(kit, "-n", "merge", "RUN=m.1_x", "SHARDS=results/a-shard1of2 ../b+c/d@e")
    assert done.returncode == 0, done.stderr
    assert "--run m.1_x results/a-shard1of2 ../b+c/d@e" in done.stdout


def test_a_broken_edge_check_fails_closed(kit):
    (kit / "bench" / "edge.py").write_text("raise SystemExit(0)\n")
    done = make(kit, "info")
    assert done.returncode == 2
    assert "bench.edge did not run" in done.stderr


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", LONG, "-x", ".hidden", "a b", "a\nb"])
def test_run_paths_refuse_what_make_refuses(name):
    assert edge.run_name_problem(name)
    with pytest.raises(KitError, match="run name"):
        RunPaths.for_run(name)

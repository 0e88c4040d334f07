"""`make doctor` catches what would fail later (review of issues 10 and 14): an unpinned accuracy
archive, a missing or changed trtllm-eval, unknown --extra_llm_api_options keys, options only
mentioned in another option's help, and the release's chunked-context default."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
from test_fake_h100_e2e import pipeline_env
from test_trtllm_commands import manifest_with

from bench.backends.base import PointPaths
from bench.backends.trtllm import commands as trtllm
from bench.core import pins
from bench.core.manifest import load_manifest
from bench.stages import doctor

REPO = Path(__file__).resolve().parents[1]
H100 = REPO / "manifests" / "llama-3.1-8b-fp8-h100.toml"
NVIDIA = REPO / "manifests" / "nvidia-perf-overview-1.0.toml"
PINNED_1_0 = {"tensorrt_llm": "1.0.0", "nvidia-modelopt": "0.33.0", "transformers": "4.53.1"}


def pinned_h100(tmp_path: Path, release: str = "1.0") -> Path:
    """The H100 manifest with its MMLU archive pinned (any digest: doctor does not download)."""
    data = tomllib.loads(H100.read_text())
    data["accuracy"]["dataset"]["sha256"] = "0" * 64
    data["release"] = release
    path = tmp_path / "h100-pinned.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def run_doctor(tmp_path: Path, manifest: Path, release: str = "1.0", path: str | None = None):
    env = pipeline_env(tmp_path, fakes=True, inject={}, release=release)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "bench.stages.doctor", "--manifest", str(manifest)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fake_help(release: str, argv: tuple[str, ...], tmp_path: Path) -> str:
    """The fakes' own --help, trtllm-eval included."""
    env = pipeline_env(tmp_path, fakes=True, inject={}, release=release)
    tool = argv[0] if argv[0] != sys.executable else argv[1]
    rest = argv[1:] if argv[0] != sys.executable else argv[2:]
    where = {"trtllm-bench", "trtllm-build", "trtllm-eval"}
    path = REPO / "tests" / "fakes" / "bin" / tool if tool in where else Path(tool)
    cmd = [str(path), *rest] if tool in where else [sys.executable, str(path), *rest]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60).stdout


def diagnose_with(manifest, tmp_path, monkeypatch, edit=("", ""), release="1.0", **kw):
    monkeypatch.setenv(
        "TRTLLM_PREPARE_DATASET", str(REPO / "tests" / "fakes" / "prepare_dataset.py")
    )
    return doctor.diagnose(
        manifest,
        pins.load_pins(),
        help_of=lambda argv: fake_help(release, argv, tmp_path).replace(*edit),
        versions=lambda *names: dict(PINNED_1_0),
        missing=lambda raw: [],
        **kw,
    )


def test_doctor_fails_on_the_unpinned_mmlu_archive(tmp_path):
    proc = run_doctor(tmp_path, H100)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "accuracy.dataset.sha256 is not set" in proc.stderr
    assert "`curl -fsSL " in proc.stderr and "data.tar' | sha256sum`" in proc.stderr
    assert "make accuracy" not in proc.stderr  # it runs after doctor: no circular fix
    assert "Traceback" not in proc.stderr
    assert run_doctor(tmp_path, pinned_h100(tmp_path)).returncode == 0


def test_doctor_checks_the_trtllm_eval_options_the_accuracy_stage_passes(tmp_path, monkeypatch):
    manifest = load_manifest(pinned_h100(tmp_path))
    lines, problems = diagnose_with(manifest, tmp_path, monkeypatch)
    assert problems == [] and "ok   trtllm-eval mmlu: 4 options" in lines
    edit = ("--max_input_length INT", "--max_input_len INT")
    _, problems = diagnose_with(manifest, tmp_path, monkeypatch, edit=edit)
    assert any(
        p.startswith("trtllm-eval mmlu: option --max_input_length is not in") for p in problems
    ), problems


def test_doctor_fails_when_trtllm_eval_is_not_installed(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("trtllm-bench", "trtllm-build", "nvidia-smi"):
        (bare / tool).symlink_to(REPO / "tests" / "fakes" / "bin" / tool)
    env_path = pipeline_env(tmp_path, fakes=True, inject={})["PATH"].split(":", 1)[1]
    proc = run_doctor(tmp_path, pinned_h100(tmp_path), path=f"{bare}:{env_path}")
    assert proc.returncode == 2
    assert "trtllm-eval (TensorRT-LLM) is not on PATH" in proc.stderr


def test_an_option_mentioned_only_in_a_description_is_not_present():
    text = (
        "Options:\n"
        "  --backend [pytorch|tensorrt]  The backend; with tensorrt also pass\n"
        "                                --enable_chunked_context for long prompts.\n"
        "  --streaming / --no-streaming  Stream. See --warmup.\n"
        "  -h, --help                    Show this message and exit.\n"
    )
    parsed = doctor.parse_help(text)
    assert parsed.options == {"--backend", "--streaming", "--no-streaming", "-h", "--help"}
    assert parsed.choices == {"--backend": ("pytorch", "tensorrt")}


FIELDS = {"cuda_graph_config": frozenset({"enable_padding", "batch_sizes"}), "backend": None}


def test_extra_llm_api_option_keys_are_checked_against_the_installed_arguments(
    tmp_path, monkeypatch
):
    manifest = load_manifest(NVIDIA)
    lines, problems = diagnose_with(
        manifest, tmp_path, monkeypatch, llm_api_fields=lambda backend: (FIELDS, "")
    )
    assert problems == [] and "ok   --extra_llm_api_options keys (1)" in lines
    old = manifest_with(NVIDIA, runtime={"extra_llm_api_options": {"use_cuda_graph": True}})
    _, problems = diagnose_with(
        old, tmp_path, monkeypatch, llm_api_fields=lambda backend: (FIELDS, "")
    )
    assert problems == [
        "runtime.extra_llm_api_options: use_cuda_graph is not an LLM API argument "
        "(TensorRT-LLM 1.0.0); fix: drop or rename it"
    ]
    nested = {"cuda_graph_config": {"padding": True}}
    assert doctor.llm_api_key_problems(nested, FIELDS) == [
        "runtime.extra_llm_api_options: cuda_graph_config.padding is not a field of "
        "cuda_graph_config"
    ]
    lines, problems = diagnose_with(
        old, tmp_path, monkeypatch, llm_api_fields=lambda backend: (None, "not importable")
    )
    assert "skip --extra_llm_api_options keys not checked: not importable" in lines


def test_installed_llm_api_fields_read_the_pydantic_arguments(tmp_path, monkeypatch):
    package = tmp_path / "tensorrt_llm" / "llmapi"
    package.mkdir(parents=True)
    (tmp_path / "tensorrt_llm" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "llm_args.py").write_text(
        "from pydantic import BaseModel\n"
        "class CudaGraphConfig(BaseModel):\n    enable_padding: bool = False\n"
        "class TorchLlmArgs(BaseModel):\n"
        "    cuda_graph_config: CudaGraphConfig | None = None\n    backend: str = ''\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fields, why = doctor.installed_llm_api_fields("TorchLlmArgs")
    assert why == "" and fields["backend"] is None
    assert doctor.installed_llm_api_fields("TrtLlmArgs")[0] is None


# ----------------------------------------------------------------------------- chunked context


def throughput(manifest):
    point = manifest.sweep.points[0]
    here = Path("/x")
    paths = PointPaths(
        model_path=here, dataset=here, report_json=here, workspace=here, engine_dir=here
    )
    return trtllm.throughput_argv(manifest, point, paths, kv_fraction=0.9)


@pytest.mark.parametrize(
    "release,want,expected",
    [
        ("1.0", True, ["--enable_chunked_context"]),
        ("1.0", False, []),
        ("1.2", True, ["--enable_chunked_context"]),
        ("1.2", False, ["--disable_chunked_context"]),
    ],
)
def test_the_release_gets_the_chunking_flag_it_needs(release, want, expected):
    manifest = manifest_with(H100, runtime={"enable_chunked_context": want})
    manifest = manifest.model_copy(update={"release": release})
    argv = throughput(manifest)
    assert [a for a in argv if "chunked_context" in a] == expected
    assert trtllm.effective_chunked_context(manifest) is want


def test_doctor_prompt_limit_follows_the_release_rule():
    unchunked = manifest_with(H100, runtime={"enable_chunked_context": False})
    on_by_default = trtllm.ChunkingRule(True, frozenset({"--enable_chunked_context"}))
    off_by_default = trtllm.chunking_rule("1.0", pins.load_pins())
    assert trtllm.runtime_max_input_len(unchunked, on_by_default) == 32767
    assert trtllm.runtime_max_input_len(unchunked, off_by_default) == 8192

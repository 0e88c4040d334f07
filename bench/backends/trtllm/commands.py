"""Every command line the kit runs, built as argv lists from the manifest and nothing else.

Pure functions: they run nothing, so `make plan` prints exactly what the pipeline will run and the
tests check each flag against the pinned release's options (tests/fakes/). Flags follow
TensorRT-LLM 1.0 (trtllm-bench throughput/build, trtllm-build, benchmarks/cpp/prepare_dataset.py);
tests/fakes/trtllm_options.py tables them per release with the source commit each was read at.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import backends
from bench.backends.base import PointPaths, load_args
from bench.backends.server import ServerCommand
from bench.core import pins
from bench.core.errors import KitError
from bench.core.manifest import Manifest, Point
from bench.core.toolcheck import prepare_dataset_script

TRTLLM_BENCH = "trtllm-bench"
TRTLLM_BUILD = "trtllm-build"
TRTLLM_SERVE = "trtllm-serve"
# trtllm-bench --eos_id -1: generate exactly output_tokens per request, on both backends. It
# becomes SamplingParams(end_id=-1, pad_id=-1); the LLM API adds generation_config.json's EOS ids
# only when end_id is None (tensorrt_llm/llmapi/llm.py _prepare_sampling_params, read at the
# stored 4c05a748; SamplingParams._setup at 000a01de, 1.0.0rc4). Short outputs are still caught:
# record.judge marks a point whose average output length misses the target invalid.
EOS_IGNORED = -1


def prepare_dataset_argv(
    manifest: Manifest, point: Point, *, tokenizer: Path, python: str = sys.executable
) -> list[str]:
    d = manifest.dataset
    return [
        python,
        prepare_dataset_script(),
        "--tokenizer",
        str(tokenizer),
        "--stdout",
        "--random-seed",
        str(manifest.sweep.seed),
        "token-norm-dist",
        "--num-requests",
        str(point.requests),
        "--input-mean",
        str(point.isl),
        "--input-stdev",
        str(d.input_stdev),
        "--output-mean",
        str(point.osl),
        "--output-stdev",
        str(d.output_stdev),
    ]


def max_input_len(manifest: Manifest) -> int:
    return max(p.isl for p in manifest.sweep.points)


def build_argv(manifest: Manifest, *, checkpoint_dir: Path, engine_dir: Path) -> list[str]:
    """trtllm-build for the tensorrt backend, set up as `trtllm-bench build` sets up its own
    engines (tensorrt_llm/bench/build/build.py): multiple optimization profiles, paged context
    FMHA (which chunked context needs) and, for FP8, FP8 context FMHA.

    --max_input_len is the engine's profile limit (its default 1024 would be too small); the
    runtime's prompt limit is runtime_max_input_len's.
    """
    e = manifest.engine
    argv = [
        TRTLLM_BUILD,
        "--checkpoint_dir",
        str(checkpoint_dir),
        "--output_dir",
        str(engine_dir),
        "--max_batch_size",
        str(e.max_batch_size),
        "--max_num_tokens",
        str(e.max_num_tokens),
        "--max_seq_len",
        str(e.max_seq_len),
        "--max_input_len",
        str(max_input_len(manifest)),
        "--use_paged_context_fmha",
        "enable",
        "--multiple_profiles",
        "enable",
        "--workers",
        str(e.tp_size * e.pp_size),
    ]
    if manifest.quantization.format == "fp8":
        argv += ["--use_fp8_context_fmha", "enable"]
    return argv


@dataclass(frozen=True)
class ChunkingRule:
    """A release's trtllm-bench chunked context: its default and the flags it has for it."""

    default: bool
    flags: frozenset[str]


def chunking_rule(release: str, all_pins: dict[str, Any]) -> ChunkingRule:
    """[trtllm_bench] of the release's pin set (1.0 at the top level, others in [releases])."""
    node = all_pins if release == "1.0" else all_pins.get("releases", {}).get(release, {})
    table = node.get("trtllm_bench")
    if table is None:
        where = "[trtllm_bench]" if release == "1.0" else f'[releases."{release}".trtllm_bench]'
        raise KitError(
            f"no chunked-context rule for release {release!r}",
            path=str(pins.PINS),
            fix=f"add {where} with chunked_context_default and chunked_context_flags",
        )
    return ChunkingRule(
        bool(table["chunked_context_default"]), frozenset(table["chunked_context_flags"])
    )


@functools.cache
def _pinned_rule(release: str) -> ChunkingRule:
    return chunking_rule(release, pins.load_pins())


def chunked_context_args(want: bool, rule: ChunkingRule) -> list[str]:
    """The explicit flag that makes the release's chunked context the manifest's choice."""
    if want:
        return ["--enable_chunked_context"]
    return ["--disable_chunked_context"] if "--disable_chunked_context" in rule.flags else []


def effective_chunked_context(manifest: Manifest, rule: ChunkingRule | None = None) -> bool:
    """What the runtime does with chunked_context_args: the manifest's choice, unless the release
    turns it on by default and has no flag to turn it off."""
    rule = rule or _pinned_rule(manifest.release)
    want = manifest.runtime.enable_chunked_context
    return want or (rule.default and "--disable_chunked_context" not in rule.flags)


def runtime_max_input_len(manifest: Manifest, rule: ChunkingRule | None = None) -> int | None:
    """The longest prompt the TensorRT runtime accepts (1.0, TrtGptModel): max_seq_len - 1 with
    chunked context, else min(max_seq_len - 1, max_num_tokens). None for other backends."""
    e = manifest.engine
    if not e.needs_build:
        return None
    if effective_chunked_context(manifest, rule):
        return e.max_seq_len - 1
    return min(e.max_seq_len - 1, e.max_num_tokens or e.max_seq_len)


def tool_backend_of(manifest: Manifest) -> str:
    """trtllm-bench's `--backend` value for the manifest's backend ("tensorrt" or "pytorch")."""
    from bench.backends.trtllm.backend import PYTORCH, TENSORRT

    return {b.name: b.tool_backend for b in (TENSORRT, PYTORCH)}[manifest.engine.backend]


def eval_backend(manifest: Manifest) -> str:
    """trtllm-eval's `--backend`: the TensorRT runtime for an engine, else the PyTorch one."""
    from bench.backends.trtllm.backend import PYTORCH, TENSORRT

    return (TENSORRT if manifest.engine.needs_build else PYTORCH).tool_backend


def throughput_argv(
    manifest: Manifest, point: Point, paths: PointPaths, *, kv_fraction: float
) -> list[str]:
    """One sweep point: trtllm-bench throughput with the backend's `--backend` value.

    Serving (issue 12): `--concurrency N` caps the requests in flight (trtllm-bench holds an
    asyncio semaphore slot per request from submit to final response; all requests are queued at
    once), `--streaming` makes it time the first token (its report then has streaming_metrics),
    `--request_json` writes every request's timestamps (ns), which the sweep turns into
    requests.csv and the measured window."""
    e, r = manifest.engine, manifest.runtime
    tool_backend = tool_backend_of(manifest)
    head = [
        TRTLLM_BENCH,
        "--model",
        manifest.model.repo,
        "--model_path",
        str(paths.model_path),
        "--workspace",
        str(paths.workspace),
        "throughput",
    ]
    argv = [
        *head,
        "--backend",
        tool_backend,
        "--dataset",
        str(paths.dataset),
        "--num_requests",
        "0",
        "--eos_id",
        str(EOS_IGNORED),
        "--warmup",
        str(r.warmup),
        "--report_json",
        str(paths.report_json),
    ]
    if e.needs_build:
        argv += ["--engine_dir", str(paths.engine_dir)]
    argv += [
        "--kv_cache_free_gpu_mem_fraction",
        f"{kv_fraction:g}",
        "--tp",
        str(e.tp_size),
        "--pp",
        str(e.pp_size),
    ]
    if tool_backend == "pytorch":
        for flag, value in (
            ("--max_batch_size", e.max_batch_size),
            ("--max_num_tokens", e.max_num_tokens),
        ):
            if value is not None:
                argv += [flag, str(value)]
    if paths.extra_options is not None:
        argv += ["--extra_llm_api_options", str(paths.extra_options)]
    argv += chunked_context_args(r.enable_chunked_context, _pinned_rule(manifest.release))
    return argv + load_args(point, manifest.sweep.streaming, paths)


# ----------------------------------------------------------------------------- trtllm-serve


def serve_options(manifest: Manifest) -> dict[str, Any]:
    """The LLM arguments trtllm-serve's --extra_llm_api_options YAML sets: the manifest's own, plus
    chunked context as the LLM argument `enable_chunked_prefill` (what trtllm-bench's
    --enable_chunked_context sets): trtllm-serve 1.0 has no chunking flag of its own, so the YAML
    states the manifest's choice explicitly on every release."""
    options = dict(manifest.runtime.extra_llm_api_options or {})
    options["enable_chunked_prefill"] = manifest.runtime.enable_chunked_context
    return options


def serve_options_yaml(manifest: Manifest) -> str:
    return yaml.safe_dump(serve_options(manifest), sort_keys=True)


def trtllm_serve_command(
    manifest: Manifest,
    model_path: Path,
    port: int,
    *,
    extra_options: Path,
    engine_dir: Path | None = None,
    kv_fraction: float | None = None,
    host: str = "127.0.0.1",
) -> ServerCommand:
    """trtllm-serve (TensorRT-LLM 1.0 option names) with the limits the offline sweep gives
    trtllm-bench: same backend, parallelism, KV fraction and LLM arguments.

    model_path is what the sweep passes as --model_path: the HF-format checkpoint the PyTorch
    backend loads, or, for an engine, the folder whose tokenizer it reads (MODEL is then the
    engine). extra_options is where the caller writes serve_options_yaml(manifest).
    Differences trtllm-serve forces: --kv_cache_free_gpu_memory_fraction (not _mem_), --tp_size;
    max_batch_size / max_num_tokens fall back to BuildConfig's 2048 / 8192 rather than
    trtllm-bench's dataset heuristic, so a PyTorch manifest that leaves them unset gets those;
    --max_seq_len is passed to the PyTorch backend only (an engine fixes its own, and trtllm-bench
    refuses it there too).
    """
    e, r = manifest.engine, manifest.runtime
    if TRTLLM_SERVE not in backends.get(e.backend).online_tools:
        serving = [b.name for b in backends.registry().values() if TRTLLM_SERVE in b.online_tools]
        raise KitError(
            f"trtllm-serve serves TensorRT-LLM backends, not {e.backend!r}",
            fix=f"set engine.backend to {' or '.join(serving)} for an online run",
        )
    if e.needs_build and engine_dir is None:
        raise KitError("the tensorrt backend serves an engine: engine_dir is required")
    model = engine_dir if e.needs_build else model_path
    fraction = r.kv_cache_free_gpu_mem_fraction if kv_fraction is None else kv_fraction
    argv = [
        TRTLLM_SERVE,
        str(model),
        "--host",
        host,
        "--port",
        str(port),
        "--backend",
        tool_backend_of(manifest),
        "--tp_size",
        str(e.tp_size),
        "--pp_size",
        str(e.pp_size),
        "--kv_cache_free_gpu_memory_fraction",
        f"{fraction:g}",
    ]
    if e.needs_build:
        argv += ["--tokenizer", str(model_path)]
    for flag, value in (
        ("--max_batch_size", e.max_batch_size),
        ("--max_num_tokens", e.max_num_tokens),
        ("--max_seq_len", None if e.needs_build else e.max_seq_len),
    ):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--extra_llm_api_options", str(extra_options)]
    return ServerCommand(
        argv=argv,
        env={},
        base_url=f"http://{host}:{port}",
        health_path="/health",
        model_name=str(model),
    )

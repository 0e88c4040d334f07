"""The two TensorRT-LLM backends: `trtllm-tensorrt` (an engine built by trtllm-build) and
`trtllm-pytorch` (the PyTorch runtime on a Hugging Face checkpoint). Both run `trtllm-bench
throughput`; they differ in the engine build, trtllm-bench's `--backend` value and the checkpoint
quantize exports. Stdlib only at import; commands and parse are imported where used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.backends.base import (
    Backend,
    CheckpointFormat,
    Coefficients,
    DatasetFormat,
    PointPaths,
)

if TYPE_CHECKING:
    from bench.analysis.latency import RequestTimes
    from bench.backends.server import Serving
    from bench.core.manifest import Engine, Manifest, Point
    from bench.core.run import Run
    from bench.schema.record import FailureKind, PointResult

# Seed fit (seconds, 70B TP8 H100). Start-up: "Preparing to run" to "Executor started" in the
# seed's 47 logs took 32-36 s, median 33 s; the per-token terms come from scripts/fit_cost_model.py.
# NVIDIA's 8B TP1 figure at 128/128 (28,312 tok/s) is ~2x the seed's 70B TP8 (14,390 tok/s).
GPU_8B_SPEEDUP = 2.0
GPU = Coefficients(33.0, 2.75e-5, 3.49e-5, 2.00e-8, scale=1.0 / GPU_8B_SPEEDUP)
PACKAGES = {
    "tensorrt_llm": ("tensorrt_llm",),
    "tensorrt": ("tensorrt", "tensorrt_cu13", "tensorrt_cu12"),
}


class TrtllmBenchOutputs(Backend):
    """A backend whose tool writes what `trtllm-bench throughput` writes (its report JSON,
    console report and --request_json), so trtllm-bench's parser reads it: both TensorRT-LLM
    backends and the CPU runner."""

    def request_times(self, request_json: Path, *, streaming: bool) -> RequestTimes:
        from bench.backends.trtllm import parse

        return parse.read_request_json(request_json, streaming=streaming)

    def finished(self, report_json: Path, log_text: str) -> bool:
        from bench.backends.trtllm import parse

        return report_json.exists() or parse.has_performance_section(log_text)

    def parse(self, report_json: Path, log: Path, **key) -> PointResult:
        """The report JSON (else the console log), with the memory only the log prints."""
        import dataclasses

        from bench.backends.trtllm import parse

        result = parse.parse_file(report_json if report_json.exists() else log, **key)
        memory = parse.memory_from_log(parse.read_log(log))
        return dataclasses.replace(result, memory=memory)

    def classify_failure(
        self, log_text: str, exit_code: int | None, timed_out: bool
    ) -> tuple[FailureKind, str]:
        from bench.backends.trtllm import parse

        return parse.classify_failure(log_text, exit_code, timed_out)


@dataclass(frozen=True)
class Trtllm(TrtllmBenchOutputs):
    name: str
    tool_backend: str  # trtllm-bench's and trtllm-eval's `--backend` value
    builds_engine: bool
    checkpoint_format: CheckpointFormat
    llm_api_args: str  # the tensorrt_llm.llmapi class that --extra_llm_api_options fills
    tools: tuple[str, ...]
    online_tools: tuple[str, ...]
    needs_gpu: bool = True
    dataset_format: DatasetFormat = "trtllm-bench-jsonl"
    provenance_packages: dict[str, tuple[str, ...]] = field(default_factory=lambda: PACKAGES)
    cost: Coefficients = GPU
    gpu_ceilings_apply: bool = True
    log_source: str = "trtllm-bench-console"

    def engine_problem(self, engine: Engine) -> str | None:
        if self.builds_engine and (engine.max_batch_size is None or engine.max_num_tokens is None):
            return f"backend {self.name!r} needs max_batch_size and max_num_tokens to build"
        return None

    def build_argv(
        self, manifest: Manifest, *, checkpoint_dir: Path, engine_dir: Path
    ) -> list[str]:
        from bench.backends.trtllm import commands

        return commands.build_argv(manifest, checkpoint_dir=checkpoint_dir, engine_dir=engine_dir)

    def kv_fractions(self, manifest: Manifest) -> list[float | None]:
        r = manifest.runtime
        return [r.kv_cache_free_gpu_mem_fraction, *r.kv_cache_fallbacks]

    def run_argv(
        self, manifest: Manifest, point: Point, paths: PointPaths, *, kv_fraction: float
    ) -> list[str]:
        from bench.backends.trtllm import commands

        return commands.throughput_argv(manifest, point, paths, kv_fraction=kv_fraction)

    def serving(self, run: Run, *, prepare: bool) -> Serving:
        """trtllm-serve with the offline sweep's limits, driven on /v1/completions as trtllm-bench
        runs offline (prompt tokens in, exact output tokens out; chat would need a chat template);
        its LLM-API YAML in config_files, which the session writes."""
        from importlib.metadata import PackageNotFoundError, version

        from bench.backends.server import Serving
        from bench.backends.trtllm import commands
        from bench.stages.sweep import model_path_for_runtime

        m = run.manifest
        options = run.paths.root / "serve_llm_api_options.yaml"
        model_path = model_path_for_runtime(run)
        engine = run.paths.engine if self.builds_engine else None
        try:
            installed: str | None = version("tensorrt_llm")
        except PackageNotFoundError:
            installed = None
        return Serving(
            command=lambda port: commands.trtllm_serve_command(
                m, model_path, port, extra_options=options, engine_dir=engine
            ),
            endpoint="completions",
            tokenizer=run.paths.model_dir(m.model.repo, m.model.revision),
            fixed_length_inputs=lambda osl: {"ignore_eos": True, "min_tokens": osl},
            prepared=[],
            engine_version=installed,
            config_files={options: commands.serve_options_yaml(m)},
        )

    def runtime_note(self, manifest: Manifest) -> str:
        state = "on" if manifest.runtime.enable_chunked_context else "off"
        return (
            f"; chunked context {state} (off by default in TensorRT-LLM 1.0, on by default in "
            "0.16, which the seed logs ran)"
        )


TENSORRT = Trtllm(
    name="trtllm-tensorrt",
    tool_backend="tensorrt",
    builds_engine=True,
    checkpoint_format="tensorrt_llm",
    llm_api_args="TrtLlmArgs",
    tools=("trtllm-bench", "trtllm-build"),
    online_tools=("trtllm-serve", "trtllm-build"),
)
PYTORCH = Trtllm(
    name="trtllm-pytorch",
    tool_backend="pytorch",
    builds_engine=False,
    checkpoint_format="hf",
    llm_api_args="TorchLlmArgs",
    tools=("trtllm-bench",),
    online_tools=("trtllm-serve",),
)

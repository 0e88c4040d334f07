"""`hf-transformers`: the kit's own runner (bench.backends.hf_transformers.runner), trtllm-bench's
`throughput` interface and report format over Hugging Face transformers. It measures the machine
it runs on, not an inference engine: the demo's backend, on the CPU or CUDA. Stdlib only at import.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.backends.base import Backend, CheckpointFormat, Coefficients, DatasetFormat

if TYPE_CHECKING:
    from bench.analysis.latency import RequestTimes
    from bench.backends.server import Serving
    from bench.core.manifest import Manifest, Point
    from bench.core.run import Run
    from bench.schema.record import FailureKind, PointResult

RUNNER = "bench.backends.hf_transformers.runner"
NAME = "hf-transformers"
# The demo's tiny model on 2 CPU cores, batch 8: set by hand, not fitted. `make plan
# MANIFEST=manifests/demo.toml` estimates 26 s for its 4 points; the sweep stage of a fresh
# `make demo` took about 22 s on the 2-core machine (stamp times in `make demo`'s summary).
CPU = Coefficients(6.0, 2.0e-5, 1.5e-3, 1.0e-8)
EOS_IGNORED = -1  # the runner never stops at EOS and accepts only -1


@dataclass(frozen=True)
class HfTransformers(Backend):
    name: str = NAME
    tools: tuple[str, ...] = ()
    online_tools: tuple[str, ...] = ()  # `transformers serve` comes with the kit's .venv
    always_times_requests: bool = True
    needs_gpu: bool = False
    builds_engine: bool = False
    checkpoint_format: CheckpointFormat = "hf"
    dataset_format: DatasetFormat = "trtllm-bench-jsonl"
    provenance_packages: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"torch": ("torch",), "transformers": ("transformers",)}
    )
    cost: Coefficients = CPU
    gpu_ceilings_apply: bool = False
    log_source: str = "trtllm-bench-console"  # the runner prints trtllm-bench's console report

    def run_argv(
        self,
        manifest: Manifest,
        point: Point,
        *,
        model_path: Path,
        dataset: Path,
        report_json: Path,
        kv_fraction: float = 0.0,
        workspace: Path | None = None,
        engine_dir: Path | None = None,
        extra_options: Path | None = None,
        request_json: Path | None = None,
    ) -> list[str]:
        """The runner takes trtllm-bench's options, less the GPU ones, plus --device."""
        r = manifest.runtime
        argv = [
            *(sys.executable, "-m", RUNNER),
            *("--model", manifest.model.repo, "--model_path", str(model_path), "throughput"),
            *("--backend", self.name, "--dataset", str(dataset), "--num_requests", "0"),
            *("--eos_id", str(EOS_IGNORED), "--warmup", str(r.warmup)),
            *("--report_json", str(report_json)),
            *("--max_batch_size", str(r.batch_size), "--device", r.device),
        ]
        if extra_options is not None:
            argv += ["--extra_llm_api_options", str(extra_options)]
        if point.concurrency is not None:
            argv += ["--concurrency", str(point.concurrency)]
        if manifest.sweep.streaming:
            argv += ["--streaming"]
        if request_json is not None:
            argv += ["--request_json", str(request_json)]
        return argv

    def serving(self, run: Run, *, prepare: bool) -> Serving:
        """`transformers serve` over a served copy of the model that makes output lengths exact
        (bench.backends.server's docstring says how)."""
        from importlib.metadata import version

        from bench.backends import server
        from bench.stages.sweep import model_path_for_runtime

        m = run.manifest
        out = run.paths.work / "served-model"
        model_dir = run.paths.model_dir(m.model.repo, m.model.revision)
        files = (
            server.write_served_model(model_path_for_runtime(run), model_dir, out)
            if prepare
            else []
        )
        return server.Serving(
            command=lambda port: server.transformers_serve_command(out, m.model.repo, port),
            endpoint="chat",  # its only text route; the served copy's template is the text alone
            tokenizer=out,
            fixed_length_inputs=lambda osl: {},  # 422 on ignore_eos/min_tokens: see server.py
            prepared=files,
            engine_version=f"transformers {version('transformers')}",
            dtype="float32",  # the runner dequantizes the FP8 checkpoint to float32
        )

    def request_times(self, request_json: Path, *, streaming: bool) -> RequestTimes:
        """The runner writes trtllm-bench's --request_json format, so its reader reads it."""
        from bench.backends.trtllm import parse

        return parse.read_request_json(request_json, streaming=streaming)

    def finished(self, report_json: Path, log_text: str) -> bool:
        from bench.backends.trtllm import parse

        return report_json.exists() or parse.has_performance_section(log_text)

    def parse(self, report_json: Path, log: Path, **key) -> PointResult:
        """The runner writes trtllm-bench's report JSON, so trtllm-bench's parser reads it."""
        import dataclasses

        from bench.backends.trtllm import parse

        result = parse.parse_file(report_json if report_json.exists() else log, **key)
        return dataclasses.replace(result, memory=parse.memory_from_log(parse.read_log(log)))

    def classify_failure(
        self, log_text: str, exit_code: int | None, timed_out: bool
    ) -> tuple[FailureKind, str]:
        from bench.backends.trtllm import parse

        return parse.classify_failure(log_text, exit_code, timed_out)

"""`hf-transformers`: the kit's own runner (bench.backends.hf_transformers.runner), trtllm-bench's
`throughput` interface and report format over Hugging Face transformers. It measures the machine
it runs on, not an inference engine: the demo's backend, on the CPU or CUDA. Stdlib only at import.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.backends.base import (
    CheckpointFormat,
    Coefficients,
    DatasetFormat,
    PointPaths,
    load_args,
)
from bench.backends.trtllm.backend import TrtllmBenchOutputs

if TYPE_CHECKING:
    from pathlib import Path

    from bench.backends.server import Serving
    from bench.core.manifest import Manifest, Point
    from bench.core.run import Run

RUNNER = "bench.backends.hf_transformers.runner"
NAME = "hf-transformers"
# The demo's tiny model on 2 CPU cores, batch 8: set by hand, not fitted. Start-up is a fork of the
# sweep's preloaded interpreter (point_session), ~0.3 s, not the ~5 s of importing torch afresh;
# a fresh `make demo`'s 16-request points took 0.7-1.6 s each (2 cores, load ~3.5, 2026-11-29).
CPU = Coefficients(0.5, 2.0e-5, 1.5e-3, 1.0e-8)
EOS_IGNORED = -1  # the runner never stops at EOS and accepts only -1


@dataclass(frozen=True)
class HfTransformers(TrtllmBenchOutputs):
    """The runner prints and writes trtllm-bench's formats: TrtllmBenchOutputs reads them."""

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
        self, manifest: Manifest, point: Point, paths: PointPaths, *, kv_fraction: float = 0.0
    ) -> list[str]:
        """The runner takes trtllm-bench's options, less the GPU ones (the KV fraction, the
        workspace, the engine), plus --device."""
        r = manifest.runtime
        argv = [
            *(sys.executable, "-m", RUNNER),
            *("--model", manifest.model.repo, "--model_path", str(paths.model_path)),
            *("throughput", "--backend", self.name, "--dataset", str(paths.dataset)),
            *("--num_requests", "0", "--eos_id", str(EOS_IGNORED), "--warmup", str(r.warmup)),
            *("--report_json", str(paths.report_json)),
            *("--max_batch_size", str(r.batch_size), "--device", r.device),
        ]
        if paths.extra_options is not None:
            argv += ["--extra_llm_api_options", str(paths.extra_options)]
        return argv + load_args(point, manifest.sweep.streaming, paths)

    def point_session(self, log: Path) -> AbstractContextManager[object]:
        """Each point is still its own process, but a fork of one that imported torch and
        transformers once (~4.7 s of a ~5.5 s demo point on 2 cores, `python -X importtime`)."""
        from bench.core import forkserver

        return forkserver.running([f"{RUNNER}:preload"], log)

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

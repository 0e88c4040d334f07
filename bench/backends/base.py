"""What a backend is: one engine the kit can measure, behind one small interface.

The stages ask the backend (`builds_engine`, `tools`, `run_argv`, `parse`, `classify_failure`,
...) and never compare its name. A backend is a package under bench/backends/ whose
`__init__.py` lists instances in `BACKENDS`; bench.backends finds it there by name. Importing a
backend package must need only the standard library (bench.core.toolcheck runs before any
install): tool-specific modules are imported inside the methods that use them.
tests/test_backend_contract.py runs one contract over every registered backend.
"""

from __future__ import annotations

import abc
import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bench.analysis.latency import RequestTimes
    from bench.backends.server import Serving
    from bench.core.manifest import Engine, Manifest, Point
    from bench.core.run import Run
    from bench.schema.record import FailureKind, PointResult

# The request files bench.stages.datasets writes: trtllm-bench's JSONL, one request a line,
# {"task_id", "input_ids", "output_tokens"}. A backend that reads another format adds it here
# and a writer to bench.stages.datasets.
DatasetFormat = Literal["trtllm-bench-jsonl"]
# What the quantize stage exports for the runtime to load.
CheckpointFormat = Literal["hf", "tensorrt_llm"]


@dataclass(frozen=True)
class PointPaths:
    """The files and folders one sweep point's run reads and writes; None: not passed to the
    tool (no engine, no extra LLM-API options, no per-request timings)."""

    model_path: Path
    dataset: Path
    report_json: Path
    workspace: Path
    engine_dir: Path | None = None
    extra_options: Path | None = None
    request_json: Path | None = None


def load_args(point: Point, streaming: bool, paths: PointPaths) -> list[str]:
    """trtllm-bench's load options, the last of its argv (the CPU runner takes the same):
    the in-flight limit, token streaming, and where per-request timings go."""
    argv = [] if point.concurrency is None else ["--concurrency", str(point.concurrency)]
    argv += ["--streaming"] if streaming else []
    if paths.request_json is not None:
        argv += ["--request_json", str(paths.request_json)]
    return argv


@dataclass(frozen=True)
class Coefficients:
    """Cost model of one sweep point (bench.core.cost): start-up plus per-token terms, times
    `scale` (only the ratios between points matter for balancing shards)."""

    startup_s: float
    prefill_s_per_token: float
    decode_s_per_token: float
    attention_s_per_token_pair: float
    scale: float = 1.0


class Backend(abc.ABC):
    """One engine. Attributes are data the stages read; methods are pure (they run nothing)."""

    name: str  # as manifests (`engine.backend`) and records (`identity.backend`) say it
    tools: tuple[str, ...]  # executables it needs on PATH (toolcheck, doctor)
    online_tools: tuple[str, ...]  # the same for the online scenario (its server instead)
    # Per-request timings cost it nothing (the CPU runner): the sweep always asks for them.
    always_times_requests: bool = False
    needs_gpu: bool  # runs on an NVIDIA GPU, inside the pinned image
    builds_engine: bool  # the build stage makes an engine, which the sweep loads
    checkpoint_format: CheckpointFormat  # what quantize exports for it
    dataset_format: DatasetFormat  # the request files its run_argv reads
    # provenance.json key -> distribution names to try (first found wins)
    provenance_packages: dict[str, tuple[str, ...]]
    cost: Coefficients
    gpu_ceilings_apply: bool  # its numbers describe an inference engine against a GPU datasheet
    log_source: str  # a record's `source` when it is read from the tool's console log

    def engine_problem(self, engine: Engine) -> str | None:
        """Why the manifest's [engine] table cannot run on this backend, or None."""
        return None

    def build_argv(
        self, manifest: Manifest, *, checkpoint_dir: Path, engine_dir: Path
    ) -> list[str]:
        """The engine build's argv (only asked when builds_engine)."""
        raise NotImplementedError(f"backend {self.name} builds no engine")

    def kv_fractions(self, manifest: Manifest) -> list[float | None]:
        """The KV-cache fractions to try, in order, retrying the next on out-of-memory."""
        return [None]

    @abc.abstractmethod
    def run_argv(
        self, manifest: Manifest, point: Point, paths: PointPaths, *, kv_fraction: float
    ) -> list[str]:
        """One sweep point's argv: it writes paths.report_json (and paths.request_json,
        per-request timings, when given); its console output goes to a log."""

    def point_session(self, log: Path) -> AbstractContextManager[object]:
        """Held around the offline sweep's points (the argv it runs are unchanged): a backend
        whose tool is the kit's own Python may preload it once (bench.core.forkserver). Its
        console goes to `log`."""
        return contextlib.nullcontext()

    def serving(self, run: Run, *, prepare: bool) -> Serving:
        """Its OpenAI-compatible server for the online scenario (bench.stages.serve);
        prepare=False writes nothing (`make plan`)."""
        from bench.core.errors import KitError

        raise KitError(
            f"engine.backend {self.name!r} has no server in this kit",
            key="sweep.scenario",
            fix='use scenario = "offline" for this backend',
        )

    def request_times(self, request_json: Path, *, streaming: bool) -> RequestTimes | None:
        """The per-request timings its run wrote to request_json; None: it writes none."""
        return None

    @abc.abstractmethod
    def finished(self, report_json: Path, log_text: str) -> bool:
        """Whether the tool got as far as its results (a crash in teardown still counts)."""

    @abc.abstractmethod
    def parse(self, report_json: Path, log: Path, **key: object) -> PointResult:
        """The point's record from the tool's outputs; `key` is isl, osl, requests,
        concurrency, repeat."""

    @abc.abstractmethod
    def classify_failure(
        self, log_text: str, exit_code: int | None, timed_out: bool
    ) -> tuple[FailureKind, str]:
        """(kind, one line of evidence) for a point that did not finish; kind "oom" retries."""

    def failed_result(
        self,
        kind: FailureKind,
        detail: str,
        *,
        isl: int,
        osl: int,
        requests: int,
        concurrency: int | None = None,
        repeat: int = 0,
    ) -> PointResult:
        """The record of a point that gave no result, read as from its console log."""
        from bench.schema.record import PointResult

        return PointResult.failed(
            kind, detail, source=self.log_source, isl=isl, osl=osl, requests=requests,
            concurrency=concurrency, repeat=repeat,
        )  # fmt: skip

    def runtime_note(self, manifest: Manifest) -> str:
        """A clause the report adds after the runtime settings ("" for none)."""
        return ""

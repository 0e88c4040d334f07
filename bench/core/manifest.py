"""The sweep manifest: TOML in, validated typed objects out, or one error naming file and key.

Reads:  manifests/<name>.toml
Usage:  python -m bench.core.manifest validate manifests/demo.toml
        python -m bench.core.manifest show manifests/demo.toml   (the resolved form, as TOML)

Nothing in the kit runs on a manifest that has not passed `load_manifest`.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from bench.core.errors import run_main
from bench.core.tomlconfig import KeyedError, read_toml, validate

SHA256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
GIT_REVISION = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]

# ------------------------------------------------------------------------ strings used as paths
# models/<org>--<name>/<revision>/<file>: each part is checked so no manifest can name a path
# outside models/ (`revision = "../../x"`), start with a dash, or hold a shell character. A part
# starts with a letter, digit or underscore, so it is never "." or "..".
_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,95}"
_PART_RULE = "parts of letters, digits, '.', '_', '-' (not starting with '.' or '-', <= 96 long)"


def _path_string(pattern: str, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"must be {what}: {_PART_RULE}")
        return value

    return AfterValidator(check)


HUB_REPO = Annotated[str, _path_string(rf"{_PART}/{_PART}", "a Hub repo id org/name")]
SAFE_REF = Annotated[str, _path_string(_PART, "a 40-hex commit or a tag without '/'")]
REPO_FILE = Annotated[str, _path_string(rf"{_PART}(/{_PART}){{0,7}}", "a file path in the repo")]

# ----------------------------------------------------------------------------- upper bounds
# From what a real H100 sweep needs, with room to spare; past them a typo (an extra three zeros)
# would run for days or overflow a tool, so the manifest is refused instead.
MAX_TOKENS = 131_072  # Llama 3.1's context window (128K), the longest of any model the kit knows
MAX_REQUESTS = 1_000_000  # NVIDIA's largest published point is 30,000 requests (128/128)
MAX_REPEATS = 100  # variance needs 3-10 repeats; 100 x a full 8B grid is already weeks of GPU
MAX_POINTS = 1_000  # the flagship grid has 64 points
MAX_GPUS = 64  # 8 nodes of 8 GPUs: far beyond the single-node sweeps the kit drives
MAX_BATCH = 65_536  # trtllm-bench's largest max_batch_size default is 2,048
MAX_NUM_TOKENS = 1_048_576  # 128x the 8,192 default: the engine's per-step token budget
MAX_TIMEOUT_S = 172_800  # 48 h; the slowest flagship point is estimated at 30 min
MAX_WARMUP = 10_000  # warm-up requests; the flagship uses 2
MAX_CALIBRATION = 65_536  # samples; ModelOpt's recipe uses 512
MAX_SEED = 2**32 - 1  # numpy's and prepare_dataset's seeds are 32-bit
Tokens = Annotated[int, Field(strict=True, gt=0, le=MAX_TOKENS)]
Gpus = Annotated[int, Field(strict=True, gt=0, le=MAX_GPUS)]

Backend = Literal["hf-reference", "pytorch", "tensorrt"]
ENGINE_BACKENDS: tuple[str, ...] = ("tensorrt",)  # backends that need `trtllm-build`


class Strict(BaseModel):
    """Every manifest table: unknown keys are errors, values are not coerced, objects are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Model(Strict):
    source: Literal["builtin", "hf"]
    repo: HUB_REPO
    revision: SAFE_REF
    gated: bool = False
    files: dict[REPO_FILE, SHA256] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _hub_revision_is_a_commit(self) -> Model:
        if self.source == "hf" and not re.fullmatch(r"[0-9a-f]{40}", self.revision):
            raise ValueError(
                f"revision {self.revision!r} must be a 40-hex commit for source 'hf' "
                "(a branch or tag can move under you)"
            )
        return self


class Calibration(Strict):
    source: Literal["synthetic", "hf-dataset"]
    size: Annotated[int, Field(strict=True, gt=0, le=MAX_CALIBRATION)] = 512
    seq_len: Tokens = 512
    dataset: HUB_REPO | None = None
    revision: GIT_REVISION | None = None
    file: REPO_FILE | None = None
    sha256: SHA256 | None = None
    text_column: str = "article"

    @model_validator(mode="after")
    def _dataset_is_pinned(self) -> Calibration:
        if self.source == "hf-dataset":
            missing = [k for k in ("dataset", "revision", "file") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"source 'hf-dataset' needs {', '.join(missing)}")
        return self


class Quantization(Strict):
    method: Literal["modelopt", "prequantized", "none"]
    format: Literal["fp8", "none"] = "fp8"
    kv_cache_dtype: Literal["fp8", "auto"] = "fp8"
    device: Literal["cpu", "cuda"] = "cuda"
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _modelopt_needs_calibration(self) -> Quantization:
        if self.method == "modelopt" and self.calibration is None:
            raise ValueError("method 'modelopt' needs a [quantization.calibration] table")
        return self


class Engine(Strict):
    backend: Backend
    tp_size: Gpus = 1
    pp_size: Gpus = 1
    max_seq_len: Annotated[int, Field(strict=True, gt=0, le=2 * MAX_TOKENS)]
    max_batch_size: Annotated[int, Field(strict=True, gt=0, le=MAX_BATCH)] | None = None
    max_num_tokens: Annotated[int, Field(strict=True, gt=0, le=MAX_NUM_TOKENS)] | None = None
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"

    @property
    def needs_build(self) -> bool:
        return self.backend in ENGINE_BACKENDS

    @model_validator(mode="after")
    def _tensorrt_needs_limits(self) -> Engine:
        if self.backend == "tensorrt" and (
            self.max_batch_size is None or self.max_num_tokens is None
        ):
            raise ValueError("backend 'tensorrt' needs max_batch_size and max_num_tokens to build")
        return self


class Runtime(Strict):
    device: Literal["cpu", "cuda"] = "cuda"
    kv_cache_free_gpu_mem_fraction: Fraction = 0.95
    kv_cache_fallbacks: list[Fraction] = Field(default_factory=lambda: [0.90, 0.85])
    warmup: Annotated[int, Field(strict=True, ge=0, le=MAX_WARMUP)] = 2
    point_timeout_s: Annotated[int, Field(strict=True, gt=0, le=MAX_TIMEOUT_S)] = 7200
    telemetry_interval_s: Annotated[float, Field(gt=0)] = 1.0
    batch_size: PositiveInt = 8
    streaming: bool = False
    extra_llm_api_options: dict[str, Any] | None = None
    # trtllm-bench --enable_chunked_context (issue 10): off by default in 1.0, when the TensorRT
    # runtime caps prompts at min(max_seq_len - 1, max_num_tokens); 0.16 had it on.
    enable_chunked_context: bool = False

    @model_validator(mode="after")
    def _fallbacks_decrease(self) -> Runtime:
        tries = [self.kv_cache_free_gpu_mem_fraction, *self.kv_cache_fallbacks]
        if any(b >= a for a, b in itertools.pairwise(tries)):
            raise ValueError(f"kv cache fractions must strictly decrease, got {tries}")
        return self


class Dataset(Strict):
    generator: Literal["builtin", "prepare_dataset"] = "builtin"
    input_stdev: NonNegativeInt = 0
    output_stdev: NonNegativeInt = 0


class Point(Strict):
    isl: Tokens
    osl: Tokens
    requests: Annotated[int, Field(strict=True, gt=0, le=MAX_REQUESTS)]
    concurrency: Annotated[int, Field(strict=True, gt=0, le=MAX_REQUESTS)] | None = None


class Sweep(Strict):
    seed: Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)] = 420
    repeats: Annotated[int, Field(strict=True, gt=0, le=MAX_REPEATS)] = 1
    # "online": each point is measured against the backend's OpenAI-compatible server by AIPerf
    # (bench.stages.serve); "offline": the engine's own benchmark tool (bench.stages.sweep)
    scenario: Literal["offline", "online"] = "offline"
    points: list[Point] = Field(min_length=1, max_length=MAX_POINTS)


class Hardware(Strict):
    gpu: str = "H100-SXM"
    gpus: Gpus = 1


# ----------------------------------------------------------------------------- accuracy (issue 14)

AGREEMENT, TRTLLM_EVAL = "agreement", "trtllm-eval"


class AccuracyDataset(Strict):
    """The evaluation set, pinned: an archive (https URL or a kit path) and its sha256."""

    archive: str = Field(min_length=1)
    sha256: SHA256 | None = None  # None: the stage prints the digest to lock and refuses to run
    published: str = ""  # where and when the archive was published, for the report


class Accuracy(Strict):
    """FP8 against the unquantized model it came from, on one pinned evaluation, and the gate.

    method "trtllm-eval": TensorRT-LLM's own evaluation on both models; the gate is
    FP8 score >= min_ratio x BF16 score (MLPerf's 99% rule by default).
    method "agreement": the demo's random model has no task accuracy, so FP8 and full precision
    are compared token by token on a shipped prompt set, each metric against its threshold.
    """

    method: Literal["agreement", "trtllm-eval"]
    min_ratio: Fraction = 0.99
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    # trtllm-eval
    task: Literal["mmlu"] = "mmlu"
    num_samples: PositiveInt | None = None
    random_seed: NonNegativeInt = 0
    dataset: AccuracyDataset | None = None
    timeout_s: PositiveInt = 3600
    # agreement
    prompts: str | None = None  # JSONL file inside the kit, {"prompt": ...} per line
    prompts_sha256: SHA256 | None = None
    max_new_tokens: PositiveInt = 16
    min_top1_agreement: Fraction = 0.8
    max_mean_kl: Annotated[float, Field(gt=0)] = 1e-3
    min_greedy_prefix: Annotated[float, Field(ge=0)] = 4.0

    @model_validator(mode="after")
    def _method_has_its_inputs(self) -> Accuracy:
        need = (
            ("dataset", "num_samples")
            if self.method == TRTLLM_EVAL
            else ("prompts", "prompts_sha256")
        )
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"method {self.method!r} needs {', '.join(missing)}")
        return self


class CompareSettings(Strict):
    """How `make compare` judges runs of this manifest; bench.stages.compare holds the kit's
    defaults."""

    threshold_pct: Annotated[float, Field(gt=0)] | None = None  # the gate: % worse that fails
    noise_pct: dict[
        Literal["output_tok_s", "avg_request_latency_ms"], Annotated[float, Field(gt=0)]
    ] = Field(default_factory=dict)  # per metric: a change within it is SAME
    # False: verdicts from the band alone (under 3 repeats a side) are advisory, never fail the gate
    band_only_gates: bool = True


class Manifest(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)  # a run name
    description: str = ""
    release: Literal["1.0", "1.2"] = "1.0"  # the TensorRT-LLM pin set in manifests/pins.toml
    reference: str | None = None
    model: Model
    quantization: Quantization
    engine: Engine
    runtime: Runtime = Runtime()
    dataset: Dataset = Dataset()
    sweep: Sweep
    hardware: Hardware = Hardware()
    accuracy: Accuracy | None = None
    compare: CompareSettings | None = None

    @model_validator(mode="after")
    def _accuracy_has_a_baseline(self) -> Manifest:
        if self.accuracy is not None and self.quantization.method != "modelopt":
            raise KeyedError(
                "accuracy",
                f"quantization.method {self.quantization.method!r}: the unquantized model is not "
                "fetched by this kit, so there is nothing to compare with (remove [accuracy])",
            )
        return self

    @model_validator(mode="after")
    def _points_fit_the_engine(self) -> Manifest:
        seen: dict[tuple[int, int, int | None], int] = {}
        for i, p in enumerate(self.sweep.points):
            key = (p.isl, p.osl, p.concurrency)
            if key in seen:
                raise KeyedError(
                    f"sweep.points[{i}]",
                    f"duplicate of sweep.points[{seen[key]}] (isl={p.isl}, osl={p.osl})",
                )
            seen[key] = i
            if p.isl + p.osl > self.engine.max_seq_len:
                raise KeyedError(
                    f"sweep.points[{i}]",
                    f"isl + osl = {p.isl + p.osl} exceeds "
                    f"engine.max_seq_len = {self.engine.max_seq_len}",
                )
        if (
            self.engine.tp_size * self.engine.pp_size != self.hardware.gpus
            and self.runtime.device == "cuda"
        ):
            raise ValueError(
                f"engine.tp_size x engine.pp_size = {self.engine.tp_size * self.engine.pp_size} "
                f"but hardware.gpus = {self.hardware.gpus}"
            )
        return self


def parse_manifest(data: dict[str, Any], path: str = "<manifest>") -> Manifest:
    """Validate parsed TOML; raise one KitError listing every problem with its key path."""
    return validate(
        Manifest, data, path, "correct the keys above; see manifests/demo.toml for a valid example"
    )


def load_manifest(path: str | Path) -> Manifest:
    data = read_toml(path, "manifest", "pass MANIFEST=manifests/<name>.toml (see `ls manifests/`)")
    return parse_manifest(data, str(path))


def resolved_toml(manifest: Manifest) -> str:
    """The manifest with every default filled in: what a run records and compares on resume."""
    return tomli_w.dumps(manifest.model_dump(mode="json", exclude_none=True))


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.core.manifest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["validate", "show"])
    parser.add_argument("manifest", type=Path)
    args = parser.parse_args(argv)

    def run() -> int:
        manifest = load_manifest(args.manifest)
        if args.command == "validate":
            n = len(manifest.sweep.points)
            print(
                f"{args.manifest}: ok ({n} points x {manifest.sweep.repeats} repeat(s), "
                f"backend {manifest.engine.backend}, model {manifest.model.repo})"
            )
        else:
            sys.stdout.write(resolved_toml(manifest))
        return 0

    return run_main(run, "bench.core.manifest")


if __name__ == "__main__":
    raise SystemExit(main())

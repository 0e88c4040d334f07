"""The sweep manifest: TOML in, validated typed objects out, or one error naming file and key.

Reads:  manifests/<name>.toml
Usage:  python -m bench.manifest validate manifests/demo.toml
        python -m bench.manifest show manifests/demo.toml   (the resolved form, as TOML)

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
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from bench.errors import run_main
from bench.tomlconfig import KeyedError, read_toml, validate

SHA256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
GIT_REVISION = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]

Backend = Literal["hf-reference", "pytorch", "tensorrt"]
ENGINE_BACKENDS: tuple[str, ...] = ("tensorrt",)  # backends that need `trtllm-build`


class Strict(BaseModel):
    """Every manifest table: unknown keys are errors, values are not coerced, objects are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Model(Strict):
    source: Literal["builtin", "hf"]
    repo: str = Field(min_length=1)
    revision: str = Field(min_length=1)
    gated: bool = False
    files: dict[str, SHA256] = Field(default_factory=dict)

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
    size: PositiveInt = 512
    seq_len: PositiveInt = 512
    dataset: str | None = None
    revision: GIT_REVISION | None = None
    file: str | None = None
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
    tp_size: PositiveInt = 1
    pp_size: PositiveInt = 1
    max_seq_len: PositiveInt
    max_batch_size: PositiveInt | None = None
    max_num_tokens: PositiveInt | None = None
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
    warmup: NonNegativeInt = 2
    point_timeout_s: PositiveInt = 7200
    telemetry_interval_s: Annotated[float, Field(gt=0)] = 1.0
    batch_size: PositiveInt = 8
    streaming: bool = False
    extra_llm_api_options: dict[str, Any] | None = None

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
    isl: PositiveInt
    osl: PositiveInt
    requests: PositiveInt
    concurrency: PositiveInt | None = None


class Sweep(Strict):
    seed: NonNegativeInt = 420
    repeats: PositiveInt = 1
    points: list[Point] = Field(min_length=1)


class Hardware(Strict):
    gpu: str = "H100-SXM"
    gpus: PositiveInt = 1


class CompareSettings(Strict):
    """How `make compare` judges runs of this manifest; bench.compare holds the kit's defaults."""

    threshold_pct: Annotated[float, Field(gt=0)] | None = None  # the gate: % worse that fails
    noise_pct: dict[
        Literal["output_tok_s", "avg_request_latency_ms"], Annotated[float, Field(gt=0)]
    ] = Field(default_factory=dict)  # per metric: a change within it is SAME


class Manifest(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    reference: str | None = None
    model: Model
    quantization: Quantization
    engine: Engine
    runtime: Runtime = Runtime()
    dataset: Dataset = Dataset()
    sweep: Sweep
    hardware: Hardware = Hardware()
    compare: CompareSettings | None = None

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
    parser = argparse.ArgumentParser(prog="bench.manifest", description=__doc__.splitlines()[0])
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

    return run_main(run, "bench.manifest")


if __name__ == "__main__":
    raise SystemExit(main())

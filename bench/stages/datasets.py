"""Stage `datasets`: one synthetic request file per sweep point, in trtllm-bench's JSONL format.

Reads:  the run's manifest, the model's config.json / tokenizer.json (vocabulary, EOS ids)
Writes: results/<run>/datasets/<point>.jsonl, one line per request:
        {"task_id":0,"input_ids":[...],"output_tokens":128}
Usage:  python -m bench.stages.datasets --manifest manifests/demo.toml [--run demo]

Two generators write the same format and the same length statistics:
- `prepare_dataset` (the H100 path): NVIDIA's benchmarks/cpp/prepare_dataset.py in the container,
  `token-norm-dist`, so the data follows NVIDIA's published method;
- `builtin` (the CPU demo, and anywhere without the container): lengths max(1, ceil(N(mean, sd))),
  token ids uniform over the base vocabulary (no special tokens, so never an EOS).
Both are seeded from the manifest; the dataset's sha256 is recorded either way.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import backends
from bench.backends.base import DatasetFormat
from bench.backends.trtllm import commands as trtllm
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, StageFailed, run_main
from bench.core.fileio import atomic_write_text, read_json, temp_beside
from bench.core.manifest import Point
from bench.core.proc import run_logged
from bench.core.run import Run, add_run_args, open_run, point_id
from bench.core.runlock import locked
from bench.core.toolcheck import prepare_dataset_script

VERSION = 1  # bump when the request files this stage writes would change

# The request formats both generators write; a backend reads one (bench.backends: dataset_format).
WRITES: tuple[DatasetFormat, ...] = ("trtllm-bench-jsonl",)


@dataclass(frozen=True)
class Vocabulary:
    size: int  # draw token ids from [0, size): the base vocabulary, special tokens excluded
    eos_ids: frozenset[int]


@dataclass(frozen=True)
class LengthStats:
    num_requests: int
    avg_isl: float
    min_isl: int
    max_isl: int
    avg_osl: float
    min_osl: int
    max_osl: int


# ----------------------------------------------------------------------------- pure core


def vocabulary_of(config: dict, tokenizer: dict | None) -> Vocabulary:
    """Base vocabulary from tokenizer.json (model.vocab) when present, else config.vocab_size."""
    eos = config.get("eos_token_id")
    eos_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
    size = len(tokenizer["model"]["vocab"]) if tokenizer else int(config["vocab_size"])
    return Vocabulary(size=size, eos_ids=eos_ids)


def request_lengths(rng: np.random.Generator, mean: int, stdev: int, n: int) -> list[int]:
    if stdev == 0:
        return [mean] * n
    return [max(1, math.ceil(x)) for x in rng.normal(mean, stdev, size=n)]


def synthetic_requests(
    point: Point, vocab: Vocabulary, seed: int, input_stdev: int = 0, output_stdev: int = 0
) -> Iterator[dict]:
    """Deterministic requests for one point; exact ISL/OSL when the spread is 0, never an EOS id."""
    rng = np.random.Generator(np.random.PCG64([seed, point.isl, point.osl]))
    inputs = request_lengths(rng, point.isl, input_stdev, point.requests)
    outputs = request_lengths(rng, point.osl, output_stdev, point.requests)
    allowed = np.setdiff1d(np.arange(vocab.size), np.fromiter(vocab.eos_ids, dtype=np.int64))
    for task_id, (isl, osl) in enumerate(zip(inputs, outputs, strict=True)):
        ids = allowed[rng.integers(0, allowed.size, size=isl)]
        yield {"task_id": task_id, "input_ids": ids.tolist(), "output_tokens": osl}


def jsonl(requests: Iterator[dict]) -> str:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in requests)


def length_stats(lines: Iterator[str]) -> LengthStats:
    isl, osl = [], []
    for line in lines:
        request = json.loads(line)
        isl.append(len(request["input_ids"]))
        osl.append(int(request["output_tokens"]))
    if not isl:
        raise ValueError("dataset is empty")
    return LengthStats(
        len(isl), sum(isl) / len(isl), min(isl), max(isl), sum(osl) / len(osl), min(osl), max(osl)
    )


def check_dataset(
    stats: LengthStats, point: Point, input_stdev: int, output_stdev: int
) -> str | None:
    """Why a dataset does not match its point, or None."""
    if stats.num_requests != point.requests:
        return f"{stats.num_requests} requests, expected {point.requests}"
    if input_stdev == 0 and not stats.min_isl == stats.max_isl == point.isl:
        return f"input lengths {stats.min_isl}..{stats.max_isl}, expected exactly {point.isl}"
    if output_stdev == 0 and not stats.min_osl == stats.max_osl == point.osl:
        return f"output lengths {stats.min_osl}..{stats.max_osl}, expected exactly {point.osl}"
    return None


def dataset_path(run: Run, point: Point) -> Path:
    return run.paths.datasets / f"{point_id(point.isl, point.osl)}_n{point.requests}.jsonl"


def unique_points(run: Run) -> list[Point]:
    """One dataset per (isl, osl, requests): concurrency variants of a point with as many
    requests share them (under a concurrency sweep, requests grow with concurrency)."""
    seen: dict[tuple[int, int, int], Point] = {}
    for p in run.manifest.sweep.points:
        seen.setdefault((p.isl, p.osl, p.requests), p)
    return list(seen.values())


# ----------------------------------------------------------------------------- I/O edge


def model_files_dir(run: Run) -> Path:
    """The checkpoint whose vocabulary the requests use: the fetched model."""
    m = run.manifest.model
    return run.paths.model_dir(m.repo, m.revision)


@functools.cache
def model_vocabulary(model_dir: Path) -> Vocabulary:
    """The model's usable token ids, read once per stage (tokenizer.json is ~9 MB for Llama 3)."""
    tokenizer_file = model_dir / "tokenizer.json"
    return vocabulary_of(
        read_json(model_dir / "config.json"),
        read_json(tokenizer_file) if tokenizer_file.exists() else None,
    )


def write_builtin(run: Run, point: Point, out: Path) -> None:
    vocab = model_vocabulary(model_files_dir(run))
    d = run.manifest.dataset
    atomic_write_text(
        out,
        jsonl(
            synthetic_requests(point, vocab, run.manifest.sweep.seed, d.input_stdev, d.output_stdev)
        ),
    )


def write_prepare_dataset(run: Run, point: Point, out: Path) -> None:
    argv = trtllm.prepare_dataset_argv(run.manifest, point, tokenizer=model_files_dir(run))
    tmp = temp_beside(out)
    result = run_logged(argv, out.with_suffix(".log"), timeout_s=3600, stdout_path=tmp, echo=False)
    if result.exit_code != 0:
        tmp.unlink(missing_ok=True)
        raise StageFailed(
            f"prepare_dataset exited with {result.exit_code}",
            path=str(out.with_suffix(".log")),
            fix="read the log above",
        )
    tmp.replace(out)


def datasets_command(run: Run) -> dict:
    """The stage key's command: NVIDIA's tool's argv per file, or the builtin generator's files
    (its parameters are the resolved manifest's, an input)."""
    generator = run.manifest.dataset.generator
    if generator == "builtin":
        return {
            "generator": generator,
            "files": [dataset_path(run, p).name for p in unique_points(run)],
        }
    tokenizer = model_files_dir(run)
    argvs = [
        trtllm.prepare_dataset_argv(run.manifest, p, tokenizer=tokenizer)
        for p in unique_points(run)
    ]
    return {"generator": generator, "argv": argvs}


def datasets_tools(run: Run) -> dict[str, str | None]:
    if run.manifest.dataset.generator == "builtin":
        return rule.tool_versions("numpy")
    script = prepare_dataset_script()
    return {**rule.tool_versions("tensorrt_llm"), script: rule.executable_identity(script)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.datasets", description=__doc__.splitlines()[0]
    )
    add_run_args(parser)
    args = parser.parse_args(argv)

    def stage() -> int:
        run = open_run(args.manifest, args.run)
        arts = Artifacts(run.paths)
        model_dir = model_files_dir(run)
        inputs = arts.input_digests(
            [
                run.paths.resolved_manifest,
                *(
                    model_dir / f
                    for f in ("config.json", "tokenizer.json")
                    if (model_dir / f).exists()
                ),
            ],
        )
        key = rule.StageKey("datasets", VERSION, datasets_command(run), inputs, datasets_tools(run))
        if rule.skip_if_current(arts, key, "datasets"):
            return 0
        wanted = backends.get(run.manifest.engine.backend).dataset_format
        if wanted not in WRITES:
            raise KitError(
                f"backend {run.manifest.engine.backend} reads {wanted} datasets; "
                f"this stage writes {', '.join(WRITES)}",
                path=str(run.manifest_path),
                fix="add a writer for that format to bench/stages/datasets.py",
            )
        generator = run.manifest.dataset.generator
        write = write_builtin if generator == "builtin" else write_prepare_dataset
        outputs, stats = [], {}
        for i, point in enumerate(unique_points(run), 1):
            out = dataset_path(run, point)
            print(
                f"[datasets] {i}/{len(unique_points(run))} {out.name} ({generator})",
                file=sys.stderr,
            )
            write(run, point, out)
            with open(out, encoding="utf-8") as f:
                s = length_stats(f)
            d = run.manifest.dataset
            if problem := check_dataset(s, point, d.input_stdev, d.output_stdev):
                raise KitError(f"dataset does not match its point: {problem}", path=str(out))
            outputs.append(out)
            if out.with_suffix(".log").exists():
                outputs.append(out.with_suffix(".log"))
            stats[out.name] = s.__dict__
        rule.record(arts, key, outputs, {"generator": generator, "stats": stats})
        return 0

    return run_main(
        locked(args.run or args.manifest.stem, "datasets", stage), "bench.stages.datasets"
    )


if __name__ == "__main__":
    raise SystemExit(main())

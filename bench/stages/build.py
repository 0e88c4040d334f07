"""Stage `build`: the engine of a backend that builds one (trtllm-tensorrt); a recorded no-op
otherwise.

Reads:  work/<run>/checkpoint/ (TensorRT-LLM checkpoint from the quantize stage)
Writes: work/<run>/engine/ (config.json, rank<N>.engine, build.log)
Usage:  python -m bench.stages.build --manifest manifests/llama-3.1-8b-fp8-h100.toml [--run NAME]

The engine's limits come from the manifest (max batch size, max num tokens, a max sequence length
that covers every point), with FP8 context FMHA and paged context FMHA on; trtllm.build_argv
holds the command. The engine's config and every file's sha256 go into the artifact manifest.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from bench import backends
from bench.backends.trtllm import commands as trtllm
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, StageFailed, run_main
from bench.core.fileio import read_json
from bench.core.proc import run_logged
from bench.core.run import Run, add_run_args, open_run
from bench.core.runlock import locked
from bench.core.stage_cache import cache_root, make_or_reuse, run_environment

VERSION = 1  # bump when the engine this stage builds would change
BUILD_TIMEOUT_S = 3 * 3600
# The key's command names the run's folders by role: shards with one checkpoint share one engine.
CHECKPOINT_SLOT, ENGINE_SLOT = Path("<checkpoint>"), Path("<engine>")


def build_stage(run: Run) -> int:
    m = run.manifest
    arts = Artifacts(run.paths)
    # A no-op reads no checkpoint, so it hashes none.
    checkpoint_files = (
        sorted(p for p in run.paths.checkpoint.rglob("*") if p.is_file())
        if m.engine.needs_build and run.paths.checkpoint.is_dir()
        else []
    )
    inputs = arts.input_digests([run.paths.resolved_manifest, *checkpoint_files])
    command: list[str] | dict[str, str | None]
    if m.engine.needs_build:
        command = trtllm.build_argv(m, checkpoint_dir=CHECKPOINT_SLOT, engine_dir=ENGINE_SLOT)
        tools = rule.tool_versions("tensorrt_llm", "tensorrt")
    else:
        command, tools = {"backend": m.engine.backend, "engine": None}, {}
    key = rule.StageKey("build", VERSION, command, inputs, tools)
    if rule.skip_if_current(arts, key, "engine"):
        return 0
    if not m.engine.needs_build:
        print(
            f"[build] no-op: backend {m.engine.backend!r} runs without an engine", file=sys.stderr
        )
        rule.record(arts, key, [], {"backend": m.engine.backend, "engine": None})
        return 0
    if not checkpoint_files:
        raise KitError(
            "no TensorRT-LLM checkpoint to build from",
            path=str(run.paths.checkpoint),
            fix="run `make quantize` first (quantization.method must be 'modelopt')",
        )
    engine = run.paths.engine
    log = engine / "build.log"

    def make() -> list[Path]:
        if engine.exists():
            shutil.rmtree(engine)
        engine.mkdir(parents=True)
        result = run_logged(argv, log, timeout_s=BUILD_TIMEOUT_S)
        if result.exit_code != 0:
            raise StageFailed(
                "trtllm-build "
                + ("timed out" if result.timed_out else f"exited with {result.exit_code}"),
                path=str(log),
                fix="read the build log; the checkpoint and manifest limits are inputs",
            )
        files = sorted(p for p in engine.rglob("*") if p.is_file())
        if not (engine / "config.json").is_file() or not any(p.suffix == ".engine" for p in files):
            raise StageFailed(
                "trtllm-build exited 0 but wrote no config.json/*.engine", path=str(engine)
            )
        print(f"[build] engine built in {result.seconds:.1f} s", file=sys.stderr)
        return files

    argv = backends.get(m.engine.backend).build_argv(
        m, checkpoint_dir=run.paths.checkpoint, engine_dir=engine
    )
    files, origin = make_or_reuse(
        cache_root(),
        "build",
        key.material(),
        run_environment(run.paths.provenance),
        engine,
        make,
        made_by=run.paths.name,
    )
    config = read_json(engine / "config.json")
    rule.record(
        arts,
        key,
        files,
        {
            "argv": argv,
            "build_config": config.get("build_config", {}),
            "engine_bytes": sum(p.stat().st_size for p in files if p.suffix == ".engine"),
            **origin,
        },
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.build", description=__doc__.splitlines()[0])
    add_run_args(parser)
    args = parser.parse_args(argv)

    def stage() -> int:
        return build_stage(open_run(args.manifest, args.run))

    return run_main(locked(args.run or args.manifest.stem, "build", stage), "bench.stages.build")


if __name__ == "__main__":
    raise SystemExit(main())

"""`make plan`: every command the pipeline would run, exactly as it would run it, and the time.

Usage: python -m bench.plan --manifest manifests/demo.toml [--run NAME] [--shard i/N]

Runs nothing and writes nothing. External tools print as shell lines (shlex-quoted argv, the
same lists bench.trtllm gives the stages); in-process steps print as `#` comments. The sweep
shows the first try of each point (an out-of-memory retry lowers --kv_cache_free_gpu_mem_fraction)
and the estimated time per point, per shard and in total (bench.cost).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from bench import accuracy, cost, trtllm
from bench.datasets import dataset_path, model_files_dir, unique_points
from bench.errors import run_main
from bench.manifest import load_manifest
from bench.quantize import export_format_for
from bench.run import Run, RunPaths
from bench.sweep import attempt_argv, kv_fractions, parse_shard, tasks_of


def plan_lines(run: Run, shard: tuple[int, int] | None) -> list[str]:
    m, paths = run.manifest, run.paths
    lines = [
        f"# run {paths.name}: {paths.root}",
        "# env: provenance.json (NVML, nvidia-smi -q -x, pip freeze)",
        f"# fetch: {m.model.source} {m.model.repo}@{m.model.revision} -> {model_files_dir(run)}",
    ]
    if m.quantization.method == "modelopt":
        lines.append(
            f"# quantize: ModelOpt FP8 on {m.quantization.device} -> {paths.checkpoint} "
            f"({export_format_for(m)} checkpoint)"
        )
    else:
        lines.append(f"# quantize: no-op (method {m.quantization.method})")
    if m.engine.needs_build:
        lines.append(
            shlex.join(
                trtllm.build_argv(m, checkpoint_dir=paths.checkpoint, engine_dir=paths.engine)
            )
        )
    else:
        lines.append(f"# build: no-op (backend {m.engine.backend})")
    lines += accuracy.plan_lines(run)
    for point in unique_points(run):
        if m.dataset.generator == "prepare_dataset":
            argv = trtllm.prepare_dataset_argv(m, point, tokenizer=model_files_dir(run))
            lines.append(f"{shlex.join(argv)} > {shlex.quote(str(dataset_path(run, point)))}")
        else:
            lines.append(f"# datasets: builtin generator -> {dataset_path(run, point)}")
    estimator = cost.Estimator(m)
    tasks = tasks_of(run)
    if shard is not None:
        tasks = cost.shard_tasks(tasks, *shard, estimator)
    fraction = kv_fractions(run)[0]
    for task in tasks:
        argv, _, _ = attempt_argv(run, task, fraction, paths.points / (task.name + ".partial"))
        lines.append(
            f"{shlex.join(argv)}  # {task.name}, est. {cost.hms(estimator.seconds(task.point))}"
        )
    lines.append(
        f"# estimated sweep time: {cost.hms(sum(estimator.seconds(t.point) for t in tasks))} "
        f"for {len(tasks)} points ({'GPU' if m.engine.backend != 'hf-reference' else 'CPU'})"
    )
    return lines


def shard_lines(run: Run, count: int) -> list[str]:
    estimator = cost.Estimator(run.manifest)
    out = []
    for i in range(1, count + 1):
        tasks = cost.shard_tasks(tasks_of(run), i, count, estimator)
        total = sum(estimator.seconds(t.point) for t in tasks)
        out.append(f"# shard {i}/{count}: {len(tasks)} points, est. {cost.hms(total)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--run")
    parser.add_argument("--shard", help="plan shard i/N only; the summary lists every shard of N")
    args = parser.parse_args(argv)

    def plan() -> int:
        from pathlib import Path

        manifest = load_manifest(args.manifest)
        run = Run(
            RunPaths.for_run(args.run or Path(args.manifest).stem), manifest, Path(args.manifest)
        )
        shard = parse_shard(args.shard)
        lines = plan_lines(run, shard)
        if shard is not None:
            lines += shard_lines(run, shard[1])
        sys.stdout.write("\n".join(lines) + "\n")
        return 0

    return run_main(plan, "bench.plan")


if __name__ == "__main__":
    raise SystemExit(main())

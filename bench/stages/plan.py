"""`make plan`: every command the pipeline would run, exactly as it would run it, and the time.

Usage: python -m bench.stages.plan --manifest manifests/demo.toml [--run NAME] [--shard i/N]

Runs nothing and writes nothing. External tools print as shell lines (shlex-quoted argv, the
same lists the backend gives the stages, with the image's interpreter for GPU
manifests); the
--extra_llm_api_options YAML prints as the heredoc that writes it; in-process steps print as `#`
comments. A point the manifest's reference publishes is estimated from that measurement. The sweep
shows the first try of each point (an out-of-memory retry lowers --kv_cache_free_gpu_mem_fraction)
and the estimated time per point, per shard and in total (bench.core.cost).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench import backends
from bench.analysis.reference import load_reference
from bench.backends.trtllm import commands as trtllm
from bench.core import cost
from bench.core.errors import run_main
from bench.core.manifest import Manifest, Point, load_manifest
from bench.core.run import Run, RunPaths
from bench.stages import accuracy, serve
from bench.stages.datasets import dataset_path, model_files_dir, unique_points
from bench.stages.quantize import export_format_for
from bench.stages.sweep import (
    attempt_argv,
    extra_options_path,
    extra_options_yaml,
    kv_fractions,
    parse_shard,
    tasks_of,
)


def plan_lines(run: Run, shard: tuple[int, int] | None) -> list[str]:
    m, paths = run.manifest, run.paths
    backend = backends.get(m.engine.backend)
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
    if backend.builds_engine:
        lines.append(
            shlex.join(
                backend.build_argv(m, checkpoint_dir=paths.checkpoint, engine_dir=paths.engine)
            )
        )
    else:
        lines.append(f"# build: no-op (backend {m.engine.backend})")
    python = container_python(m)
    if python != sys.executable:
        lines.append(f"# interpreter: {python} (the image's; Dockerfile sets PYTHON=python3)")
    lines += accuracy.plan_lines(run)
    for point in unique_points(run):
        if m.dataset.generator == "prepare_dataset":
            argv = trtllm.prepare_dataset_argv(
                m, point, tokenizer=model_files_dir(run), python=python
            )
            lines.append(f"{shlex.join(argv)} > {shlex.quote(str(dataset_path(run, point)))}")
        else:
            lines.append(f"# datasets: builtin generator -> {dataset_path(run, point)}")
    if m.sweep.scenario == "online":
        return lines + online_lines(run, shard)
    yaml_text = extra_options_yaml(m)
    if yaml_text is not None:
        lines += heredoc(extra_options_path(run), yaml_text)
    estimator = cost.Estimator(m)
    published = published_rates(m)
    tasks = tasks_of(run)
    if shard is not None:
        tasks = cost.shard_tasks(tasks, *shard, estimator)
    fraction = kv_fractions(run)[0]
    if any(p.concurrency is not None for p in m.sweep.points):
        lines.append(
            f"# requests per point with a concurrency limit: max(requests, "
            f"{m.sweep.requests_per_concurrency} x concurrency) "
            "(sweep.requests_per_concurrency), so each slot serves a run of requests"
            + (f"; concurrency sweep {m.sweep.concurrency}" if m.sweep.concurrency else "")
            + ("; streaming: TTFT/TPOT timed per token" if m.sweep.streaming else "")
        )
    total = 0.0
    for task in tasks:
        argv, _, _ = attempt_argv(run, task, fraction, paths.points / (task.name + ".partial"))
        if yaml_text is not None and "--extra_llm_api_options" not in argv:
            argv += ["--extra_llm_api_options", str(extra_options_path(run))]
        seconds, basis = point_estimate(estimator, published, task.point)
        total += seconds
        lines.append(
            f"{shlex.join(argv)}  # {task.name}, {task.point.requests} requests, "
            f"est. {cost.hms(seconds)}{basis}"
        )
    lines.append(
        f"# estimated sweep time: {cost.hms(total)} "
        f"for {len(tasks)} points ({'GPU' if backend.needs_gpu else 'CPU'})"
    )
    return lines


# ----------------------------------------------------------------------------- online (issue 12)


def online_lines(run: Run, shard: tuple[int, int] | None) -> list[str]:
    """The server (the files it reads, as heredocs; its command, the health poll), then one
    AIPerf command per point exactly as the online session runs them
    (bench.stages.serve.plan_commands: also the sweep's stage key), then the stop; the estimate
    is the server's start-up once plus each point (cost.Estimator.sweep_seconds)."""
    m = run.manifest
    estimator = cost.Estimator(m)
    tasks = tasks_of(run)
    if shard is not None:
        tasks = cost.shard_tasks(tasks, *shard, estimator)
    lines = []
    for path, text in serve.serving_for(run, prepare=False).config_files.items():
        lines += heredoc(path, text)
    server, clients = serve.plan_commands(run, tasks)
    env = [f"{k}={v}" for k, v in server.env.items()]
    lines.append(f"{shlex.join(env + server.argv)} &  # the server, once, in its own session")
    lines.append(
        f"# wait until GET {server.health_url} answers 200 (a free loopback port at run time)"
    )
    total = estimator.startup_once_s
    for task, argv in zip(tasks, clients, strict=True):
        seconds = estimator.sweep_seconds(task.point)
        total += seconds
        lines.append(f"{shlex.join(argv)}  # {task.name}, est. {cost.hms(seconds)}")
    lines.append("# stop the server: SIGTERM to its process group")
    lines.append(
        f"# estimated sweep time: {cost.hms(total)} for {len(tasks)} points "
        f"({'GPU' if backends.get(m.engine.backend).needs_gpu else 'CPU'}, "
        "warm-up requests included): "
        f"server start-up "
        f"{cost.hms(estimator.c.startup_s)} once, then per point the longer of the offline "
        f"model's time and ceil(requests / concurrency) request latencies at "
        f"{cost.LOW_LOAD_STEP_S * 1000:g} ms per output token"
    )
    return lines


def container_python(m: Manifest) -> str:
    """GPU manifests run in the TensorRT-LLM image, whose interpreter is python3."""
    return "python3" if backends.get(m.engine.backend).needs_gpu else sys.executable


def published_rates(m: Manifest) -> dict[tuple[int, int], float]:
    """Output tok/s the manifest's reference publishes for the same setup, by (isl, osl)."""
    if m.reference is None or not Path(m.reference).is_file():
        return {}
    ref = load_reference(m.reference)
    same = ref.identity.backend == m.engine.backend and ref.identity.gpus == m.hardware.gpus
    # a rate published at a concurrency limit is no estimate for a point without one
    rates = {(p.isl, p.osl): p.output_tok_s for p in ref.points if p.concurrency is None}
    return rates if same else {}


def point_estimate(
    estimator: cost.Estimator, published: dict[tuple[int, int], float], point: Point
) -> tuple[float, str]:
    """A published measurement of the same setup beats the cost model, which scales a 70B TP8
    fit by its 128/128 ratio and so misses where prefill or KV capacity dominate (20000/2000:
    the model says 12:43, NVIDIA's 1,351 tok/s means 24:40)."""
    rate = published.get((point.isl, point.osl))
    if rate is None:
        return estimator.seconds(point), ""
    seconds = estimator.c.startup_s + point.requests * point.osl / rate
    return seconds, f" (from the published {rate:,.0f} tok/s)"


def heredoc(path: Path, text: str) -> list[str]:
    """The shell lines that write `text` to `path`."""
    return [f"cat > {shlex.quote(str(path))} <<'EOF'", *text.splitlines(), "EOF"]


def shard_lines(run: Run, count: int) -> list[str]:
    """Each shard's points and time, by the model the shards are balanced by (an online shard
    starts its own server)."""
    estimator = cost.Estimator(run.manifest)
    out = []
    for i in range(1, count + 1):
        tasks = cost.shard_tasks(tasks_of(run), i, count, estimator)
        total = estimator.startup_once_s + sum(estimator.sweep_seconds(t.point) for t in tasks)
        out.append(f"# shard {i}/{count}: {len(tasks)} points, est. {cost.hms(total)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--run")
    parser.add_argument("--shard", help="plan shard i/N only; the summary lists every shard of N")
    args = parser.parse_args(argv)

    def plan() -> int:
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

    return run_main(plan, "bench.stages.plan")


if __name__ == "__main__":
    raise SystemExit(main())

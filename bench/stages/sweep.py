"""Stage `sweep`: run every point of the manifest once per repeat, resumably.

Reads:  results/<run>/datasets/*.jsonl, the checkpoint or engine, the run's manifest
Writes: results/<run>/points/<point>/{result.json | failure.json, *.console.log, *.report.json,
        telemetry.csv}, results/<run>/summary.csv
Usage:  python -m bench.stages.sweep --manifest manifests/demo.toml [--run demo] [--shard 1/3]

A point is done if and only if points/<point>/result.json exists. Each point runs in
points/<point>.partial/ and becomes visible by one directory rename once its record is written,
so a kill at any moment leaves finished points intact and the interrupted one is redone. Before
the rename, the folder's digests go to results/<run>/.stamps/publishing/<point>.json (fsync'd):
resume adopts a renamed but unrecorded folder only when it matches that journal.
Failed points (failure.json) are retried on the next run. On out-of-memory the point is retried
with the manifest's smaller KV cache fractions; every try is kept in the record.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import backends
from bench.analysis.latency import REQUESTS_CSV, distributions, write_requests
from bench.backends import aiperf
from bench.backends.base import PointPaths
from bench.core import cost
from bench.core import stage as rule
from bench.core.artifacts import Artifacts, Problem
from bench.core.errors import KitError, run_main
from bench.core.fileio import atomic_write_json, atomic_write_text, sha256_file
from bench.core.manifest import Manifest, Point
from bench.core.proc import run_logged
from bench.core.run import Run, add_run_args, open_run, point_id
from bench.core.runlock import locked
from bench.schema.record import FAILURE, RESULT, PointResult, judge, load_records, write_summary
from bench.stages import serve
from bench.stages.datasets import dataset_path
from bench.stages.window import Window, window_telemetry, with_goodput

VERSION = 1  # bump when a point measured now would not be comparable with one measured before
PARTIAL = ".partial"
# Under .stamps/ (never recorded): one entry per point between its rename and its record.
JOURNAL = "publishing"


@dataclass(frozen=True)
class Task:
    """One run of one point: the unit the sweep schedules, resumes and shards."""

    point: Point
    repeat: int

    @property
    def name(self) -> str:
        return point_id(self.point.isl, self.point.osl, self.point.concurrency, self.repeat)


def tasks_of(run: Run) -> list[Task]:
    return [
        Task(p, r) for r in range(run.manifest.sweep.repeats) for p in run.manifest.sweep.points
    ]


def kv_fractions(run: Run) -> list[float | None]:
    return backends.get(run.manifest.engine.backend).kv_fractions(run.manifest)


def model_path_for_runtime(run: Run) -> Path:
    """What `--model_path` gives trtllm-bench: the HF-format checkpoint it loads, or, for an
    engine, the fetched model (trtllm-bench reads only its tokenizer; the TensorRT-LLM checkpoint
    has none)."""
    m = run.manifest
    if m.quantization.method == "modelopt" and not m.engine.needs_build:
        return run.paths.checkpoint
    return run.paths.model_dir(m.model.repo, m.model.revision)


def extra_options_path(run: Run) -> Path:
    return run.paths.root / "extra_llm_api_options.yaml"


def extra_options_yaml(manifest: Manifest) -> str | None:
    """runtime.extra_llm_api_options as the YAML that --extra_llm_api_options reads."""
    options = manifest.runtime.extra_llm_api_options
    return None if options is None else yaml.safe_dump(options, sort_keys=True)


def wants_request_json(run: Run, point: Point) -> bool:
    """Per-request timings for serving points (a concurrency limit or streaming) and where they
    cost nothing (the CPU runner); an offline trtllm-bench point skips them (30,000 requests'
    decoded outputs)."""
    return (
        point.concurrency is not None
        or run.manifest.sweep.streaming
        or backends.get(run.manifest.engine.backend).always_times_requests
    )


def request_json_for(report: Path) -> Path:
    """The attempt's --request_json beside its --report_json."""
    return report.with_name(report.name.removesuffix("report.json") + "request.json")


def attempt_argv(
    run: Run, task: Task, fraction: float | None, workdir: Path
) -> tuple[list[str], Path, Path]:
    stem = "" if fraction is None else f"kv{fraction:g}."
    report, log = workdir / f"{stem}report.json", workdir / f"{stem}console.log"
    wanted = wants_request_json(run, task.point)
    paths = PointPaths(
        model_path=model_path_for_runtime(run),
        dataset=dataset_path(run, task.point),
        report_json=report,
        workspace=run.paths.work / "bench-workspace",
        engine_dir=run.paths.engine if run.manifest.engine.needs_build else None,
        extra_options=extra_options_path(run) if extra_options_path(run).exists() else None,
        request_json=request_json_for(report) if wanted else None,
    )
    argv = backends.get(run.manifest.engine.backend).run_argv(
        run.manifest, task.point, paths, kv_fraction=fraction or 0.0
    )
    return argv, report, log


# ----------------------------------------------------------------------------- serving fields


def monotonic_offset_ns() -> int:
    """epoch ns - monotonic ns now. trtllm-bench (and the CPU runner) stamp requests with
    time.perf_counter_ns(), CLOCK_MONOTONIC on Linux, one clock for every process of the
    machine: adding this offset puts their stamps on the time.time_ns clock the sampler uses."""
    return time.time_ns() - time.monotonic_ns()


def serving_fields(
    run: Run, result: PointResult, report: Path, workdir: Path, offset_ns: int
) -> tuple[PointResult, Window | None]:
    """requests.csv and the per-request distributions from --request_json where it was written,
    goodput under the manifest's [slo], and the measured window; else the window from the report
    (its file time as the end, total_latency_ms before it: a bound that includes the report's
    own writing)."""
    request_json = request_json_for(report)
    backend = backends.get(run.manifest.engine.backend)
    times = (
        backend.request_times(request_json, streaming=result.streaming)
        if result.status == "ok" and request_json.is_file()
        else None
    )
    if times is not None:
        write_requests(workdir / REQUESTS_CSV, times.rows)
        found = distributions(times.rows)
        # Any: Metrics fields named at run time, so mypy cannot match them to replace's keywords
        filled: dict[str, Any] = {
            k: v for k, v in found.items() if getattr(result.metrics, k) is None
        }
        window = Window(
            times.first_start_ns + offset_ns, times.last_end_ns + offset_ns, "request_json"
        )
        metrics = with_goodput(
            dataclasses.replace(result.metrics, **filled), times.rows, run.manifest.slo, window
        )
    elif result.status == "ok" and report.is_file() and result.metrics.total_latency_ms:
        end = report.stat().st_mtime_ns
        window = Window(end - round(result.metrics.total_latency_ms * 1e6), end, "report mtime")
        metrics = result.metrics
    else:
        return result, None
    placed = dataclasses.replace(
        result, metrics=metrics, window_start_ns=window.start_ns, window_end_ns=window.end_ns
    )
    return placed, window


# ----------------------------------------------------------------------------- one point


def run_task(run: Run, task: Task, sampler_factory) -> PointResult:
    """Run one task in its .partial folder; return its record (with folder-relative raw files)."""
    workdir = run.paths.points / (task.name + PARTIAL)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    p = task.point
    key: dict[str, Any] = {  # the point's identity, passed to each parser as keywords
        "isl": p.isl,
        "osl": p.osl,
        "requests": p.requests,
        "concurrency": p.concurrency,
        "repeat": task.repeat,
    }
    attempts: list[dict] = []
    result: PointResult | None = None
    backend = backends.get(run.manifest.engine.backend)
    window: Window | None = None
    for fraction in kv_fractions(run):
        argv, report, log = attempt_argv(run, task, fraction, workdir)
        offset_ns = monotonic_offset_ns()
        with sampler_factory(workdir / "telemetry.csv") as sampler:
            proc = run_logged(  # the tool's console goes to the log only; one line per point
                argv,
                log,
                timeout_s=run.manifest.runtime.point_timeout_s,
                echo=False,
                announce=False,
            )
        log_text = log.read_text(errors="replace")
        # a crash in teardown after the report still counts
        if backend.finished(report, log_text) and not proc.timed_out:
            result = backend.parse(report, log, **key)
            result, window = serving_fields(run, result, report, workdir, offset_ns)
            attempts.append(
                {
                    "kv_cache_fraction": fraction,
                    "outcome": "ok",
                    "exit_code": proc.exit_code,
                    "seconds": round(proc.seconds, 3),
                }
            )
            break
        kind, detail = backend.classify_failure(log_text, proc.exit_code, proc.timed_out)
        attempts.append(
            {
                "kv_cache_fraction": fraction,
                "outcome": kind,
                "detail": detail,
                "exit_code": proc.exit_code,
                "seconds": round(proc.seconds, 3),
                "argv": shlex.join(argv).replace(f"{task.name}{PARTIAL}/", f"{task.name}/"),
            }
        )
        if kind != "oom":
            break
    if result is None:
        last = attempts[-1]
        result = backend.failed_result(last["outcome"], last["detail"], **key)
    telemetry = window_telemetry(sampler, window, result)  # the last attempt's sampler
    raw = tuple(sorted(f"points/{task.name}/{f.name}" for f in workdir.iterdir()))
    return dataclasses.replace(
        judge(result), attempts=tuple(attempts), raw_files=raw, telemetry=telemetry
    )


@contextlib.contextmanager
def offline_session(run: Run, sampler_factory):
    with backends.get(run.manifest.engine.backend).point_session(run.paths.point_session_log):
        yield lambda task: run_task(run, task, sampler_factory)


def measurer(run: Run, arts: Artifacts, inputs: dict, sampler_factory, aiperf_bin: str):
    """What measures each point: the offline tool per point, or (scenario "online") the
    backend's server with AIPerf, started once and stopped on every way out (bench.stages.serve)."""
    if run.manifest.sweep.scenario != "online":
        return offline_session(run, sampler_factory)

    def record(files: list[Path]) -> None:
        arts.record("sweep", inputs, files, replace=False, stamp=False)

    return serve.session(run, sampler_factory, aiperf_bin, record)


def journal_path(run: Run, name: str) -> Path:
    """Where publish notes a point's files before the rename that makes the point visible."""
    return run.paths.root / ".stamps" / JOURNAL / f"{name}.json"


def folder_digests(folder: Path) -> dict[str, str]:
    return {f.name: sha256_file(f) for f in sorted(folder.iterdir()) if f.is_file()}


def publish(run: Run, arts: Artifacts, task: Task, result: PointResult) -> None:
    """Write the record, journal the folder's digests, make the point visible with one rename,
    then record its files and drop the journal entry.

    A kill between the rename and the record leaves a folder with no recorded file; resume
    adopts it only when its files match the journal, so a hand-written folder is never the
    sweep's own.
    """
    workdir = run.paths.points / (task.name + PARTIAL)
    final = run.paths.points / task.name
    atomic_write_json(
        workdir / (FAILURE if result.status == "failed" else RESULT), result.to_json()
    )
    journal = journal_path(run, task.name)
    prefix = f"run:points/{task.name}/"
    # A retried failure's folder, as recorded: a kill before the rename leaves it unrecorded.
    replaces = {
        k.removeprefix(prefix): e.sha256 for k, e in arts.files.items() if k.startswith(prefix)
    }
    entry = {"point": task.name, "files": folder_digests(workdir), "replaces": replaces}
    atomic_write_json(journal, entry)
    arts.forget(k for k in arts.files if k.startswith(prefix))
    if final.exists():
        shutil.rmtree(final)  # only ever a failure.json being retried: done points are skipped
    workdir.rename(final)
    arts.record(
        "sweep",
        arts.stages.get("sweep", {}).get("inputs", {}),
        sorted(final.iterdir()),
        replace=False,
        stamp=False,
    )
    journal.unlink()


# ----------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class Progress:
    """Where the sweep stands after a point: its index of N, its own and the total seconds."""

    index: int
    total: int
    point_s: float
    elapsed_s: float


def eta_s(progress: Progress, done_estimate_s: float, remaining_estimate_s: float) -> float:
    """Seconds left: the cost model's estimate for the remaining points, scaled by how this run
    has kept to the estimate so far (the model is for an H100; a CPU runs at its own pace)."""
    if progress.index >= progress.total:
        return 0.0
    if done_estimate_s <= 0:
        return remaining_estimate_s
    return remaining_estimate_s * progress.elapsed_s / done_estimate_s


def progress_line(
    name: str, result: PointResult, progress: Progress, eta: float, logs: str = ""
) -> str:
    """The one console line a finished point gets: id, i/N, result or failure (and where its
    logs are), its seconds, the sweep's elapsed time and ETA."""
    if result.status == "ok" and result.metrics.output_tok_s is not None:
        outcome = f"ok {result.metrics.output_tok_s:.1f} output tok/s"
    else:
        detail = f": {result.failure_detail}" if result.failure_detail else ""
        outcome = f"{result.status.upper()} {result.failure or ''}{detail}".rstrip()
        outcome += f" (logs: {logs})" if logs else ""
    tries = len(result.attempts)
    if tries > 1:
        outcome += f" (after {tries} tries)"
    return (
        f"[sweep] {progress.index}/{progress.total} {name}: {outcome} in {progress.point_s:.1f} s"
        f" | elapsed {cost.hms(progress.elapsed_s)}, ETA {cost.hms(eta)}"
    )


# ----------------------------------------------------------------------------- the sweep


def journaled_files(run: Run, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """The digests publish noted for a point before its rename (the new folder's, and the
    recorded folder it replaces, if any), or None if it noted none."""
    try:
        entry = json.loads(journal_path(run, name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("point") != name:
        return None
    files, replaces = entry.get("files"), entry.get("replaces") or {}
    if not isinstance(files, dict) or not isinstance(replaces, dict):
        return None
    return files, replaces


def tampered_point_files(run: Run, arts: Artifacts, folder: Path) -> list[Problem]:
    """What keeps a point folder from being recorded: a recorded file changed or gone, an
    unrecorded file beside recorded ones, or an unrecorded folder the sweep never journaled
    (or whose files differ from its journal): the sweep records a point's files all at once."""
    prefix = f"run:points/{folder.name}/"
    recorded = sorted(k for k in arts.files if k.startswith(prefix))
    if folder.is_symlink():
        return [Problem(prefix.rstrip("/"), "symlink", f"a folder linked to {os.readlink(folder)}")]
    if not recorded:
        journaled = journaled_files(run, folder.name)
        if journaled is None:
            return [Problem(prefix.rstrip("/"), "unrecorded", "never published by the sweep")]
        found = folder_digests(folder)
        nested = [p for p in folder.rglob("*") if p.is_file() and p.parent != folder]
        published, replaced = journaled
        if replaced and found == replaced and not nested:
            return []  # killed before the rename: the retried folder, as it was recorded
        return [
            Problem(f"{prefix}{name}", "unexpected", "differs from the sweep's journal")
            for name in sorted(set(found) | set(published))
            if found.get(name) != published.get(name)
        ] + [Problem(arts.key(p), "unexpected", "not written by the sweep") for p in nested]
    problems = arts.check(recorded)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if arts.key(path) not in arts.files:
            problems.append(Problem(arts.key(path), "unexpected", "not written by the sweep"))
    return problems


def clean_interrupted(run: Run, arts: Artifacts) -> None:
    """Clean up after a kill: drop partial folders, adopt points renamed but not recorded.

    Recorded means verified: a folder whose recorded files changed, or an unrecorded folder
    that does not match the sweep's journal, stops the sweep, naming the file, instead of
    having its bytes hashed into artifacts.json as the sweep's own.
    """
    for partial in run.paths.points.glob(f"*{PARTIAL}"):
        print(f"[sweep] discarding interrupted point {partial.name}", file=sys.stderr)
        shutil.rmtree(partial)
    for folder in sorted(run.paths.points.glob("*")):
        if problems := tampered_point_files(run, arts, folder):
            raise KitError(
                "a point's files differ from their record or the sweep's journal: "
                + "; ".join(f"{p.key} {p.kind} ({p.detail})" for p in problems),
                path=str(folder),
                fix=f"restore the file(s), or remove {folder} to measure the point again",
            )
        files = sorted(folder.iterdir())
        if any(arts.key(f) not in arts.files for f in files):
            arts.record(
                "sweep",
                arts.stages.get("sweep", {}).get("inputs", {}),
                files,
                replace=False,
                stamp=False,
            )
    for stale in sorted((run.paths.root / ".stamps" / JOURNAL).glob("*.json")):
        stale.unlink()  # its point is recorded now, or its kill came before the rename


def check_points_folder(run: Run) -> None:
    """points/ holds only this manifest's point folders (finished or .partial): a stray file,
    link or folder would be swept up by resume and recorded as if measured, so it stops here."""
    if not run.paths.points.is_dir():
        return
    names = {t.name for t in tasks_of(run)}
    names |= {name + PARTIAL for name in names}
    stray = sorted(
        e.name + ("/" if e.is_dir() else "")
        for e in run.paths.points.iterdir()
        if e.name not in names or e.is_symlink() or not e.is_dir()
    )
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        raise KitError(
            f"not a point of this manifest: {shown}",
            path=str(run.paths.points),
            fix="move it out of the run (the sweep writes only point folders there), then rerun",
        )


def shard_details(shard: tuple[int, int] | None, tasks: list[Task]) -> dict:
    """What verify holds the run to: every point of the manifest, or this shard's points."""
    if shard is None:
        return {}
    return {"shard": f"{shard[0]}/{shard[1]}", "shard_points": [t.name for t in tasks]}


def sweep_command(run: Run) -> list[list[str]]:
    """Every command the sweep runs (each point, each KV cache fraction; online: the server and
    AIPerf per point), in its final folder: the stage key's command, the same for every shard."""
    if run.manifest.sweep.scenario == "online":
        server, clients = serve.plan_commands(run, tasks_of(run))
        return [[f"{k}={v}" for k, v in sorted(server.env.items())] + server.argv, *clients]
    return [
        attempt_argv(run, task, fraction, run.paths.points / task.name)[0]
        for task in tasks_of(run)
        for fraction in kv_fractions(run)
    ]


def sweep_tools(run: Run, aiperf_bin: str) -> dict[str, str | None]:
    """The installed versions of what measures: the backend's provenance packages, and for the
    online scenario AIPerf (its own venv: asked through its command)."""
    packages = backends.get(run.manifest.engine.backend).provenance_packages
    tools = rule.tool_versions(*(dist for dists in packages.values() for dist in dists))
    if run.manifest.sweep.scenario == "online":
        tools["aiperf"] = aiperf.installed_version(aiperf_bin)
    return tools


def sweep(
    run: Run, shard: tuple[int, int] | None, sampler_factory, aiperf_bin: str = "aiperf"
) -> int:
    arts = Artifacts(run.paths)
    if not run.paths.stamp("datasets").exists():
        raise KitError(
            "datasets are missing",
            path=str(run.paths.datasets),
            fix=f"run `make datasets MANIFEST={run.manifest_path}` first",
        )
    check_points_folder(run)
    run.paths.points.mkdir(parents=True, exist_ok=True)
    if (yaml_text := extra_options_yaml(run.manifest)) is not None:
        atomic_write_text(extra_options_path(run), yaml_text)
    inputs = arts.input_digests(
        [run.paths.resolved_manifest, *sorted(run.paths.datasets.glob("*.jsonl"))]
    )
    key = rule.StageKey("sweep", VERSION, sweep_command(run), inputs, sweep_tools(run, aiperf_bin))
    previous = arts.stages.get("sweep")
    if (
        previous
        and any(k.startswith("run:points/") for k in arts.files)
        and (changed := rule.differences(previous, key))
    ):
        raise KitError(
            "what measures the points changed since this run's points were measured ("
            + "; ".join(changed[:4])
            + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
            + ")",
            path=str(run.paths.root),
            fix="start a new run with RUN=<new name>",
        )
    estimate = cost.Estimator(run.manifest)
    tasks = tasks_of(run)
    if shard is not None:
        tasks = cost.shard_tasks(tasks, *shard, estimate)
    every_point_done = all((run.paths.points / t.name / RESULT).exists() for t in tasks)
    same_shard = (previous or {}).get("details") == shard_details(shard, tasks)
    if every_point_done and same_shard and rule.skip_if_current(arts, key, "every point"):
        return 0
    rule.record(
        arts,
        key,
        [p for p in [extra_options_path(run)] if p.exists()],
        shard_details(shard, tasks),
        replace=False,
        stamp=False,
    )
    clean_interrupted(run, arts)

    todo = [t for t in tasks if not (run.paths.points / t.name / RESULT).exists()]
    skipped = len(tasks) - len(todo)
    if skipped:
        print(f"[sweep] {skipped} of {len(tasks)} points already done; skipped", file=sys.stderr)
    remaining = sum(estimate.sweep_seconds(t.point) for t in todo)
    print(
        f"[sweep] {len(todo)} points to run; each point's tool console goes to its log, "
        f"{run.paths.points}/<point>/console.log",
        file=sys.stderr,
    )
    started, done_estimate = time.monotonic(), 0.0
    stack = contextlib.ExitStack()
    try:
        if todo:  # nothing to measure: no server is started
            measure = stack.enter_context(measurer(run, arts, inputs, sampler_factory, aiperf_bin))
        for i, task in enumerate(todo, 1):
            point_started = time.monotonic()
            result = measure(task)
            publish(run, arts, task, result)
            remaining -= estimate.sweep_seconds(task.point)
            done_estimate += estimate.sweep_seconds(task.point)
            now = time.monotonic()
            progress = Progress(i, len(todo), now - point_started, now - started)
            print(
                progress_line(
                    task.name,
                    result,
                    progress,
                    eta_s(progress, done_estimate, remaining),
                    logs=f"{run.paths.points / task.name}/",
                ),
                file=sys.stderr,
                flush=True,
            )
            write_summary(run.paths.summary, load_records(run.paths.points))
            arts.record(
                "sweep",
                inputs,
                [run.paths.summary, run.paths.summary_json],
                replace=False,
                stamp=False,
            )
    except KeyboardInterrupt:
        resume = f"make sweep MANIFEST={run.manifest_path} RUN={run.paths.name}"
        print(
            f"[sweep] interrupted; finished points are kept. Resume with: {resume}", file=sys.stderr
        )
        raise
    finally:
        stack.close()
    write_summary(run.paths.summary, load_records(run.paths.points))
    arts.record(
        "sweep", inputs, [run.paths.summary, run.paths.summary_json], replace=False, stamp=True
    )
    failed = [r for r in load_records(run.paths.points) if r.status != "ok"]
    print(
        f"[sweep] done: {len(tasks) - len(failed)} ok, {len(failed)} failed or invalid",
        file=sys.stderr,
    )
    return 0


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise KitError(
            f"SHARD={text!r} is not i/N", fix="e.g. SHARD=1/3 (shards count from 1)"
        ) from None
    if not 1 <= i <= n:
        raise KitError(f"SHARD={text!r}: i must be between 1 and N", fix="e.g. SHARD=1/3")
    return i, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.sweep", description=__doc__.splitlines()[0])
    add_run_args(parser)
    parser.add_argument("--shard", help="run only shard i of N (i/N), balanced by estimated cost")
    parser.add_argument("--aiperf", default="aiperf", help="AIPerf (scenario online)")
    args = parser.parse_args(argv)

    def stage() -> int:
        from bench.gpu.telemetry import PointSamplers, watched_gpus

        run = open_run(args.manifest, args.run)
        interval = run.manifest.runtime.telemetry_interval_s
        engine = run.manifest.engine
        gpus = watched_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), engine.tp_size * engine.pp_size)
        return sweep(
            run,
            parse_shard(args.shard),
            lambda path: PointSamplers(path, interval, gpus),
            args.aiperf,
        )

    return run_main(locked(args.run or args.manifest.stem, "sweep", stage), "bench.stages.sweep")


if __name__ == "__main__":
    raise SystemExit(main())

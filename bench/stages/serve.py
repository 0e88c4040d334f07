"""The online scenario of `make sweep`: a real OpenAI-compatible server, measured by AIPerf.

Reads:  the run's manifest ([sweep] scenario = "online"), the checkpoint or engine
Writes: results/<run>/points/<point>/ as the offline sweep does (result.json | failure.json,
        telemetry.csv), plus AIPerf's exports (profile_export_aiperf.json/.csv,
        profile_export.jsonl, phase_manifest.json, inputs.json, aiperf.log, console.log),
        requests.csv and the server's log lines of that point (server.log);
        work/<run>/served-model/ (hf-transformers: the model as served, see bench.backends.server);
        the files the backend's server reads (Serving.config_files: trtllm-serve's YAML)
Usage:  make sweep MANIFEST=manifests/demo-online.toml   (python -m bench.stages.sweep ... --aiperf
        .venv-aiperf/bin/aiperf)

bench.stages.sweep runs the points (resume, publish, journal, lock, shards) and asks this module
for a `session`: the server starts once (its own session, killed with the kit by the parent-death
signal), answers /health, serves every point, and is stopped on every way out: the last point,
an error, Ctrl-C or SIGTERM (turned into KeyboardInterrupt), a point timeout (restarted for the
next point). A SIGKILL of the kit takes it down through the parent-death signal.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import backends
from bench.analysis import latency
from bench.backends import aiperf, server
from bench.backends.server import ServerCommand, Serving
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_text
from bench.core.manifest import Slo
from bench.core.proc import guarded_argv, run_logged, stop_group
from bench.core.run import Run
from bench.schema.record import FailureKind, Identity, PointResult
from bench.stages.window import Window, window_telemetry, with_goodput

SERVER_GRACE_S = 10.0
CONSOLE_LOG = "console.log"  # AIPerf's console: the name every point's tool console has
HEALTH_POLL_S = 0.25  # the longest pause between two /health polls
HEALTH_FIRST_POLL_S = 0.02  # the shortest, at the start (see health_pause)
# AIPerf's files kept in the point folder (flat: the sweep records a point's files one level deep)
KEPT = {
    aiperf.AGGREGATE: aiperf.AGGREGATE,
    "profile_export_aiperf.csv": "profile_export_aiperf.csv",
    aiperf.PER_REQUEST: aiperf.PER_REQUEST,
    aiperf.PHASES: aiperf.PHASES,
    "inputs.json": "inputs.json",
    "logs/aiperf.log": "aiperf.log",
}


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def serving_for(run: Run, prepare: bool = True) -> Serving:
    """The backend's server for the online points. prepare=False: write nothing (`make plan`)."""
    return backends.get(run.manifest.engine.backend).serving(run, prepare=prepare)


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((server.LOOPBACK, 0))
        return int(s.getsockname()[1])


def health_pause(waited_s: float) -> float:
    """The pause before the next /health poll: a tenth of the wait so far, within
    [HEALTH_FIRST_POLL_S, HEALTH_POLL_S] (a server up in 0.3 s is used by ~0.33 s)."""
    return min(HEALTH_POLL_S, max(HEALTH_FIRST_POLL_S, waited_s / 10))


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # the loopback only
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Server:
    """One server process at a time: started on demand, its log kept, stopped for sure."""

    def __init__(
        self, make_command: Callable[[int], ServerCommand], log_path: Path, start_timeout_s: float
    ) -> None:
        self.make_command = make_command
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: ServerCommand | None = None
        self._log_offset = 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def ensure_up(self) -> ServerCommand:
        """The running server's command, starting one (and waiting for /health) if none runs."""
        if self.alive() and self.command is not None:
            return self.command
        self.stop()
        command = self.make_command(free_port())
        print("+ " + shlex.join(command.argv), file=sys.stderr, flush=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                guarded_argv(command.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **command.env},
                start_new_session=True,
            )
        self.command = command
        started = time.monotonic()
        deadline = started + self.start_timeout_s
        while not _healthy(command.health_url):
            if not self.alive():
                code = self.proc.returncode
                self.stop()
                raise KitError(
                    f"the server exited ({code}) before answering {command.health_path}: "
                    f"{self.log_tail()}",
                    path=str(self.log_path),
                    fix="read the server log; for hf-transformers: make the serving extras "
                    "(`make sweep` installs requirements/serve.lock)",
                )
            if time.monotonic() > deadline:
                self.stop()
                raise KitError(
                    f"the server did not answer {command.health_url} within "
                    f"{self.start_timeout_s:g} s: {self.log_tail()}",
                    path=str(self.log_path),
                    fix="read the server log; raise runtime.point_timeout_s if it loads slowly",
                )
            time.sleep(health_pause(time.monotonic() - started))
        print(f"[serve] server up at {command.base_url} (pid {self.proc.pid})", file=sys.stderr)
        return command

    def take_log(self) -> bytes:
        """The server's output since the last call (each point keeps its own share)."""
        if not self.log_path.exists():
            return b""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            data = log.read()
        self._log_offset += len(data)
        return data

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                print(f"[serve] stopping the server (pid {self.proc.pid})", file=sys.stderr)
            stop_group(self.proc, SERVER_GRACE_S)
            self.proc = None
        self.command = None


def identity_of(run: Run, serving: Serving) -> Identity:
    """What served the point, from the manifest and the installed server (an HTTP server does
    not print its own identity as trtllm-bench's report does)."""
    m = run.manifest
    return Identity(
        model=m.model.repo,
        backend=m.engine.backend,
        engine_version=serving.engine_version,
        tp_size=m.engine.tp_size,
        pp_size=m.engine.pp_size,
        dtype=serving.dtype or m.engine.dtype,
        kv_cache_dtype=serving.dtype or m.quantization.kv_cache_dtype,
        quantization=m.quantization.format.upper() if m.quantization.method != "none" else None,
        max_seq_len=m.engine.max_seq_len,
        max_batch_size=m.engine.max_batch_size,
        max_num_tokens=m.engine.max_num_tokens,
    )


def aiperf_env(scratch: Path) -> dict[str, str]:
    """AIPerf's environment: offline Hub flags removed (0.13.0 then cannot load a local
    tokenizer folder), its per-run mmap folder and temp files in the point's scratch folder."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update({"AIPERF_DATASET_MMAP_BASE_PATH": str(scratch), "TMPDIR": str(scratch)})
    return env


def point_argv(
    run: Run, task, command: ServerCommand, serving: Serving, aiperf_bin: str, artifact_dir: Path
) -> list[str]:
    p, m = task.point, run.manifest
    return aiperf.profile_argv(
        aiperf_bin,
        model_name=command.model_name,
        base_url=command.base_url,
        endpoint_type=serving.endpoint,
        tokenizer=serving.tokenizer,
        isl=p.isl,
        osl=p.osl,
        requests=p.requests,
        concurrency=p.concurrency or p.requests,  # None: every request at once
        warmup=m.runtime.warmup,
        seed=m.sweep.seed + task.repeat,
        artifact_dir=artifact_dir,
        extra_inputs=serving.fixed_length_inputs(p.osl),
    )


PLAN_PORT = 8000  # the plan shows one; the run takes a free loopback port


def plan_commands(run: Run, tasks: list) -> tuple[ServerCommand, list[list[str]]]:
    """An online sweep's commands: the server (on PLAN_PORT; the run takes a free port), and
    AIPerf per point. `make plan` prints them; the sweep keys its stage on them."""
    serving = serving_for(run, prepare=False)
    command = serving.command(PLAN_PORT)
    scratch = Path("<scratch>")
    return command, [
        point_argv(run, t, command, serving, "aiperf", scratch / t.name / "artifacts")
        for t in tasks
    ]


def failed(key: dict, kind: FailureKind, detail: str) -> PointResult:
    return PointResult.failed(
        kind, detail, source=aiperf.SOURCE, scenario="online", streaming=True, **key
    )


def profiling_fields(
    result: PointResult, rows: list[latency.RequestRow], slo: Slo | None
) -> tuple[PointResult, Window | None]:
    """AIPerf's profiling window (phase_manifest.json, already on the record) and goodput over
    it under the SLO, from the point's request rows as the offline sweep computes it."""
    if result.window_start_ns is None or result.window_end_ns is None:
        return result, None
    window = Window(result.window_start_ns, result.window_end_ns, aiperf.PHASES)
    metrics = with_goodput(result.metrics, rows, slo, window)
    return dataclasses.replace(result, metrics=metrics), window


def measure(
    run: Run,
    task,
    srv: Server,
    serving: Serving,
    sampler_factory,
    aiperf_bin: str,
    scratch_root: Path,
) -> PointResult:
    """One point: AIPerf against the server (started here if none runs, inside the point's
    telemetry: a start-up is its load phase), exports kept, the record judged, goodput and energy
    over AIPerf's profiling window as the offline sweep computes them (bench.stages.window)."""
    from bench.stages.sweep import PARTIAL

    p, m = task.point, run.manifest
    workdir = run.paths.points / (task.name + PARTIAL)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    scratch = scratch_root / task.name
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    key = {
        "isl": p.isl,
        "osl": p.osl,
        "requests": p.requests,
        "concurrency": p.concurrency,
        "repeat": task.repeat,
    }
    with sampler_factory(workdir / "telemetry.csv") as sampler:
        command = srv.ensure_up()
        argv = point_argv(run, task, command, serving, aiperf_bin, scratch / "artifacts")
        proc = run_logged(  # AIPerf's console goes to the log only; one line per point
            argv,
            workdir / CONSOLE_LOG,
            timeout_s=m.runtime.point_timeout_s,
            env=aiperf_env(scratch),
            echo=False,
            announce=False,
        )
    for source, name in KEPT.items():
        if (scratch / "artifacts" / source).is_file():
            shutil.copyfile(scratch / "artifacts" / source, workdir / name)
    shutil.rmtree(scratch, ignore_errors=True)
    server_down = not srv.alive()
    server_tail = srv.log_tail() if server_down else ""
    if proc.timed_out:
        srv.stop()  # requests may still run there: the next point gets a fresh server
    (workdir / "server.log").write_bytes(srv.take_log())
    attempt: dict[str, Any] = {
        "outcome": "ok",
        "exit_code": proc.exit_code,
        "seconds": round(proc.seconds, 3),
        "argv": shlex.join(argv).replace(str(scratch), "<scratch>"),
        "server_argv": shlex.join(command.argv),
    }
    window: Window | None = None
    if proc.timed_out:
        result = failed(key, "timeout", f"AIPerf ran past {m.runtime.point_timeout_s} s")
    elif server_down:
        result = failed(key, "crash", f"the server exited during the point: {server_tail}")
    elif proc.exit_code != 0 or not (workdir / aiperf.AGGREGATE).is_file():
        log = (workdir / CONSOLE_LOG).read_text(errors="replace").strip().splitlines()
        result = failed(
            key, "crash", f"AIPerf exited {proc.exit_code}: {log[-1] if log else 'no output'}"
        )
    else:
        try:
            result, rows = aiperf.parse_exports(
                workdir,
                **key,
                identity=identity_of(run, serving),
                gpus=m.engine.tp_size * m.engine.pp_size,
            )
        except KitError as err:  # this point's exports are unusable: the point fails, not the sweep
            result = failed(key, "crash", f"AIPerf's exports cannot be read: {err.render()}")
        else:
            latency.write_requests(workdir / latency.REQUESTS_CSV, rows)
            result, window = profiling_fields(result, rows, m.slo)
    if result.status == "failed":
        attempt.update(outcome=result.failure, detail=result.failure_detail)
    raw = tuple(sorted(f"points/{task.name}/{f.name}" for f in workdir.iterdir()))
    telemetry = window_telemetry(sampler, window, result)
    return dataclasses.replace(result, attempts=(attempt,), raw_files=raw, telemetry=telemetry)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def session(
    run: Run, sampler_factory, aiperf_bin: str, record: Callable[[list[Path]], None]
) -> Iterator[Callable[[Any], PointResult]]:
    """Prepare the backend's server, yield the function that measures one point, and stop the
    server whatever happens (SIGTERM included). The sweep has found AIPerf already (its version
    is in the stage key: aiperf.installed_version)."""
    serving = serving_for(run)
    for path, text in serving.config_files.items():
        atomic_write_text(path, text)
    record([*serving.prepared, *serving.config_files])
    previous = signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="trtllm-repro-serve-") as tmp:
        srv = Server(
            serving.command, Path(tmp) / "server.log", run.manifest.runtime.point_timeout_s
        )
        try:
            yield lambda task: measure(
                run, task, srv, serving, sampler_factory, aiperf_bin, Path(tmp)
            )
        finally:
            srv.stop()
            signal.signal(signal.SIGTERM, previous)

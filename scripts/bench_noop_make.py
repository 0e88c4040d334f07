"""Benchmark: a no-op `make all` on a finished full-size run, and `make verify`'s hashing rate.

Usage: PYTHONPATH=. python scripts/bench_noop_make.py [--model-gib 16] [--python .venv/bin/python]
       (make bench [BENCH_MODEL_GIB=16])

Runs the CPU demo pipeline into a scratch folder under WORK_DIR, adds a model-sized file of real
(non-sparse, non-repeating) bytes to its recorded outputs (the stage that records it hashes it
once), then times `make all` with nothing to do (target: under 2 s; every stage and doctor are
asked and answer "current" from the stage rule and the stat-keyed hash cache) and `make verify`,
which re-reads every byte (target: at least 1.5 GB/s per core; sha256 runs on one core). Free disk
is checked first (the size plus 4 GiB); a smaller size is a flag. The scratch folder is removed at
the end, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parents[1]
RUN = "bench-noop"
GIB = 1 << 30
BLOCK = 64 << 20
NOOP_TARGET_S = 2.0
VERIFY_TARGET_GBS = 1.5


def env_for(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    for name in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        env[name] = str(scratch / name.split("_")[0].lower())
    env["CACHE_DIR"] = str(scratch / "work" / ".cache")
    return env


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make(scratch: Path, python: str, *goals: str) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one make call (the CPU seconds its processes took: children_cpu_s)."""
    argv = ["make", "--no-print-directory", "-C", str(KIT), *goals, f"PYTHON={python}"]
    argv += ["ENV_READY=", "MANIFEST=manifests/demo.toml", f"RUN={RUN}"]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env_for(scratch), capture_output=True, text=True)
    return time.perf_counter() - start, done


def verify_hashing(scratch: Path) -> tuple[int, float, float]:
    """What verify's file check reads, in this process: (bytes, wall s, CPU s of this process)."""
    from bench.core.artifacts import Artifacts
    from bench.core.run import RunPaths

    arts = Artifacts(RunPaths.for_run(RUN), trust_stat=False)
    keys = sorted(arts.files)
    wall, cpu = time.perf_counter(), time.process_time()
    problems = arts.check(keys)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if problems:
        raise SystemExit(f"verify's check found problems: {problems[:3]}")
    return sum(arts.files[k].size for k in keys), wall, cpu


def write_model_file(path: Path, size: int) -> None:
    """Real bytes: a random block, each copy stamped with its index (no two blocks alike)."""
    block = bytearray(os.urandom(BLOCK))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for i in range(0, size, BLOCK):
            block[:8] = i.to_bytes(8, "little")
            f.write(block[: min(BLOCK, size - i)])
        f.flush()
        os.fsync(f.fileno())


def add_to_build(scratch: Path, big: Path) -> float:
    """Record the file as an output of the build stage, as a built engine is; returns the
    seconds recording took (the one time its bytes are hashed before `make verify`)."""
    os.environ.update({k: v for k, v in env_for(scratch).items() if k.endswith("_DIR")})
    from bench.core.artifacts import Artifacts
    from bench.core.run import RunPaths

    arts = Artifacts(RunPaths.for_run(RUN))
    os.utime(big, ns=(time.time_ns() - 10**10,) * 2)  # written 10 s ago: past the racy window
    start = time.perf_counter()
    arts.record("build", arts.stages["build"]["inputs"], [big], replace=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-gib", type=float, default=16.0, help="model file size, GiB")
    parser.add_argument("--python", default=sys.executable, help="the kit's interpreter")
    parser.add_argument("--repeats", type=int, default=5, help="no-op `make all` runs timed")
    args = parser.parse_args()
    if not 0 < args.model_gib <= 1024:
        print(f"--model-gib {args.model_gib}: must be in (0, 1024]", file=sys.stderr)
        return 2
    size = int(args.model_gib * GIB)
    work = Path(os.environ.get("WORK_DIR", "work"))
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < size + 4 * GIB:
        print(
            f"{work}: {free / GIB:.1f} GiB free, the benchmark needs {args.model_gib + 4:g}; "
            "fix: BENCH_MODEL_GIB=<smaller> (e.g. 4)",
            file=sys.stderr,
        )
        return 2
    scratch = (work / ".bench-noop").resolve()
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        print(f"[bench] demo pipeline into {scratch} (a few minutes)", file=sys.stderr)
        seconds, first = make(scratch, args.python, "all")
        if first.returncode != 0:
            print(first.stdout[-2000:] + first.stderr[-3000:], file=sys.stderr)
            return 1
        big = scratch / "work" / RUN / "engine" / "rank0.engine"
        start = time.perf_counter()
        write_model_file(big, size)
        written_s = time.perf_counter() - start
        recorded_s = add_to_build(scratch, big)
        make(scratch, args.python, "all")  # the stamp the record rewrote: stages answer once
        noop, noop_cpu = [], []
        for _ in range(args.repeats):
            cpu = children_cpu_s()
            seconds, done = make(scratch, args.python, "all")
            if done.returncode != 0 or "current: skipped" not in done.stderr:
                print(done.stdout[-2000:] + done.stderr[-3000:], file=sys.stderr)
                return 1
            noop.append(seconds)
            noop_cpu.append(children_cpu_s() - cpu)
        verify_s, verified = make(scratch, args.python, "verify")
        if verified.returncode != 0:
            print(verified.stdout[-2000:] + verified.stderr[-3000:], file=sys.stderr)
            return 1
        total, hash_wall, hash_cpu = verify_hashing(scratch)
        per_core = total / hash_cpu / 1e9
        load = os.getloadavg()[0]
        median = statistics.median(noop)
        print(f"finished demo run plus a {args.model_gib:g} GiB file, load average {load:.1f}:")
        print(f"  write {size / written_s / 1e9:.2f} GB/s; record (hash once) {recorded_s:.1f} s")
        print(
            f"  no-op `make all`: median {median:.2f} s wall, best {min(noop):.2f} s of "
            f"{len(noop)}; CPU {statistics.median(noop_cpu):.2f} s "
            f"(target < {NOOP_TARGET_S:g} s: {'met' if median < NOOP_TARGET_S else 'NOT met'})"
        )
        print(f"  `make verify`: {verify_s:.1f} s wall, every byte re-read")
        print(
            f"  verify's file check: {total / 1e9:.2f} GB in {hash_wall:.1f} s wall, "
            f"{hash_cpu:.1f} s CPU = {per_core:.2f} GB/s per core (target >= "
            f"{VERIFY_TARGET_GBS:g}: {'met' if per_core >= VERIFY_TARGET_GBS else 'NOT met'})"
        )
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

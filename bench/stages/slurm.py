"""`make slurm`: a sweep as a Slurm array of shards plus one dependent merge + report + verify job.

Usage: python -m bench.stages.slurm submit --manifest M --shards N [--run R] [--partition P]
[--time T]
           [--gpus-per-task G] [--cpus-per-task C] [--container pyxis|apptainer|none]
           [--image IMAGE] [--python PY] [--reference REF]
       python -m bench.stages.slurm finish --run R --shards N [--reference REF]   (the dependent
       job)
Writes: WORK_DIR/.slurm/<run>/shards.sbatch, finish.sbatch (exactly what was submitted) and every
        job's log beside them: shard-<i>-job<id>.out, finish-job<id>.out.

Task i of the array runs `make sweep SHARD=i/N RUN=<run>-shard<i>of<N>`; the finish job waits for
all of them (afterok) and is cancelled by Slurm when one fails (--kill-on-invalid-dep=yes), so a
failed shard ends the chain instead of leaving it pending forever. Submitting the same command
again resumes: finished points and stages are skipped, and a merged run that is already the merge
of the current shards is kept. The job scripts are generated here as text from argv lists, so
tests check the exact srun lines without a cluster. Resources are sbatch options chosen by Make
variables; the scripts carry no #SBATCH lines that could disagree with them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.core.errors import KitError, run_main
from bench.core.fileio import atomic_write_text, read_json
from bench.core.manifest import load_manifest
from bench.core.run import RunPaths

KIT_ROOT = Path(__file__).resolve().parents[2]
WORKDIR_IN_IMAGE = "/workspace/trtllm-repro"  # the Dockerfile's WORKDIR
DATA_IN_IMAGE = "/data"
# Make variable -> the submit option it sets (bad input is named by the variable the user typed).
VARIABLES = {
    "manifest": "MANIFEST",
    "shards": "SHARDS",
    "run": "RUN",
    "partition": "PARTITION",
    "time": "TIME",
    "gpus_per_task": "GPUS_PER_TASK",
    "cpus_per_task": "CPUS_PER_TASK",
    "container": "CONTAINER",
    "image": "SLURM_IMAGE",
    "python": "PYTHON",
    "reference": "REFERENCE",
}
# Slurm's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
TIME_PATTERN = r"^(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2})$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
PARTITIONS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._,-]*$"  # one partition or a comma list


class Dirs(BaseModel):
    """The kit's roots, absolute, as the node must see them (a shared filesystem)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    results: Path
    work: Path
    models: Path
    reports: Path
    cache: Path | None  # None: the stage cache is off (CACHE_DIR=)

    @classmethod
    def from_env(cls, env: dict[str, str], base: Path) -> Dirs:
        """The same defaults as the Makefile's, made absolute against the checkout."""

        def root(name: str, default: str) -> Path:
            return base / env.get(name, default)

        work = root("WORK_DIR", "work")
        cache = env.get("CACHE_DIR", str(work / ".cache"))
        return cls(
            results=root("RESULTS_DIR", "results"),
            work=work,
            models=root("MODELS_DIR", "models"),
            reports=root("REPORTS_DIR", "reports"),
            cache=base / cache if cache else None,
        )


class SlurmSweep(BaseModel):
    """One `make slurm` request, validated before anything is submitted."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    manifest: Path
    shards: int = Field(ge=1, le=1000)
    run: str = Field(pattern=NAME_PATTERN)
    partition: str | None = Field(default=None, pattern=PARTITIONS_PATTERN)
    time: str = Field(default="24:00:00", pattern=TIME_PATTERN)
    gpus_per_task: int = Field(default=1, ge=0)
    cpus_per_task: int = Field(default=16, ge=1)
    container: Literal["pyxis", "apptainer", "none"] = "pyxis"
    image: str | None = None
    python: str = "python3"
    reference: Path | None = None
    repo: Path = KIT_ROOT
    dirs: Dirs

    @property
    def job_name(self) -> str:
        return f"trtllm-{self.run}"

    @property
    def log_dir(self) -> Path:
        """Outside every folder a run records (verify would count the logs as unexpected files)."""
        return self.dirs.work / ".slurm" / self.run

    @property
    def image_ref(self) -> str:
        suffix = ".sqsh" if self.container == "pyxis" else ".sif"
        return self.image or str(self.repo / f"trtllm-repro{suffix}")


def shard_run(run: str, index: str | int, shards: int) -> str:
    """The shard's run name, as `make sweep SHARD=i/N` names it."""
    return f"{run}-shard{index}of{shards}"


# ----------------------------------------------------------------------------- job scripts


class Shell(str):
    """A word written into the script as is (it expands a variable); every other word is quoted."""


def shell_line(words: Sequence[str]) -> str:
    return " ".join(w if isinstance(w, Shell) else shlex.quote(w) for w in words)


def in_container(sweep: SlurmSweep, path: Path) -> str:
    """A manifest or reference path as the task sees it: manifests/ is mounted at the workdir."""
    if sweep.container == "none":
        return str(path)
    return str(path.relative_to(sweep.repo))


def kit_settings(sweep: SlurmSweep) -> dict[str, str]:
    """Where the task's kit reads and writes: host paths, or the container's mount points."""
    d = sweep.dirs
    if sweep.container == "none":
        dirs = {"RESULTS_DIR": d.results, "WORK_DIR": d.work, "MODELS_DIR": d.models}
        dirs |= {"REPORTS_DIR": d.reports}
        cache = "" if d.cache is None else str(d.cache)
        return {k: str(v) for k, v in dirs.items()} | {"CACHE_DIR": cache}
    cache = "" if d.cache is None else f"{DATA_IN_IMAGE}/cache"
    return {
        "RESULTS_DIR": f"{DATA_IN_IMAGE}/results",
        "WORK_DIR": f"{DATA_IN_IMAGE}/work",
        "MODELS_DIR": f"{DATA_IN_IMAGE}/models",
        "REPORTS_DIR": f"{DATA_IN_IMAGE}/reports",
        "CACHE_DIR": cache,
    }


def mounts(sweep: SlurmSweep) -> str:
    """host:container pairs for the container modes (the same roots the tasks' kit is told)."""
    d = sweep.dirs
    pairs = [
        (d.results, "results"),
        (d.work, "work"),
        (d.models, "models"),
        (d.reports, "reports"),
    ]
    if d.cache is not None:
        pairs.append((d.cache, "cache"))
    out = [f"{host}:{DATA_IN_IMAGE}/{name}" for host, name in pairs]
    out.append(f"{sweep.repo / 'manifests'}:{WORKDIR_IN_IMAGE}/manifests:ro")
    return ",".join(out)


def srun_prefix(sweep: SlurmSweep) -> list[str]:
    """srun, and for the container modes the runtime that wraps the kit's command."""
    if sweep.container == "none":
        return ["srun", "--ntasks=1"]
    if sweep.container == "pyxis":
        return [
            "srun",
            "--ntasks=1",
            f"--container-image={sweep.image_ref}",
            f"--container-workdir={WORKDIR_IN_IMAGE}",
            f"--container-mounts={mounts(sweep)}",
        ]
    gpus = ["--nv"] if sweep.gpus_per_task else []
    return [
        "srun",
        "--ntasks=1",
        "apptainer",
        "exec",
        *gpus,
        "--pwd",
        WORKDIR_IN_IMAGE,
        "--bind",
        mounts(sweep),
        sweep.image_ref,
    ]


def interpreter(sweep: SlurmSweep) -> str:
    """The image's python3 in a container; the kit's own interpreter on the host."""
    return sweep.python if sweep.container == "none" else "python3"


def kit_dir(sweep: SlurmSweep) -> str:
    return str(sweep.repo) if sweep.container == "none" else WORKDIR_IN_IMAGE


def shard_command(sweep: SlurmSweep) -> list[str]:
    """The srun line of array task $i: `make sweep` for shard i/N (fetch ... sweep, resumable)."""
    settings = kit_settings(sweep)
    hf = [] if sweep.container == "none" else ["env", f"HF_HOME={DATA_IN_IMAGE}/hf"]
    return [
        *srun_prefix(sweep),
        *hf,
        "make",
        "--no-print-directory",
        "-C",
        kit_dir(sweep),
        "sweep",
        f"PYTHON={interpreter(sweep)}",
        f"MANIFEST={in_container(sweep, sweep.manifest)}",
        Shell(f'SHARD="${{i}}/{sweep.shards}"'),
        Shell(f'RUN="{shard_run(sweep.run, "${i}", sweep.shards)}"'),
        *(f"{k}={v}" for k, v in settings.items()),
    ]


def finish_command(sweep: SlurmSweep) -> list[str]:
    """The srun line of the dependent job: merge (unless current), report, verify."""
    reference = ["--reference", in_container(sweep, sweep.reference)] if sweep.reference else []
    return [
        *srun_prefix(sweep),
        "env",
        *(f"{k}={v}" for k, v in kit_settings(sweep).items()),
        interpreter(sweep),
        "-m",
        "bench.stages.slurm",
        "finish",
        "--run",
        sweep.run,
        "--shards",
        str(sweep.shards),
        *reference,
    ]


def _script(sweep: SlurmSweep, purpose: str, body: list[str]) -> str:
    resume = shell_line(resume_command(sweep))
    return "\n".join(
        [
            "#!/bin/bash",
            f"# Generated by `make slurm` (bench/stages/slurm.py): {purpose}",
            "# Resources are sbatch options set by Make variables (PARTITION, TIME, GPUS_PER_TASK,",
            "# CPUS_PER_TASK), not #SBATCH lines. Resume the whole chain with the same command:",
            f"#   {resume}",
            "set -euo pipefail",
            f"cd {shlex.quote(str(sweep.repo))}",
            *body,
            "",
        ]
    )


def shard_script(sweep: SlurmSweep) -> str:
    n = sweep.shards
    return _script(
        sweep,
        f"array task i of {n} runs shard i/{n} of {sweep.manifest.name} (run {sweep.run}).",
        [
            'i=${SLURM_ARRAY_TASK_ID:?"submit with sbatch --array=1-' + str(n) + '"}',
            f'echo "shard $i/{n} of {sweep.manifest.name} on $(hostname), container '
            f'{sweep.container}, GPUs ${{CUDA_VISIBLE_DEVICES:-none}}"',
            shell_line(shard_command(sweep)),
        ],
    )


def finish_script(sweep: SlurmSweep) -> str:
    return _script(
        sweep,
        f"merge, report and verify run {sweep.run} once all {sweep.shards} shards succeeded.",
        [shell_line(finish_command(sweep))],
    )


def array_argv(sweep: SlurmSweep, script: Path) -> list[str]:
    gpus = [f"--gpus-per-task={sweep.gpus_per_task}"] if sweep.gpus_per_task else []
    partition = [f"--partition={sweep.partition}"] if sweep.partition else []
    return [
        "sbatch",
        "--parsable",
        f"--job-name={sweep.job_name}",
        f"--array=1-{sweep.shards}",
        "--ntasks=1",
        f"--cpus-per-task={sweep.cpus_per_task}",
        *gpus,
        f"--time={sweep.time}",
        *partition,
        f"--output={sweep.log_dir}/shard-%a-job%A.out",
        str(script),
    ]


def finish_argv(sweep: SlurmSweep, array_job: str, script: Path) -> list[str]:
    """One core, no GPU: merge, report and verify only read and hash files."""
    partition = [f"--partition={sweep.partition}"] if sweep.partition else []
    return [
        "sbatch",
        "--parsable",
        f"--job-name={sweep.job_name}-finish",
        f"--dependency=afterok:{array_job}",
        "--kill-on-invalid-dep=yes",
        "--ntasks=1",
        "--cpus-per-task=1",
        f"--time={sweep.time}",
        *partition,
        f"--output={sweep.log_dir}/finish-job%j.out",
        str(script),
    ]


def resume_command(sweep: SlurmSweep) -> list[str]:
    """The `make slurm` line that submits this chain again (and so resumes it)."""
    inside = sweep.manifest.is_relative_to(sweep.repo)
    manifest = sweep.manifest.relative_to(sweep.repo) if inside else sweep.manifest
    words = [
        "make",
        "slurm",
        f"MANIFEST={manifest}",
        f"SHARDS={sweep.shards}",
        f"RUN={sweep.run}",
        f"CONTAINER={sweep.container}",
        f"TIME={sweep.time}",
        f"GPUS_PER_TASK={sweep.gpus_per_task}",
        f"CPUS_PER_TASK={sweep.cpus_per_task}",
    ]
    if sweep.partition:
        words.append(f"PARTITION={sweep.partition}")
    if sweep.image and sweep.container != "none":
        words.append(f"SLURM_IMAGE={sweep.image}")
    if sweep.reference:
        words.append(f"REFERENCE={sweep.reference}")
    return words


# ----------------------------------------------------------------------------- validation


def parse_request(values: dict[str, object], env: dict[str, str], cwd: Path) -> SlurmSweep:
    """Build the request from `make slurm`'s variables; bad values name the variable and the fix."""
    given = {k: v for k, v in values.items() if v not in (None, "")}
    shards = str(given.get("shards", ""))
    if not shards.isdigit():
        raise KitError(
            f"SHARDS={shards!r} is not a number of shards",
            fix="make slurm MANIFEST=manifests/<name>.toml SHARDS=<N> (one array task per shard)",
        )
    for key in ("manifest", "reference"):
        if key in given:
            given[key] = (cwd / str(given[key])).resolve()
    manifest = given.get("manifest")
    if "run" not in given and isinstance(manifest, Path):
        given["run"] = f"{manifest.stem}-slurm"
    try:
        sweep = SlurmSweep.model_validate({**given, "dirs": Dirs.from_env(env, cwd)})
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            name = VARIABLES.get(str(problem["loc"][0]), str(problem["loc"][0]))
            lines.append(f"{name}={problem.get('input')!r}: {problem['msg']}")
        raise KitError(
            "; ".join(lines),
            fix="TIME is D-HH:MM:SS or HH:MM:SS; CONTAINER is pyxis, apptainer or none; "
            "counts are whole numbers; names are letters, digits, . _ -",
        ) from None
    check_files(sweep)
    return sweep


def check_files(sweep: SlurmSweep) -> None:
    """The manifest must load, have a point for every shard and, in a container, sit under
    manifests/ (the only mount)."""
    manifest = load_manifest(sweep.manifest)
    tasks = len(manifest.sweep.points) * manifest.sweep.repeats
    if sweep.shards > tasks:
        raise KitError(
            f"SHARDS={sweep.shards} is more than the manifest's {tasks} point runs: "
            "some shards would have nothing to run",
            path=str(sweep.manifest),
            fix=f"SHARDS={tasks} or fewer",
        )
    for key, path in (("MANIFEST", sweep.manifest), ("REFERENCE", sweep.reference)):
        if path is None:
            continue
        if not path.is_file():
            raise KitError(f"{key}={path}: no such file", fix=f"pass an existing {key}=")
        if sweep.container != "none" and not path.is_relative_to(sweep.repo / "manifests"):
            raise KitError(
                f"{key}={path} is outside manifests/, the only folder the container mounts",
                fix="copy it into manifests/, or use CONTAINER=none",
            )
    image = Path(sweep.image_ref)
    if sweep.container != "none" and image.suffix in (".sqsh", ".sif") and not image.is_file():
        how = (
            "enroot import -o trtllm-repro.sqsh dockerd://trtllm-repro:<version>"
            if sweep.container == "pyxis"
            else "apptainer build trtllm-repro.sif docker-daemon://trtllm-repro:<version>"
        )
        raise KitError(
            f"SLURM_IMAGE={image}: no such image file",
            fix=f"make docker-build, then {how} (or set SLURM_IMAGE=)",
        )


# ----------------------------------------------------------------------------- submission

RunTool = Callable[[list[str]], str]


def run_tool(argv: list[str]) -> str:
    """Run a Slurm client; its stderr (Slurm's own reason) becomes the error."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KitError(
            f"{argv[0]}: not found (no Slurm client on this machine)",
            fix="run `make slurm` on a Slurm login node (sbatch, squeue on PATH)",
        ) from None
    if out.returncode != 0:
        raise KitError(
            f"{shlex.join(argv[:3])} ... failed: {out.stderr.strip() or out.stdout.strip()}",
            fix="read Slurm's message above; PARTITION=, TIME=, GPUS_PER_TASK=, CPUS_PER_TASK= "
            "set what is asked for",
        )
    return out.stdout


def job_id(parsable: str) -> str:
    """sbatch --parsable prints `<id>` or `<id>;<cluster>`."""
    first = parsable.strip().split(";")[0]
    if not first.isdigit():
        raise KitError(f"sbatch printed {parsable.strip()!r}, not a job id")
    return first


def submit(sweep: SlurmSweep, tool: RunTool = run_tool) -> tuple[str, str]:
    """Submit the array and its dependent finish job; return both job ids."""
    # --me: another user's chain may carry the same default job name; only ours block a resume.
    queued = [
        job
        for name in (sweep.job_name, f"{sweep.job_name}-finish")
        for job in tool(["squeue", "--me", "--noheader", "--format=%i", f"--name={name}"]).split()
    ]
    if queued:
        raise KitError(
            f"run {sweep.run} still has jobs of yours in the queue (squeue --me): "
            f"{', '.join(sorted(set(queued)))}",
            fix="wait for them (squeue --me) or scancel them, then submit again to resume",
        )
    sweep.log_dir.mkdir(parents=True, exist_ok=True)
    shards = sweep.log_dir / "shards.sbatch"
    finish = sweep.log_dir / "finish.sbatch"
    atomic_write_text(shards, shard_script(sweep))
    atomic_write_text(finish, finish_script(sweep))
    array_job = job_id(tool(array_argv(sweep, shards)))
    try:
        finish_job = job_id(tool(finish_argv(sweep, array_job, finish)))
    except KitError:
        tool(["scancel", array_job])
        print(f"[slurm] cancelled the shards (job {array_job}): no finish job", file=sys.stderr)
        raise
    return array_job, finish_job


def announce(sweep: SlurmSweep, array_job: str, finish_job: str) -> str:
    """What the user needs next: the ids, how to follow, where the result lands, how to resume."""
    logs = sweep.log_dir
    return "\n".join(
        [
            f"[slurm] run {sweep.run}: shards job {array_job} (array 1-{sweep.shards}), "
            f"finish job {finish_job} (merge + report + verify after every shard succeeds; "
            "Slurm cancels it if one fails)",
            f"  follow:  squeue -j {array_job},{finish_job}   tail -f {logs}/*.out",
            f"  why:     scontrol show job {finish_job} | grep -E 'JobState|Reason'",
            f"  result:  {sweep.dirs.results / sweep.run}/, "
            f"{sweep.dirs.reports / sweep.run}/verify.md",
            f"  resume:  {shell_line(resume_command(sweep))}",
            "           (the same command: finished stages and points are skipped)",
        ]
    )


# ----------------------------------------------------------------------------- finish job


def finish(run: str, shards: int, reference: Path | None) -> int:
    """Merge the shards into `run`, then report and verify.

    A merged run left by an earlier submission of the same chain is made again from the shards,
    its report and verdict with it (all copies or products of the shards' files, so nothing is
    lost): a resumed shard may hold new points.
    """
    from bench.stages import merge, report, verify  # here: submission needs none of them (plots)

    names = [shard_run(run, k, shards) for k in range(1, shards + 1)]
    merged = RunPaths.for_run(run)
    previous = merged.root.with_name(merged.root.name + ".previous-merge")
    if merged.root.exists():
        if merged_from(merged) != names:
            raise KitError(
                f"a run of this name exists and is not the merge of {', '.join(names)}",
                path=str(merged.root),
                fix=f"choose another RUN=, or make clean-run RUN={run} if it can go",
            )
        print(f"[slurm] {merged.root} came from these shards: merging them again", file=sys.stderr)
        shutil.rmtree(previous, ignore_errors=True)
        merged.root.rename(previous)  # put back if the merge fails
    try:
        merge.merge(run, [RunPaths.for_run(name).root for name in names])
    except BaseException:
        if previous.exists():
            shutil.rmtree(merged.root, ignore_errors=True)  # a half-made merge
            previous.rename(merged.root)
        raise
    if previous.exists():
        shutil.rmtree(previous)
        shutil.rmtree(merged.reports, ignore_errors=True)  # the old run's report and verdict
    if code := report.main(["--run", run]):
        return code
    return verify.main(["--run", run, *(["--reference", str(reference)] if reference else [])])


def merged_from(merged: RunPaths) -> list[str] | None:
    """The shard runs a merged run was made from (its merge record), or None."""
    if not merged.artifacts.is_file():
        return None
    stage = read_json(merged.artifacts).get("stages", {}).get("merge")
    return None if stage is None else stage.get("details", {}).get("shards")


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.slurm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="submit the shard array and the finish job")
    s.add_argument("--manifest", default="")
    s.add_argument("--shards", default="")
    s.add_argument("--run", default="")
    s.add_argument("--partition", default="")
    s.add_argument("--time", default="")
    s.add_argument("--gpus-per-task", default="")
    s.add_argument("--cpus-per-task", default="")
    s.add_argument("--container", default="")
    s.add_argument("--image", default="")
    s.add_argument("--python", default="")
    s.add_argument("--reference", default="")
    f = sub.add_parser("finish", help="merge, report, verify (the finish job's body)")
    f.add_argument("--run", required=True)
    f.add_argument("--shards", type=int, required=True)
    f.add_argument("--reference", type=Path)
    args = parser.parse_args(argv)

    def submit_main() -> int:
        values = {k: getattr(args, k) for k in VARIABLES}
        if "/" in values["python"]:  # the node runs it from the job's folder: make it absolute
            values["python"] = str((Path.cwd() / values["python"]).absolute())
        sweep = parse_request(values, dict(os.environ), Path.cwd())
        array_job, finish_job = submit(sweep)
        print(announce(sweep, array_job, finish_job))
        return 0

    if args.command == "submit":
        return run_main(submit_main, "make slurm")
    return run_main(
        lambda: finish(args.run, args.shards, args.reference), "bench.stages.slurm finish"
    )


if __name__ == "__main__":
    raise SystemExit(main())

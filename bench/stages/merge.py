"""`make merge`: combine shard runs into one run that report and verify read like any other.

Usage: python -m bench.stages.merge --run NAME [--allow-partial] results/<run>-shard1of3 ...
       (make merge RUN=NAME SHARDS="..." [PARTIAL=1])
Writes: results/<NAME>/ with manifest.resolved.toml, points/ (every point exactly once),
        datasets/, summary.csv, shards/<shard>/{artifacts.json, provenance.json}, artifacts.json

Every file merge takes from a shard is first re-hashed against that shard's own artifacts.json: a
shard whose verify would say "changed", "missing" or "unexpected" is refused, naming shard and
file; merge holds every shard's writer lock and the merged run's, and checks every copy against
the shard record it checked (a change in between is refused; no merged run is left behind).
The shards together must hold every point of their manifest (a result or a recorded failure)
and come from one split (one N): a subset is refused unless --allow-partial, and then the merged
run records itself as partial, which report and verify say (verify: PARTIAL, exit 4).
Shards must agree on everything that defines the measurement: the resolved manifest, the image
digest, the GPU model, and the sha256 of every model, checkpoint and engine file; otherwise the
merge is refused naming what differs. Shards get one checkpoint and engine through the shared
stage cache (bench.core.stage_cache), not by rebuilding them: neither is bit-reproducible. Large
files
stay where the shards made them (on their runners): the merged artifact manifest carries their
digests from the shard records, and verify says which files it re-hashed and which it took from
those records.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path

from bench.core.artifacts import UNTRACKED, Artifacts, FileEntry
from bench.core.errors import KitError, run_main
from bench.core.fileio import atomic_write_text, read_json, sha256_file
from bench.core.manifest import load_manifest
from bench.core.run import STAGE_LOGS, RunPaths
from bench.core.runlock import writer_lock
from bench.schema.provenance import MachineIdentity, machine_identity, read_provenance
from bench.schema.record import load_records, write_summary
from bench.stages import accuracy as accmod
from bench.stages.verify import finished_points, manifest_tasks

SHARED_STAGES = ("fetch", "quantize", "build")  # their outputs must be identical in every shard


def measured_on(shard: Path) -> MachineIdentity | None:
    """The shard's machine identity (GPUs CUDA used, image...); None without provenance."""
    provenance = shard / "provenance.json"
    return machine_identity(read_provenance(provenance)) if provenance.exists() else None


def machine_problems(shard: Path, first: Path) -> list[str]:
    """Where a shard ran on another GPU model or image than the first: its numbers measured
    another machine (drivers may differ; the files' digests are compared in disagreements)."""
    theirs, ours = measured_on(shard), measured_on(first)
    if theirs is None or ours is None:
        return [] if theirs == ours else [f"{shard.name}: provenance.json is in only one shard"]
    out = []
    if theirs.image_digest != ours.image_digest:
        out.append(f"{shard.name}: image digest {theirs.image_digest} != {ours.image_digest}")
    if theirs.gpus != ours.gpus:
        out.append(f"{shard.name}: ran on {theirs.gpus}, not {ours.gpus}")
    return out


def shared_outputs(arts: dict, stage: str) -> list[str]:
    """A shared stage's recorded outputs (model, checkpoint, engine), less its library log: a
    shard that took the checkpoint from the cache never wrote one, and the log stays with the
    shard (its artifacts.json is kept under shards/)."""
    outputs = arts["stages"].get(stage, {}).get("outputs", [])
    return [key for key in outputs if not key.startswith(f"run:{STAGE_LOGS}/")]


def heavy_files(arts: dict) -> dict[str, str]:
    """{key: sha256} of the files the shared stages produced."""
    return {
        key: arts["files"][key]["sha256"]
        for stage in SHARED_STAGES
        for key in shared_outputs(arts, stage)
    }


def disagreements(shards: list[Path]) -> list[str]:
    """What differs between the shards, compared with the first; empty when they may merge."""
    first = shards[0]
    base_manifest = (first / "manifest.resolved.toml").read_text(encoding="utf-8")
    base_arts = read_json(first / "artifacts.json")
    problems = []
    for shard in shards[1:]:
        if (shard / "manifest.resolved.toml").read_text(encoding="utf-8") != base_manifest:
            problems.append(f"{shard.name}: manifest differs from {first.name}'s")
        problems += machine_problems(shard, first)
        theirs, ours = heavy_files(read_json(shard / "artifacts.json")), heavy_files(base_arts)
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                problems.append(f"{shard.name}: {key} sha256 {theirs.get(key)} != {ours.get(key)}")
    return problems


def taken_files(shard: Path) -> list[Path]:
    """The shard files merge copies: finished points, datasets, manifest and provenance."""
    out = [shard / "manifest.resolved.toml"]
    if (shard / "provenance.json").exists():
        out.append(shard / "provenance.json")
    points = sorted((shard / "points").iterdir()) if (shard / "points").is_dir() else []
    for folder in [*points, shard / "datasets"]:
        if folder.name.endswith(".partial") or not folder.exists():
            continue
        out += [folder] if folder.is_symlink() else sorted(folder.rglob("*"))
    return [p for p in out if p.is_symlink() or p.is_file()]


def shard_file_problems(shard: Path) -> list[str]:
    """Every taken file against the shard's own record, and every recorded point or dataset
    file the shard no longer has: what the shard's verify would call a problem."""
    arts = Artifacts.of_shard(shard)
    taken = {
        arts.key(p) if not p.is_symlink() else f"run:{p.relative_to(shard).as_posix()}"
        for p in taken_files(shard)
    }
    # A shard uploaded without datasets/ (benchmark.yml) keeps their digests in its record only.
    kept = ("run:points/", "run:datasets/") if (shard / "datasets").is_dir() else ("run:points/",)
    recorded = {
        k
        for k in arts.files
        if k.startswith(kept) and not k.partition("/")[2].split("/")[0].endswith(".partial")
    }
    problems = []
    for problem in arts.check(sorted(taken | recorded)):
        detail = (
            "not in its artifacts.json"
            if problem.detail == "not in artifacts.json"
            else problem.detail
        )
        problems.append(f"{shard.name}: {problem.key} {problem.kind} ({detail})")
    return problems


def split_problems(shards: list[Path]) -> list[str]:
    """Why these shards are not one whole split of their manifest: missing points, several Ns."""
    manifest = load_manifest(shards[0] / "manifest.resolved.toml")
    have = set().union(*(finished_points(s / "points") for s in shards))
    missing = [t.name for t in manifest_tasks(manifest) if t.name not in have]
    problems = []
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        problems.append(f"{len(missing)} point(s) of the manifest are in no shard: {shown}")
    splits = {}
    for s in shards:
        spec = Artifacts.of_shard(s).stages.get("sweep", {}).get("details", {}).get("shard")
        splits[s.name] = str(spec) if spec else "all points"
    counts = {spec.rpartition("/")[2] for spec in splits.values()}
    if len(counts) > 1:
        problems.append(
            "shards of different splits: " + ", ".join(f"{k} ran {v}" for k, v in splits.items())
        )
    return problems


# ----------------------------------------------------------------------------- the accuracy gate


def accuracy_evidence(shard: Path) -> dict | None:
    """What a shard's accuracy record says and what it evaluated: the record without its argv
    (temporary dataset folders differ per shard) and the stage's input digests. None without one."""
    stage = read_json(shard / "artifacts.json")["stages"].get(accmod.STAGE)
    record = accmod.result_path(RunPaths(shard.name, shard, shard, shard, shard))
    if not stage or not record.is_file():
        return None
    said = {k: v for k, v in read_json(record).items() if k != "argv"}
    return {"record": said, "inputs": stage.get("inputs", {})}


def agreed_accuracy(shards: list[Path]) -> list[Path]:
    """The shards holding an accuracy record, which must agree: they evaluate the same engine or
    checkpoint from the stage cache, so different records mean different evidence. Each record's
    files are re-hashed against its shard's artifacts.json first."""
    evidence = {s: e for s in shards if (e := accuracy_evidence(s)) is not None}
    holders = list(evidence)
    problems = []
    for shard in holders:
        stage = Artifacts.of_shard(shard).stages[accmod.STAGE]
        keys = [k for k in stage["outputs"] if k.startswith("run:")]
        problems += [
            f"{shard.name}: {p.key} {p.kind} ({p.detail})"
            for p in Artifacts.of_shard(shard).check(keys)
        ]
    for shard in holders[1:]:
        base, theirs = evidence[holders[0]], evidence[shard]
        for part in ("record", "inputs"):
            if theirs[part] != base[part]:
                differ = sorted(
                    k
                    for k in set(theirs[part]) | set(base[part])
                    if theirs[part].get(k) != base[part].get(k)
                )
                problems.append(
                    f"{shard.name}: accuracy {part} differs from {holders[0].name}'s "
                    f"({', '.join(differ)})"
                )
    if problems:
        raise KitError(
            "the shards' accuracy records do not agree:\n  " + "\n  ".join(problems),
            fix="rerun `make accuracy` in the shards with one CACHE_DIR (one engine), or merge "
            "only shards whose accuracy records agree",
        )
    return holders


def carry_accuracy(holders: list[Path], paths: RunPaths, arts: Artifacts) -> None:
    """The first agreeing shard's accuracy files and stage record into the merged run, so verify
    re-derives the gate there as on any run."""
    if not holders:
        return
    source = holders[0]
    shard_arts = read_json(source / "artifacts.json")
    stage = shard_arts["stages"][accmod.STAGE]
    for key in stage["outputs"]:
        if key.startswith("run:"):
            relative = key.partition(":")[2]
            copy = paths.root / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, copy)
            if sha256_file(copy) != shard_arts["files"][key]["sha256"]:  # recorded means verified
                raise KitError(
                    f"{source.name}: {key} changed while it was merged",
                    fix="restore the shard's accuracy files (or rerun `make accuracy` there), "
                    "then merge again",
                )
        arts.files[key] = FileEntry(**shard_arts["files"][key])
    details = stage.get("details", {}) | {
        "from_shard": source.name,
        "agreed_by": [s.name for s in holders],
    }
    arts.stages[accmod.STAGE] = {**stage, "details": details}


def merge(name: str, shards: list[Path], *, allow_partial: bool = False) -> int:
    """Merge under every shard's writer lock and the merged run's: nothing the merge checked can
    be rewritten by a stage of the kit before it is copied (and the copies are checked too)."""
    if not shards:
        raise KitError("no shards given", fix='make merge RUN=<name> SHARDS="results/a results/b"')
    paths = RunPaths.for_run(name)
    if paths.root.exists():
        raise KitError(
            "the merged run already exists",
            path=str(paths.root),
            fix="choose another RUN= or remove that folder",
        )
    with contextlib.ExitStack() as locks:
        for shard in shards:
            locks.enter_context(writer_lock(Artifacts.of_shard(shard).paths, "merge", create=False))
        locks.enter_context(writer_lock(paths, "merge"))
        return merge_locked(paths, shards, allow_partial=allow_partial)


def merge_locked(paths: RunPaths, shards: list[Path], *, allow_partial: bool) -> int:
    for shard in shards:
        for needed in ("manifest.resolved.toml", "artifacts.json", ".stamps/sweep.ok"):
            if not (shard / needed).exists():
                raise KitError(
                    f"not a finished shard: {needed} is missing",
                    path=str(shard),
                    fix="finish the shard's sweep (rerun it: it resumes) before merging",
                )
    checked_records = {s.name: sha256_file(s / "artifacts.json") for s in shards}
    if tampered := [p for s in shards for p in shard_file_problems(s)]:
        raise KitError(
            "shard files differ from their shard's record:\n  " + "\n  ".join(tampered),
            fix="restore those files in the shard (or rerun its sweep in a new run), then merge",
        )
    if problems := disagreements(shards):
        # Only shards that differ in nothing but work: files (checkpoint, engine) made them apart;
        # a different manifest, image or GPU model changes the cache key, so sharing would not help.
        made_their_own = all(" work:" in p for p in problems)
        raise KitError(
            "shards do not describe the same measurement:\n  " + "\n  ".join(problems),
            fix=(
                "each shard made its own checkpoint or engine: rerun the shards with one "
                "CACHE_DIR they all reach (the default, WORK_DIR/.cache, is shared on one host; "
                "on several hosts put it on shared storage), so the first makes them and the "
                "others reuse the same files"
                if made_their_own
                else "merge only shards of one manifest, image, GPU model, model and engine"
            ),
        )
    accuracy_holders = agreed_accuracy(shards)
    partial = split_problems(shards)
    if partial and not allow_partial:
        raise KitError(
            "the shards are not a whole split of their manifest:\n  " + "\n  ".join(partial),
            fix="merge every shard of one SHARD=i/N split; to merge a subset on purpose, "
            "add PARTIAL=1 (--allow-partial): report and verify then say PARTIAL",
        )
    seen: dict[str, str] = {}
    for shard in shards:
        for point in sorted((shard / "points").iterdir()):
            if point.name.endswith(".partial"):
                continue
            if point.name in seen:
                raise KitError(
                    f"point {point.name} is in both {seen[point.name]} and {shard.name}",
                    fix="shards of one N partition the points; merge shards of one N",
                )
            seen[point.name] = shard.name

    try:
        write_merged(paths, shards, partial, checked_records, seen, accuracy_holders)
    except BaseException:
        shutil.rmtree(paths.root, ignore_errors=True)  # no half-merged run is ever left behind
        raise
    print(f"[merge] {len(seen)} points from {len(shards)} shards -> {paths.root}", file=sys.stderr)
    for problem in partial:
        print(f"[merge] PARTIAL: {problem}", file=sys.stderr)
    return 0


def copy_problems(
    paths: RunPaths, shards: list[Path], checked_records: dict[str, str], origin: dict[str, str]
) -> list[str]:
    """Every copy against the shard record merge checked: a shard file changed between the
    check and the copy must not be recorded as good. Points come from the shard that ran them
    (origin), the manifest and datasets from the first shard."""
    records = {}
    problems = []
    for shard in shards:
        copied = paths.root / "shards" / shard.name
        if sha256_file(copied / "artifacts.json") != checked_records[shard.name]:
            problems.append(f"{shard.name}: artifacts.json changed after merge checked it")
        records[shard.name] = Artifacts.of_shard(copied).files

    def against(shard: str, key: str, copy: Path) -> None:
        entry = records[shard].get(key)
        if entry is None:
            problems.append(f"{shard}: {key} is not in its artifacts.json")
        elif sha256_file(copy) != entry.sha256:
            problems.append(f"{shard}: {key} changed (its copy's sha256 differs from the record)")

    first = shards[0].name
    against(first, "run:manifest.resolved.toml", paths.resolved_manifest)
    for shard in shards:
        provenance = paths.root / "shards" / shard.name / "provenance.json"
        if provenance.is_file():
            against(shard.name, "run:provenance.json", provenance)
    for folder in sorted(paths.points.iterdir()) if paths.points.is_dir() else []:
        owner = origin[folder.name]
        copies = {f"run:{f.relative_to(paths.root).as_posix()}": f for f in folder.rglob("*")}
        for key, copy in sorted(copies.items()):
            if copy.is_file():
                against(owner, key, copy)
        for key in sorted(records[owner]):
            if key.startswith(f"run:points/{folder.name}/") and key not in copies:
                problems.append(f"{owner}: {key} missing (recorded, not copied)")
    if paths.datasets.is_dir():
        for copy in sorted(f for f in paths.datasets.rglob("*") if f.is_file()):
            against(first, f"run:{copy.relative_to(paths.root).as_posix()}", copy)
    return problems


def write_merged(
    paths: RunPaths,
    shards: list[Path],
    partial: list[str],
    checked_records: dict[str, str],
    origin: dict[str, str],
    accuracy_holders: list[Path],
) -> None:
    """Copy the shards' files into the merged run, check every copy against the shard record
    that was checked (checked_records: its sha256), then record the merged run."""
    arts = Artifacts(paths)
    base = read_json(shards[0] / "artifacts.json")
    paths.root.mkdir(parents=True, exist_ok=True)  # the writer lock made it
    atomic_write_text(paths.resolved_manifest, (shards[0] / "manifest.resolved.toml").read_text())
    for stage in SHARED_STAGES:  # taken from the record, not copied: they stay on the runners
        if stage in base["stages"]:
            arts.stages[stage] = {
                **base["stages"][stage],
                "outputs": shared_outputs(base, stage),
                "details": {
                    **base["stages"][stage].get("details", {}),
                    "from_shard": shards[0].name,
                },
            }
            for key in shared_outputs(base, stage):
                arts.files[key] = FileEntry(**base["files"][key])
    for shard in shards:
        for point in sorted((shard / "points").iterdir()):
            if not point.name.endswith(".partial"):
                shutil.copytree(point, paths.points / point.name)
        for f in ("artifacts.json", "provenance.json"):
            if (shard / f).exists():
                target = paths.root / "shards" / shard.name / f
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shard / f, target)
    datasets_from_records = False
    if (shards[0] / "datasets").is_dir():
        shutil.copytree(shards[0] / "datasets", paths.datasets)
    elif "datasets" in base["stages"]:  # shards uploaded without them: digests from the record
        datasets_from_records = True
        arts.stages["datasets"] = base["stages"]["datasets"]
        for key in base["stages"]["datasets"]["outputs"]:
            arts.files[key] = FileEntry(**base["files"][key])
    if changed := copy_problems(paths, shards, checked_records, origin):
        raise KitError(
            "shard files changed while they were merged:\n  " + "\n  ".join(changed),
            fix="restore those files in the shard (nothing may write a shard while it is "
            "merged), then merge again",
        )
    carry_accuracy(accuracy_holders, paths, arts)
    write_summary(paths.summary, load_records(paths.points))
    copied = sorted(
        p
        for p in paths.root.rglob("*")
        if p.is_file() and p.relative_to(paths.root).parts[0] not in UNTRACKED
    )
    inputs = arts.input_digests([s / "artifacts.json" for s in shards])
    details: dict[str, object] = {"shards": [s.name for s in shards], "partial": partial}
    if datasets_from_records:  # verify exempts only this run's absent datasets/ from FAIL
        details["datasets_from_shard_records"] = True
    arts.record("merge", inputs, copied, details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="name of the merged run")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="merge shards that miss points of the manifest (the run is then marked PARTIAL)",
    )
    parser.add_argument("shards", nargs="*", type=Path, help="shard run folders")
    args = parser.parse_args(argv)
    return run_main(
        lambda: merge(args.run, args.shards, allow_partial=args.allow_partial), "bench.stages.merge"
    )


if __name__ == "__main__":
    raise SystemExit(main())

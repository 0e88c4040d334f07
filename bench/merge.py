"""`make merge`: combine shard runs into one run that report and verify read like any other.

Usage: python -m bench.merge --run NAME results/<run>-shard1of3 results/<run>-shard2of3 ...
Writes: results/<NAME>/ with manifest.resolved.toml, points/ (every point exactly once),
        datasets/, summary.csv, shards/<shard>/{artifacts.json, provenance.json}, artifacts.json

Shards must agree on everything that defines the measurement: the resolved manifest, the image
digest, the GPU model, and the sha256 of every model, checkpoint and engine file; otherwise the
merge is refused naming what differs. Shards get one checkpoint and engine through the shared
stage cache (bench.stage_cache), not by rebuilding them: neither is bit-reproducible. Large files
stay where the shards made them (on their runners): the merged artifact manifest carries their
digests from the shard records, and verify says which files it re-hashed and which it took from
those records.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from bench.artifacts import Artifacts, FileEntry
from bench.errors import KitError, run_main
from bench.fileio import atomic_write_text, read_json
from bench.gpu_info import visible_gpus
from bench.record import load_records, write_summary
from bench.run import RunPaths

SHARED_STAGES = ("fetch", "quantize", "build")  # their outputs must be identical in every shard


def image_digest(shard: Path) -> str | None:
    provenance = shard / "provenance.json"
    if not provenance.exists():
        return None
    return read_json(provenance).get("software", {}).get("container", {}).get("digest")


def gpu_models(shard: Path) -> list[str] | None:
    """The shard's GPUs by name (CUDA_VISIBLE_DEVICES applied); None without provenance."""
    provenance = shard / "provenance.json"
    if not provenance.exists():
        return None
    return [str(g.get("name")) for g in visible_gpus(read_json(provenance))]


def heavy_files(arts: dict) -> dict[str, str]:
    """{key: sha256} of the files the shared stages produced (model, checkpoint, engine)."""
    out = {}
    for stage in SHARED_STAGES:
        for key in arts["stages"].get(stage, {}).get("outputs", []):
            out[key] = arts["files"][key]["sha256"]
    return out


def disagreements(shards: list[Path]) -> list[str]:
    """What differs between the shards, compared with the first; empty when they may merge."""
    first = shards[0]
    base_manifest = (first / "manifest.resolved.toml").read_text(encoding="utf-8")
    base_arts = read_json(first / "artifacts.json")
    problems = []
    for shard in shards[1:]:
        if (shard / "manifest.resolved.toml").read_text(encoding="utf-8") != base_manifest:
            problems.append(f"{shard.name}: manifest differs from {first.name}'s")
        if image_digest(shard) != image_digest(first):
            problems.append(
                f"{shard.name}: image digest {image_digest(shard)} != {image_digest(first)}"
            )
        if gpu_models(shard) != gpu_models(first):
            problems.append(f"{shard.name}: ran on {gpu_models(shard)}, not {gpu_models(first)}")
        theirs, ours = heavy_files(read_json(shard / "artifacts.json")), heavy_files(base_arts)
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                problems.append(f"{shard.name}: {key} sha256 {theirs.get(key)} != {ours.get(key)}")
    return problems


def merge(name: str, shards: list[Path]) -> int:
    if not shards:
        raise KitError("no shards given", fix='make merge RUN=<name> SHARDS="results/a results/b"')
    for shard in shards:
        for needed in ("manifest.resolved.toml", "artifacts.json", ".stamps/sweep.ok"):
            if not (shard / needed).exists():
                raise KitError(
                    f"not a finished shard: {needed} is missing",
                    path=str(shard),
                    fix="finish the shard's sweep (rerun it: it resumes) before merging",
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
    paths = RunPaths.for_run(name)
    if paths.root.exists():
        raise KitError(
            "the merged run already exists",
            path=str(paths.root),
            fix="choose another RUN= or remove that folder",
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

    arts = Artifacts(paths)
    base = read_json(shards[0] / "artifacts.json")
    paths.root.mkdir(parents=True)
    atomic_write_text(paths.resolved_manifest, (shards[0] / "manifest.resolved.toml").read_text())
    for stage in SHARED_STAGES:  # taken from the record, not copied: they stay on the runners
        if stage in base["stages"]:
            arts.stages[stage] = {
                **base["stages"][stage],
                "details": {
                    **base["stages"][stage].get("details", {}),
                    "from_shard": shards[0].name,
                },
            }
            for key in base["stages"][stage]["outputs"]:
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
    if (shards[0] / "datasets").is_dir():
        shutil.copytree(shards[0] / "datasets", paths.datasets)
    elif "datasets" in base["stages"]:  # shards uploaded without them: digests from the record
        arts.stages["datasets"] = base["stages"]["datasets"]
        for key in base["stages"]["datasets"]["outputs"]:
            arts.files[key] = FileEntry(**base["files"][key])
    write_summary(paths.summary, load_records(paths.points))
    copied = sorted(p for p in paths.root.rglob("*") if p.is_file() and p != paths.artifacts)
    inputs = arts.input_digests([s / "artifacts.json" for s in shards])
    arts.record("merge", inputs, copied, {"shards": [s.name for s in shards]})
    print(f"[merge] {len(seen)} points from {len(shards)} shards -> {paths.root}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="name of the merged run")
    parser.add_argument("shards", nargs="*", type=Path, help="shard run folders")
    args = parser.parse_args(argv)
    return run_main(lambda: merge(args.run, args.shards), "bench.merge")


if __name__ == "__main__":
    raise SystemExit(main())

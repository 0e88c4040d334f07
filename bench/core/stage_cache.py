"""A content-addressed cache of the heavy stage outputs (quantized checkpoint, engine).

Why: every shard of a sweep runs quantize and build itself, and neither is bit-reproducible
(calibration on a GPU, TensorRT's timing-based tactic choice). N shards would make N different
engines, and `make merge` rightly refuses shards that measured different engines. With a cache on
storage the shards share (WORK_DIR on one host, a shared filesystem under Slurm), the first shard
to take the lock makes the outputs and every other one takes the very same files.

Layout: <cache>/<stage>/<key>/       the outputs, as the stage wrote them
        <cache>/<stage>/<key>.json   each file's size and sha256, what the key was made of
        <cache>/<stage>/<key>.lock   flock: one maker per key, the others wait
The key is the sha256 of the stage's input digests (manifest, model or checkpoint files, code) and
of the environment that makes the outputs (GPU model, image digest, TensorRT-LLM, ModelOpt and
torch versions). An entry is re-hashed before use: a changed file stops the stage, naming it.
Entries are immutable; removing the cache folder at any time only costs the rebuild. An entry
with a file its index does not list, or an index that cannot be read, is damaged too.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import backends
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_json, read_json, sha256_bytes, sha256_file
from bench.gpu.gpu_info import visible_gpus

# What in provenance.json changes the bytes a stage makes.
ENVIRONMENT_PACKAGES = tuple(
    dict.fromkeys(("modelopt", "torch", "transformers", *backends.provenance_packages()))
)


def environment_of(provenance: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's provenance that decides its checkpoint and engine bytes: the GPUs CUDA
    used (not every GPU of the host), the image and the software that makes the files."""
    software = provenance.get("software", {})
    packages = software.get("packages", {})
    return {
        "gpus": [gpu.get("name") for gpu in visible_gpus(provenance)],
        "image_digest": software.get("container", {}).get("digest"),
        "packages": {name: packages.get(name) for name in ENVIRONMENT_PACKAGES},
    }


def cache_root() -> Path | None:
    """CACHE_DIR from the environment (the Makefile sets it under WORK_DIR); empty turns it off."""
    value = os.environ.get("CACHE_DIR", "")
    return Path(value) if value else None


def run_environment(provenance_path: Path) -> dict[str, Any] | None:
    """environment_of the run's provenance.json; None (no caching) before `make env` wrote it."""
    if not provenance_path.is_file():
        return None
    return environment_of(read_json(provenance_path))


def cache_key(inputs: dict[str, str], environment: dict[str, Any]) -> str:
    material = {"inputs": inputs, "environment": environment}
    return sha256_bytes(json.dumps(material, sort_keys=True).encode("utf-8"))


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _link_or_copy(source: str, target: str) -> None:
    """Hard link (no second copy of a 9 GB engine) where the filesystem allows, else copy."""
    try:
        os.link(source, target)
    except OSError:
        _say_copying(Path(target).parent)
        shutil.copy2(source, target)


@functools.cache
def _say_copying(folder: Path) -> None:
    print(
        f"[cache] cannot hard-link into {folder} (another filesystem or mount): copying, which "
        "takes the space twice; put CACHE_DIR beside WORK_DIR to avoid it",
        file=sys.stderr,
    )


@contextmanager
def _locked(lock_path: Path, stage: str, *, shared: bool) -> Iterator[None]:
    """flock on lock_path: shared to read an entry (many at once), exclusive to make one."""
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+b")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise KitError(
            f"cannot use the stage cache: {exc}",
            path=str(lock_path.parent),
            fix="make CACHE_DIR writable, or run with CACHE_DIR= to turn the cache off",
        ) from None
    with lock:
        try:
            try:
                fcntl.flock(lock, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                busy = "making the same outputs" if shared else "reading or making them"
                print(
                    f"[{stage}] waiting for {lock_path}: another run is {busy}",
                    file=sys.stderr,
                    flush=True,
                )
                fcntl.flock(lock, mode)
        except OSError as exc:
            raise KitError(
                f"the filesystem of CACHE_DIR does not support file locks (flock): {exc}",
                path=str(lock_path.parent),
                fix="mount it with flock support (Lustre: -o flock), put CACHE_DIR on local "
                "storage, or run with CACHE_DIR= (then shards make their own, unmergeable engines)",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_index(index_path: Path, entry: Path) -> dict[str, Any]:
    """An entry's index; one that cannot be read or lacks its file table stops the stage."""
    fix = f"remove {entry} and {index_path}, then rerun (it will be made again)"
    try:
        index = read_json(index_path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KitError(f"unreadable cache index: {exc}", path=str(index_path), fix=fix) from None
    files = index.get("files") if isinstance(index, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()
    ):
        raise KitError("not a cache index: no file table", path=str(index_path), fix=fix)
    return index


def _damaged(entry: Path, index: dict[str, Any]) -> list[str]:
    """Every file the index lists, re-hashed, and every file in the entry it does not list: an
    extra file would otherwise be taken into the run's outputs and recorded as the stage's own."""
    problems = []
    for rel, recorded in sorted(index["files"].items()):
        path = entry / rel
        if path.is_symlink() or not path.is_file():
            problems.append(f"{path}: missing" + (" (a symlink)" if path.is_symlink() else ""))
        elif (digest := sha256_file(path)) != recorded["sha256"]:
            problems.append(f"{path}: sha256 {digest[:12]}… != recorded {recorded['sha256'][:12]}…")
    listed = set(index["files"])
    for path in sorted(entry.rglob("*")) if entry.is_dir() else []:
        if not path.is_dir() and path.relative_to(entry).as_posix() not in listed:
            problems.append(f"{path}: not in the entry's index")
    return problems


def _staging_of(target: Path) -> Path:
    return target.with_name(target.name + ".from-cache")


def _materialize(entry: Path, target: Path) -> None:
    """Replace target by the entry's files, all at once (a crash leaves no half-made target)."""
    staging = _staging_of(target)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(entry, staging, copy_function=_link_or_copy)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _reuse(stage: str, entry: Path, index_path: Path, target: Path) -> tuple[list[Path], dict]:
    index = _read_index(index_path, entry)
    if problems := _damaged(entry, index):
        raise KitError(
            f"the {stage} cache entry is damaged:\n  " + "\n  ".join(problems),
            path=str(entry),
            fix=f"remove {entry} and {index_path}, then rerun (it will be made again)",
        )
    _materialize(entry, target)
    print(f"[{stage}] reused {entry} (same inputs and environment)", file=sys.stderr)
    origin = {"entry": entry.name, "made_by": index["made_by"], "reused": True}
    return _files_under(target), {"cache": origin}


def make_or_reuse(
    cache: Path | None,
    stage: str,
    inputs: dict[str, str],
    environment: dict[str, Any] | None,
    target: Path,
    make: Callable[[], list[Path]],
    made_by: str,
) -> tuple[list[Path], dict[str, Any]]:
    """The stage's output files under target, and where they came from (for the stage's record).

    make() writes the outputs under target and returns them (every file must be under target).
    With no cache or no known environment, make() just runs.
    """
    shutil.rmtree(_staging_of(target), ignore_errors=True)  # left by a crash in _materialize
    if cache is None or environment is None:
        return make(), {"cache": None}
    key = cache_key(inputs, environment)
    folder = cache / stage
    entry, index_path, lock_path = folder / key, folder / f"{key}.json", folder / f"{key}.lock"
    with _locked(lock_path, stage, shared=True):  # readers of a finished entry run side by side
        if index_path.is_file():
            return _reuse(stage, entry, index_path, target)
    with _locked(lock_path, stage, shared=False):
        if index_path.is_file():  # made while this run waited
            return _reuse(stage, entry, index_path, target)
        files = make()
        outside = [str(p) for p in files if not p.resolve().is_relative_to(target.resolve())]
        if outside:
            raise KitError(f"{stage} wrote outputs outside {target}: {', '.join(outside)}")
        # Left by a maker that died holding the lock: staging copies, or an entry without index.
        for stale in [*folder.glob(f"{key}.tmp-*"), entry]:
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=folder))
        shutil.copytree(target, staging, dirs_exist_ok=True, copy_function=_link_or_copy)
        staging.rename(entry)
        atomic_write_json(
            index_path,
            {
                "stage": stage,
                "made_by": made_by,
                "inputs": inputs,
                "environment": environment,
                "files": {
                    p.relative_to(target).as_posix(): {
                        "size": p.stat().st_size,
                        "sha256": sha256_file(p),
                    }
                    for p in _files_under(target)
                },
            },
        )
        return files, {"cache": {"entry": key, "made_by": made_by, "reused": False}}

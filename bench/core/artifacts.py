"""The run's artifact manifest: every file read or written, its size, sha256 and producing stage.

Writes: results/<run>/artifacts.json and results/<run>/.stamps/<stage>.ok

A file is named by a root and a relative path ("run:points/isl128_osl128/result.json",
"models:meta-llama--Llama-3.1-8B-Instruct/<rev>/config.json"), so a run can be verified on
another machine where the roots live elsewhere. Each stage records its outputs and the digests of
its inputs and its key (bench.core.stage decides from them whether a stage is current), and
`verify` re-hashes everything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.core.errors import KitError
from bench.core.fileio import atomic_write_json, atomic_write_text, read_json
from bench.core.hashcache import HashCache
from bench.core.run import RunPaths

SCHEMA = "trtllm-repro/artifacts/1"
# Kit bookkeeping that is not an artifact of the benchmark itself.
UNTRACKED = ("artifacts.json", ".stamps")


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str
    stage: str


@dataclass(frozen=True)
class Problem:
    key: str
    kind: str  # "missing", "changed", "unexpected", "symlink", "unknown root", "outside its root"
    detail: str = ""


# ----------------------------------------------------------------------------- the file's schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _EntryModel(_Strict):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    stage: str


class _StageModel(_Strict):
    inputs: dict[str, str]
    key: dict[str, Any] | None = None  # bench.core.stage.StageKey: version, command, tools
    outputs: list[str]
    details: dict[str, Any] = {}
    finished_at: str | None = None


class _ArtifactsModel(BaseModel):
    """artifacts.json as read: a broken record stops its reader, naming the key."""

    model_config = ConfigDict(extra="allow", strict=True)
    schema_: str = Field(alias="schema")
    files: dict[str, _EntryModel]
    stages: dict[str, _StageModel]


def _load_artifacts(path: Path) -> tuple[dict[str, FileEntry], dict[str, dict[str, Any]]]:
    fix = "restore artifacts.json from a copy of the run, or rerun the run's stages in a new run"
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KitError(f"unreadable: {exc}", path=str(path), fix=fix) from None
    if isinstance(data, dict) and data.get("schema") != SCHEMA:
        raise KitError(f"unknown schema {data.get('schema')!r}", path=str(path), fix=fix)
    try:
        model = _ArtifactsModel.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "top level"
        raise KitError(
            f"not an artifact record: {where}: {first['msg']}", path=str(path), fix=fix
        ) from None
    files = {k: FileEntry(**v.model_dump()) for k, v in model.files.items()}
    stages = {k: v.model_dump() for k, v in model.stages.items()}
    return files, stages


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Artifacts:
    """Read-modify-write view of artifacts.json; stages of one run run one at a time.

    Digests go through the run's stat-keyed hash cache (bench.core.hashcache); trust_stat=False
    (verify, merge) re-reads every byte.
    """

    def __init__(self, paths: RunPaths, *, trust_stat: bool = True) -> None:
        self.paths = paths
        self.hashes = HashCache(paths.root / ".stamps" / "hashes.json", trust_stat=trust_stat)
        self.roots = {
            "run": paths.root,
            "work": paths.work,
            "models": paths.models,
            "reports": paths.reports,
        }
        self.files: dict[str, FileEntry]
        self.stages: dict[str, dict[str, Any]]
        if paths.artifacts.exists():
            self.files, self.stages = _load_artifacts(paths.artifacts)
        else:
            self.files, self.stages = {}, {}

    @classmethod
    def of_shard(cls, folder: Path) -> Artifacts:
        """A shard's own record, read where the shard lies: only its run: files are checked
        here (its work/ and models/ stay on its runner), so the other roots lead nowhere."""
        nowhere = folder / ".stamps" / "not-here"
        arts = cls(RunPaths(folder.name, folder, nowhere, nowhere, nowhere), trust_stat=False)
        arts.hashes.store = None  # merge reads shards: it writes nothing into them
        return arts

    # -- naming -------------------------------------------------------------------------------

    def key(self, path: Path) -> str:
        """Name a file by the most specific root that holds it."""
        absolute = path.resolve()
        best: tuple[int, str] | None = None
        for root_name, root in self.roots.items():
            try:
                rel = absolute.relative_to(root.resolve())
            except ValueError:
                continue
            depth = len(root.resolve().parts)
            if best is None or depth > best[0]:
                best = (depth, f"{root_name}:{rel.as_posix()}")
        if best is None:
            raise KitError(f"{path} is outside the run's roots ({', '.join(self.roots)})")
        return best[1]

    def path(self, key: str) -> Path:
        root_name, _, rel = key.partition(":")
        return self.roots[root_name] / rel

    # -- recording ----------------------------------------------------------------------------

    def digest(self, path: Path) -> str:
        return self.hashes.sha256(path)

    def input_digests(
        self, inputs: Iterable[Path], extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Digests of a stage's inputs; files outside every root are named by absolute path."""
        out: dict[str, str] = dict(extra or {})
        for p in inputs:
            out[self.input_name(p)] = self.digest(p)
        return out

    def input_name(self, path: Path) -> str:
        """How input_digests names a file: its key, or its absolute path outside every root."""
        try:
            return self.key(path)
        except KitError:
            return str(path.resolve())

    def record(
        self,
        stage: str,
        inputs: dict[str, str],
        outputs: Iterable[Path],
        details: dict[str, Any] | None = None,
        *,
        replace: bool = True,
        stamp: bool = True,
        key: dict[str, Any] | None = None,
    ) -> dict[str, FileEntry]:
        """Hash outputs, record them under `stage`, save, and write the stage's stamp last.

        replace=False adds to the stage's outputs (the sweep records point by point) and keeps
        the stage's details (and key) unless new ones are given. `key` is what
        bench.core.stage decides currency by, beside the input digests.
        """
        entries = {}
        for p in outputs:
            entries[self.key(p)] = FileEntry(
                size=p.stat().st_size, sha256=self.digest(p), stage=stage
            )
        previous = self.stages.get(stage, {})
        if replace:
            for old in previous.get("outputs", []):
                if old not in entries:
                    self.files.pop(old, None)
            keys = sorted(entries)
        else:
            keys = sorted(set(previous.get("outputs", [])) | set(entries))
        self.files.update(entries)
        if details is None:
            details = {} if replace else previous.get("details", {})
        if key is None and not replace:
            key = previous.get("key")
        self.stages[stage] = {
            "inputs": inputs,
            "outputs": keys,
            "details": details,
            "finished_at": _now(),
        }
        if key is not None:
            self.stages[stage]["key"] = key
        self.save()
        if stamp:
            self.write_stamp(stage)
        return entries

    def forget(self, keys: Iterable[str]) -> None:
        """Drop files (e.g. an interrupted point's partial outputs) from the record."""
        drop = set(keys)
        for k in drop:
            self.files.pop(k, None)
        for stage in self.stages.values():
            stage["outputs"] = [k for k in stage["outputs"] if k not in drop]
        self.save()

    def write_stamp(self, stage: str) -> None:
        outputs = self.stages[stage]["outputs"]
        lines = [f"{self.files[k].sha256}  {k}" for k in outputs if k in self.files]
        atomic_write_text(self.paths.stamp(stage), "\n".join(lines) + "\n")

    def save(self) -> None:
        atomic_write_json(
            self.paths.artifacts,
            {
                "schema": SCHEMA,
                "run": self.paths.name,
                "files": {k: dataclasses.asdict(v) for k, v in sorted(self.files.items())},
                "stages": self.stages,
            },
        )
        self.hashes.save()

    # -- checking -----------------------------------------------------------------------------

    def placement_problem(self, key: str) -> Problem | None:
        """A key under no known root, leading out of its root, or through a symlink: the file
        would not be the run's own even when its bytes match."""
        root_name, _, rel = key.partition(":")
        if root_name not in self.roots:
            return Problem(key, "unknown root", f"roots are {', '.join(self.roots)}")
        root = self.roots[root_name]
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            return Problem(key, "outside its root", f"the path leaves {root_name}:")
        for depth in range(1, len(parts) + 1):
            step = root.joinpath(*parts[:depth])
            if step.is_symlink():
                return Problem(
                    key,
                    "symlink",
                    f"{root_name}:{Path(*parts[:depth]).as_posix()} -> {os.readlink(step)}",
                )
        return None

    def check(self, keys: Iterable[str]) -> list[Problem]:
        """Each key's file against its recorded size and sha256; where it lies checked first."""
        problems = []
        for key in keys:
            if (misplaced := self.placement_problem(key)) is not None:
                problems.append(misplaced)
                continue
            entry, path = self.files.get(key), self.path(key)
            if entry is None:
                problems.append(Problem(key, "missing", "not in artifacts.json"))
            elif not path.is_file():
                problems.append(Problem(key, "missing", f"recorded {entry.size} bytes"))
            elif path.stat().st_size != entry.size:
                problems.append(
                    Problem(key, "changed", f"size {path.stat().st_size} != {entry.size}")
                )
            elif (digest := self.digest(path)) != entry.sha256:
                problems.append(
                    Problem(key, "changed", f"sha256 {digest[:12]}… != {entry.sha256[:12]}…")
                )
        return problems

    def unexpected(self) -> list[Problem]:
        """Files under the run's own roots (not the shared model store) that nobody recorded."""
        found = []
        for root_name in ("run", "work", "reports"):
            root = self.roots[root_name]
            if not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                rel_dir = Path(dirpath).relative_to(root)
                if rel_dir == Path("."):
                    dirnames[:] = [d for d in dirnames if d not in UNTRACKED]
                for name in dirnames:  # os.walk does not enter them: say so
                    if (Path(dirpath) / name).is_symlink():
                        key = f"{root_name}:{(rel_dir / name).as_posix()}"
                        target = os.readlink(Path(dirpath) / name)
                        found.append(Problem(key, "symlink", f"a folder linked to {target}"))
                for name in filenames:
                    rel = (rel_dir / name).as_posix()
                    if rel_dir == Path(".") and name in UNTRACKED:
                        continue
                    key = f"{root_name}:{rel}"
                    if key not in self.files:
                        hint = (
                            "left by an interrupted write"
                            if name.endswith(".tmp")
                            else "not recorded"
                        )
                        found.append(Problem(key, "unexpected", hint))
        return found

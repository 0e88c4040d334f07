"""The one rule for "is this stage current?", and the one skip-or-record sequence every stage uses.

A stage is current when what it would do now is what it did last time: the same explicit
`VERSION` (each stage module's constant, bumped when its output would change), the same command
(argv or parameters), the same input digests and the same versions of the tools it calls; and its
recorded outputs are intact and its stamp exists. The bytes of the kit's own source files are no
part of it: a comment or a refactor reruns nothing (DVC keys stages the same way: command plus
dependencies). Make's prerequisites only say when to ask; this rule answers.

    key = StageKey("build", VERSION, argv, arts.input_digests(files), tool_versions("tensorrt_llm"))
    if skip_if_current(arts, key, "engine"):
        return 0
    ...  # the work
    record(arts, key, outputs, details)

The key is recorded in artifacts.json beside the stage's inputs ("key": version, command, tools).
Stages without a run (doctor) keep theirs in a small JSON file (read_key_file / write_key_file).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.fileio import atomic_write_json, sha256_bytes

if TYPE_CHECKING:
    from bench.core.artifacts import Artifacts, FileEntry


def _plain(value: Any) -> Any:
    """The value as JSON gives it back (tuples become lists, paths strings): keys compare equal
    whether they were just made or read from artifacts.json."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class StageKey:
    """What decides a stage's output: compared field by field with the recorded one."""

    stage: str
    version: int
    command: Any  # argv (list of str) or parameters (dict); JSON-serializable
    inputs: dict[str, str] = field(default_factory=dict)  # name -> sha256 (Artifacts names)
    tools: dict[str, Any] = field(default_factory=dict)  # tool -> version (None: absent)

    def recorded(self) -> dict[str, Any]:
        """What goes beside the inputs in the stage's record."""
        return {
            "version": self.version,
            "command": _plain(self.command),
            "tools": _plain(self.tools),
        }

    def material(self) -> dict[str, Any]:
        """Everything in the key, as one JSON object (the stage cache hashes it)."""
        return {"stage": self.stage, **self.recorded(), "inputs": dict(sorted(self.inputs.items()))}

    def digest(self) -> str:
        return sha256_bytes(json.dumps(self.material(), sort_keys=True).encode("utf-8"))


def tool_versions(*distributions: str) -> dict[str, str | None]:
    """Installed versions of Python distributions a stage calls (None: not installed here)."""
    out: dict[str, str | None] = {}
    for name in distributions:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def executable_identity(name: str) -> str | None:
    """A command-line tool on PATH (or a script path) as path, size and mtime: a reinstalled or
    edited tool is another tool, whatever version it prints."""
    found = shutil.which(name) if os.sep not in name else (name if os.path.exists(name) else None)
    if found is None:
        return None
    st = os.stat(found)
    return f"{os.path.realpath(found)} {st.st_size} {st.st_mtime_ns}"


def differences(recorded: dict[str, Any] | None, key: StageKey) -> list[str]:
    """What differs between a stage's record and the key, one short phrase each; empty: equal."""
    if recorded is None:
        return ["never ran"]
    said = recorded.get("key")
    if not isinstance(said, dict):
        return ["recorded without a stage key (an older kit)"]
    out = []
    if said.get("version") != key.version:
        out.append(f"VERSION {said.get('version')} -> {key.version}")
    if said.get("command") != _plain(key.command):
        out.append("command changed")
    old_tools, new_tools = said.get("tools") or {}, _plain(key.tools)
    for tool in sorted(set(old_tools) | set(new_tools)):
        if old_tools.get(tool) != new_tools.get(tool):
            out.append(f"{tool} {old_tools.get(tool)} -> {new_tools.get(tool)}")
    old_inputs = recorded.get("inputs") or {}
    for name in sorted(set(old_inputs) | set(key.inputs)):
        if name not in key.inputs:
            out.append(f"input {name} gone")
        elif name not in old_inputs:
            out.append(f"new input {name}")
        elif old_inputs[name] != key.inputs[name]:
            out.append(f"input {name} changed")
    return out


def reasons_to_run(arts: Artifacts, key: StageKey) -> list[str]:
    """Why the stage must run; empty when it is current (key equal, outputs intact, stamped)."""
    recorded = arts.stages.get(key.stage)
    if why := differences(recorded, key):
        return why
    assert recorded is not None  # differences() says "never ran" for a missing record
    if not arts.paths.stamp(key.stage).exists():
        return ["no stamp"]
    return [f"output {p.key} {p.kind}" for p in arts.check(recorded["outputs"])]


def is_current(arts: Artifacts, key: StageKey) -> bool:
    return not reasons_to_run(arts, key)


def _shown(reasons: list[str], limit: int = 4) -> str:
    more = f"; and {len(reasons) - limit} more" if len(reasons) > limit else ""
    return "; ".join(reasons[:limit]) + more


def skip_if_current(arts: Artifacts, key: StageKey, what: str) -> bool:
    """True (and the stamp refreshed for Make) when the stage is current; else say why it runs."""
    reasons = reasons_to_run(arts, key)
    if not reasons:
        print(f"[{key.stage}] current: skipped ({what} intact)", file=sys.stderr)
        arts.write_stamp(key.stage)
        arts.hashes.save()
        return True
    if reasons != ["never ran"]:
        print(f"[{key.stage}] runs: {_shown(reasons)}", file=sys.stderr)
    return False


def record(
    arts: Artifacts,
    key: StageKey,
    outputs: Iterable[Path],
    details: dict[str, Any] | None = None,
    **options: bool,
) -> dict[str, FileEntry]:
    """Record the stage's outputs under its key (Artifacts.record's options: replace, stamp)."""
    return arts.record(key.stage, key.inputs, outputs, details, key=key.recorded(), **options)


# ----------------------------------------------------------------------------- stages without a run


def read_key_file(path: Path) -> dict[str, Any] | None:
    """A key file's record ({"inputs", "key", ...}); None when absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_key_file(path: Path, key: StageKey, details: dict[str, Any] | None = None) -> None:
    atomic_write_json(
        path, {"inputs": key.inputs, "key": key.recorded(), "details": _plain(details or {})}
    )

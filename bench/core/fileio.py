"""Atomic writes and streaming sha256: the two primitives every stage's outputs go through."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed: hashlib.file_digest reads chunks, never the whole file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_beside(path: Path) -> Path:
    """A new, uniquely named <name>.<random>.tmp in path's folder (created empty, mode 0644).

    Unique, so two processes writing the same file (shards sharing models/ on one host) never
    write into each other's temp file; the last rename wins, and readers see a whole file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)
    return Path(name)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a temp file beside the target, fsync, rename: readers see old or new, never half."""
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no NaN/inf (unknown is null), trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


REWRITE = "restore it from a copy, or rerun the stage that writes it"


def read_json_object(path: Path, fix: str = REWRITE) -> dict:
    """A JSON object from a recorded file; a corrupt, unreadable or non-object file is a KitError
    naming the file (one line and exit 2 at the edge), never a traceback."""
    from bench.core.errors import KitError

    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not valid JSON"
        raise KitError(f"unreadable JSON ({reason})", path=str(path), fix=fix) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise KitError(f"holds a JSON {kind}, not an object", path=str(path), fix=fix)
    return data

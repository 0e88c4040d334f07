"""A stat-keyed cache of file sha256s, so a stage does not re-read tens of GB it hashed before.

Why: every stage hashes its inputs and outputs (a 16 GB model, the checkpoint, the engine), and
each stage re-hashes what the previous one just recorded. Like git's index and DVC's state
database, a file whose (st_dev, st_ino, st_size, st_mtime_ns) is the one recorded beside its
digest is taken as unchanged; any difference, or a file hashed within RACY_NS of its last write
(a second write in the same timestamp tick would keep its mtime), is read again.

What it cannot see: a file changed in place whose size and mtime were then forged back
(`touch -d` to the old time). Only `make verify` catches that: it never trusts this cache and
re-reads every byte (HashCache(..., trust_stat=False)), refreshing the entries it reads.

Stored per run in results/<run>/.stamps/hashes.json (never an artifact). Two writers (two make
calls, verify beside a stage) merge on save and replace the file atomically: the worst a race
loses is a cache entry, which costs one re-read, never a wrong digest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.core.fileio import atomic_write_json, sha256_file

SCHEMA = "trtllm-repro/hashes/1"
# A digest is cached only when its file was last written at least this long before it was
# stat'ed: a write inside the same timestamp tick (coarse kernel clocks, NFS servers) would
# leave size and mtime as they were.
RACY_NS = 1_000_000_000

Stat = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


def stat_key(path: Path) -> Stat:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _load(path: Path | None) -> dict[str, dict]:
    """The stored entries; an unreadable or foreign file is an empty cache (it is only a cache)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return {}
    entries = data.get("files")
    if not isinstance(entries, dict):
        return {}
    return {
        k: v
        for k, v in entries.items()
        if isinstance(v, dict)
        and isinstance(v.get("stat"), list)
        and len(v["stat"]) == 4
        and isinstance(v.get("sha256"), str)
    }


class HashCache:
    """sha256 of files by absolute path, trusted while their stat is the one hashed.

    trust_stat=False (verify) reads every file whatever the cache says, and stores what it read.
    """

    def __init__(self, store: Path | None, *, trust_stat: bool = True) -> None:
        self.store = store
        self.trust_stat = trust_stat
        self.entries = _load(store)
        self.fresh: dict[str, dict] = {}  # hashed by this process, saved by save()
        self.reads = 0  # files read (tests and the benchmark count them)

    def sha256(self, path: Path) -> str:
        name = str(Path(os.path.abspath(path)))
        before = stat_key(path)
        entry = self.fresh.get(name) or self.entries.get(name)
        if self.trust_stat and entry is not None and tuple(entry["stat"]) == before:
            return entry["sha256"]
        checked_ns = time.time_ns()
        digest = sha256_file(path)
        self.reads += 1
        settled = checked_ns - before[3] >= RACY_NS
        if settled and stat_key(path) == before:  # unchanged while it was read
            self.fresh[name] = {"stat": list(before), "sha256": digest}
        else:
            self.fresh.pop(name, None)
            self.entries.pop(name, None)
        return digest

    def save(self) -> None:
        """Merge this process's digests into the stored file (another writer's stay)."""
        if self.store is None or not self.fresh:
            return
        merged = _load(self.store) | self.fresh
        try:
            atomic_write_json(self.store, {"schema": SCHEMA, "files": merged})
        except OSError:
            return  # a read-only run (a copy under review): the cache is only a speed-up
        self.entries, self.fresh = merged, {}

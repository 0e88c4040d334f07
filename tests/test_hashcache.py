"""bench.core.hashcache: a digest is reused only while (dev, inode, size, mtime_ns) is the one it
was taken at; verify never reuses one, so a change with a forged stat is still caught there."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from test_report import RECORDS, make_run

from bench.core.artifacts import Artifacts
from bench.core.hashcache import HashCache
from bench.stages import ifchanged, report, verify

HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


def settled(path: Path, data: bytes, mtime_ns: int = HOUR_AGO_NS) -> Path:
    """A file last written an hour ago (a digest taken now is not racy)."""
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_an_unchanged_stat_is_not_read_again(tmp_path):
    f = settled(tmp_path / "f.bin", b"abc")
    cache = HashCache(tmp_path / "hashes.json")
    assert cache.sha256(f) == hashlib.sha256(b"abc").hexdigest()
    cache.save()
    again = HashCache(tmp_path / "hashes.json")
    assert again.sha256(f) == hashlib.sha256(b"abc").hexdigest() and again.reads == 0


@pytest.mark.parametrize("change", ["mtime", "size", "inode"])
def test_a_changed_stat_is_read_again(tmp_path, change):
    f = settled(tmp_path / "f.bin", b"abc")
    cache = HashCache(tmp_path / "hashes.json")
    cache.sha256(f)
    cache.save()
    if change == "mtime":  # same bytes count, other bytes, a new mtime
        settled(f, b"abd", HOUR_AGO_NS + 1)
    elif change == "size":  # size differs, mtime forged back
        settled(f, b"abcd")
    else:  # a new file (another inode) in its place, size and mtime forged back
        replacement = settled(tmp_path / "g.bin", b"abd")
        keep = tmp_path / "keep.bin"
        os.link(f, keep)  # the old inode stays in use, so the new file cannot reuse its number
        os.replace(replacement, f)
    again = HashCache(tmp_path / "hashes.json")
    assert again.sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert again.reads == 1


def test_a_file_written_within_the_racy_window_is_not_cached(tmp_path):
    f = tmp_path / "fresh.bin"
    f.write_bytes(b"just written")
    cache = HashCache(tmp_path / "hashes.json")
    cache.sha256(f)
    cache.save()
    again = HashCache(tmp_path / "hashes.json")
    again.sha256(f)
    assert again.reads == 1  # a second write in the same mtime tick would have kept the stat


def test_two_writers_keep_each_others_entries(tmp_path):
    a, b = settled(tmp_path / "a", b"a"), settled(tmp_path / "b", b"b")
    first, second = HashCache(tmp_path / "h.json"), HashCache(tmp_path / "h.json")
    first.sha256(a)
    second.sha256(b)
    first.save()
    second.save()
    third = HashCache(tmp_path / "h.json")
    third.sha256(a), third.sha256(b)
    assert third.reads == 0


def test_a_corrupt_store_is_an_empty_cache(tmp_path):
    (tmp_path / "h.json").write_text("{not json")
    f = settled(tmp_path / "f", b"x")
    cache = HashCache(tmp_path / "h.json")
    assert cache.sha256(f) == hashlib.sha256(b"x").hexdigest() and cache.reads == 1
    cache.save()
    assert HashCache(tmp_path / "h.json").entries


def test_trust_stat_false_reads_every_byte_and_refreshes(tmp_path):
    f = settled(tmp_path / "f", b"abc")
    HashCache(tmp_path / "h.json").sha256(f)
    cache = HashCache(tmp_path / "h.json")
    cache.sha256(f)
    cache.save()
    settled(f, b"abd")  # changed in place, stat forged back: the cache cannot tell
    trusting = HashCache(tmp_path / "h.json")
    assert trusting.sha256(f) == hashlib.sha256(b"abc").hexdigest()  # the blind spot
    reading = HashCache(tmp_path / "h.json", trust_stat=False)
    assert reading.sha256(f) == hashlib.sha256(b"abd").hexdigest() and reading.reads == 1
    reading.save()  # what verify read replaces the stale entry
    assert HashCache(tmp_path / "h.json").sha256(f) == hashlib.sha256(b"abd").hexdigest()


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def age_every_file(*folders: Path) -> None:
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file():
                os.utime(p, ns=(HOUR_AGO_NS, HOUR_AGO_NS))


def test_a_forged_stat_passes_the_stages_and_only_verify_catches_it(roots, capsys):
    """Documented limit: stages trust (dev, inode, size, mtime_ns); `make verify` re-reads."""
    paths = make_run(roots, RECORDS)
    report.make_report("t")
    age_every_file(paths.root, paths.reports)
    assert verify.main(["--run", "t"]) == 0  # reads every byte, caches what it read
    record = paths.points / "isl128_osl128" / "result.json"
    text = record.read_text()
    st = record.stat()
    at = text.index('"output_tok_s": ') + len('"output_tok_s": ')
    digit = "2" if text[at] == "1" else "1"
    tampered = text[:at] + digit + text[at + 1 :]  # a better number, same length, still valid
    assert len(tampered) == len(text) and tampered != text
    record.write_text(tampered)
    os.utime(record, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not Artifacts(paths).check(["run:points/isl128_osl128/result.json"])  # the blind spot
    capsys.readouterr()
    assert ifchanged.main(["verify", "--run", "t"]) == 0  # make all's verify: stat cache
    assert "current: skipped" in capsys.readouterr().err
    assert verify.main(["--run", "t"]) == 1  # make verify: every byte
    out = capsys.readouterr().out
    assert "isl128_osl128/result.json" in out and "changed" in out


def test_make_alls_verify_repeats_a_pass_and_reverifies_after_any_change(roots, capsys):
    paths = make_run(roots, RECORDS)
    report.make_report("t")
    age_every_file(paths.root, paths.reports)
    assert ifchanged.main(["verify", "--run", "t"]) == 0  # no PASSED verdict yet: verifies
    assert "current: skipped" not in capsys.readouterr().err
    assert ifchanged.main(["verify", "--run", "t"]) == 0
    assert "[verify] current: skipped" in capsys.readouterr().err
    stray = paths.root / "stray.txt"
    stray.write_text("?")
    assert ifchanged.main(["verify", "--run", "t"]) == 1  # an unexpected file: verified again
    stray.unlink()
    shutil.rmtree(paths.reports)
    assert ifchanged.main(["verify", "--run", "t"]) != 0

"""bench.core.artifacts and bench.core.fileio: every file recorded with sha256; tampering is
named."""

from __future__ import annotations

import hashlib
import os

import pytest

from bench.core.artifacts import Artifacts
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_bytes, sha256_file
from bench.core.run import RunPaths, open_run
from bench.core.stage import StageKey, is_current, record
from tests.conftest import DEMO_MANIFEST


@pytest.fixture
def arts(run_roots) -> Artifacts:
    run = open_run(DEMO_MANIFEST, "t")
    return Artifacts(run.paths)


def make(path, data: bytes):
    atomic_write_bytes(path, data)
    return path


def test_sha256_streams_and_matches_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    path = make(tmp_path / "x.bin", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_write_leaves_no_temporary(tmp_path):
    path = make(tmp_path / "a" / "f.txt", b"one")
    make(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]


def test_open_run_records_the_resolved_manifest(arts):
    assert "run:manifest.resolved.toml" in arts.files
    assert arts.stages["init"]["outputs"] == ["run:manifest.resolved.toml"]
    assert arts.unexpected() == []


def test_record_check_and_tamper(arts):
    p = arts.paths
    a = make(p.root / "datasets" / "a.jsonl", b"{}\n")
    w = make(p.work / "checkpoint" / "w.bin", b"weights")
    inputs = arts.input_digests([p.resolved_manifest])
    arts.record("datasets", inputs, [a, w])
    assert arts.paths.stamp("datasets").read_text().count("\n") == 2
    again = Artifacts(p)  # reloads from disk
    assert again.check(again.files) == []
    key = StageKey("datasets", 1, [], inputs)
    assert not is_current(again, key)  # recorded without its key
    record(again, key, [a, w])
    assert is_current(Artifacts(p), key)

    make(a, b"{}\r\n")  # same stage, changed bytes
    w.unlink()
    make(p.root / "stray.txt", b"?")
    make(p.root / "points" / "x.json.tmp", b"")
    problems = {(q.key, q.kind) for q in again.check(again.files) + again.unexpected()}
    assert problems == {
        ("run:datasets/a.jsonl", "changed"),
        ("work:checkpoint/w.bin", "missing"),
        ("run:stray.txt", "unexpected"),
        ("run:points/x.json.tmp", "unexpected"),
    }
    assert not is_current(again, key)


def test_same_size_change_is_caught_by_the_hash(arts):
    a = make(arts.paths.root / "a.txt", b"abc")
    arts.record("x", {}, [a])
    make(a, b"abd")
    [problem] = arts.check(["run:a.txt"])
    assert problem.kind == "changed" and "sha256" in problem.detail


def test_inputs_changed_means_not_current(arts):
    a = make(arts.paths.root / "a.txt", b"abc")
    record(arts, StageKey("x", 1, [], {"in": "1"}), [a])
    assert is_current(arts, StageKey("x", 1, [], {"in": "1"}))
    assert not is_current(arts, StageKey("x", 1, [], {"in": "2"}))


def test_replace_drops_old_outputs_and_forget(arts):
    a = make(arts.paths.root / "a.txt", b"a")
    b = make(arts.paths.root / "b.txt", b"b")
    arts.record("x", {}, [a, b])
    arts.record("x", {}, [a])
    assert "run:b.txt" not in arts.files
    arts.record("x", {}, [b], replace=False)
    assert arts.stages["x"]["outputs"] == ["run:a.txt", "run:b.txt"]
    arts.forget(["run:a.txt"])
    assert arts.stages["x"]["outputs"] == ["run:b.txt"]


def test_keys_name_roots_and_reject_outsiders(arts, tmp_path):
    model = arts.paths.models / "org--m" / "rev" / "config.json"
    assert arts.key(model) == "models:org--m/rev/config.json"
    assert arts.path("models:org--m/rev/config.json") == model
    with pytest.raises(KitError, match=r"outside the run's roots"):
        arts.key(tmp_path / "elsewhere.txt")


def test_changed_manifest_is_refused_naming_the_change(run_roots, tmp_path):
    open_run(DEMO_MANIFEST, "t")
    changed = tmp_path / "demo.toml"
    changed.write_text(DEMO_MANIFEST.read_text().replace("requests = 16 }", "requests = 17 }", 1))
    with pytest.raises(KitError, match=r"(?s)manifest changed.*requests = 17.*RUN=<new name>"):
        open_run(changed, "t")


def test_run_paths_follow_environment(run_roots):
    paths = RunPaths.for_run("r")
    assert paths.root == run_roots / "results" / "r"
    assert paths.model_dir("a/b", "c") == run_roots / "models" / "a--b" / "c"


def test_concurrent_writers_of_one_file_never_mix(tmp_path):
    """Shards on one host write the same model files into the shared models/ folder."""
    import threading

    from bench.core.fileio import atomic_write_bytes

    target = tmp_path / "config.json"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    errors = []

    def write(data: bytes) -> None:
        try:
            for _ in range(20):
                atomic_write_bytes(target, data)
        except Exception as exc:  # any error fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]

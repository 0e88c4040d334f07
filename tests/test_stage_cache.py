"""The shared checkpoint/engine cache: one maker per key, byte-identical reuse, damage detected."""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from bench.core.errors import KitError
from bench.core.stage_cache import cache_key, environment_of, make_or_reuse

INPUTS = {"run:manifest.resolved.toml": "a" * 64, "work:checkpoint/rank0.safetensors": "b" * 64}
ENV = {"gpus": ["NVIDIA H100 80GB HBM3"], "image_digest": "sha256:1", "packages": {}}


def maker(target: Path, content: bytes, calls: list[int] | None = None):
    """A stage's make(): writes two files under target, different bytes on every call."""

    def make() -> list[Path]:
        if calls is not None:
            calls.append(1)
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.json").write_text("{}")
        (target / "rank0.engine").write_bytes(content + os.urandom(8))
        return sorted(p for p in target.rglob("*") if p.is_file())

    return make


def test_second_run_reuses_the_first_runs_bytes(tmp_path):
    cache = tmp_path / "cache"
    a, b = tmp_path / "a" / "engine", tmp_path / "b" / "engine"
    calls: list[int] = []
    files_a, origin_a = make_or_reuse(cache, "build", INPUTS, ENV, a, maker(a, b"x", calls), "a")
    files_b, origin_b = make_or_reuse(cache, "build", INPUTS, ENV, b, maker(b, b"x", calls), "b")
    assert calls == [1]
    assert origin_a["cache"]["reused"] is False and origin_b["cache"]["reused"] is True
    assert origin_b["cache"]["made_by"] == "a"
    assert [p.name for p in files_a] == [p.name for p in files_b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(files_a, files_b, strict=True))


def test_other_inputs_or_environment_make_their_own_entry(tmp_path):
    cache, calls = tmp_path / "cache", []
    for i, (inputs, env) in enumerate(
        [
            (INPUTS, ENV),
            ({**INPUTS, "code": "c" * 64}, ENV),
            (INPUTS, {**ENV, "gpus": ["NVIDIA H100 PCIe"]}),
        ]
    ):
        target = tmp_path / str(i) / "engine"
        make = maker(target, b"x", calls)
        _, origin = make_or_reuse(cache, "build", inputs, env, target, make, "r")
        assert origin["cache"]["reused"] is False
    assert len(calls) == 3
    assert len({cache_key(INPUTS, ENV), cache_key(INPUTS, {**ENV, "image_digest": "x"})}) == 2


def test_no_cache_or_unknown_environment_just_makes(tmp_path):
    target, calls = tmp_path / "engine", []
    for cache, env in [(None, ENV), (tmp_path / "cache", None)]:
        make = maker(target, b"x", calls)
        _, origin = make_or_reuse(cache, "build", INPUTS, env, target, make, "r")
        assert origin == {"cache": None}
    assert len(calls) == 2 and not (tmp_path / "cache").exists()


def test_a_tampered_entry_is_refused_naming_the_file(tmp_path):
    cache = tmp_path / "cache"
    a, b = tmp_path / "a" / "engine", tmp_path / "b" / "engine"
    make_or_reuse(cache, "build", INPUTS, ENV, a, maker(a, b"x"), "a")
    entry = cache / "build" / cache_key(INPUTS, ENV)
    (a / "rank0.engine").unlink()  # the run's own copy goes; the cache's (a hard link) stays
    (entry / "rank0.engine").write_bytes(b"tampered")
    with pytest.raises(KitError) as err:
        make_or_reuse(cache, "build", INPUTS, ENV, b, maker(b, b"x"), "b")
    assert "rank0.engine" in str(err.value) and "remove" in err.value.fix
    assert not b.exists()


def test_a_maker_that_failed_leaves_no_entry(tmp_path):
    cache, target = tmp_path / "cache", tmp_path / "engine"

    def fail() -> list[Path]:
        target.mkdir(parents=True)
        (target / "half.engine").write_bytes(b"half")
        raise RuntimeError("trtllm-build died")

    with pytest.raises(RuntimeError):
        make_or_reuse(cache, "build", INPUTS, ENV, target, fail, "a")
    assert not (cache / "build" / f"{cache_key(INPUTS, ENV)}.json").exists()
    calls: list[int] = []
    _, origin = make_or_reuse(cache, "build", INPUTS, ENV, target, maker(target, b"x", calls), "a")
    assert calls == [1] and origin["cache"]["reused"] is False


def test_an_entry_without_its_index_is_made_again(tmp_path):
    """A maker killed between moving the entry into place and writing its index."""
    cache, target = tmp_path / "cache", tmp_path / "engine"
    orphan = cache / "build" / cache_key(INPUTS, ENV)
    orphan.mkdir(parents=True)
    (orphan / "stale.engine").write_bytes(b"stale")
    files, _ = make_or_reuse(cache, "build", INPUTS, ENV, target, maker(target, b"x"), "a")
    assert not (orphan / "stale.engine").exists()
    assert sorted(p.name for p in orphan.iterdir()) == ["config.json", "rank0.engine"]
    assert [p.name for p in files] == ["config.json", "rank0.engine"]


def _racer(cache: str, root: str, name: str, log: str) -> None:
    target = Path(root) / name / "engine"

    def slow_make() -> list[Path]:
        with open(log, "a") as f:
            f.write(name + "\n")
        time.sleep(0.5)
        return maker(target, b"x")()

    make_or_reuse(Path(cache), "build", INPUTS, ENV, target, slow_make, name)


def test_concurrent_shards_make_once_and_share(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "makers.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_racer, args=(str(cache), str(tmp_path), f"s{i}", str(log)))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(log.read_text().split()) == 1
    engines = {(tmp_path / f"s{i}" / "engine" / "rank0.engine").read_bytes() for i in range(3)}
    assert len(engines) == 1


def test_the_environment_is_the_gpu_cuda_used_not_the_hosts_others():
    """Shards of a mixed host must not share an engine built for another GPU model."""
    gpus = [{"name": "NVIDIA H100 80GB HBM3", "index": 0}, {"name": "NVIDIA H100 PCIe", "index": 1}]
    on = {
        visible: environment_of({"gpus": gpus, "environment": {"CUDA_VISIBLE_DEVICES": visible}})
        for visible in ("0", "1")
    }
    assert on["0"]["gpus"] == ["NVIDIA H100 80GB HBM3"] and on["1"]["gpus"] == ["NVIDIA H100 PCIe"]
    assert cache_key(INPUTS, on["0"]) != cache_key(INPUTS, on["1"])


def test_a_filesystem_without_locks_is_a_clear_error(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    target = tmp_path / "engine"
    with pytest.raises(KitError) as err:
        make_or_reuse(tmp_path / "cache", "build", INPUTS, ENV, target, maker(target, b"x"), "a")
    assert "does not support file locks" in str(err.value) and "CACHE_DIR=" in err.value.fix


def test_a_cache_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    target = tmp_path / "engine"
    with pytest.raises(KitError) as err:
        make_or_reuse(tmp_path / "cache", "build", INPUTS, ENV, target, maker(target, b"x"), "a")
    assert "cannot use the stage cache" in str(err.value) and "CACHE_DIR=" in err.value.fix


def test_a_half_materialized_target_is_cleared_even_with_the_cache_off(tmp_path):
    target = tmp_path / "engine"
    (tmp_path / "engine.from-cache").mkdir()
    (tmp_path / "engine.from-cache" / "rank0.engine").write_bytes(b"half")
    make_or_reuse(None, "build", INPUTS, ENV, target, maker(target, b"x"), "a")
    assert not (tmp_path / "engine.from-cache").exists()


def test_environment_is_what_changes_the_bytes():
    provenance = {
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "temperature_c": 30}],
        "software": {
            "container": {"digest": "sha256:abc", "image": "x"},
            "packages": {"tensorrt_llm": "1.0.0", "torch": "2.8.0", "numpy": "1.26.4"},
        },
        "host": {"cpu_model": "a"},
    }
    env = environment_of(provenance)
    assert env["gpus"] == ["NVIDIA H100 80GB HBM3"] and env["image_digest"] == "sha256:abc"
    assert env["packages"]["tensorrt_llm"] == "1.0.0" and "numpy" not in env["packages"]
    assert "GPU-1" not in json.dumps(env) and "cpu_model" not in json.dumps(env)

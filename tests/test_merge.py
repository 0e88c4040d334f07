"""bench.stages.merge's refusals, without running shards: what makes two shards different
measurements."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.errors import KitError
from bench.core.fileio import atomic_write_json, sha256_file
from bench.stages import merge

H100 = {"name": "NVIDIA H100 80GB HBM3", "index": 0}
H100_PCIE = {"name": "NVIDIA H100 PCIe", "index": 1}


def shard(
    root: Path, name: str, *, gpus: list[dict], visible: str | None, engine: str = "e" * 64
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.resolved.toml").write_text('name = "m"\n')
    environment = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    atomic_write_json(folder / "provenance.json", {"gpus": gpus, "environment": environment})
    key = "work:engine/rank0.engine"
    own = {
        f"run:{f}": {"size": (folder / f).stat().st_size, "sha256": sha256_file(folder / f)}
        for f in ("manifest.resolved.toml", "provenance.json")
    }
    atomic_write_json(
        folder / "artifacts.json",
        {
            "schema": "trtllm-repro/artifacts/1",
            "files": {
                key: {"size": 1, "sha256": engine, "stage": "build"},
                **{k: {**v, "stage": "init"} for k, v in own.items()},
            },
            "stages": {
                "build": {"inputs": {}, "outputs": [key], "details": {}},
                "init": {"inputs": {}, "outputs": sorted(own), "details": {}},
            },
        },
    )
    (folder / ".stamps").mkdir()
    (folder / ".stamps" / "sweep.ok").write_text("")
    return folder


def test_shards_on_one_gpu_model_agree(tmp_path):
    a = shard(tmp_path, "a", gpus=[H100, {**H100, "index": 1}], visible="0")
    b = shard(tmp_path, "b", gpus=[H100, {**H100, "index": 1}], visible="1")
    assert merge.disagreements([a, b]) == []


def test_shards_on_different_gpu_models_are_refused(tmp_path):
    """On a host with an SXM and a PCIe H100, the shard given GPU 1 measured another machine."""
    a = shard(tmp_path, "a", gpus=[H100, H100_PCIE], visible="0")
    b = shard(tmp_path, "b", gpus=[H100, H100_PCIE], visible="1")
    (problem,) = merge.disagreements([a, b])
    assert problem == ("b: ran on ['NVIDIA H100 PCIe'], not ['NVIDIA H100 80GB HBM3']")


def test_shards_with_their_own_engines_are_refused(tmp_path):
    a = shard(tmp_path, "a", gpus=[H100], visible=None)
    b = shard(tmp_path, "b", gpus=[H100], visible=None, engine="f" * 64)
    (problem,) = merge.disagreements([a, b])
    assert problem.startswith("b: work:engine/rank0.engine sha256 ffff")


def test_the_fix_offered_matches_what_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "results"))
    a = shard(tmp_path, "a", gpus=[H100, H100_PCIE], visible="0")
    own_engine = shard(tmp_path, "b", gpus=[H100, H100_PCIE], visible="0", engine="f" * 64)
    with pytest.raises(KitError) as err:
        merge.merge("m", [a, own_engine])
    assert "CACHE_DIR" in err.value.fix  # same machine kind: sharing the cache would have helped
    other_gpu = shard(tmp_path, "c", gpus=[H100, H100_PCIE], visible="1", engine="f" * 64)
    with pytest.raises(KitError) as err:
        merge.merge("m", [a, other_gpu])
    assert "CACHE_DIR" not in err.value.fix and "GPU model" in err.value.fix
    assert not (tmp_path / "results" / "m").exists()

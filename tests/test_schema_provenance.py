"""bench.schema.provenance: provenance.json validated where read, and one machine identity that
capture, the stage cache and merge each compare a named part of."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bench.core.errors import KitError
from bench.core.stage_cache import cache_key, environment_of, run_environment
from bench.schema.provenance import (
    MAKES_FILES,
    WHOLE,
    identity_changes,
    machine_identity,
    parse_provenance,
)
from bench.stages import merge

CAPTURE = Path(__file__).parent / "data" / "provenance" / "h200x2-shard2-cuda-visible-1.json"


def capture() -> dict:
    return json.loads(CAPTURE.read_text(encoding="utf-8"))


def changed(path: tuple, value) -> dict:
    doc = copy.deepcopy(capture())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def identity_of(doc: dict):
    return machine_identity(parse_provenance(doc, "provenance.json"))


def test_the_identity_is_the_gpu_cuda_used_and_the_software():
    ident = identity_of(capture())
    assert ident.gpus == ["NVIDIA H200"]  # CUDA_VISIBLE_DEVICES=1 of two H200s
    assert ident.driver_version == "580.159.04" and ident.packages["modelopt"] == "0.37.0"


@pytest.mark.parametrize(
    ("path", "value", "change", "capture_refuses", "cache_misses"),
    [
        (
            ("gpus", 1, "name"),
            "NVIDIA H100 PCIe",
            "gpus: ['NVIDIA H200'] -> ['NVIDIA H100 PCIe']",
            True,
            True,
        ),
        (
            ("gpus", 1, "driver_version"),
            "590.1",
            "driver_version: '580.159.04' -> '590.1'",
            True,
            False,
        ),
        (("software", "packages", "torch"), "2.99", "torch: '2.11.0' -> '2.99'", True, True),
        (
            ("software", "container", "digest"),
            "sha256:b",
            "image_digest: None -> 'sha256:b'",
            True,
            True,
        ),
        (("gpus", 0, "name"), "NVIDIA H100 PCIe", None, False, False),  # a GPU CUDA did not use
        (("software", "packages", "numpy"), "0.1", None, False, False),
        (("host", "cpu_model"), "another CPU", None, False, False),
    ],
)
def test_each_check_compares_its_part_of_one_identity(
    path, value, change, capture_refuses, cache_misses
):
    old, new = identity_of(capture()), identity_of(changed(path, value))
    changes = identity_changes(old, new, WHOLE)
    assert changes == ([change] if change else [])
    assert bool(changes) is capture_refuses
    assert bool(identity_changes(old, new, MAKES_FILES)) is cache_misses
    key = cache_key({}, environment_of(capture()))
    assert (key != cache_key({}, environment_of(changed(path, value)))) is cache_misses


def test_merge_refuses_shards_of_another_image_by_the_same_identity(tmp_path: Path):
    shards = []
    for name, digest in (("a", "sha256:1"), ("b", "sha256:2")):
        (tmp_path / name).mkdir()
        doc = changed(("software", "container", "digest"), digest)
        (tmp_path / name / "provenance.json").write_text(json.dumps(doc), encoding="utf-8")
        shards.append(tmp_path / name)
    assert merge.machine_problems(shards[1], shards[0]) == ["b: image digest sha256:2 != sha256:1"]
    assert merge.machine_problems(shards[0], shards[0]) == []


@pytest.mark.parametrize(
    ("doc", "key", "words"),
    [
        (changed(("gpus", 0, "index"), "zero"), "gpus.0.index", "valid integer"),
        (changed(("software", "packages"), ["torch"]), "software.packages", "valid dictionary"),
        (
            changed(("environment", "CUDA_VISIBLE_DEVICES"), 1),
            "environment.CUDA_VISIBLE_DEVICES",
            "valid string",
        ),
        (changed(("host", "hostname"), "a"), "host.hostname", "unknown key"),
        (changed(("schema",), "trtllm-repro/provenance/9"), "schema", "trtllm-repro/provenance/1"),
    ],
)
def test_a_malformed_provenance_stops_the_stage_naming_the_key(tmp_path, doc, key, words):
    path = tmp_path / "provenance.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(KitError) as err:
        run_environment(path)  # what quantize and build read before using the cache
    assert (err.value.path, err.value.key) == (str(path), key)
    assert words in err.value.message and err.value.fix


def test_no_gpu_and_no_image_are_valid():
    """A CPU host: no GPU (the note says why), no image, no cross-check."""
    doc = {"gpus": [], "gpu_note": "no NVIDIA GPU found (NVML: not importable)", "gpu_source": None}
    ident = identity_of(doc)
    assert (ident.gpus, ident.driver_version, ident.image_digest) == ([], None, None)

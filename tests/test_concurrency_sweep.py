"""[sweep] concurrency and streaming (issue 12): expansion, the requests-per-point rule, point ids,
and the argv each point gets."""

from __future__ import annotations

import tomllib

import pytest

from bench.backends.base import PointPaths
from bench.backends.trtllm import commands as trtllm
from bench.core.errors import KitError
from bench.core.manifest import (
    REQUESTS_PER_CONCURRENCY,
    parse_manifest,
    requests_for,
    resolved_toml,
)
from bench.core.run import point_id
from tests.conftest import DEMO_MANIFEST, ROOT

LATENCY_MANIFEST = ROOT / "manifests" / "llama-3.1-8b-fp8-h100-latency.toml"


@pytest.fixture
def demo() -> dict:
    return tomllib.loads(DEMO_MANIFEST.read_text(encoding="utf-8"))


def offline(demo: dict) -> dict:
    """The demo's four offline points, with the kit's default requests per concurrency."""
    demo["sweep"]["points"] = [p for p in demo["sweep"]["points"] if "concurrency" not in p]
    demo["sweep"].pop("requests_per_concurrency", None)
    return demo


def test_every_point_runs_at_every_concurrency_and_its_own_value_wins(demo):
    data = offline(demo)
    data["sweep"]["concurrency"] = [1, 4]
    data["sweep"]["points"].append({"isl": 16, "osl": 16, "requests": 3, "concurrency": 2})
    points = parse_manifest(data).sweep.points
    assert [(p.isl, p.osl, p.concurrency) for p in points] == [
        (32, 16, 1),
        (32, 16, 4),
        (32, 32, 1),
        (32, 32, 4),
        (64, 16, 1),
        (64, 16, 4),
        (64, 32, 1),
        (64, 32, 4),
        (16, 16, 2),
    ]


def test_requests_grow_with_concurrency(demo):
    data = offline(demo)
    data["sweep"]["concurrency"] = [1, 8]
    points = parse_manifest(data).sweep.points
    # max(16, 10 x c): 16 at c=1, 80 at c=8 (the kit's default per slot)
    assert REQUESTS_PER_CONCURRENCY == 10
    assert {(p.concurrency, p.requests) for p in points} == {(1, 16), (8, 80)}
    data["sweep"]["requests_per_concurrency"] = 1
    assert {p.requests for p in parse_manifest(data).sweep.points} == {16}


def test_requests_rule_leaves_offline_points_alone(demo):
    m = parse_manifest(offline(demo))
    assert all(p.concurrency is None for p in m.sweep.points)
    assert requests_for(m.sweep.points[0], 10) == 16


def test_resolved_form_lists_the_expanded_points_and_reloads_the_same(demo):
    data = offline(demo)
    data["sweep"]["concurrency"] = [1, 4]
    m = parse_manifest(data)
    text = resolved_toml(m)
    again = parse_manifest(tomllib.loads(text))
    assert again == m and resolved_toml(again) == text  # expansion is idempotent


def test_offline_point_ids_do_not_change(demo):
    m = parse_manifest(offline(demo))
    assert [point_id(p.isl, p.osl, p.concurrency) for p in m.sweep.points] == [
        "isl32_osl16",
        "isl32_osl32",
        "isl64_osl16",
        "isl64_osl32",
    ]
    assert point_id(32, 16, 4, 1) == "isl32_osl16_c4_r1"


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda s: s.update(concurrency=[4, 4]), r"repeats a value"),
        (lambda s: s.update(concurrency=[0]), r"sweep\.concurrency\[0\] = 0"),
        (lambda s: s.update(concurrency=[]), r"sweep\.concurrency"),
        (lambda s: s.update(concurrency=4), r"sweep\.concurrency"),
        (lambda s: s.update(streaming="yes"), r"sweep\.streaming"),
        (
            lambda s: s["points"].append({"isl": 32, "osl": 16, "requests": 1, "concurrency": 4}),
            r"duplicate .*concurrency=4",
        ),
    ],
)
def test_bad_sweep_settings_name_the_key(demo, change, match):
    change(demo["sweep"])
    with pytest.raises(KitError, match=match):
        parse_manifest(demo, "m.toml")


def test_runtime_streaming_moved_to_sweep(demo):
    demo["runtime"]["streaming"] = True
    with pytest.raises(KitError, match=r"runtime\.streaming: unknown key"):
        parse_manifest(demo, "m.toml")


def test_latency_manifest_sweeps_concurrency_with_streaming(tmp_path):
    data = tomllib.loads(LATENCY_MANIFEST.read_text(encoding="utf-8"))
    m = parse_manifest(data, str(LATENCY_MANIFEST))
    assert m.sweep.streaming and m.sweep.concurrency
    assert {p.concurrency for p in m.sweep.points} == set(m.sweep.concurrency)
    for p in m.sweep.points:
        assert p.requests >= m.sweep.requests_per_concurrency * p.concurrency
        paths = PointPaths(
            model_path=tmp_path,
            dataset=tmp_path / "d.jsonl",
            report_json=tmp_path / "report.json",
            workspace=tmp_path,
            request_json=tmp_path / "request.json",
        )
        argv = trtllm.throughput_argv(m, p, paths, kv_fraction=0.95)
        at = argv.index("--concurrency")
        assert argv[at + 1] == str(p.concurrency) and "--streaming" in argv
        assert argv[argv.index("--request_json") + 1] == str(tmp_path / "request.json")


def test_smoke_of_a_concurrency_sweep_keeps_few_requests():
    from bench.core.manifest import load_manifest
    from bench.stages.smoke import smoke_data

    m = load_manifest(LATENCY_MANIFEST)
    data = smoke_data(tomllib.loads(LATENCY_MANIFEST.read_text(encoding="utf-8")), m)
    smoke = parse_manifest(data)
    # the cheapest point at 16 requests; the most demanding at one request per slot, not 10
    assert [(p.concurrency, p.requests) for p in smoke.sweep.points] == [(1, 16), (256, 256)]

"""bench.analysis.reference: schema (unknown keys, bad values), the shipped files, internal
consistency."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bench.analysis.reference import (
    METHOD_FIELDS,
    consistency_problems,
    load_reference,
    main,
    parse_reference,
)
from bench.core.errors import KitError

PUBLISHED = Path(__file__).resolve().parents[1] / "manifests" / "published"
BASE = {
    "schema": "trtllm-repro/reference/1",
    "title": "t",
    "source": "s",
    "date": "2026-01-01",
    "identity": {"leaves_open": list(METHOD_FIELDS)},
}


def ref(**extra):
    return parse_reference({**BASE, **extra})


def test_shipped_nvidia_references_load_and_are_consistent() -> None:
    for name in ("0.20", "0.21", "1.0"):
        r = load_reference(PUBLISHED / f"nvidia-perf-overview-{name}.toml")
        assert r.identity.tp_size == 1 and r.identity.gpu == "H100-SXM"
        assert consistency_problems(r) == []
    r10 = load_reference(PUBLISHED / "nvidia-perf-overview-1.0.toml")
    first = r10.points[0]
    assert (first.isl, first.osl, first.requests, first.output_tok_s) == (128, 128, 30000, 28312)
    r20 = load_reference(PUBLISHED / "nvidia-perf-overview-0.20.toml")
    no_count = [p for p in r20.points if p.requests is None]
    assert [(p.isl, p.osl) for p in no_count] == [(1024, 2048)]


def test_seed_claims_contradict_themselves() -> None:
    r = load_reference(PUBLISHED / "seed-report-claims.toml")
    assert r.identity.model == "meta-llama/Llama-3.1-8B-Instruct" and r.identity.gpus == 1
    problems = consistency_problems(r)
    assert any(
        p.startswith(
            "best_per_osl[0] (ISL 1024, OSL 128, 3,575.36): not the best; "
            "points[9] states ISL 128, OSL 128 at 14,389.80"
        )
        for p in problems
    )


def test_rate_consistency() -> None:
    good = ref(points=[{"isl": 128, "osl": 1024, "output_tok_s": 19787.63, "req_s": 19.3239}])
    assert consistency_problems(good) == []
    bad = ref(points=[{"isl": 128, "osl": 128, "output_tok_s": 28779.6, "req_s": 112.42}])
    (problem,) = consistency_problems(bad)
    assert "req/s x OSL = 112.42 x 128 = 14,389.76" in problem


def test_best_row_must_be_the_max() -> None:
    r = ref(
        points=[
            {"isl": 128, "osl": 128, "output_tok_s": 100.0},
            {"isl": 128, "osl": 256, "output_tok_s": 200.0},
        ],
        best_per_isl=[{"isl": 128, "osl": 128, "output_tok_s": 100.0}],
        best_per_osl=[{"isl": 128, "osl": 256, "output_tok_s": 210.0}],
        peak={"output_tok_s": 150.0},
    )
    problems = consistency_problems(r)
    assert any("best_per_isl[0]" in p and "not the best" in p for p in problems)
    assert any("best_per_osl[0]" in p and "points[1] states 200.00" in p for p in problems)
    assert any(p.startswith("peak 150.00 is below") for p in problems)


def test_rank_order_and_total_tokens() -> None:
    r = ref(
        points=[
            {"isl": 1, "osl": 1, "output_tok_s": 10.0, "rank": 1},
            {
                "isl": 2,
                "osl": 2,
                "output_tok_s": 20.0,
                "rank": 2,
                "requests": 10,
                "total_tokens": 100,
            },
        ]
    )
    problems = consistency_problems(r)
    assert any("rank 2" in p and "above rank 1" in p for p in problems)
    assert any("total tokens 100 but requests x (ISL + OSL) = 40" in p for p in problems)


def test_unknown_key_is_named() -> None:
    with pytest.raises(
        KitError,
        match=r"points\[0\]\.speed: unknown key; allowed here: concurrency, isl, latency, note",
    ):
        ref(points=[{"isl": 1, "osl": 1, "output_tok_s": 1.0, "speed": 3}])


def test_bad_values_are_named() -> None:
    with pytest.raises(KitError, match=r"points\[0\]\.isl = 0"):
        ref(points=[{"isl": 0, "osl": 1, "output_tok_s": 1.0}])
    with pytest.raises(KitError, match=r"date = 'July 2025'"):
        parse_reference({**BASE, "date": "July 2025"})
    with pytest.raises(KitError, match=r"tolerance_pct = -1"):
        ref(tolerance_pct=-1)


def test_duplicate_point() -> None:
    with pytest.raises(KitError, match=r"points\[1\]: duplicate of points\[0\]"):
        ref(points=[{"isl": 1, "osl": 1, "output_tok_s": 1.0}] * 2)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="reference file not found"):
        load_reference(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("title = ")
    with pytest.raises(KitError, match="not valid TOML"):
        load_reference(tmp_path / "bad.toml")


def test_cli_exit_codes(tmp_path: Path) -> None:
    assert main([str(PUBLISHED / "nvidia-perf-overview-1.0.toml")]) == 0
    assert main([str(PUBLISHED / "seed-report-claims.toml")]) == 1
    assert main([str(tmp_path / "none.toml")]) == 2
    assert (
        tomllib.loads((PUBLISHED / "seed-report-claims.toml").read_text())["tolerance_pct"] == 0.1
    )


# ----------------------------------------------------------------------------- issue 12


def test_every_shipped_reference_loads_and_only_the_seed_claims_contradict_themselves() -> None:
    shipped = sorted(PUBLISHED.glob("*.toml"))
    refs = {p.name: load_reference(p) for p in shipped if not p.name.startswith("accuracy-")}
    assert {"mlperf-inference-5.1-redhat-h100.toml", "mlperf-inference-5.1-hpe-h200.toml"} <= set(
        refs
    )
    for name, r in refs.items():
        assert (consistency_problems(r) != []) is (name == "seed-report-claims.toml"), name


def test_mlperf_results_state_their_scenarios_and_limits() -> None:
    h100 = load_reference(PUBLISHED / "mlperf-inference-5.1-redhat-h100.toml")
    assert (h100.identity.gpus, h100.identity.backend, h100.points) == (1, "vllm", [])
    offline, server = h100.scenario_results
    assert (offline.scenario, offline.output_tok_s) == ("offline", 5777.08)
    assert (server.ttft_limit_p99_ms, server.tpot_limit_p99_ms) == (2000.0, 100.0)
    h200 = load_reference(PUBLISHED / "mlperf-inference-5.1-hpe-h200.toml")
    interactive = h200.scenario_results[2]
    assert (interactive.ttft_limit_p99_ms, interactive.tpot_limit_p99_ms) == (500.0, 30.0)
    assert "engine_version" in h200.identity.leaves_open  # TensorRT named, no TRT-LLM release


def test_a_scenario_result_beyond_its_own_limit_is_inconsistent() -> None:
    bad = ref(
        scenario_results=[
            {
                "id": "x",
                "scenario": "server",
                "output_tok_s": 1.0,
                "tpot_p99_ms": 120.0,
                "tpot_limit_p99_ms": 100.0,
            },
            {"id": "y", "scenario": "offline", "output_tok_s": 1.0, "ttft_limit_p99_ms": 5.0},
        ]
    )
    first, second = consistency_problems(bad)
    assert "scenario_results[0] (x, server): TPOT p99 120 ms is above its own limit 100 ms" in (
        first
    )
    assert "an offline result has no latency limit" in second


def test_points_per_concurrency() -> None:
    sweep = ref(
        points=[
            {"isl": 1, "osl": 1, "concurrency": 1, "output_tok_s": 10.0},
            {"isl": 1, "osl": 1, "concurrency": 8, "output_tok_s": 70.0},
        ],
        peak={"output_tok_s": 70.0},
    )
    assert consistency_problems(sweep) == []  # the peak is the sweep's best, not its last
    with pytest.raises(KitError, match=r"points\[1\]: duplicate of points\[0\].*concurrency=8"):
        ref(
            points=[
                {"isl": 1, "osl": 1, "concurrency": 8, "output_tok_s": 10.0},
                {"isl": 1, "osl": 1, "concurrency": 8, "output_tok_s": 11.0},
            ]
        )

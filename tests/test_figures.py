"""Figures that cannot mislabel: identity in every title, the whole grid with missing points
hatched or left as gaps (never dropped or joined across), OSL ticks in tokens."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_method import NVIDIA_ID, run_of
from test_report import failed, ok

from bench.analysis import figures, report_sections
from bench.stages import report
from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
NVIDIA_MANIFEST = REPO / "manifests" / "nvidia-perf-overview-1.0.toml"
LOGS = SHARED / "fixtures" / "trtllm-bench-0.16-logs"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def nvidia_grid(roots: Path):
    """A run of NVIDIA's 10-point manifest with 3 points measured, 1 failed, 6 not run."""
    records = [
        ok(128, 128, 28000.0, identity=NVIDIA_ID, requests=30000),
        ok(128, 4096, 14000.0, identity=NVIDIA_ID, requests=1500),
        ok(2048, 2048, 9000.0, identity=NVIDIA_ID, requests=1500),
        failed(128, 2048, "oom"),
    ]
    run_of(NVIDIA_MANIFEST, records, "nv")
    _, ctx, loaded, _ = report.load_context("nv")
    return report_sections.figure_grid(loaded, ctx)


def test_grid_is_the_manifests_with_missing_points_named(roots: Path) -> None:
    isls, osls, cells, identity = nvidia_grid(roots)
    assert (isls, osls) == ([128, 500, 1000, 2048, 5000, 20000], [128, 500, 1000, 2000, 2048, 4096])
    assert cells[128, 2048] == "oom" and cells[20000, 2000] == "not run"
    assert cells[500, 128] == "not in grid"  # no point planned there
    for part in ("nvidia/Llama-3.1-8B-Instruct-FP8", "TP 1 x PP 1 = 1 GPU(s)", "pytorch 1.0.0"):
        assert part in identity
    assert "H100-SXM (declared)" in identity  # no provenance: the manifest's, said so


def test_titles_carry_identity_and_missing_cells_are_hatched(roots: Path) -> None:
    isls, osls, cells, identity = nvidia_grid(roots)
    fig = figures.heatmap(isls, osls, cells, identity)
    (ax,) = fig.axes[:1]
    assert (
        "nvidia/Llama-3.1-8B-Instruct-FP8" in ax.get_title() and "pytorch 1.0.0" in ax.get_title()
    )
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == sum(not isinstance(c, float) for c in cells.values())


def test_line_plot_leaves_gaps_and_labels_tokens(roots: Path) -> None:
    isls, osls, cells, identity = nvidia_grid(roots)
    fig = figures.throughput_vs_osl(isls, osls, cells, identity)
    ax = fig.axes[0]
    assert "pytorch 1.0.0" in ax.get_title()
    (line_128, *_) = ax.get_lines()
    planned = [128, 2048, 4096]  # NVIDIA's ISL 128 points: none dropped, none invented
    assert list(line_128.get_xdata()) == [osls.index(o) for o in planned]
    ys = list(line_128.get_ydata())
    assert ys[0] == 28000.0 and ys[2] == 14000.0
    assert math.isnan(ys[1])  # the failed 128/2048 is a gap, not a line from 128 to 4096
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(o) for o in osls]


@pytest.mark.skipif(not LOGS.is_dir(), reason="needs ../shared (developers only)")
def test_seed_grid_keeps_the_summary_only_columns(roots: Path) -> None:
    from bench.stages import import_logs

    assert import_logs.main(["--logs", str(LOGS), "--run", "seed"]) == 0
    _, ctx, records, _ = report.load_context("seed")
    isls, osls, cells, identity = report_sections.figure_grid(records, ctx)
    assert osls == [128, 256, 512, 1024, 2048, 4096, 8192, 16384] and len(isls) == 8
    assert {cells[i, 512] for i in isls} == {cells[i, 8192] for i in isls} == {"summary only"}
    assert cells[16384, 16384] == "silent"
    assert (
        "meta-llama/Llama-3.1-70B-Instruct; TP 8 x PP 1 = 8 GPU(s); trtllm-tensorrt 0.16.0"
        in identity
    )

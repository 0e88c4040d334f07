"""The report's serving sections: they appear only with latency data or an [slo]; percentile,
SLO and Pareto tables; the headline in the executive summary; Pareto figures byte-stable, their
titles naming model, GPU, backend and release, their ticks plain token counts."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
import tomli_w
from test_method import NVIDIA_ID, NVIDIA_MANIFEST, run_of
from test_slo import point

from bench.analysis import figures, report_sections, serving_report
from bench.core.manifest import Slo
from bench.core.run import RunPaths
from bench.stages import report


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


def manifest_with(tmp_path: Path, slo: dict | None, streaming: bool = True) -> Path:
    data = tomllib.loads(NVIDIA_MANIFEST.read_text(encoding="utf-8"))
    data["sweep"]["streaming"] = streaming
    if slo is not None:
        data["slo"] = slo
    path = tmp_path / "serving.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def sweep() -> list:
    """ISL/OSL 1000/1000 over four concurrencies, NVIDIA's identity, one GPU."""
    return [
        dataclasses.replace(r, identity=NVIDIA_ID)
        for r in (
            point(1, 150.0, per_user=150.0, goodput=(0.15, 150.0)),
            point(16, 2000.0, per_user=120.0, goodput=(2.0, 2000.0)),
            point(64, 5000.0, tpot=140.0, per_user=70.0),
            point(128, 4800.0, tpot=180.0, per_user=30.0),
        )
    ]


SERVER = {"ttft_p99_ms": 2000, "tpot_p99_ms": 100}


def reported_srv(folder: Path) -> None:
    """The sweep under SERVER, reported: built once, copied per test (conftest.RunTemplates)."""
    run_of(manifest_with(folder, SERVER), sweep(), "srv")
    report.make_report("srv")


def test_sections_and_headline(roots: Path, run_templates) -> None:
    run_templates.copy(reported_srv, roots)
    text = (RunPaths.for_run("srv").reports / "report.md").read_text()
    assert (
        "| Max output throughput under the SLO (ttft_p99_ms = 2000, tpot_p99_ms = 100) | "
        "ISL 1000 / OSL 1000: 2,000.00 output tok/s (2,000.00 per GPU) at concurrency 16; 40% "
        "of the point's best 5,000.00 at concurrency 64, which is not met |"
    ) in text
    assert "## Latency percentiles" in text and "### Time to first token (TTFT)" in text
    assert (
        "| 1000 | 1000 | 64 | 5,000.00 | 100.00 | 140.00 | **not met**: TPOT p99 140.00 ms > "
        "100.00 ms | not evaluable | not evaluable |"
    ) in text
    assert "| 1000 | 1000 | 64 | 70.00 | 126.00 | 140.00 | 70.00 | 200 |" in text  # TPOT
    # goodput: the producer's for c=1 and c=16, not evaluable where it computed none
    assert "| met | 0.15 | 150.00 |" in text and "| not evaluable | not evaluable |" in text
    assert (
        "| 1000 | 1000 | 2,000.00 | 16 | 2,000.00 | 5,000.00 at concurrency 64 (not met) | "
        "2 / 2 / 0 |" in text
    )
    assert "| 128 | 30.00 | 4,800.00 | dominated | not met |" in text
    assert "| 16 | 120.00 | 2,000.00 | frontier | met |" in text
    assert "| 64 | 70.00 | 5,000.00 | frontier | not met |" in text
    assert "1000 / tpot_p99_ms = 10.00 tok/s" in text
    assert "![Pareto ISL 1000 / OSL 1000](figures/pareto_isl1000_osl1000.png)" in text


def test_pareto_figures_are_byte_stable(roots: Path, run_templates) -> None:
    run_templates.copy(reported_srv, roots)  # first rendered in the template's folder
    paths = RunPaths.for_run("srv")
    first = {p: p.read_bytes() for p in sorted(paths.reports.rglob("*")) if p.is_file()}
    assert paths.reports / "figures" / "pareto_isl1000_osl1000.png" in first
    for p in first:
        p.unlink()
    paths.stamp("report").unlink()
    report.make_report("srv")
    assert first == {p: p.read_bytes() for p in sorted(paths.reports.rglob("*")) if p.is_file()}


def test_pareto_figure_names_the_run_and_plots_token_counts(roots: Path) -> None:
    run_of(manifest_with(roots, SERVER), sweep(), "srv")
    _, ctx, records, _ = report.load_context("srv")
    identity = report_sections.serving_identity(records, ctx)
    (s,) = serving_report.pareto_sets(records, 1)
    fig = figures.pareto(
        [(p.concurrency, p.per_user_tok_s, p.throughput_tok_s, p.on_frontier) for p in s.points],
        isl=1000,
        osl=1000,
        y_label="output tok/s per GPU",
        identity=identity,
        min_per_user_tok_s=10.0,
    )
    ax = fig.axes[0]
    title = ax.get_title()
    for part in (
        "nvidia/Llama-3.1-8B-Instruct-FP8",
        "pytorch 1.0.0",
        "H100-SXM",
        "pinned release 1.0",
        "ISL 1000",
    ):
        assert part in title
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(label.replace(",", "").isdigit() for label in labels)
    assert "5,000" in labels or "4,000" in labels  # thousands, not 2^12 or 1e3 notation
    faded = [c for c in ax.collections if c.get_alpha() == 0.25]
    assert len(faded) == 1 and faded[0].get_offsets().tolist() == [[30.0, 4800.0]]  # c=128
    assert ax.patches  # the SLO region


def test_an_slo_over_offline_points_is_not_evaluable(roots: Path) -> None:
    offline = [
        dataclasses.replace(
            r,
            streaming=False,
            scenario="offline",
            metrics=dataclasses.replace(r.metrics, ttft_ms=None, tpot_ms=None),
        )
        for r in sweep()
    ]
    run_of(manifest_with(roots, SERVER), offline, "off")
    text = report.make_report("off").read_text()
    assert "no point meets the SLO (0 not met, 4 not evaluable of 4)" in text
    assert "| not streamed | not streamed | not evaluable: TTFT p99 not streamed" in text


def test_no_latency_and_no_slo_adds_nothing(roots: Path) -> None:
    offline = [
        dataclasses.replace(
            r,
            metrics=dataclasses.replace(
                r.metrics,
                ttft_ms=None,
                tpot_ms=None,
                request_latency_ms=None,
                per_user_output_tok_s=None,
            ),
        )
        for r in sweep()
    ]
    assert serving_report.sections(offline, None, 1) == []
    assert serving_report.summary_row(offline, None, 1) == []
    assert serving_report.draw(offline, None, 1, "x") == {}
    text = serving_report.section_latency(offline)
    assert "Not measured" in text
    slo = Slo(e2e_p99_ms=5000.0)
    assert [s.split("\n")[0] for s in serving_report.sections(offline, slo, 1)] == [
        "## Latency percentiles",
        "## Service-level objective (SLO)",
        "## Throughput vs interactivity (Pareto frontier)",
    ]


def test_small_rates_keep_distinct_tick_labels() -> None:
    """A CPU run's 2 tok/s per user must not print ticks 0, 0, 1, 2, 2 (rounded to integers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures.pareto(
        [(None, 2.17, 19.99, True)],
        isl=32,
        osl=16,
        y_label="y",
        identity="id",
        min_per_user_tok_s=None,
    )
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        texts = [t.get_text() for t in labels if t.get_text()]
        assert len(texts) == len(set(texts)) > 2, texts

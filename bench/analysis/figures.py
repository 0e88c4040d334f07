"""The report's two figures, drawn over the run's whole grid
(bench.analysis.report_sections.figure_grid).

figures/throughput_heatmap.png: output tok/s per ISL x OSL cell, the best over concurrency; a
cell without a number (not run, failed, summary only) is hatched and says which.
figures/throughput_vs_osl.png: output tok/s against OSL, one line per ISL, with a gap wherever
a planned point has no number (never a line drawn across it); OSL ticks in tokens.

Both titles carry the run's identity (model, TP x PP and GPUs, backend and release, GPU), so a
figure copied out of the report still says what it shows. Output is deterministic: the same
input gives byte-identical PNGs (fixed size and dpi, no Software/date metadata).
"""

from __future__ import annotations

import io
import itertools
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HEATMAP = "figures/throughput_heatmap.png"
VS_OSL = "figures/throughput_vs_osl.png"
FIGURES = (HEATMAP, VS_OSL)
DPI = 110
NO_NUMBER = "lightgrey"
NOT_PLANNED = "not in grid"  # a cell of the rectangle that no point of the grid asks for

# (ISL, OSL) -> output tok/s, or why the cell has no number ("not run", a failure, ...)
Cells = Mapping[tuple[int, int], float | str]


def draw(isls: Sequence[int], osls: Sequence[int], cells: Cells, identity: str) -> dict[str, bytes]:
    """Report-relative path -> PNG bytes of each figure."""
    return {
        HEATMAP: png(heatmap(isls, osls, cells, identity)),
        VS_OSL: png(throughput_vs_osl(isls, osls, cells, identity)),
    }


def _title(ax: Axes, what: str, identity: str, width: float) -> None:
    """The figure's subject, then the run's identity, wrapped to the figure's width."""
    chars = max(40, int(width * 13))
    ax.set_title(what + "\n" + "\n".join(textwrap.wrap(identity, chars)), fontsize=9, loc="center")


def heatmap(isls: Sequence[int], osls: Sequence[int], cells: Cells, identity: str) -> Figure:
    """ISL rows x OSL columns; cells without a number are hatched and labelled."""
    # matplotlib loads here, not at import: bench.stages.verify and bench.stages.audit import the
    # report.
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    width = max(6.4, 1.4 + 1.0 * len(osls))
    fig = Figure(figsize=(width, max(3.6, 1.9 + 0.55 * len(isls))))
    ax = fig.add_subplot()
    values = [
        [c if isinstance(c := cells.get((i, o)), float) else math.nan for o in osls] for i in isls
    ]
    known = [v for row in values for v in row if not math.isnan(v)]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    image = ax.imshow(
        values,
        cmap=colormaps["viridis"].with_extremes(bad=NO_NUMBER),
        aspect="auto",
        vmin=low,
        vmax=high if high > low else low + 1,
    )
    size = 9 if len(osls) <= 4 else 7  # a demo's few cells are large: larger numbers
    for y, isl in enumerate(isls):
        for x, osl in enumerate(osls):
            c = cells.get((isl, osl), "not run")
            if isinstance(c, float):
                light = high > low and (c - low) / (high - low) > 0.6
                text, color = f"{c:,.0f}", "black" if light else "white"
            else:
                ax.add_patch(
                    Rectangle(
                        (x - 0.5, y - 0.5), 1, 1, facecolor=NO_NUMBER, hatch="///", edgecolor="grey"
                    )
                )
                text, color = "\n".join(textwrap.wrap(c, 10)), "black"
            ax.text(x, y, text, ha="center", va="center", fontsize=size, color=color)
    ax.set_xticks(range(len(osls)), [str(o) for o in osls])
    ax.set_yticks(range(len(isls)), [str(i) for i in isls])
    ax.set_xlabel("OSL (output tokens)")
    ax.set_ylabel("ISL (input tokens)")
    _title(ax, "Output tokens/s, whole system (hatched: no number)", identity, width)
    fig.colorbar(image, ax=ax, label="output tok/s")
    fig.tight_layout()
    return fig


def throughput_vs_osl(
    isls: Sequence[int], osls: Sequence[int], cells: Cells, identity: str
) -> Figure:
    """One line per ISL over its planned OSLs; a planned point without a number leaves a gap.
    OSLs sit at evenly spaced positions labelled in tokens (2000 and 2048 stay legible)."""
    from matplotlib.figure import Figure

    width = 7.5
    fig = Figure(figsize=(width, 5.0))
    ax = fig.add_subplot()
    for isl in isls:
        planned = [
            (x, cells.get((isl, o)))
            for x, o in enumerate(osls)
            if cells.get((isl, o), NOT_PLANNED) != NOT_PLANNED
        ]
        ys = [c if isinstance(c, float) else math.nan for _, c in planned]
        if any(not math.isnan(y) for y in ys):
            ax.plot([x for x, _ in planned], ys, marker="o", label=f"ISL {isl}")
    ax.set_xticks(range(len(osls)), [str(o) for o in osls])
    ax.set_xlim(-0.5, len(osls) - 0.5)
    ax.set_xlabel("OSL (output tokens, evenly spaced); a gap: not run, failed or no raw log")
    ax.set_ylabel("output tok/s")
    _title(ax, "Output tokens/s vs OSL, one line per ISL", identity, width)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG without the Software key, so the bytes do not depend on the version."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# ----------------------------------------------------------------------------- serving (issue 12)


def _tick_decimals(ticks: Iterable[float]) -> int:
    """The fewest decimals that write the tick step exactly: 0 for 1,000, 1 for 2.5 or 0.5,
    2 for 0.25; so no two ticks read alike."""
    step = min((b - a for a, b in itertools.pairwise(ticks) if b > a), default=1.0)
    return next((d for d in range(7) if abs(round(step, d) - step) < 1e-9 * max(step, 1)), 6)


def pareto_name(isl: int, osl: int) -> str:
    """The report-relative path of one ISL/OSL's Pareto figure."""
    return f"figures/pareto_isl{isl}_osl{osl}.png"


def pareto(
    points: Sequence[tuple[int | None, float, float, bool]],
    *,
    isl: int,
    osl: int,
    y_label: str,
    identity: str,
    min_per_user_tok_s: float | None,
) -> Figure:
    """Output tok/s per GPU (y) against output tok/s per user (x), one marker per concurrency
    (concurrency, x, y, on the frontier): frontier points solid, joined and labelled, dominated
    ones faded. min_per_user_tok_s: the SLO's per-user rate (1000 / TPOT p99 limit), shaded to its
    right; None draws no region. Axes in plain token counts, linear, never powers of two."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    width = 7.5
    fig = Figure(figsize=(width, 5.2))
    ax = fig.add_subplot()
    front = sorted((p for p in points if p[3]), key=lambda p: p[1])
    faded = [p for p in points if not p[3]]
    right = max((p[1] for p in points), default=1.0) * 1.15 or 1.0
    if min_per_user_tok_s is not None:
        right = max(right, min_per_user_tok_s * 1.15)
        ax.axvspan(
            min_per_user_tok_s,
            right,
            color="tab:green",
            alpha=0.12,
            label=f"per-user rate >= {min_per_user_tok_s:,.1f} tok/s (1000 / TPOT p99 limit)",
        )
    if faded:
        ax.scatter(
            [p[1] for p in faded],
            [p[2] for p in faded],
            color="tab:blue",
            alpha=0.25,
            label="dominated",
        )
    if front:
        ax.plot(
            [p[1] for p in front],
            [p[2] for p in front],
            marker="o",
            color="tab:blue",
            label="Pareto frontier",
        )
    for conc, x, y, on in points:
        ax.annotate(
            "c=" + ("unlimited" if conc is None else str(conc)),
            (x, y),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
            alpha=1.0 if on else 0.4,
        )
    ax.set_xlim(0, right)
    ax.set_ylim(bottom=0)
    for axis in (ax.xaxis, ax.yaxis):
        decimals = _tick_decimals(axis.get_majorticklocs())
        axis.set_major_formatter(FuncFormatter(lambda v, _, d=decimals: f"{v:,.{d}f}"))
    ax.set_xlabel("output tok/s per user (mean over requests: output tokens / request latency)")
    ax.set_ylabel(y_label)
    _title(ax, f"Throughput vs interactivity, ISL {isl} / OSL {osl} tokens", identity, width)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig

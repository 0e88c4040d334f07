"""The report's two figures, drawn from its ISL x OSL grid (bench.tables.grid).

figures/throughput_heatmap.png: output tok/s per ISL x OSL cell, the best over concurrency, each
cell labelled with its number or the failure of a point without one (grey).
figures/throughput_vs_osl.png: output tok/s against OSL (log2 axis), one line per ISL.

Output is deterministic: the same grid gives byte-identical PNGs (fixed figure size and dpi, and
no Software/date metadata written into the file).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HEATMAP = "figures/throughput_heatmap.png"
VS_OSL = "figures/throughput_vs_osl.png"
FIGURES = (HEATMAP, VS_OSL)
DPI = 110

Cells = Mapping[tuple[int, int], float | str]  # (ISL, OSL) -> output tok/s, or a failure


def draw(isls: Sequence[int], osls: Sequence[int], cells: Cells) -> dict[str, bytes]:
    """Report-relative path -> PNG bytes of each figure."""
    return {HEATMAP: png(heatmap(isls, osls, cells)), VS_OSL: png(throughput_vs_osl(isls, cells))}


def heatmap(isls: Sequence[int], osls: Sequence[int], cells: Cells) -> Figure:
    """ISL rows x OSL columns; cells without a number are grey and show the failure."""
    # matplotlib loads here, not at import: bench.verify and bench.audit import the report.
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 0.9 * max(len(osls), 1), 1.0 + 0.6 * max(len(isls), 1)))
    ax = fig.add_subplot()
    values = [
        [c if isinstance(c := cells.get((i, o)), float) else math.nan for o in osls] for i in isls
    ]
    image = ax.imshow(
        values, cmap=colormaps["viridis"].with_extremes(bad="lightgrey"), aspect="auto"
    )
    for y, isl in enumerate(isls):
        for x, osl in enumerate(osls):
            c = cells.get((isl, osl))
            text = "" if c is None else (f"{c:,.0f}" if isinstance(c, float) else c)
            ax.text(
                x,
                y,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="black" if isinstance(c, str) else "white",
            )
    ax.set_xticks(range(len(osls)), [str(o) for o in osls])
    ax.set_yticks(range(len(isls)), [str(i) for i in isls])
    ax.set_xlabel("OSL (output tokens)")
    ax.set_ylabel("ISL (input tokens)")
    ax.set_title("Output tokens/s (whole system)")
    fig.colorbar(image, ax=ax, label="output tok/s")
    fig.tight_layout()
    return fig


def throughput_vs_osl(isls: Sequence[int], cells: Cells) -> Figure:
    """One line per ISL through its valid points, in ascending OSL; failed points are left out."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot()
    for isl in isls:
        line = sorted(
            (osl, c) for (i, osl), c in cells.items() if i == isl and isinstance(c, float)
        )
        if line:
            ax.plot([x for x, _ in line], [y for _, y in line], marker="o", label=f"ISL {isl}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("OSL (output tokens)")
    ax.set_ylabel("output tok/s")
    ax.set_title("Output tokens/s vs OSL, one line per ISL")
    ax.grid(True, alpha=0.3)
    if isls:
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

"""Per-request latency: results/<run>/points/<point>/requests.csv and what it summarizes to.

Reads/writes: requests.csv, one row per measured request (warm-up excluded), header exactly
REQUESTS_HEADER; start_ms is relative to the measured window's start, ttft_ms is empty when the
point did not stream; times in ms with 6 decimals (the tools' ns, exactly).

Percentiles are nearest rank on the sorted values, `sorted[min(n - 1, int(n * q))]`, the rule
trtllm-bench's PercentileStats uses: the same requests give the same p50..p99 whether they were
read from the tool's report or recomputed here, so a record never mixes two definitions (linear
interpolation would differ from the tool by up to one sample's gap at small n).

Definitions (per request, as trtllm-bench's RequestRecord):
  latency   end-to-end, first byte sent .. last token received
  ttft      time to first token (streaming only)
  tpot      (latency - ttft) / (output_tokens - 1), for requests of 2+ output tokens
  per-user  output_tokens / latency (first token included), tok/s
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import KitError
from bench.core.fileio import atomic_write_text
from bench.schema.record import Distribution

REQUESTS_CSV = "requests.csv"
REQUESTS_HEADER = ("request", "input_tokens", "output_tokens", "start_ms", "ttft_ms", "latency_ms")
QUANTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class RequestRow:
    """One measured request; times in ms, start relative to the window's start."""

    request: int
    input_tokens: int
    output_tokens: int
    start_ms: float
    ttft_ms: float | None
    latency_ms: float

    @property
    def tpot_ms(self) -> float | None:
        if self.ttft_ms is None or self.output_tokens < 2:
            return None
        return (self.latency_ms - self.ttft_ms) / (self.output_tokens - 1)

    @property
    def output_tok_s(self) -> float | None:
        return self.output_tokens / (self.latency_ms / 1000.0) if self.latency_ms > 0 else None


# ----------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class RequestTimes:
    """The measured requests of one point and the window they span, in the tool's ns clock."""

    rows: list[RequestRow]
    first_start_ns: int
    last_end_ns: int


def distribution(values: Iterable[float]) -> Distribution | None:
    """Nearest-rank percentiles, mean, min, max and count; None for no values."""
    s = sorted(values)
    if not s:
        return None
    n = len(s)
    picks = {f"p{q}": s[min(n - 1, int(n * q / 100))] for q in QUANTILES}
    return Distribution(mean=sum(s) / n, min=s[0], max=s[-1], count=n, **picks)


def distributions(
    rows: Sequence[RequestRow], itl_gaps_ms: Iterable[float] = ()
) -> dict[str, Distribution]:
    """request_latency_ms, ttft_ms, tpot_ms, per_user_output_tok_s (and itl_ms when token gaps
    are given): each only where there are values (no ttft without streaming)."""
    found = {
        "request_latency_ms": distribution(r.latency_ms for r in rows),
        "ttft_ms": distribution(r.ttft_ms for r in rows if r.ttft_ms is not None),
        "tpot_ms": distribution(r.tpot_ms for r in rows if r.tpot_ms is not None),
        "itl_ms": distribution(itl_gaps_ms),
        "per_user_output_tok_s": distribution(
            r.output_tok_s for r in rows if r.output_tok_s is not None
        ),
    }
    return {k: v for k, v in found.items() if v is not None}


def meets_slo(row: RequestRow, slo: Any) -> bool:
    """A request within every limit the SLO sets: each p99 limit applied to the request itself
    (DistServe's and vLLM's goodput: a request counts when its own TTFT and TPOT are within the
    targets). A limit on TTFT or TPOT needs a streamed request (no ttft: not met)."""
    ttft_limit = getattr(slo, "ttft_p99_ms", None)
    tpot_limit = getattr(slo, "tpot_p99_ms", None)
    e2e_limit = getattr(slo, "e2e_p99_ms", None)
    if ttft_limit is not None and (row.ttft_ms is None or row.ttft_ms > ttft_limit):
        return False
    if tpot_limit is not None:
        tpot = row.tpot_ms
        if tpot is None and row.ttft_ms is None:
            return False
        if tpot is not None and tpot > tpot_limit:
            return False
    return e2e_limit is None or row.latency_ms <= e2e_limit


def goodput(rows: Sequence[RequestRow], slo: Any, window_s: float) -> tuple[float, float]:
    """(requests/s, output tokens/s) of the requests that met the SLO, over the measured window."""
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")
    good = [r for r in rows if meets_slo(r, slo)]
    return len(good) / window_s, sum(r.output_tokens for r in good) / window_s


def requests_csv(rows: Sequence[RequestRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUESTS_HEADER)
    for r in rows:
        writer.writerow(
            [
                r.request,
                r.input_tokens,
                r.output_tokens,
                f"{r.start_ms:.6f}",
                "" if r.ttft_ms is None else f"{r.ttft_ms:.6f}",
                f"{r.latency_ms:.6f}",
            ]
        )
    return out.getvalue()


def parse_requests_csv(text: str, where: str = REQUESTS_CSV) -> list[RequestRow]:
    """requests.csv text -> rows; a wrong header or a bad cell is one error naming line and
    column."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != REQUESTS_HEADER:
        raise KitError(
            f"header is {header!r}, expected {','.join(REQUESTS_HEADER)}",
            path=where,
            fix="rerun the point; requests.csv is written by the sweep",
        )
    rows = []
    for line, cells in enumerate(reader, start=2):
        if not cells:
            continue
        if len(cells) != len(REQUESTS_HEADER):
            raise KitError(f"line {line}: {len(cells)} cells, expected 6", path=where)
        column = REQUESTS_HEADER[0]
        try:
            values: list[Any] = []
            for column, cell, kind in zip(
                REQUESTS_HEADER, cells, (int, int, int, float, float, float), strict=True
            ):
                values.append(None if column == "ttft_ms" and cell == "" else kind(cell))
        except ValueError:
            raise KitError(f"line {line}: {column} is not a number", path=where) from None
        rows.append(RequestRow(*values))
    return rows


# ----------------------------------------------------------------------------- I/O edge


def write_requests(path: Path, rows: Sequence[RequestRow]) -> None:
    atomic_write_text(path, requests_csv(rows))


def read_requests(path: Path) -> list[RequestRow]:
    return parse_requests_csv(path.read_text(encoding="utf-8"), str(path))

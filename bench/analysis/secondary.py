"""Secondary evidence: summary tables and logs that a sweep's scripts or its author wrote beside
the tool's raw outputs. Kept as records of their own kind, never mixed with the raw results.

Reads:  <logs>/throughput_summary.csv (ISL,OSL,Requests,Token_Throughput,Request_Throughput,...)
        <logs>/summary_results.log ("Start Time: ...", then ISL,OSL,Requests,Throughput,...,Status)
        the console logs' own timestamps ([MM/DD/YYYY-HH:MM:SS]), to date the measurements
Writes: results/<run>/secondary/evidence.json and secondary/raw/<file>, byte for byte
        (bench.stages.import_logs calls collect() and write(); bench.stages.verify reads load())

A number found only here is judged "(summary only: raw log absent)"; where a summary and a raw
log disagree on a point, that disagreement is itself a finding (bench.stages.verify).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.backends.trtllm.parse import GPUS_IF_UNKNOWN, decode_log, rate_limit_any_model
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_bytes, atomic_write_json, read_json_object
from bench.stages import provenance

SCHEMA = "trtllm-repro/secondary-evidence/1"
FOLDER = "secondary"
EVIDENCE = "evidence.json"
SUMMARY_ONLY = "summary only: raw log absent"
LOG_STAMP = re.compile(r"^\[(\d\d)/(\d\d)/(\d{4})-(\d\d:\d\d:\d\d)\]", re.MULTILINE)


@dataclass(frozen=True)
class SecondaryRow:
    """One point as a summary states it; output_tok_s None when it states a failure."""

    source: str  # file name
    line: int  # 1-based line in that file
    isl: int
    osl: int
    requests: int
    output_tok_s: float | None
    req_s: float | None
    status: str  # "ok" or the summary's own word for a failure


@dataclass(frozen=True)
class SecondaryFile:
    name: str
    kind: str  # what wrote it, as far as its format says
    sha256: str
    stated_start: str | None  # a "Start Time:" line, as written
    rows: tuple[SecondaryRow, ...]


# ----------------------------------------------------------------------------- parsers (pure)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _bad(name: str, line: int, what: str) -> KitError:
    return KitError(
        what,
        path=f"{name}:{line}",
        fix="fix or remove the summary file; the raw logs import without it",
    )


def _rate(name: str, line: int, label: str, text: str) -> float | None:
    """A stated rate, held to the checks raw logs get (parse_trtllm.value_problems and
    over_ceiling): NaN, infinite, zero, negative or impossibly fast stops the import, named."""
    value = _number(text)
    if value is None:
        return None
    if not math.isfinite(value):
        raise _bad(name, line, f"{label} = {text.strip()} is not a finite number")
    if value <= 0:
        raise _bad(name, line, f"{label} = {text.strip()} is impossible (must be > 0)")
    limit = rate_limit_any_model(GPUS_IF_UNKNOWN)
    if label != "Request_Throughput" and value > limit:
        raise _bad(
            name,
            line,
            f"{label} = {value:.4g} tok/s is above {limit:.3g}, what {GPUS_IF_UNKNOWN} of the "
            "fastest GPUs could reach on any model (impossible)",
        )
    return value


def parse_throughput_csv(text: str, name: str) -> tuple[SecondaryRow, ...]:
    """throughput_summary.csv: one row per successful point; Token_Throughput is output tok/s."""
    rows = []
    reader = csv.DictReader(io.StringIO(text))
    need = {"ISL", "OSL", "Requests", "Token_Throughput", "Request_Throughput"}
    if not need <= set(reader.fieldnames or ()):
        raise _bad(
            name, 1, f"header lacks {', '.join(sorted(need - set(reader.fieldnames or ())))}"
        )
    for i, row in enumerate(reader, start=2):
        try:
            isl, osl, requests = int(row["ISL"]), int(row["OSL"]), int(row["Requests"])
        except ValueError:
            raise _bad(name, i, "ISL, OSL and Requests must be whole numbers") from None
        out = _rate(name, i, "Token_Throughput", row["Token_Throughput"])
        req_s = _rate(name, i, "Request_Throughput", row["Request_Throughput"])
        rows.append(SecondaryRow(name, i, isl, osl, requests, out, req_s, "ok"))
    return tuple(rows)


def parse_summary_log(text: str, name: str) -> tuple[str | None, tuple[SecondaryRow, ...]]:
    """summary_results.log: its stated start time and its table (Status SUCCESS or a failure)."""
    start = re.search(r"^Start Time:\s*(.+?)\s*$", text, re.MULTILINE)
    lines = text.splitlines()
    header = next((i for i, ln in enumerate(lines) if ln.startswith("ISL,OSL,Requests,")), None)
    if header is None:
        raise _bad(name, 1, "no ISL,OSL,Requests,... table")
    rows = []
    for i, line in enumerate(lines[header + 1 :], start=header + 2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) < 6:
            raise _bad(name, i, f"expected 6 columns, found {len(cells)}")
        try:
            isl, osl, requests = int(cells[0]), int(cells[1]), int(cells[2])
        except ValueError:
            raise _bad(name, i, "ISL, OSL and Requests must be whole numbers") from None
        status = cells[5].strip()
        out = _rate(name, i, "Throughput", cells[3]) if status == "SUCCESS" else None
        rows.append(
            SecondaryRow(name, i, isl, osl, requests, out, None, "ok" if out else status or "?")
        )
    return (start.group(1) if start else None), tuple(rows)


def log_span(texts: list[str]) -> tuple[str, str] | None:
    """The first and last timestamp the console logs print (ISO form, time zone not stated)."""
    stamps = sorted(f"{y}-{m}-{d}T{t}" for text in texts for m, d, y, t in LOG_STAMP.findall(text))
    return (stamps[0], stamps[-1]) if stamps else None


# Where two summaries both give a point, the number is taken from the first (req/s included).
PREFERENCE = ("throughput_summary.csv", "summary_results.log")
PARSERS = {
    "throughput_summary.csv": "summary table written by the sweep's scripts",
    "summary_results.log": "summary log written by the sweep's scripts",
}


def parse_file(name: str, data: bytes) -> SecondaryFile:
    text = data.decode("utf-8", errors="replace")
    digest = hashlib.sha256(data).hexdigest()
    if name == "summary_results.log":
        start, rows = parse_summary_log(text, name)
    else:
        start, rows = None, parse_throughput_csv(text, name)
    return SecondaryFile(name, PARSERS[name], digest, start, rows)


# ----------------------------------------------------------------------------- I/O edge


def collect(folder: Path) -> list[SecondaryFile]:
    """The known summary files in a logs folder, parsed (bad ones stop the import, named)."""
    return [
        parse_file(name, (folder / name).read_bytes())
        for name in sorted(PARSERS)
        if (folder / name).is_file() and not (folder / name).is_symlink()  # links: never followed
    ]


def write(root: Path, folder: Path, files: list[SecondaryFile]) -> list[Path]:
    """Copy each file byte for byte and write evidence.json; returns the written paths."""
    copies = {f.name: (folder / f.name).read_bytes() for f in files}
    for f in files:  # every copy must be the bytes parsed, checked before any is written
        if hashlib.sha256(copies[f.name]).hexdigest() != f.sha256:
            raise KitError(
                "changed while it was being imported",
                path=str(folder / f.name),
                fix="import again once nothing writes to the logs folder",
            )
    out = []
    for name, data in copies.items():
        target = root / FOLDER / "raw" / name
        atomic_write_bytes(target, data)
        out.append(target)
    if files:
        target = root / FOLDER / EVIDENCE
        atomic_write_json(
            target,
            {
                "schema": SCHEMA,
                "files": [
                    {
                        **{k: v for k, v in asdict(f).items() if k != "rows"},
                        "rows": [asdict(r) for r in f.rows],
                    }
                    for f in files
                ],
            },
        )
        out.append(target)
    return out


def load(root: Path) -> list[SecondaryFile]:
    """A run's secondary evidence; [] when it has none."""
    path = root / FOLDER / EVIDENCE
    if not path.is_file():
        return []
    data = read_json_object(path, fix="import the logs again")
    if data.get("schema") != SCHEMA:
        raise KitError(f"not {SCHEMA}", path=str(path), fix="import the logs again")
    try:
        return [
            SecondaryFile(
                f["name"],
                f["kind"],
                f["sha256"],
                f["stated_start"],
                tuple(SecondaryRow(**r) for r in f["rows"]),
            )
            for f in data["files"]
        ]
    except (KeyError, TypeError):
        raise KitError(f"not {SCHEMA}", path=str(path), fix="import the logs again") from None


def import_fields(logs: list[Path], files: list[SecondaryFile]) -> dict[str, Any]:
    """What an import records besides the points: its secondary files, when the logs (the
    imported console logs, never an ignored entry) say they were measured, and the kit commit
    that imported them."""
    return {
        "secondary_evidence": [f.name for f in files],
        "measured": dating(logs, files),
        "imported_by_kit": provenance.git_state(provenance._run_tool),
    }


def dating(logs: list[Path], files: list[SecondaryFile]) -> dict[str, Any]:
    """When the logs say they were measured (not when they were imported)."""
    texts = [decode_log(p.read_bytes()) for p in sorted(logs)]
    span = log_span(texts)
    return {
        "console_logs_first": span[0] if span else None,
        "console_logs_last": span[1] if span else None,
        "time_zone": "not stated by the logs",
        "summary_start_time": next((f.stated_start for f in files if f.stated_start), None),
    }

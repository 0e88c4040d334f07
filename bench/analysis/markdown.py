"""The Markdown that report, verify, audit and compare print with: numbers and tables.

Stdlib only, so a stage that only prints (or refuses a bad argument) does not load pandas.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def num(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[bool]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if r else "---" for r in right) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

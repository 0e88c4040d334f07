"""Narrow an optional manifest value where the manifest's validators already require it.

A table such as [accuracy] is optional in the model, but a stage reaches code that reads it only
when it is there (or the validator demanded it for the chosen method). `present` says so to the
type checker and, should that ever not hold, stops with one line naming the key (not an
AttributeError on None deep inside a stage).
"""

from __future__ import annotations

from typing import TypeVar

from bench.core.errors import KitError

T = TypeVar("T")


def present(value: T | None, key: str) -> T:
    """value, known not to be None; a KitError naming the manifest key otherwise."""
    if value is None:
        raise KitError("required here but not set", key=key, fix=f"set {key} in the manifest")
    return value

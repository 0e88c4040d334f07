"""TOML files validated into pydantic models, with errors in the user's spelling.

The manifest and the published references both go through here, so every problem reads the same:
`<file>: sweep.points[3].isl = 0: Input should be greater than 0`, and an unknown key lists the
keys allowed in its table.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bench.core.errors import KitError

M = TypeVar("M", bound=BaseModel)


class KeyedError(ValueError):
    """A cross-field check's error that belongs to a key other than where pydantic raised it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the table that holds loc[-1] (aliases as the user writes them)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current else None
        current = _model_in(field.annotation) if field else None
        if current is None:
            return []
    return sorted(f.alias or name for name, f in current.model_fields.items()) if current else []


def problem(model: type[BaseModel], err: Mapping[str, Any]) -> tuple[str, str]:
    """(key path with value, message) for one pydantic error."""
    loc = tuple(err["loc"])
    ctx_error = err.get("ctx", {}).get("error")
    if isinstance(ctx_error, KeyedError):
        return ctx_error.key, str(ctx_error)
    key = dotted(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return key, f"unknown key; allowed here: {', '.join(allowed_keys(model, loc))}"
    value = err.get("input")
    shown = f" = {value!r}" if not isinstance(value, dict | list) and value is not None else ""
    return key + shown, err["msg"].removeprefix("Value error, ")


def validate(model: type[M], data: dict[str, Any], path: str, fix: str) -> M:
    """model.model_validate(data), or one KitError listing every problem with its key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [problem(model, e) for e in exc.errors(include_url=False)]
        lines = "\n".join(f"  {key}: {msg}" for key, msg in problems)
        raise KitError(
            f"{len(problems)} problem(s):\n{lines}",
            path=path,
            key=problems[0][0] if len(problems) == 1 else None,
            fix=fix,
        ) from None


def read_toml(path: str | Path, what: str, fix: str) -> dict[str, Any]:
    """A TOML file as data; a missing file or bad syntax is a KitError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} file not found", path=str(path), fix=fix)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KitError(f"cannot read the {what}: {exc.strerror}", path=str(path)) from None
    return parse_toml_bytes(data, str(path), what)


def parse_toml_bytes(data: bytes, path: str, what: str) -> dict[str, Any]:
    """TOML from bytes: UTF-8 with or without a BOM (editors add one); anything else, a binary
    file included, is one KitError naming the first bad byte."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KitError(
            f"the {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            path=path,
            fix="save it as UTF-8 (Latin-1 and UTF-16 are not TOML), or pass the right file",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KitError(f"not valid TOML: {exc}", path=path) from None
    except RecursionError:
        raise KitError("not valid TOML: nested too deeply", path=path) from None

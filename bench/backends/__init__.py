"""Backends: one package per engine under bench/backends/, registered by name.

A package whose `__init__.py` defines `BACKENDS` (instances of bench.backends.base.Backend) is
registered; nothing else needs editing to add one. `get(name)` is what stages call with
`manifest.engine.backend`; `names()` lists them. Stdlib only: bench.core.toolcheck reads the
registry before any install.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from bench.backends.base import Backend

# Names manifests used before the backends became packages; each has one successor now.
RENAMED = {
    "tensorrt": "trtllm-tensorrt",
    "pytorch": "trtllm-pytorch",
    "hf-reference": "hf-transformers",
}


class UnknownBackend(ValueError):
    """A backend name no package registers; the message names the fix."""


@functools.cache
def registry() -> dict[str, Backend]:
    """name -> backend, from every package under bench/backends/ that lists BACKENDS."""
    found: dict[str, Backend] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for backend in getattr(module, "BACKENDS", ()):
            if backend.name in found:
                raise UnknownBackend(
                    f"backend {backend.name!r} is registered twice (bench/backends/{info.name})"
                )
            found[backend.name] = backend
    return found


def names() -> list[str]:
    return sorted(registry())


def problem(name: str) -> str | None:
    """Why `name` is not a backend (renamed or unknown), or None."""
    if name in registry():
        return None
    if name in RENAMED:
        return f"backend {name!r} was renamed: write {RENAMED[name]!r}"
    return f"backend {name!r} is not registered; registered: {', '.join(names())}"


def get(name: str) -> Backend:
    if (why := problem(name)) is not None:
        raise UnknownBackend(why)
    return registry()[name]


def find(name: str | None) -> Backend | None:
    """The backend a record names, or None (an imported log may name an engine the kit lacks)."""
    return registry().get(name) if isinstance(name, str) else None


def provenance_packages() -> dict[str, tuple[str, ...]]:
    """Every registered backend's packages, for provenance.json (display key -> distributions)."""
    out: dict[str, tuple[str, ...]] = {}
    for backend in registry().values():
        out.update(backend.provenance_packages)
    return out

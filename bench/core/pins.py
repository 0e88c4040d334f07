"""The kit's pins (base image, TensorRT-LLM, Hub revisions): print them, read one, re-pin the image.

Reads:  manifests/pins.toml
Writes: manifests/pins.toml and the Dockerfile's ARG defaults (only with --pin-image)
Usage:  python3 -m bench.core.pins                     (every pin, one line each: `make info`)
        python3 -m bench.core.pins --get image.digest  (one value: docker.mk reads the image this
        way)
        python3 -m bench.core.pins --pin-image nvcr.io/nvidia/tensorrt-llm/release:1.0.0
                                                  (`make pin-image`)

Standard library only (tomllib), so it runs before any virtualenv or image exists. --pin-image
resolves the tag to its digest with whichever registry tool is here (docker buildx imagetools,
crane, skopeo), then rewrites the [image] table and the Dockerfile's defaults atomically and
prints old -> new. Exit 0 ok, 1 no tool could resolve the tag, 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.core.errors import KitError, StageFailed, run_main
from bench.core.fileio import atomic_write_text

KIT_ROOT = Path(__file__).resolve().parents[2]
PINS = KIT_ROOT / "manifests" / "pins.toml"
DOCKERFILE = KIT_ROOT / "Dockerfile"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
RESOLVE_TIMEOUT_S = 120


# ----------------------------------------------------------------------------- reading


def load_pins(path: Path = PINS) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KitError(f"cannot read the pins: {exc.strerror}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise KitError(f"not valid TOML: {exc}", path=str(path)) from None


def get(pins: dict[str, Any], dotted: str, path: Path = PINS) -> Any:
    node: Any = pins
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            allowed = ", ".join(sorted(node)) if isinstance(node, dict) else "(none: a value)"
            raise KitError(
                f"no pin {dotted!r}", path=str(path), key=dotted, fix=f"keys here: {allowed}"
            )
        node = node[part]
    return node


def render_value(value: Any) -> str:
    """How --get prints a value: strings bare (for $(shell ...)), the rest as TOML/JSON literals."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(f"{k} = {render_value(v)}" for k, v in value.items())
    return json.dumps(value)


NOTES = ("verified", "date", "source", "reason")


def tables(node: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every table that holds values (a pin), with its dotted name, in file order."""
    out: list[tuple[str, dict[str, Any]]] = []
    if any(not isinstance(v, dict) for v in node.values()):
        out.append((prefix.rstrip("."), node))
    for key, value in node.items():
        if isinstance(value, dict):
            out += tables(value, f"{prefix}{key}.")
    return out


def summary(pins: dict[str, Any]) -> str:
    """One line per pin: its values, then date and UNVERIFIED where `verified = false`."""
    lines = []
    for name, table in tables(pins):
        values = "  ".join(
            f"{k}={render_value(v)}"
            for k, v in table.items()
            if k not in NOTES and not isinstance(v, dict)
        )
        flag = ", UNVERIFIED" if table.get("verified") is False else ""
        lines.append(f"{name}: {values}  [{table.get('date', 'no date')}{flag}]")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- re-pinning


def set_in_table(text: str, table: str, key: str, value: str | bool) -> tuple[str, str | None]:
    """Replace `key = ...` inside [table] of a TOML text, keeping comments and layout.

    Returns the new text and the old literal (None if the key was added at the table's end).
    """
    literal = json.dumps(value)  # a JSON string or true/false is also a valid TOML literal
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{table}]"), None)
    if start is None:
        raise KitError(f"no [{table}] table", key=table, fix=f"add a [{table}] table")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines)
    )
    pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)(\"[^\"]*\"|true|false)(.*)$", re.S)
    for i in range(start + 1, end):
        if m := pattern.match(lines[i]):
            lines[i] = f"{m.group(1)}{literal}{m.group(3)}"
            return "".join(lines), m.group(2)
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    lines.insert(end, f"{key} = {literal}\n")
    return "".join(lines), None


def set_dockerfile_defaults(text: str, ref: str, digest: str, status: str) -> str:
    text = re.sub(r"(?m)^ARG BASE_IMAGE=.*$", f"ARG BASE_IMAGE={ref}", text, count=1)
    text = re.sub(r"(?m)^ARG BASE_DIGEST=.*$", f"ARG BASE_DIGEST={digest}", text, count=1)
    status_line = f"# BASE_DIGEST status: {status}"
    return re.sub(r"(?m)^# BASE_DIGEST status:.*$", status_line, text, count=1)


def resolvers(
    ref: str, docker: str, which: Callable[[str], str | None] = shutil.which
) -> list[tuple[str, list[str]]]:
    """The registry tools present here, in order of preference, with the argv that resolves ref."""
    out = []
    if which(docker):
        inspect = [docker, "buildx", "imagetools", "inspect", ref]
        out.append(("docker buildx imagetools", [*inspect, "--format", "{{json .Manifest}}"]))
    if which("crane"):
        out.append(("crane", ["crane", "digest", ref]))
    if which("skopeo"):
        out.append(("skopeo", ["skopeo", "inspect", "--format", "{{.Digest}}", f"docker://{ref}"]))
    return out


def parse_digest(tool: str, stdout: str) -> str:
    """The digest from a tool's output: buildx prints the manifest (index) descriptor as JSON."""
    text = stdout.strip()
    digest = json.loads(text).get("digest", "") if tool.startswith("docker") else text
    if not DIGEST.match(digest):
        raise ValueError(f"no sha256 digest in {tool} output: {text[:200]!r}")
    return digest


def resolve_digest(
    ref: str,
    docker: str,
    run: Callable[[list[str]], subprocess.CompletedProcess] | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> tuple[str, str]:
    """(digest, tool) for ref, trying each tool present; StageFailed says what each one answered."""
    run = run or (
        lambda argv: subprocess.run(
            argv, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, check=False
        )
    )
    tried = []
    for tool, argv in resolvers(ref, docker, which):
        print(f"[pin-image] {' '.join(argv)}", file=sys.stderr)
        try:
            done = run(argv)
            if done.returncode != 0:
                said = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
                raise ValueError(" / ".join(said[:2]) or f"exit code {done.returncode}")
            return parse_digest(tool, done.stdout), tool
        except (OSError, subprocess.TimeoutExpired, ValueError, json.JSONDecodeError) as exc:
            tried.append(f"{tool}: {exc}")
    if not tried:
        raise StageFailed(
            f"cannot resolve {ref}: no registry tool here ({docker} with buildx, crane or skopeo)",
            fix="install one (e.g. the docker buildx plugin) on a machine that "
            "reaches the registry, then rerun `make pin-image`",
        )
    raise StageFailed(
        f"cannot resolve {ref}:\n  " + "\n  ".join(tried),
        fix="check registry access (`docker login nvcr.io` if needed) and the tag",
    )


def pin_image(
    ref: str,
    docker: str,
    pins_path: Path = PINS,
    dockerfile: Path = DOCKERFILE,
    resolve: Callable[[str, str], tuple[str, str]] = resolve_digest,
    today: str | None = None,
) -> str:
    """Resolve ref, rewrite [image] and the Dockerfile defaults; returns the old -> new line."""
    old = get(load_pins(pins_path), "image", pins_path)
    digest, tool = resolve(ref, docker)
    today = today or dt.date.today().isoformat()
    source = f"resolved from the registry with {tool} on {today}"
    text = pins_path.read_text(encoding="utf-8")
    for key, value in (
        ("ref", ref),
        ("digest", digest),
        ("verified", True),
        ("date", today),
        ("source", source),
    ):
        text, _ = set_in_table(text, "image", key, value)
    tomllib.loads(text)  # never write a pins file that does not parse
    atomic_write_text(pins_path, text)
    if dockerfile.is_file():
        atomic_write_text(
            dockerfile,
            set_dockerfile_defaults(
                dockerfile.read_text(encoding="utf-8"), ref, digest, f"{source}; `make pin-image`"
            ),
        )
    return f"image: {old.get('ref')}@{old.get('digest')} -> {ref}@{digest}"


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.core.pins", description=__doc__.splitlines()[0])
    parser.add_argument("--pins", type=Path, default=PINS, help="pins file (default %(default)s)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--get", metavar="DOTTED.KEY", help="print one pin, e.g. image.digest")
    what.add_argument("--pin-image", metavar="REF", help="resolve REF (a tag) and pin its digest")
    parser.add_argument(
        "--docker",
        default=os.environ.get("DOCKER", "docker"),
        help="docker CLI for buildx imagetools (default %(default)s)",
    )
    args = parser.parse_args(argv)

    def run() -> int:
        if args.pin_image:
            print(pin_image(args.pin_image, args.docker, args.pins))
        elif args.get:
            print(render_value(get(load_pins(args.pins), args.get, args.pins)))
        else:
            print(f"pins ({args.pins}); UNVERIFIED: copied, not checked (`--get <name>.source`)")
            print(summary(load_pins(args.pins)))
        return 0

    return run_main(run, "bench.core.pins")


if __name__ == "__main__":
    raise SystemExit(main())

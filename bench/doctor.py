"""`make doctor`: the installed TensorRT-LLM against everything the kit will pass it, before any
GPU time is spent.

Reads:  the manifest, manifests/pins.toml (the pin set the manifest's `release` selects), the
        installed tools' own help (trtllm-bench, trtllm-bench throughput, trtllm-build,
        prepare_dataset.py and its token-norm-dist subcommand) and package versions.
Usage:  python -m bench.doctor --manifest manifests/llama-3.1-8b-fp8-h100.toml

Checks, each printed as `ok` or `FAIL`: every option (and choice value) of every command the plan
runs is in the installed tool's help; the TensorRT-LLM, ModelOpt and transformers versions are the
pinned ones (torch is printed); every point fits the TensorRT runtime's prompt limit. Exit 2 on
any failure, each naming the tool, the option or package, the installed version and the fix.
Nothing is written. Manifests that use no TensorRT-LLM tool (the CPU demo) pass with a note.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import pins, trtllm
from bench.errors import KitError, run_main
from bench.manifest import Manifest, load_manifest
from bench.toolcheck import missing_tools, prepare_dataset_script

HELP_TIMEOUT_S = 120
# Pinned package -> its distribution name (importlib.metadata).
PACKAGES = {"tensorrt_llm": "tensorrt_llm", "modelopt": "nvidia-modelopt"}
PACKAGES |= {"transformers": "transformers"}
SHOWN_ONLY = ("torch",)  # printed for the record, not pinned
BANNER = re.compile(r"TensorRT-LLM version: (\S+)")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
# click: `--backend [pytorch|tensorrt]`; argparse: `--gemm_plugin {auto,fp8}`
CHOICES = re.compile(r"(--[\w-]+)(?:,\s*-\w+)?\s+(?:\[([^\]\s]+\|[^\]\s]+)\]|\{([^}\s]+)\})")


# ----------------------------------------------------------------------------- pure core


@dataclass(frozen=True)
class Usage:
    """One command (tool + subcommand) the plan runs, and the option values it passes."""

    tool: str  # as the user knows it: "trtllm-bench throughput"
    help_argv: tuple[str, ...]
    options: dict[str, list[str]]  # option -> values passed (empty list: a flag)


@dataclass(frozen=True)
class HelpText:
    options: frozenset[str]
    choices: dict[str, tuple[str, ...]]


def parse_help(text: str) -> HelpText:
    """Option names and choice lists from click's or argparse's --help."""
    choices = {}
    for m in CHOICES.finditer(text):
        listed = m.group(2) or m.group(3)
        choices[m.group(1)] = tuple(re.split(r"[|,]", listed))
    return HelpText(frozenset(OPTION.findall(text)), choices)


def split_options(argv: list[str]) -> dict[str, list[str]]:
    """`--name value` / `--flag` pairs of an argv tail (values never start with `--`)."""
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("-"):
            name, _, inline = token.partition("=")
            values = out.setdefault(name, [])
            if inline:
                values.append(inline)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                values.append(argv[i + 1])
                i += 1
        i += 1
    return out


def usages(manifest: Manifest, python: str = sys.executable) -> list[Usage]:
    """Every external command of the plan, split into tool, subcommand and options."""
    m, here = manifest, Path("/doctor")
    out: list[Usage] = []
    if m.engine.needs_build:
        argv = trtllm.build_argv(m, checkpoint_dir=here, engine_dir=here)
        out.append(Usage(argv[0], (argv[0], "--help"), split_options(argv[1:])))
    if m.dataset.generator == "prepare_dataset":
        script = prepare_dataset_script()
        group: dict[str, list[str]] = {}
        sub: dict[str, list[str]] = {}
        for point in m.sweep.points:
            argv = trtllm.prepare_dataset_argv(m, point, tokenizer=here)[2:]
            cut = argv.index("token-norm-dist")
            group |= split_options(argv[:cut])
            sub |= split_options(argv[cut + 1 :])
        out.append(Usage("prepare_dataset.py", (python, script, "--help"), group))
        help_sub = (python, script, "--tokenizer", "x", "token-norm-dist", "--help")
        out.append(Usage("prepare_dataset.py token-norm-dist", help_sub, sub))
    if m.engine.backend in ("pytorch", "tensorrt"):
        group, sub = {}, {}
        extra = here if m.runtime.extra_llm_api_options is not None else None
        for point in m.sweep.points:
            argv = trtllm.throughput_argv(
                m,
                point,
                model_path=here,
                dataset=here,
                report_json=here,
                kv_fraction=m.runtime.kv_cache_free_gpu_mem_fraction,
                workspace=here,
                engine_dir=here,
                extra_options=extra,
            )
            cut = argv.index("throughput")
            group |= split_options(argv[1:cut])
            for name, values in split_options(argv[cut + 1 :]).items():
                sub.setdefault(name, [])
                sub[name] += [v for v in values if v not in sub[name]]
        bench = trtllm.TRTLLM_BENCH
        out.append(Usage(bench, (bench, "--help"), group))
        out.append(Usage(f"{bench} throughput", (bench, "-m", "x", "throughput", "--help"), sub))
    return out


def option_problems(usage: Usage, help_text: HelpText, version: str) -> list[str]:
    problems = []
    for name, values in usage.options.items():
        if name not in help_text.options:
            problems.append(
                f"{usage.tool}: option {name} is not in the installed tool's help "
                f"(TensorRT-LLM {version}); fix: use the image pinned in manifests/pins.toml, "
                "or select the pin set of this release with `release = ...` in the manifest"
            )
            continue
        allowed = help_text.choices.get(name)
        for value in values if allowed else []:
            if value not in allowed:
                problems.append(
                    f"{usage.tool}: {name} {value} is not one of {', '.join(allowed)} "
                    f"(TensorRT-LLM {version}); fix: pick one of those in the manifest, or "
                    "use the pinned image"
                )
    return problems


def version_problems(pinned: dict[str, Any], installed: dict[str, str | None]) -> list[str]:
    """A pin matches the installed version equal to it or a patch release of it (0.33 ~ 0.33.1)."""
    problems = []
    for package, dist in PACKAGES.items():
        want = str(pinned[package]["version"])
        have = installed.get(dist)
        if have is None or not (have == want or have.startswith(want + ".")):
            problems.append(
                f"{dist}: installed {have or 'nothing'}, pinned {want} "
                f"(manifests/pins.toml [{pinned['_name']}{package}]); fix: run in the pinned "
                f"image {pinned['image']['ref']}, or set the manifest's `release` to the pin set "
                "of the installed release"
            )
    return problems


def limit_problems(manifest: Manifest) -> list[str]:
    limit = trtllm.runtime_max_input_len(manifest)
    if limit is None:
        return []
    return [
        f"sweep point {p.isl}/{p.osl}: ISL {p.isl} exceeds the TensorRT runtime's prompt limit "
        f"{limit} = min(max_seq_len - 1, max_num_tokens); fix: set runtime.enable_chunked_context "
        "= true (the engine has paged context FMHA) or raise engine.max_num_tokens"
        for p in manifest.sweep.points
        if p.isl > limit
    ]


def pin_set(all_pins: dict[str, Any], release: str) -> dict[str, Any]:
    """The image and package pins of one release: 1.0 at the top level, others in [releases]."""
    if release == "1.0":
        return {**all_pins, "_name": ""}
    node = all_pins.get("releases", {}).get(release)
    if node is None:
        raise KitError(
            f"no pin set for release {release!r}",
            path=str(pins.PINS),
            fix=f'add [releases."{release}".image] and its package pins',
        )
    return {**node, "_name": f'releases."{release}".'}


# ----------------------------------------------------------------------------- edges


def read_help(argv: tuple[str, ...]) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=HELP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KitError(f"cannot run `{' '.join(argv)}`: {exc}") from None
    return done.stdout + done.stderr


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def diagnose(
    manifest: Manifest,
    all_pins: dict[str, Any],
    help_of: Callable[[tuple[str, ...]], str] = read_help,
    versions: Callable[[tuple[str, ...]], dict[str, str | None]] = installed_versions,
    missing: Callable[[dict], list[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """(report lines, problems). Tools missing from PATH stop the option checks early."""
    lines = [f"manifest {manifest.name}: release {manifest.release}, backend "]
    lines[0] += manifest.engine.backend
    if manifest.engine.backend == "hf-reference":
        lines.append("ok   no TensorRT-LLM tool is used (CPU reference backend)")
        return lines, []
    pinned = pin_set(all_pins, manifest.release)
    raw = manifest.model_dump(mode="json")
    absent = (missing or missing_tools)(raw)
    if absent:
        return lines, [f"not found: {a}" for a in absent]
    have = versions((*PACKAGES.values(), *SHOWN_ONLY))
    helps = {u.help_argv: help_of(u.help_argv) for u in usages(manifest)}
    banner = next((m.group(1) for t in helps.values() if (m := BANNER.search(t))), None)
    if have.get("tensorrt_llm") is None and banner:
        have["tensorrt_llm"] = banner  # the tools' start-up banner, when run elsewhere
    version = have.get("tensorrt_llm") or "unknown"
    problems: list[str] = []
    for usage in usages(manifest):
        found = option_problems(usage, parse_help(helps[usage.help_argv]), version)
        mark = "ok  " if not found else "FAIL"
        lines.append(f"{mark} {usage.tool}: {len(usage.options)} options")
        problems += found
    found = version_problems(pinned, have)
    lines += [
        f"{'FAIL' if any(d in p for p in found) else 'ok  '} {d} {have.get(d) or '-'}"
        for d in PACKAGES.values()
    ]
    lines += [f"info {d} {have.get(d) or '-'}" for d in SHOWN_ONLY]
    problems += found
    found = limit_problems(manifest)
    lines.append(f"{'FAIL' if found else 'ok  '} every point fits the runtime's prompt limit")
    return lines, problems + found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--pins", type=Path, default=pins.PINS)
    args = parser.parse_args(argv)

    def doctor() -> int:
        manifest = load_manifest(args.manifest)
        lines, problems = diagnose(manifest, pins.load_pins(args.pins))
        print("\n".join(lines))
        if problems:
            raise KitError(
                f"{len(problems)} mismatch(es) between the kit and the installed tools:\n  "
                + "\n  ".join(problems),
                path=args.manifest,
            )
        print(f"doctor: ready ({args.manifest})")
        return 0

    return run_main(doctor, "bench.doctor")


if __name__ == "__main__":
    raise SystemExit(main())

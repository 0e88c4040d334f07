"""`make doctor`: the installed TensorRT-LLM against everything the kit will pass it, before any
GPU time is spent.

Reads:  the manifest, manifests/pins.toml (the pin set the manifest's `release` selects), the
        installed tools' own help (trtllm-bench, trtllm-bench throughput, trtllm-build,
        prepare_dataset.py and its token-norm-dist subcommand; trtllm-serve for an online
        manifest, which runs it instead of trtllm-bench) and package versions.
Usage:  python -m bench.stages.doctor --manifest manifests/llama-3.1-8b-fp8-h100.toml

Checks, each printed as `ok` or `FAIL`: every option (and choice value) of every command the plan
runs is in the installed tool's help; the TensorRT-LLM, ModelOpt and transformers versions are the
pinned ones (torch is printed); every point fits the TensorRT runtime's prompt limit. Exit 2 on
any failure, each naming the tool, the option or package, the installed version and the fix.
Manifests that use no TensorRT-LLM tool (the CPU demo) pass with a note. A passing check keeps
its stage key (bench.stages.ifchanged.doctor_key: manifest and pins bytes, packages, tools on PATH)
in WORK_DIR/.stamps/doctor-<manifest>-<hash>.json, so `make all` skips it while nothing changed.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import backends
from bench.backends.base import PointPaths
from bench.backends.trtllm import commands as trtllm
from bench.backends.trtllm.backend import Trtllm
from bench.core import pins
from bench.core import stage as rule
from bench.core.errors import KitError, run_main
from bench.core.manifest import TRTLLM_EVAL, Manifest, load_manifest
from bench.core.toolcheck import missing_tools, prepare_dataset_script
from bench.stages import accuracy
from bench.stages.ifchanged import DOCTOR_VERSION, PINS, doctor_key, doctor_key_file

VERSION = DOCTOR_VERSION  # bump it there (bench.stages.ifchanged asks before this module loads)
HELP_TIMEOUT_S = 120
# Pinned package -> its distribution name (importlib.metadata).
PACKAGES = {"tensorrt_llm": "tensorrt_llm", "modelopt": "nvidia-modelopt"}
PACKAGES |= {"transformers": "transformers"}
SHOWN_ONLY = ("torch",)  # printed for the record, not pinned
BANNER = re.compile(r"TensorRT-LLM version: (\S+)")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
# An option-definition line: indented a little, starting with the option (and its aliases after
# `, ` or ` / `). Descriptions are indented further or start with a word, so an option only
# mentioned in another option's description does not count as present.
DEFINITION = re.compile(
    r"^[ \t]{1,4}(-{1,2}[A-Za-z][\w-]*(?:(?:,[ \t]*|[ \t]*/[ \t]*)-{1,2}[A-Za-z][\w-]*)*)"
    r"(.*)$",
    re.MULTILINE,
)
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
    """Option names and choice lists from the option-definition lines of click's or argparse's
    --help."""
    names: set[str] = set()
    choices = {}
    for line in DEFINITION.finditer(text):
        names.update(OPTION.findall(line.group(1)))
        for m in CHOICES.finditer(line.group(0)):
            listed = m.group(2) or m.group(3)
            choices[m.group(1)] = tuple(re.split(r"[|,]", listed))
    return HelpText(frozenset(names), choices)


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
    backend = backends.get(m.engine.backend)
    if isinstance(backend, Trtllm) and m.sweep.scenario == "online":
        argv = trtllm.trtllm_serve_command(
            m, here, 8000, extra_options=here, engine_dir=here if backend.builds_engine else None
        ).argv
        serve = trtllm.TRTLLM_SERVE  # argv[1] is MODEL; `serve` is the DefaultGroup's command
        out.append(Usage(serve, (serve, "serve", "--help"), split_options(argv[2:])))
    elif isinstance(backend, Trtllm):
        group, sub = {}, {}
        extra = here if m.runtime.extra_llm_api_options is not None else None
        for point in m.sweep.points:
            paths = PointPaths(
                model_path=here,
                dataset=here,
                report_json=here,
                workspace=here,
                engine_dir=here,
                extra_options=extra,
            )
            argv = backend.run_argv(
                m, point, paths, kv_fraction=m.runtime.kv_cache_free_gpu_mem_fraction
            )
            cut = argv.index("throughput")
            group |= split_options(argv[1:cut])
            for name, values in split_options(argv[cut + 1 :]).items():
                sub.setdefault(name, [])
                sub[name] += [v for v in values if v not in sub[name]]
        bench = trtllm.TRTLLM_BENCH
        out.append(Usage(bench, (bench, "--help"), group))
        out.append(Usage(f"{bench} throughput", (bench, "-m", "x", "throughput", "--help"), sub))
    return out + eval_usages(manifest)


def eval_usages(manifest: Manifest) -> list[Usage]:
    """trtllm-eval and its task, with the options the accuracy stage passes for both models."""
    acc, here = manifest.accuracy, Path("/doctor")
    if acc is None or acc.method != TRTLLM_EVAL:
        return []
    group: dict[str, list[str]] = {}
    task: dict[str, list[str]] = {}
    for tokenizer, engine in ((here, True), (None, False)):
        argv = accuracy.eval_argv(
            manifest, model=here, tokenizer=tokenizer, engine=engine, dataset_dir=here
        )
        cut = argv.index(acc.task)
        group |= split_options(argv[1:cut])
        task |= split_options(argv[cut + 1 :])
    tool = accuracy.TRTLLM_EVAL
    return [
        Usage(tool, (tool, "--help"), group),
        Usage(f"{tool} {acc.task}", (tool, "--model", "x", acc.task, "--help"), task),
    ]


def missing_eval(
    manifest: Manifest, which: Callable[[str], str | None] = shutil.which
) -> list[str]:
    if not eval_usages(manifest) or which(accuracy.TRTLLM_EVAL):
        return []
    return [f"{accuracy.TRTLLM_EVAL} (TensorRT-LLM) is not on PATH; the accuracy stage runs it"]


def archive_problems(manifest: Manifest, path: str) -> list[str]:
    """An unpinned evaluation archive stops `make accuracy` (and so `make all`) after the build."""
    acc = manifest.accuracy
    if acc is None or acc.dataset is None or acc.dataset.sha256 is not None:
        return []
    return [
        f"{path}: accuracy.dataset.sha256 is not set for {acc.dataset.archive}, so `make all` "
        f"would stop at the accuracy stage after the build; fix: take its digest "
        f"(`{digest_command(acc.dataset.archive)}`), check it against a second download, and "
        'add sha256 = "<digest>" to [accuracy.dataset]'
    ]


def digest_command(archive: str) -> str:
    """A command that prints the archive's sha256 without the kit (doctor runs before any stage)."""
    quoted = shlex.quote(archive)
    return f"curl -fsSL {quoted} | sha256sum" if "://" in archive else f"sha256sum {quoted}"


def llm_api_key_problems(
    options: dict[str, Any], fields: dict[str, frozenset[str] | None]
) -> list[str]:
    """Keys of --extra_llm_api_options the installed LLM arguments do not have (nested too)."""
    problems = []
    for key, value in options.items():
        if key not in fields:
            problems.append(f"runtime.extra_llm_api_options: {key} is not an LLM API argument")
            continue
        nested = fields[key]
        if nested is not None and isinstance(value, dict):
            problems += [
                f"runtime.extra_llm_api_options: {key}.{sub} is not a field of {key}"
                for sub in value
                if sub not in nested
            ]
    return problems


def installed_llm_api_fields(
    args_class: str,
) -> tuple[dict[str, frozenset[str] | None] | None, str]:
    """(top-level field -> nested field names or None, why not) from the installed tensorrt_llm's
    pydantic LLM arguments class the backend fills (TrtLlmArgs, TorchLlmArgs)."""
    try:
        module = importlib.import_module("tensorrt_llm.llmapi.llm_args")
    except Exception as exc:  # importing it can fail on CUDA too: reported, not raised
        return None, f"tensorrt_llm.llmapi.llm_args is not importable here ({type(exc).__name__})"
    cls = getattr(module, args_class, None)
    if cls is None or not hasattr(cls, "model_fields"):
        return None, "the installed tensorrt_llm has no pydantic TrtLlmArgs/TorchLlmArgs"
    fields: dict[str, frozenset[str] | None] = {}
    for name, field in cls.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        fields[name] = frozenset(sub) if isinstance(sub, dict) else None
    return fields, ""


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
        allowed = help_text.choices.get(name) or ()
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
        f"{limit} = min(max_seq_len - 1, max_num_tokens) with chunked context off (release "
        f"{manifest.release}); fix: set runtime.enable_chunked_context = true (the engine has "
        "paged context FMHA) or raise engine.max_num_tokens"
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


def diagnose(
    manifest: Manifest,
    all_pins: dict[str, Any],
    help_of: Callable[[tuple[str, ...]], str] = read_help,
    versions: Callable[..., dict[str, str | None]] = rule.tool_versions,
    missing: Callable[[dict], list[str]] | None = None,
    llm_api_fields: Callable[[str], tuple[dict | None, str]] = installed_llm_api_fields,
    manifest_path: str = "the manifest",
) -> tuple[list[str], list[str]]:
    """(report lines, problems). Tools missing from PATH stop the option checks early."""
    lines = [f"manifest {manifest.name}: release {manifest.release}, backend "]
    lines[0] += manifest.engine.backend
    backend = backends.get(manifest.engine.backend)
    if not isinstance(backend, Trtllm):  # the doctor reads TensorRT-LLM's tools and packages
        lines.append("ok   no TensorRT-LLM tool is used")
        return lines, []
    pinned = pin_set(all_pins, manifest.release)
    raw = manifest.model_dump(mode="json")
    absent = missing(raw) if missing else missing_tools(raw) + missing_eval(manifest)
    if absent:
        return lines, [f"not found: {a}" for a in absent]
    have = versions(*PACKAGES.values(), *SHOWN_ONLY)
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
    problems += found
    options = manifest.runtime.extra_llm_api_options
    if manifest.sweep.scenario == "online":
        options = trtllm.serve_options(manifest)  # what trtllm-serve's YAML sets
    if options is not None:
        fields, why = llm_api_fields(backend.llm_api_args)
        if fields is None:
            lines.append(f"skip --extra_llm_api_options keys not checked: {why}")
        else:
            found = [
                f"{p} (TensorRT-LLM {version}); fix: drop or rename it"
                for p in llm_api_key_problems(options, fields)
            ]
            mark = "FAIL" if found else "ok  "
            lines.append(f"{mark} --extra_llm_api_options keys ({len(options)})")
            problems += found
    found = archive_problems(manifest, manifest_path)
    if manifest.accuracy is not None and manifest.accuracy.dataset is not None:
        lines.append(f"{'FAIL' if found else 'ok  '} the accuracy archive is pinned by sha256")
    return lines, problems + found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.doctor", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--pins", type=Path, default=pins.PINS)
    args = parser.parse_args(argv)

    def doctor() -> int:
        key = doctor_key(Path(args.manifest), args.pins)
        manifest = load_manifest(args.manifest)
        lines, problems = diagnose(manifest, pins.load_pins(args.pins), manifest_path=args.manifest)
        print("\n".join(lines))
        if problems:
            raise KitError(
                f"{len(problems)} mismatch(es) between the kit and the installed tools:\n  "
                + "\n  ".join(problems),
                path=args.manifest,
            )
        if args.pins.resolve() == PINS:  # the key make all's fast path asks about
            rule.write_key_file(doctor_key_file(Path(args.manifest)), key, {"lines": lines})
        print(f"doctor: ready ({args.manifest})")
        return 0

    return run_main(doctor, "bench.stages.doctor")


if __name__ == "__main__":
    raise SystemExit(main())

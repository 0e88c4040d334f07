"""Preflight: check this machine against the manifest before any GPU time is spent.

Reads:  the manifest; a fresh provenance capture (bench.stages.provenance.collect: NVML,
nvidia-smi);
        free space under MODELS_DIR, WORK_DIR and RESULTS_DIR; the model's config.json if fetched.
Writes: nothing. Prints one line per check, then NVIDIA's recommended GPU settings (not run).
Usage:  python -m bench.stages.preflight --manifest manifests/demo.toml [--run NAME]
Exit:   0 with warnings at most, 1 when a check fails, 2 on a bad manifest.

Every check is a pure function over the provenance dict and the manifest returning Findings
(ok / skipped / warn / error). With runtime.device = "cpu" the GPU checks are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from bench.core.errors import EXIT_FAILED, EXIT_OK, run_main
from bench.core.manifest import Manifest, load_manifest
from bench.core.run import RunPaths, add_run_args
from bench.gpu import gpus
from bench.gpu.gpu_info import visible_gpus
from bench.stages import provenance

Level = Literal["ok", "skipped", "warn", "error"]

FORM_ALIASES = {"SXM": "SXM", "SXM4": "SXM", "SXM5": "SXM", "PCIE": "PCIe", "NVL": "NVL"}
PCIE_NOTE = (
    "NVIDIA's published numbers are from H100 SXM; an H100 PCIe reaches about 60% of "
    "them (NVIDIA/TensorRT-LLM#6294: about 17,500 against 27,688 output tok/s at 128/128)"
)
# Clock events that are normal at rest; any other one active now means the GPU is held back.
BENIGN_REASONS = ("gpu_idle", "applications_clocks_setting", "sync_boost", "display_clocks_setting")

# Disk estimates. Bytes per parameter of weights; a dataset token is an id of up to 6 digits
# and a comma in JSONL; keep this fraction of a filesystem free.
BF16_BYTES, FP8_BYTES = 2, 1
DATASET_BYTES_PER_TOKEN = 7
DISK_HEADROOM = 0.10
HF_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    message: str


@dataclass(frozen=True)
class DiskNeed:
    what: str
    root: str  # "models", "work" or "results": the filesystem it lands on
    path: Path
    bytes: int
    present: bool = False


# ----------------------------------------------------------------------------- GPU checks


def expected_gpu(spec: str) -> tuple[str, str | None]:
    """hardware.gpu 'H100-SXM' -> ('H100', 'SXM'); 'H100' -> ('H100', None)."""
    model, _, form = spec.partition("-")
    return model.upper(), (FORM_ALIASES.get(form.upper(), form) if form else None)


def _label(gpu: dict[str, Any]) -> str:
    return f"GPU{gpu['index']}"


def check_gpu_count(visible: int, wanted: int, seen: int) -> Finding:
    if visible >= wanted:
        return Finding("ok", "gpu count", f"{visible} visible, hardware.gpus = {wanted}")
    hidden = f" (NVML sees {seen}; CUDA_VISIBLE_DEVICES hides the rest)" if seen > visible else ""
    return Finding(
        "error", "gpu count", f"{visible} GPU(s) visible{hidden} but hardware.gpus = {wanted}"
    )


def check_gpu_model(gpus: list[dict[str, Any]], spec: str) -> Finding:
    model, form = expected_gpu(spec)
    problems = []
    for gpu in gpus:
        name = gpu.get("name") or "unknown"
        tokens = name.upper().replace("-", " ").split()
        if model not in tokens:
            problems.append(
                f"hardware.gpu = {spec!r} but {_label(gpu)} is {name}: numbers will "
                "not be comparable with the reference"
            )
        elif form and gpu.get("form_factor") is None:
            problems.append(
                f"{_label(gpu)} {name}: could not tell whether it is {form} "
                f"({gpu.get('form_factor_basis')})"
            )
        elif form and gpu["form_factor"] != form:
            note = f"; {PCIE_NOTE}" if form == "SXM" and model == "H100" else ""
            problems.append(
                f"hardware.gpu = {spec!r} but {_label(gpu)} {name} is "
                f"{gpu['form_factor']} ({gpu['form_factor_basis']}){note}"
            )
    if problems:
        return Finding("warn", "gpu model", "\n".join(problems))
    first = gpus[0]
    return Finding(
        "ok",
        "gpu model",
        f"{first['name']} ({first.get('form_factor') or 'any form'}: "
        f"{first.get('form_factor_basis')}) matches hardware.gpu = {spec!r}",
    )


def check_power_limit(gpus: list[dict[str, Any]]) -> Finding:
    low, known = [], []
    for gpu in gpus:
        enforced, default = gpu.get("power_limit_enforced_w"), gpu.get("power_limit_default_w")
        if enforced is None or default is None:
            continue
        known.append(f"{_label(gpu)} {enforced:g} W")
        if enforced < default - 0.5:
            top = gpu.get("power_limit_max_w")
            low.append(
                f"{_label(gpu)}: power limit {enforced:g} W is below its default "
                f"{default:g} W (max {'?' if top is None else f'{top:g}'} W): throughput "
                "will be lower than published"
            )
    if low:
        return Finding("warn", "power limit", "\n".join(low))
    if not known:
        return Finding("skipped", "power limit", "power limits not reported")
    return Finding("ok", "power limit", f"at or above default: {', '.join(known)}")


def check_persistence(gpus: list[dict[str, Any]]) -> Finding:
    off = [_label(g) for g in gpus if g.get("persistence_mode") is False]
    if off:
        return Finding(
            "warn",
            "persistence",
            f"persistence mode is off on {', '.join(off)}: the "
            "driver may reinitialise the GPU between steps (sudo nvidia-smi -pm 1)",
        )
    if all(g.get("persistence_mode") is None for g in gpus):
        return Finding("skipped", "persistence", "persistence mode not reported")
    return Finding("ok", "persistence", "persistence mode on")


def check_mig(gpus: list[dict[str, Any]]) -> Finding:
    on = [g for g in gpus if g.get("mig_enabled")]
    if on:
        labels = ", ".join(_label(g) for g in on)
        return Finding(
            "error",
            "mig",
            f"MIG is enabled on {labels}: a benchmark would run on a "
            "slice, not the GPU (sudo nvidia-smi -i <index> -mig 0, then reset the GPU)",
        )
    return Finding("ok", "mig", "MIG off or not supported")


def check_other_processes(gpus: list[dict[str, Any]], own_pid: int) -> Finding:
    found = []
    for gpu in gpus:
        for p in gpu.get("processes") or []:
            if p.get("pid") != own_pid:
                found.append(
                    f"{_label(gpu)}: pid {p.get('pid')} {p.get('name') or '?'} "
                    f"({p.get('used_memory_mib')} MiB)"
                )
    if found:
        return Finding(
            "warn",
            "other processes",
            "other processes use the GPU; they take memory "
            "and compute from the benchmark:\n" + "\n".join(found),
        )
    return Finding("ok", "other processes", "no other compute process on the GPU")


def check_clock_events(gpus: list[dict[str, Any]]) -> Finding:
    held = []
    for gpu in gpus:
        active = [r for r in gpu.get("clock_event_reasons") or [] if r not in BENIGN_REASONS]
        if active:
            held.append(f"{_label(gpu)}: {', '.join(active)}")
    if held:
        return Finding("warn", "clock events", "clocks are held back right now: " + "; ".join(held))
    return Finding("ok", "clock events", "no power, thermal or hardware slowdown active")


def gpu_checks(prov: dict[str, Any], manifest: Manifest, own_pid: int) -> list[Finding]:
    if manifest.runtime.device == "cpu":
        return [Finding("skipped", "gpu", "runtime.device = 'cpu': GPU checks skipped")]
    if not prov.get("gpus"):
        return [Finding("error", "gpu", f"runtime.device = 'cuda' but {prov.get('gpu_note')}")]
    visible = visible_gpus(prov)
    used = visible[: manifest.hardware.gpus]
    findings = [check_gpu_count(len(visible), manifest.hardware.gpus, len(prov["gpus"]))]
    if used:
        findings += [
            check_gpu_model(used, manifest.hardware.gpu),
            check_power_limit(used),
            check_persistence(used),
            check_mig(used),
            check_other_processes(used, own_pid),
            check_clock_events(used),
        ]
    disagreements = prov.get("gpu_cross_check", {}).get("disagreements") or []
    if disagreements:
        lines = [
            f"GPU{d['index']} {d['field']}: NVML {d['nvml']!r}, nvidia-smi {d['nvidia_smi']!r}"
            for d in disagreements
        ]
        findings.append(Finding("warn", "nvml vs smi", "\n".join(lines)))
    return findings


# ----------------------------------------------------------------------------- disk and token


def model_params(config: dict[str, Any]) -> int | None:
    """Parameters of a Llama-shaped decoder from its config.json; None if keys are missing."""
    try:
        return gpus.shape_from_config(config).all_params
    except KeyError:
        return None


def estimate_disk(
    manifest: Manifest, paths: RunPaths, config: dict[str, Any] | None
) -> tuple[list[DiskNeed], str]:
    """What the run will write, with the basis of the model's size."""
    points = manifest.sweep.points
    needs = [
        DiskNeed(
            "datasets",
            "results",
            paths.datasets,
            sum(p.requests * p.isl * DATASET_BYTES_PER_TOKEN for p in points),
        )
    ]
    repo, q, engine = manifest.model.repo, manifest.quantization, manifest.engine
    params = model_params(config) if config else None
    basis = "config.json"
    if params is None and repo in gpus.MODELS:
        params, basis = gpus.MODELS[repo].all_params, "the table of known models"
    if params is None:
        why = (
            "the builtin demo model is generated by the kit and small"
            if manifest.model.source == "builtin"
            else f"{repo} has no config.json yet and is not in the table of known models"
        )
        return needs, f"model size unknown ({why}): only datasets counted"
    bf16, fp8 = params * BF16_BYTES, params * FP8_BYTES
    snapshot = fp8 if q.method == "prequantized" else bf16
    quantized = q.method != "none" and q.format == "fp8"
    needs.append(
        DiskNeed(
            "model snapshot", "models", paths.model_dir(repo, manifest.model.revision), snapshot
        )
    )
    if q.method == "modelopt":
        needs.append(DiskNeed("FP8 checkpoint", "work", paths.checkpoint, fp8))
    elif engine.needs_build:
        needs.append(DiskNeed("TensorRT-LLM checkpoint", "work", paths.checkpoint, snapshot))
    if engine.needs_build:
        needs.append(DiskNeed("engine", "work", paths.engine, fp8 if quantized else bf16))
    return needs, f"{params / 1e9:.2f}B parameters from {basis}"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_disk(needs: list[DiskNeed], space: dict[str, tuple[int, int]]) -> list[Finding]:
    """space: root -> (filesystem id, free bytes). Needs on one filesystem are added up."""
    groups: dict[int, list[DiskNeed]] = {}
    for need in needs:
        groups.setdefault(space[need.root][0], []).append(need)
    findings = []
    for group in groups.values():
        free = space[group[0].root][1]
        roots = "/".join(sorted({n.root for n in group}))
        total = sum(n.bytes for n in group if not n.present)
        parts = ", ".join(f"{n.what} {'present' if n.present else _gb(n.bytes)}" for n in group)
        message = f"{roots}: {_gb(total)} needed ({parts}), {_gb(free)} free"
        if total > free:
            level: Level = "error"
        elif total > free * (1 - DISK_HEADROOM):
            level, message = "warn", message + f" (less than {DISK_HEADROOM:.0%} to spare)"
        else:
            level = "ok"
        findings.append(Finding(level, "disk", message))
    return findings


def check_hf_token(manifest: Manifest, token_source: str | None, model_present: bool) -> Finding:
    model = manifest.model
    if model.source != "hf":
        return Finding("skipped", "hf token", f"model source is {model.source!r}: no download")
    if not model.gated:
        return Finding("ok", "hf token", f"{model.repo} is not gated")
    if model_present:
        return Finding("ok", "hf token", f"{model.repo} is gated but already fetched")
    if token_source:
        return Finding("ok", "hf token", f"{model.repo} is gated; token from {token_source}")
    return Finding(
        "error",
        "hf token",
        f"{model.repo} is gated (model.gated = true) and no "
        "Hugging Face token is set: accept its license on huggingface.co, then "
        "export HF_TOKEN=... or run `hf auth login`",
    )


def recommended_commands(gpus: list[dict[str, Any]]) -> list[str]:
    """NVIDIA's settings for benchmarking (TensorRT-LLM docs, performance/perf-benchmarking.md,
    'Before Benchmarking'); printed for the user, never run by the kit."""
    limits = [g["power_limit_max_w"] for g in gpus if g.get("power_limit_max_w")]
    watts = f"{max(limits):g}" if limits else "<max_power_limit>"
    return [
        "sudo nvidia-smi -pm 1                # persistence mode on",
        "sudo nvidia-smi -rgc                 # reset GPU clocks; NVIDIA advises against locking "
        "them (-lgc), which can cause thermal throttling",
        f"sudo nvidia-smi -pl {watts:<17}# power limit = the board's max (nvidia-smi -q -d POWER)",
        "sudo nvidia-smi boost-slider -l      # if boost levels are listed: "
        "sudo nvidia-smi boost-slider --vboost <max level>",
    ]


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        first, *rest = f.message.splitlines()
        lines.append(f"  {f.level:<8}{f.check:<17}{first}")
        lines += [f"  {'':<8}{'':<17}{line}" for line in rest]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- I/O edge


def _filesystem(path: Path) -> tuple[int, int]:
    """(device id, free bytes) of the filesystem that holds, or will hold, path."""
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    return os.stat(existing).st_dev, shutil.disk_usage(existing).free


def _token_source(prov: dict[str, Any]) -> str | None:
    for var in HF_TOKEN_VARS:
        if var in prov.get("credentials_present", []):
            return f"${var}"
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    token_file = Path(os.environ.get("HF_TOKEN_PATH", hf_home / "token"))
    return str(token_file) if token_file.is_file() else None


def run_checks(prov: dict[str, Any], manifest: Manifest, paths: RunPaths) -> list[Finding]:
    findings = gpu_checks(prov, manifest, os.getpid())
    model_dir = paths.model_dir(manifest.model.repo, manifest.model.revision)
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else None
    needs, basis = estimate_disk(manifest, paths, config)
    needs = [replace(n, present=n.path.exists()) for n in needs]
    roots = {"models": paths.models, "work": paths.work, "results": paths.root}
    space = {name: _filesystem(root) for name, root in roots.items()}
    findings.append(Finding("ok", "disk estimate", basis))
    findings += check_disk(needs, space)
    findings.append(check_hf_token(manifest, _token_source(prov), config_file.is_file()))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.preflight", description=__doc__.splitlines()[0]
    )
    add_run_args(parser)
    args = parser.parse_args(argv)
    command = sys.orig_argv if argv is None else ["python", "-m", "bench.stages.preflight", *argv]

    def run() -> int:
        manifest = load_manifest(args.manifest)
        paths = RunPaths.for_run(args.run or args.manifest.stem)
        prov = provenance.collect(command)
        findings = run_checks(prov, manifest, paths)
        print(f"preflight: {args.manifest} (run {paths.name}) on {provenance.describe(prov)}")
        print(render(findings))
        if manifest.runtime.device == "cuda":
            print(
                "\nNVIDIA's recommended settings before benchmarking (TensorRT-LLM docs, "
                "perf-benchmarking.md); not run by the kit, they need root on the host:"
            )
            print("\n".join(f"  {c}" for c in recommended_commands(visible_gpus(prov))))
        errors = sum(f.level == "error" for f in findings)
        warnings = sum(f.level == "warn" for f in findings)
        print(f"\npreflight: {errors} error(s), {warnings} warning(s)")
        return EXIT_FAILED if errors else EXIT_OK

    return run_main(run, "bench.stages.preflight")


if __name__ == "__main__":
    raise SystemExit(main())

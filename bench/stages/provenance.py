"""Provenance: which GPUs, host, software and command produced a run, captured once at its start.

Reads:  NVML (pynvml, from nvidia-ml-py), `nvidia-smi -q -x` and `nvidia-smi topo -m` (cross-check;
        both parsed by bench.gpu.gpu_info),
        /proc/cpuinfo, /proc/meminfo, /etc/os-release, /etc/trtllm-repro/image.json (written by the
        kit's Dockerfile: {"image": ..., "digest": ...}), installed distributions, `git` in the kit,
        `aiperf --version` (--aiperf, for an online manifest: AIPerf has its own venv).
Writes: results/<run>/provenance.json, recorded as stage "env" in results/<run>/artifacts.json
Usage:  python -m bench.stages.provenance --manifest manifests/demo.toml [--run NAME]

Without a GPU nothing fails: "gpus" is [] and "gpu_note" says why (the NVML error). No secret is
written: environment variables are recorded only from ENV_ALLOWLIST, credential variables only by
name, and anything that looks like a token is scrubbed from the command line and every other string.
A second capture into the same run must show the same identity (GPUs, driver, image, key packages);
if it does not, the stage refuses, like a changed manifest: numbers from two machines never mix.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import backends
from bench.backends import aiperf
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, run_main
from bench.core.fileio import atomic_write_json, read_json
from bench.core.run import Run, add_run_args, open_run
from bench.core.runlock import locked
from bench.gpu.gpu_info import (
    cross_check,
    open_nvml,
    parse_nvidia_smi_xml,
    parse_topology,
    read_nvml,
)
from bench.schema.provenance import (
    SCHEMA,
    identity_changes,
    machine_identity,
    parse_provenance,
    read_provenance,
)

VERSION = 1  # bump when provenance.json would hold other fields
KIT_ROOT = Path(__file__).resolve().parents[2]
IMAGE_JSON = Path("/etc/trtllm-repro/image.json")
TOOL_TIMEOUT_S = 30

# Environment variables worth recording: they change what a benchmark sees. Nothing else is kept.
ENV_ALLOWLIST = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "CUDA_DEVICE_ORDER",
    "CUDA_MODULE_LOADING",
    "PYTORCH_CUDA_ALLOC_CONF",
    "OMP_NUM_THREADS",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "TLLM_LOG_LEVEL",
    "NCCL_NVLS_ENABLE",
    "RESULTS_DIR",
    "WORK_DIR",
    "MODELS_DIR",
    "REPORTS_DIR",
)
# Credentials the kit may need: recorded by name when set, never by value.
CREDENTIAL_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "NGC_API_KEY")

# Display key -> distribution names to try, first found wins: every backend's (bench.backends,
# `provenance_packages`), then the kit's own.
PACKAGES: dict[str, tuple[str, ...]] = {
    **backends.provenance_packages(),
    "torch": ("torch",),
    "modelopt": ("nvidia-modelopt",),
    "transformers": ("transformers",),
    "huggingface_hub": ("huggingface_hub",),
    "numpy": ("numpy",),
    "pydantic": ("pydantic",),
    "nvidia_ml_py": ("nvidia-ml-py",),
}

# ----------------------------------------------------------------------------- secrets

REDACTED = "<redacted>"
_SECRET_WORD = r"(?:token|secret|password|passwd|api[_-]?key|access[_-]?key|credentials?)"
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"(?i)([A-Za-z0-9_.-]*{_SECRET_WORD})=\S+"), rf"\1={REDACTED}"),  # HF_TOKEN=...
    (re.compile(r"(?i)(\bBearer\s+)\S+"), rf"\1{REDACTED}"),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), REDACTED),  # Hugging Face
    (re.compile(r"\b(?:gh[pousr]|github_pat)_[A-Za-z0-9_]{16,}"), REDACTED),  # GitHub
    (re.compile(r"\bnvapi-[A-Za-z0-9_-]{16,}"), REDACTED),  # NGC / NVIDIA API keys
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),  # AWS access key ids
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"), REDACTED),  # user:password@host
)
# A flag whose next argument is a secret: --token X, --hf-token X (not --max_num_tokens).
_SECRET_FLAG = re.compile(rf"(?i)^--?[a-z0-9_-]*{_SECRET_WORD}$")
_SECRET_ENV_PARTS = {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "CREDENTIALS"}


def scrub(text: str) -> str:
    """Replace anything that looks like a credential with <redacted>."""
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_argv(argv: list[str]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(REDACTED if i > 0 and _SECRET_FLAG.match(argv[i - 1]) else scrub(arg))
    return out


def secret_env_values(environ: dict[str, str]) -> list[str]:
    """Values of variables named like credentials (HF_TOKEN, AWS_SECRET_ACCESS_KEY...)."""
    return [
        v
        for k, v in environ.items()
        if _SECRET_ENV_PARTS & set(k.upper().split("_")) and len(v) >= 6
    ]


def redact_values(obj: Any, secrets: list[str]) -> Any:
    """Last line of defence: remove known secret values from every string in obj."""
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, REDACTED)
        return obj
    if isinstance(obj, dict):
        return {k: redact_values(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_values(v, secrets) for v in obj]
    return obj


# ----------------------------------------------------------------------------- host


def parse_cpuinfo(text: str) -> dict[str, Any]:
    model, sockets, cores = None, set(), set()
    physical = None
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and model is None:
            model = value
        elif key == "physical id":
            physical = value
            sockets.add(value)
        elif key == "core id":
            cores.add((physical, value))
    return {
        "cpu_model": model,
        "cpu_sockets": len(sockets) or None,
        "cpu_physical_cores": len(cores) or None,
    }


def parse_meminfo(text: str) -> int | None:
    """MemTotal in bytes."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def parse_os_release(text: str) -> str | None:
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.MULTILINE)
    return match.group(1) if match else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def describe_host() -> dict[str, Any]:
    cpu = parse_cpuinfo(_read(Path("/proc/cpuinfo")))
    return {
        **cpu,
        "cpu_model": cpu["cpu_model"] or platform.processor() or None,
        "cpu_logical": os.cpu_count(),
        "cpu_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_total_bytes": parse_meminfo(_read(Path("/proc/meminfo"))),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "os": parse_os_release(_read(Path("/etc/os-release"))),
    }


# ----------------------------------------------------------------------------- software


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, dists in PACKAGES.items():
        out[key] = None
        for dist in dists:
            try:
                out[key] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def torch_cuda_version() -> str | None:
    """torch.version.cuda, read from torch/version.py: importing torch takes seconds."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    source = _read(Path(spec.origin).parent / "version.py")
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "cuda" and isinstance(value, ast.Constant):
            return value.value if isinstance(value.value, str) else None
    return None


def pip_freeze() -> list[str]:
    seen = set()
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist)
        if name:
            seen.add(f"{name}=={version}")
    return sorted(seen, key=str.lower)


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """Name and Version from the metadata's header block. `dist.metadata` runs the e-mail parser
    over the whole file (long descriptions included) for each key: 14x slower over a venv."""
    # a wheel's METADATA, an egg-info folder's PKG-INFO, or an egg-info that is itself the file
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.read_text("") or ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, colon, value = line.partition(":")
        if colon and not line[0].isspace():
            found.setdefault(key.strip().lower(), value.strip())
    return found.get("name"), found.get("version")


def git_state(run_tool: Callable[[list[str]], str | None]) -> dict[str, Any]:
    commit = run_tool(["git", "-C", str(KIT_ROOT), "rev-parse", "HEAD"])
    if commit is None:
        return {"commit": None, "dirty": None, "note": "not a git checkout, or git missing"}
    status = run_tool(["git", "-C", str(KIT_ROOT), "status", "--porcelain"])
    dirty = None if status is None else bool(status.strip())
    return {"commit": commit.strip(), "dirty": dirty, "note": None}


def container_image(path: Path = IMAGE_JSON) -> dict[str, Any]:
    in_container = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    if not path.is_file():
        note = (
            "in a container that is not the kit's image" if in_container else "not in a container"
        )
        return {"image": None, "digest": None, "note": f"{note} (no {path})"}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return {"image": None, "digest": None, "note": f"{path} unreadable: {exc}"}
    return {
        "image": data.get("image"),
        "digest": data.get("digest"),
        "kit_commit": data.get("kit_commit"),
        "note": None,
    }


def _run_tool(argv: list[str]) -> str | None:
    """stdout of a short command, or None if it is missing, fails or hangs."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


# ----------------------------------------------------------------------------- capture


def scrub_process_names(gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPUs with every process name scrubbed (a command line may carry a token)."""
    return [
        {**g, "processes": [{**p, "name": scrub(p["name"])} for p in g["processes"]]} for g in gpus
    ]


def collect_gpus(
    nvml: Any = None, run_tool: Callable[[list[str]], str | None] | None = None
) -> dict[str, Any]:
    """GPUs from NVML, cross-checked against nvidia-smi; nvidia-smi alone if NVML is missing."""
    run_tool = run_tool or _run_tool
    module, reason = open_nvml(nvml)
    gpus: list[dict[str, Any]] = []
    if module is not None:
        try:
            gpus = read_nvml(module)
        except module.NVMLError as exc:  # e.g. "GPU is lost": recorded, never fatal
            reason = f"NVML failed reading devices: {exc}"
        finally:
            module.nvmlShutdown()
    xml_text = run_tool(["nvidia-smi", "-q", "-x"])
    smi_gpus = None
    smi_note: str | None = "nvidia-smi not found or failed"
    if xml_text is not None:
        try:
            smi_gpus, smi_note = parse_nvidia_smi_xml(xml_text), None
        except ValueError as exc:
            smi_note = str(exc)
    source: str | None = "nvml"
    note: str | None = None
    if module is None and smi_gpus:
        gpus, source = smi_gpus, "nvidia-smi"
        note = f"NVML unavailable ({reason}); GPUs read from nvidia-smi -q -x"
    elif not gpus:
        source, note = None, f"no NVIDIA GPU found (NVML: {reason or '0 devices'})"
    if module is None or smi_gpus is None:
        check: dict[str, Any] = {
            "compared": False,
            "note": smi_note if module else "NVML unavailable",
            "disagreements": [],
        }
    else:
        check = {"compared": True, "note": None, "disagreements": cross_check(gpus, smi_gpus)}
    topo_text = run_tool(["nvidia-smi", "topo", "-m"]) if gpus else None
    return {
        "gpus": scrub_process_names(gpus),
        "gpu_source": source,
        "gpu_note": note,
        "gpu_cross_check": check,
        "gpu_topology": parse_topology(topo_text) if topo_text else None,
    }


def collect(
    argv: list[str],
    *,
    nvml: Any = None,
    run_tool: Callable[[list[str]], str | None] | None = None,
    image_json: Path = IMAGE_JSON,
    aiperf_bin: str | None = None,
) -> dict[str, Any]:
    """Everything provenance.json holds; argv is the command line to record (scrubbed).

    nvml (a pynvml-like module) and run_tool (argv -> stdout or None) replace the real ones.
    aiperf_bin: the online scenario's AIPerf, in its own venv: its version joins the packages.
    """
    run_tool = run_tool or _run_tool
    environ = dict(os.environ)
    data = {
        "schema": SCHEMA,
        "captured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": scrub_argv(list(argv)),
        **collect_gpus(nvml, run_tool),
        "host": describe_host(),
        "software": {
            "python": sys.version.split()[0],
            "python_executable": sys.executable,
            "container": container_image(image_json),
            "packages": package_versions()
            | ({"aiperf": aiperf.installed_version(aiperf_bin)} if aiperf_bin else {}),
            "torch_cuda": torch_cuda_version(),
            "kit_git": git_state(run_tool),
            "pip_freeze": pip_freeze(),
        },
        "environment": {k: scrub(environ[k]) for k in ENV_ALLOWLIST if k in environ},
        "credentials_present": [k for k in CREDENTIAL_VARS if environ.get(k)],
    }
    return redact_values(data, secret_env_values(environ))


def capture(run: Run, argv: list[str], **collect_args: Any) -> dict[str, Any]:
    """Collect, refuse a changed identity, write provenance.json atomically, record stage 'env'."""
    data = collect(argv, **collect_args)
    path = run.paths.provenance
    captured = parse_provenance(data, f"{path} (as captured)")  # the capture keeps its schema
    if path.is_file():
        changes = identity_changes(
            machine_identity(read_provenance(path)), machine_identity(captured)
        )
        if changes:
            raise KitError(
                "this run was started on another machine or software stack:\n"
                + "\n".join(f"    {c}" for c in changes),
                path=str(path),
                fix="start a new run (RUN=<new name>); numbers from two environments never mix",
            )
    arts = Artifacts(run.paths)
    # Current while the identity is the one captured: the first capture stays the run's record.
    key = rule.StageKey(
        "env",
        VERSION,
        {"capture": path.name},
        arts.input_digests([run.manifest_path]),
        machine_identity(captured).model_dump(mode="json"),
    )
    if rule.skip_if_current(arts, key, path.name):
        return read_json(path)
    atomic_write_json(path, data)
    gpus = captured.gpus
    details = {
        "gpus": len(gpus),
        "gpu": gpus[0].name if gpus else None,
        "driver": gpus[0].driver_version if gpus else None,
        "image_digest": captured.software.container.digest,
    }
    rule.record(arts, key, [path], details, stamp=True)
    return data


def describe(prov: dict[str, Any]) -> str:
    """One line for the console."""
    gpus = prov["gpus"]
    if not gpus:
        return f"{prov['gpu_note']}; host {prov['host']['cpu_model']}"
    names = sorted({f"{g['name']} ({g['form_factor'] or 'form factor unknown'})" for g in gpus})
    text = f"{len(gpus)} x {', '.join(names)}, driver {gpus[0]['driver_version']}"
    disagreements = prov["gpu_cross_check"]["disagreements"]
    if disagreements:
        text += f"; NVML and nvidia-smi disagree on {len(disagreements)} field(s)"
    return text


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.provenance", description=__doc__.splitlines()[0]
    )
    add_run_args(parser)
    parser.add_argument("--aiperf", help="AIPerf (scenario online): its version is recorded")
    args = parser.parse_args(argv)
    command = sys.orig_argv if argv is None else ["python", "-m", "bench.stages.provenance", *argv]

    def run() -> int:
        opened = open_run(args.manifest, args.run)
        data = capture(opened, command, aiperf_bin=args.aiperf)
        print(
            f"bench.stages.provenance: {describe(data)} -> {opened.paths.provenance}",
            file=sys.stderr,
        )
        return 0

    return run_main(locked(args.run or args.manifest.stem, "env", run), "bench.stages.provenance")


if __name__ == "__main__":
    raise SystemExit(main())

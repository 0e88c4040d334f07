"""Provenance: which GPUs, host, software and command produced a run, captured once at its start.

Reads:  NVML (pynvml, from nvidia-ml-py), `nvidia-smi -q -x` and `nvidia-smi topo -m` (cross-check),
        /proc/cpuinfo, /proc/meminfo, /etc/os-release, /etc/trtllm-repro/image.json (written by the
        kit's Dockerfile: {"image": ..., "digest": ...}), installed distributions, `git` in the kit.
Writes: results/<run>/provenance.json, recorded as stage "env" in results/<run>/artifacts.json
Usage:  python -m bench.provenance --manifest manifests/demo.toml [--run NAME]

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
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.artifacts import Artifacts
from bench.errors import KitError, run_main
from bench.fileio import atomic_write_json, read_json
from bench.run import Run, add_run_args, open_run

SCHEMA = "trtllm-repro/provenance/1"
KIT_ROOT = Path(__file__).resolve().parents[1]
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

# Display key -> distribution names to try, first found wins.
PACKAGES: dict[str, tuple[str, ...]] = {
    "tensorrt_llm": ("tensorrt_llm",),
    "tensorrt": ("tensorrt", "tensorrt_cu13", "tensorrt_cu12"),
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


# ----------------------------------------------------------------------------- GPU decoding

# NVML enum values (nvml.h; a stable ABI, so no pynvml import is needed to name them).
NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
NVML_TEMPERATURE_GPU = 0
COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}
BUS_TYPES = {0: "unknown", 1: "PCI", 2: "PCIe", 3: "FPCI", 4: "AGP"}

# Clock event ("throttle") reason bits, named as `nvidia-smi -q -x` names its elements
# (<clocks_event_reason_NAME>, formerly <clocks_throttle_reason_NAME>).
CLOCK_EVENT_REASONS = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clocks_setting",
}
_REASON_BITS = {name: bit for bit, name in CLOCK_EVENT_REASONS.items()}


def decode_clock_event_reasons(mask: int) -> list[str]:
    """NVML's bitmask -> reason names, lowest bit first; unknown bits as 'unknown_0x...'."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_EVENT_REASONS)
    return names + ([f"unknown_{rest:#x}"] if rest else [])


def encode_clock_event_reasons(names: list[str]) -> int:
    return sum(_REASON_BITS.get(n, 0) for n in set(names))


def cuda_version_string(version: int | None) -> str | None:
    """NVML's 13000 -> '13.0' (as nvidia-smi prints it)."""
    if version is None:
        return None
    return f"{version // 1000}.{version % 1000 // 10}"


# Form factor, first rule that fires wins; each result records the rule as form_factor_basis.
#  1. The product name says it: "NVL" (H100 NVL, H200 NVL: PCIe cards paired by an NVLink
#     bridge), "PCIe" ("NVIDIA H100 PCIe", "NVIDIA A100 80GB PCIe"), "SXM" ("A100-SXM4-80GB").
#  2. The product name is a known SXM module name without the word: "NVIDIA H100 80GB HBM3"
#     (the PCIe H100 is named "H100 PCIe"; the captured H100 SXM in ../shared reports this name),
#     "NVIDIA H200" with nothing after it (the PCIe variant is "H200 NVL").
#  3. The board part number holds a known SXM board: 2G520 (PG520, the HGX H100/H200 module;
#     seen as 695-2G520-0200-000 on the captured H100 SXM, 692-2G520-0282-000 on a lent H200).
#  4. For A100/H100/H800 only: the board's max power limit. SXM modules allow 400-700 W, their
#     PCIe cards at most 350 W (H100 NVL 400 W, caught by rule 1).
#  Not used: the bus type. SXM modules also attach to the host over PCIe: NVML reports PCIe
#  (seen on a lent H200 SXM).
FORM_BY_NAME = (("NVL", "NVL"), ("PCIE", "PCIe"), ("SXM", "SXM"))
SXM_NAMES = (re.compile(r"\bH100 \d+GB HBM3\b"), re.compile(r"\bH200$"))
SXM_BOARDS = ("2G520",)
POWER_RULE_FAMILIES = ("A100", "H100", "H800")
PCIE_MAX_POWER_W = 350.0


def form_factor(
    name: str | None, board_part_number: str | None, power_limit_max_w: float | None
) -> tuple[str | None, str]:
    """(form factor, the rule that decided it): 'SXM', 'PCIe', 'NVL' or None."""
    upper = (name or "").upper().strip()
    for word, form in FORM_BY_NAME:
        if re.search(rf"(?:^|[\s-]){word}", upper):  # a word that starts with it: SXM4, -PCIE-
            return form, f"product name {name!r} contains {word!r}"
    for pattern in SXM_NAMES:
        if pattern.search(upper):
            return "SXM", f"product name {name!r} is an SXM module name"
    for board in SXM_BOARDS:
        if board in (board_part_number or ""):
            return "SXM", f"board part number {board_part_number} is an SXM board ({board})"
    family = next((f for f in POWER_RULE_FAMILIES if f in upper), None)
    if family and power_limit_max_w is not None:
        form = "PCIe" if power_limit_max_w <= PCIE_MAX_POWER_W else "SXM"
        return form, f"{family} with max power limit {power_limit_max_w:g} W"
    return None, "unknown: neither name, board part number nor power limit decides"


# ----------------------------------------------------------------------------- nvidia-smi parsing

_UNKNOWN = {"", "N/A", "[N/A]", "NOT SUPPORTED", "[NOT SUPPORTED]", "UNKNOWN ERROR", "NONE"}


def _value(text: str | None) -> str | None:
    if text is None or text.strip().upper() in _UNKNOWN:
        return None
    return text.strip()


def _number(text: str | None) -> float | None:
    """'700.00 W' -> 700.0, '81559 MiB' -> 81559.0, 'N/A' -> None."""
    value = _value(text)
    match = re.match(r"^-?\d+(?:\.\d+)?", value) if value else None
    return float(match.group()) if match else None


def _int(text: str | None) -> int | None:
    number = _number(text)
    return None if number is None else int(number)


def _enabled(text: str | None) -> bool | None:
    value = (_value(text) or "").lower()
    return {"enabled": True, "disabled": False}.get(value)


def _find(el: ET.Element, *paths: str) -> str | None:
    """Text of the first path present (newer drivers renamed some elements)."""
    for path in paths:
        found = el.find(path)
        if found is not None:
            return found.text
    return None


def _gpu_dict(**fields: Any) -> dict[str, Any]:
    """One GPU in the shape both readers return; form factor derived here, once."""
    form, basis = form_factor(
        fields["name"], fields["board_part_number"], fields["power_limit_max_w"]
    )
    mask = fields.pop("clock_event_reasons_mask")
    return {
        **fields,
        "form_factor": form,
        "form_factor_basis": basis,
        "clock_event_reasons_mask": mask,
        "clock_event_reasons": None if mask is None else decode_clock_event_reasons(mask),
    }


def parse_nvidia_smi_xml(text: str) -> list[dict[str, Any]]:
    """`nvidia-smi -q -x` -> one dict per GPU, in the shape of `read_nvml`."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"not nvidia-smi -q -x output: {exc}") from None
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"not nvidia-smi -q -x output: root element is <{root.tag}>")
    driver, cuda = _value(_find(root, "driver_version")), _value(_find(root, "cuda_version"))
    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        reasons = gpu.find("clocks_event_reasons")
        if reasons is None:
            reasons = gpu.find("clocks_throttle_reasons")
        mask = None
        if reasons is not None:
            active = [
                child.tag.split("reason_", 1)[-1]
                for child in reasons
                if (child.text or "").strip() == "Active"
            ]
            mask = encode_clock_event_reasons(active)
        processes = [
            {
                "pid": _int(_find(p, "pid")),
                "used_memory_mib": _int(_find(p, "used_memory")),
                "name": scrub(_value(_find(p, "process_name")) or ""),
            }
            for p in gpu.findall("processes/process_info")
        ]
        gpus.append(
            _gpu_dict(
                index=index,
                name=_value(_find(gpu, "product_name")),
                uuid=_value(_find(gpu, "uuid")),
                pci_bus_id=_value(_find(gpu, "pci/pci_bus_id")) or gpu.get("id"),
                memory_total_mib=_int(_find(gpu, "fb_memory_usage/total")),
                memory_used_mib=_int(_find(gpu, "fb_memory_usage/used")),
                driver_version=driver,
                cuda_driver_version=cuda,
                vbios_version=_value(_find(gpu, "vbios_version")),
                board_part_number=_value(_find(gpu, "board_part_number")),
                bus_type=None,
                power_limit_enforced_w=_number(
                    _find(
                        gpu,
                        "gpu_power_readings/current_power_limit",
                        "power_readings/enforced_power_limit",
                    )
                ),
                power_limit_default_w=_number(
                    _find(
                        gpu,
                        "gpu_power_readings/default_power_limit",
                        "power_readings/default_power_limit",
                    )
                ),
                power_limit_min_w=_number(
                    _find(
                        gpu, "gpu_power_readings/min_power_limit", "power_readings/min_power_limit"
                    )
                ),
                power_limit_max_w=_number(
                    _find(
                        gpu, "gpu_power_readings/max_power_limit", "power_readings/max_power_limit"
                    )
                ),
                power_draw_w=_number(
                    _find(
                        gpu,
                        "gpu_power_readings/instant_power_draw",
                        "gpu_power_readings/power_draw",
                        "power_readings/power_draw",
                    )
                ),
                clock_max_sm_mhz=_int(_find(gpu, "max_clocks/sm_clock")),
                clock_max_memory_mhz=_int(_find(gpu, "max_clocks/mem_clock")),
                clock_app_graphics_mhz=_int(_find(gpu, "applications_clocks/graphics_clock")),
                clock_app_memory_mhz=_int(_find(gpu, "applications_clocks/mem_clock")),
                temperature_c=_int(_find(gpu, "temperature/gpu_temp")),
                persistence_mode=_enabled(_find(gpu, "persistence_mode")),
                ecc_enabled=_enabled(_find(gpu, "ecc_mode/current_ecc")),
                mig_enabled=_enabled(_find(gpu, "mig_mode/current_mig")),
                compute_mode=_value(_find(gpu, "compute_mode")),
                clock_event_reasons_mask=mask,
                processes=processes,
            )
        )
    return gpus


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_topology(text: str) -> dict[str, Any]:
    """`nvidia-smi topo -m` -> {"text": without colour codes, "devices": {row: {column: value}}}."""
    clean = _ANSI.sub("", text)
    lines = clean.splitlines()
    devices: dict[str, dict[str, str]] = {}
    if lines:
        columns = [c.strip() for c in lines[0].split("\t") if c.strip()]
        for line in lines[1:]:
            if not line.strip():
                break  # the legend follows the matrix
            cells = [c.strip() for c in line.split("\t") if c.strip()]
            if len(cells) == len(columns) + 1:
                devices[cells[0]] = dict(zip(columns, cells[1:], strict=True))
    return {"text": clean.rstrip("\n"), "devices": devices}


# ----------------------------------------------------------------------------- NVML reading


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def open_nvml(nvml: Any = None) -> tuple[Any | None, str | None]:
    """Import (unless given) and initialise NVML: (module, None) or (None, why not).

    The caller calls module.nvmlShutdown() when done. Passing a module-like object is how
    tests and benchmarks inject a fake NVML.
    """
    if nvml is None:
        try:
            import pynvml as nvml  # nvidia-ml-py; optional, absent on CPU-only images
        except ImportError as exc:
            return None, f"pynvml not importable ({exc})"
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return None, str(exc) or type(exc).__name__
    return nvml, None


def read_nvml(nvml: Any) -> list[dict[str, Any]]:
    """Every GPU NVML sees (an initialised module), in the shape of `parse_nvidia_smi_xml`."""

    def q(fn_name: str, *args: Any) -> Any:
        """One query; None where this GPU, driver or pynvml version doesn't support it."""
        fn = getattr(nvml, fn_name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except nvml.NVMLError:
            return None

    def watts(mw: int | None) -> float | None:
        return None if mw is None else mw / 1000

    def mib(n: int | None) -> int | None:
        return None if n is None else round(n / 2**20)

    driver = _text(q("nvmlSystemGetDriverVersion"))
    cuda = cuda_version_string(q("nvmlSystemGetCudaDriverVersion"))
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = q("nvmlDeviceGetMemoryInfo", h)
        constraints = q("nvmlDeviceGetPowerManagementLimitConstraints", h) or (None, None)
        mig, ecc = q("nvmlDeviceGetMigMode", h), q("nvmlDeviceGetEccMode", h)
        persistence, compute = (
            q("nvmlDeviceGetPersistenceMode", h),
            q("nvmlDeviceGetComputeMode", h),
        )
        pci, bus = q("nvmlDeviceGetPciInfo", h), q("nvmlDeviceGetBusType", h)
        mask = q("nvmlDeviceGetCurrentClocksEventReasons", h)
        if mask is None:
            mask = q("nvmlDeviceGetCurrentClocksThrottleReasons", h)
        processes = [
            {
                "pid": p.pid,
                "used_memory_mib": mib(getattr(p, "usedGpuMemory", None)),
                "name": scrub(_text(q("nvmlSystemGetProcessName", p.pid)) or ""),
            }
            for p in q("nvmlDeviceGetComputeRunningProcesses", h) or []
        ]
        gpus.append(
            _gpu_dict(
                index=index,
                name=_text(q("nvmlDeviceGetName", h)),
                uuid=_text(q("nvmlDeviceGetUUID", h)),
                pci_bus_id=_text(getattr(pci, "busId", None)),
                memory_total_mib=mib(getattr(memory, "total", None)),
                memory_used_mib=mib(getattr(memory, "used", None)),
                driver_version=driver,
                cuda_driver_version=cuda,
                vbios_version=_text(q("nvmlDeviceGetVbiosVersion", h)),
                board_part_number=_text(q("nvmlDeviceGetBoardPartNumber", h)),
                bus_type=None if bus is None else BUS_TYPES.get(bus, str(bus)),
                power_limit_enforced_w=watts(q("nvmlDeviceGetEnforcedPowerLimit", h)),
                power_limit_default_w=watts(q("nvmlDeviceGetPowerManagementDefaultLimit", h)),
                power_limit_min_w=watts(constraints[0]),
                power_limit_max_w=watts(constraints[1]),
                power_draw_w=watts(q("nvmlDeviceGetPowerUsage", h)),
                clock_max_sm_mhz=q("nvmlDeviceGetMaxClockInfo", h, NVML_CLOCK_SM),
                clock_max_memory_mhz=q("nvmlDeviceGetMaxClockInfo", h, NVML_CLOCK_MEM),
                clock_app_graphics_mhz=q("nvmlDeviceGetApplicationsClock", h, NVML_CLOCK_GRAPHICS),
                clock_app_memory_mhz=q("nvmlDeviceGetApplicationsClock", h, NVML_CLOCK_MEM),
                temperature_c=q("nvmlDeviceGetTemperature", h, NVML_TEMPERATURE_GPU),
                persistence_mode=None if persistence is None else bool(persistence),
                ecc_enabled=None if ecc is None else bool(ecc[0]),
                mig_enabled=None if mig is None else bool(mig[0]),
                compute_mode=None if compute is None else COMPUTE_MODES.get(compute, str(compute)),
                clock_event_reasons_mask=mask,
                processes=processes,
            )
        )
    return gpus


# Fields that must agree between NVML and nvidia-smi; readings that move (power draw,
# temperature, clock events, memory used, processes) are left out.
CROSS_CHECK_FIELDS = (
    "name",
    "uuid",
    "pci_bus_id",
    "memory_total_mib",
    "driver_version",
    "cuda_driver_version",
    "vbios_version",
    "board_part_number",
    "power_limit_enforced_w",
    "power_limit_default_w",
    "power_limit_min_w",
    "power_limit_max_w",
    "clock_max_sm_mhz",
    "clock_max_memory_mhz",
    "clock_app_graphics_mhz",
    "clock_app_memory_mhz",
    "persistence_mode",
    "ecc_enabled",
    "mig_enabled",
    "compute_mode",
)


def cross_check(
    nvml_gpus: list[dict[str, Any]], smi_gpus: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Fields where the two sources disagree (both known and different), GPUs paired by UUID."""
    out: list[dict[str, Any]] = []
    if len(nvml_gpus) != len(smi_gpus):
        out.append(
            {"index": None, "field": "count", "nvml": len(nvml_gpus), "nvidia_smi": len(smi_gpus)}
        )
    by_uuid = {g["uuid"]: g for g in smi_gpus if g.get("uuid")}
    for pos, gpu in enumerate(nvml_gpus):
        other = by_uuid.get(gpu.get("uuid")) or (smi_gpus[pos] if pos < len(smi_gpus) else None)
        if other is None:
            continue
        for field in CROSS_CHECK_FIELDS:
            a, b = gpu.get(field), other.get(field)
            if a is None or b is None:
                continue
            same = (
                abs(a - b) <= 0.5
                if isinstance(a, float | int) and not isinstance(a, bool)
                else a == b
            )
            if not same:
                out.append({"index": gpu["index"], "field": field, "nvml": a, "nvidia_smi": b})
    return out


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
            return value.value
    return None


def pip_freeze() -> list[str]:
    seen = {
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    return sorted(seen, key=str.lower)


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
    return {"image": data.get("image"), "digest": data.get("digest"), "note": None}


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
    smi_gpus, smi_note = None, "nvidia-smi not found or failed"
    if xml_text is not None:
        try:
            smi_gpus, smi_note = parse_nvidia_smi_xml(xml_text), None
        except ValueError as exc:
            smi_note = str(exc)
    source, note = "nvml", None
    if module is None and smi_gpus:
        gpus, source = smi_gpus, "nvidia-smi"
        note = f"NVML unavailable ({reason}); GPUs read from nvidia-smi -q -x"
    elif not gpus:
        source, note = None, f"no NVIDIA GPU found (NVML: {reason or '0 devices'})"
    if module is None or smi_gpus is None:
        check = {
            "compared": False,
            "note": smi_note if module else "NVML unavailable",
            "disagreements": [],
        }
    else:
        check = {"compared": True, "note": None, "disagreements": cross_check(gpus, smi_gpus)}
    topo_text = run_tool(["nvidia-smi", "topo", "-m"]) if gpus else None
    return {
        "gpus": gpus,
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
) -> dict[str, Any]:
    """Everything provenance.json holds; argv is the command line to record (scrubbed).

    nvml (a pynvml-like module) and run_tool (argv -> stdout or None) replace the real ones.
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
            "packages": package_versions(),
            "torch_cuda": torch_cuda_version(),
            "kit_git": git_state(run_tool),
            "pip_freeze": pip_freeze(),
        },
        "environment": {k: scrub(environ[k]) for k in ENV_ALLOWLIST if k in environ},
        "credentials_present": [k for k in CREDENTIAL_VARS if environ.get(k)],
    }
    return redact_values(data, secret_env_values(environ))


def identity(prov: dict[str, Any]) -> dict[str, Any]:
    """What must not change within one run: the GPUs, driver, image and key packages."""
    gpus = prov.get("gpus") or []
    packages = prov.get("software", {}).get("packages", {})
    return {
        "gpus": [g.get("name") for g in gpus],
        "driver_version": gpus[0].get("driver_version") if gpus else None,
        "cuda_driver_version": gpus[0].get("cuda_driver_version") if gpus else None,
        "image_digest": prov.get("software", {}).get("container", {}).get("digest"),
        **{
            k: packages.get(k)
            for k in ("tensorrt_llm", "tensorrt", "torch", "modelopt", "transformers")
        },
    }


def identity_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = identity(old), identity(new)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


def capture(run: Run, argv: list[str], **collect_args: Any) -> dict[str, Any]:
    """Collect, refuse a changed identity, write provenance.json atomically, record stage 'env'."""
    data = collect(argv, **collect_args)
    path = run.paths.provenance
    if path.is_file():
        changes = identity_changes(read_json(path), data)
        if changes:
            raise KitError(
                "this run was started on another machine or software stack:\n"
                + "\n".join(f"    {c}" for c in changes),
                path=str(path),
                fix="start a new run (RUN=<new name>); numbers from two environments never mix",
            )
    atomic_write_json(path, data)
    arts = Artifacts(run.paths)
    gpus = data["gpus"]
    details = {
        "gpus": len(gpus),
        "gpu": gpus[0]["name"] if gpus else None,
        "driver": gpus[0]["driver_version"] if gpus else None,
        "image_digest": data["software"]["container"]["digest"],
    }
    arts.record("env", arts.input_digests([run.manifest_path]), [path], details, stamp=True)
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
    parser = argparse.ArgumentParser(prog="bench.provenance", description=__doc__.splitlines()[0])
    add_run_args(parser)
    args = parser.parse_args(argv)
    command = sys.orig_argv if argv is None else ["python", "-m", "bench.provenance", *argv]

    def run() -> int:
        opened = open_run(args.manifest, args.run)
        data = capture(opened, command)
        print(f"bench.provenance: {describe(data)} -> {opened.paths.provenance}", file=sys.stderr)
        return 0

    return run_main(run, "bench.provenance")


if __name__ == "__main__":
    raise SystemExit(main())

"""What the driver says about the GPUs: `nvidia-smi -q -x`, `nvidia-smi topo -m` and NVML, as dicts.

Reads:  text the caller captured (`nvidia-smi -q -x`, `nvidia-smi topo -m`) or an initialised
        pynvml-like module; nothing else.
Used by: bench.stages.provenance (capture and cross-check), bench.gpu.telemetry (NVML enums, clock
events).

`parse_nvidia_smi_xml` and `read_nvml` return one dict per GPU in the same shape, with the form
factor decided by the rules below and clock event reasons decoded; `cross_check` lists the fields
where the two disagree. Everything here is pure except `open_nvml`, the edge that imports and
initialises NVML. Process names are returned as reported; bench.stages.provenance scrubs them.
Tested
against real captures in tests/data/nvidia-smi/ and ../shared/fixtures/nvidia-smi/ (tests skip
when ../shared is absent).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

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

_UNKNOWN = {"", "N/A", "[N/A]", "NOT SUPPORTED", "[NOT SUPPORTED]", "UNKNOWN ERROR", "NONE"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

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


# ----------------------------------------------------------------------------- decoding


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


# ----------------------------------------------------------------------------- nvidia-smi parsing


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
                "name": _value(_find(p, "process_name")) or "",
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
                "name": _text(q("nvmlSystemGetProcessName", p.pid)) or "",
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


# ----------------------------------------------------------------------------- cross-check


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


# ----------------------------------------------------------------------------- NVML edge


def open_nvml(nvml: Any = None) -> tuple[Any | None, str | None]:
    """Import (unless given) and initialise NVML: (module, None) or (None, why not).

    The caller calls module.nvmlShutdown() when done. Passing a module-like object is how
    tests and benchmarks inject a fake NVML.
    """
    if nvml is None:
        try:
            import pynvml  # nvidia-ml-py; optional, absent on CPU-only images
        except ImportError as exc:
            return None, f"pynvml not importable ({exc})"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return None, str(exc) or type(exc).__name__
    return nvml, None


def cuda_visible_entries(spec: str | None) -> list[int | str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: indices or UUID prefixes, up to the first entry it
    cannot read; None when it is unset."""
    if spec is None:
        return None
    entries: list[int | str] = []
    for item in (s.strip() for s in spec.split(",")):
        if item.isdigit():
            entries.append(int(item))
        elif item.startswith(("GPU-", "MIG-")):
            entries.append(item)
        else:
            break
    return entries


def visible_gpus(prov: dict[str, Any]) -> list[dict[str, Any]]:
    """The GPUs CUDA will use: NVML sees all, CUDA_VISIBLE_DEVICES narrows them.

    Indices are taken in NVML (PCI) order, which is CUDA's order with CUDA_DEVICE_ORDER=PCI_BUS_ID;
    CUDA stops at the first entry that names no GPU.
    """
    gpus = prov.get("gpus") or []
    entries = cuda_visible_entries((prov.get("environment") or {}).get("CUDA_VISIBLE_DEVICES"))
    if entries is None:
        return gpus
    chosen: list[dict[str, Any]] = []
    for entry in entries:
        match = next(
            (
                g
                for g in gpus
                if (
                    g.get("index") == entry
                    if isinstance(entry, int)
                    else (g.get("uuid") or "").startswith(entry)
                )
            ),
            None,
        )
        if match is None or match in chosen:
            break
        chosen.append(match)
    return chosen

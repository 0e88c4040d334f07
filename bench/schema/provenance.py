"""provenance.json as a typed model, and the one answer to "same machine and software?".

bench.stages.provenance captures the file (NVML, nvidia-smi, /proc, installed packages); this
module says what it may hold and reads it. Every part a machine may lack is optional: no GPU on a
CPU host ("gpus": [], "gpu_note" says why), no image outside the kit's container, no provenance at
all in an imported run. What is there is validated: a wrong type or an unknown key is one KitError
naming the file and the key. schemas/provenance.schema.json is generated from `Provenance`.

`machine_identity` is the one definition of the environment a number depends on; capture (a run
never mixes two machines), the stage cache (what makes the checkpoint and engine bytes) and merge
(shards must be one measurement) each compare a named part of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.core.errors import KitError
from bench.core.fileio import read_json_object
from bench.gpu.gpu_info import visible_gpus

SCHEMA: Final = "trtllm-repro/provenance/1"
STRICT = ConfigDict(extra="forbid", frozen=True)


class GpuProcess(BaseModel):
    model_config = STRICT

    pid: int | None = None
    used_memory_mib: int | None = None
    name: str | None = None


class Gpu(BaseModel):
    """One GPU as bench.gpu.gpu_info reads it from NVML or `nvidia-smi -q -x`."""

    model_config = STRICT

    index: int | None = None
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    bus_type: str | None = None
    board_part_number: str | None = None
    vbios_version: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    form_factor: str | None = None
    form_factor_basis: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    mig_enabled: bool | None = None
    ecc_enabled: bool | None = None
    persistence_mode: bool | None = None
    compute_mode: str | None = None
    power_draw_w: float | None = None
    power_limit_enforced_w: float | None = None
    power_limit_default_w: float | None = None
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None
    clock_max_sm_mhz: int | None = None
    clock_max_memory_mhz: int | None = None
    clock_app_graphics_mhz: int | None = None
    clock_app_memory_mhz: int | None = None
    clock_event_reasons_mask: int | None = None
    clock_event_reasons: list[str] | None = None
    temperature_c: int | None = None
    processes: list[GpuProcess] = []


class CrossCheck(BaseModel):
    """NVML against nvidia-smi: the fields where both know a value and differ."""

    model_config = STRICT

    compared: bool
    note: str | None = None
    disagreements: list[dict[str, Any]] = []


class Host(BaseModel):
    model_config = STRICT

    cpu_model: str | None = None
    cpu_sockets: int | None = None
    cpu_physical_cores: int | None = None
    cpu_logical: int | None = None
    cpu_usable: int | None = None
    memory_total_bytes: int | None = None
    arch: str | None = None
    kernel: str | None = None
    os: str | None = None


class Container(BaseModel):
    """/etc/trtllm-repro/image.json when run in the kit's image; note says why not otherwise."""

    model_config = STRICT

    image: str | None = None
    digest: str | None = None
    kit_commit: str | None = None
    note: str | None = None


class KitGit(BaseModel):
    model_config = STRICT

    commit: str | None = None
    dirty: bool | None = None
    note: str | None = None


class Software(BaseModel):
    model_config = STRICT

    python: str | None = None
    python_executable: str | None = None
    container: Container = Container()
    packages: dict[str, str | None] = {}
    torch_cuda: str | None = None
    kit_git: KitGit = KitGit()
    pip_freeze: list[str] = []


class Provenance(BaseModel):
    """results/<run>/provenance.json (a merged run: each shard's, under shards/<shard>/)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="trtllm-repro provenance", validate_by_name=True
    )

    schema_: Literal["trtllm-repro/provenance/1"] = Field(SCHEMA, alias="schema")
    captured_at: str | None = None
    command: list[str] = []
    gpus: list[Gpu] = []
    gpu_source: str | None = None  # "nvml", "nvidia-smi", or None (no GPU)
    gpu_note: str | None = None
    gpu_cross_check: CrossCheck | None = None
    gpu_topology: dict[str, Any] | None = None  # `nvidia-smi topo -m`: text and device matrix
    host: Host = Host()
    software: Software = Software()
    environment: dict[str, str] = {}  # only bench.stages.provenance.ENV_ALLOWLIST
    credentials_present: list[str] = []  # credential variables set, by name only

    def used_gpus(self) -> list[Gpu]:
        """The GPUs CUDA used (CUDA_VISIBLE_DEVICES applied; gpu_info.visible_gpus' rule)."""
        listed = [g.model_dump() for g in self.gpus]
        chosen = visible_gpus({"gpus": listed, "environment": self.environment})
        return [self.gpus[next(i for i, g in enumerate(listed) if g is c)] for c in chosen]


def parse_provenance(data: Any, where: str) -> Provenance:
    """A provenance document, validated; a wrong one is one KitError naming file and key."""
    if not isinstance(data, dict):
        raise KitError(f"holds a JSON {type(data).__name__}, not an object", path=where)
    try:
        return Provenance.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or None
        problem = (
            "unknown key"
            if first["type"] == "extra_forbidden"
            else first["msg"][:1].lower() + first["msg"][1:]
        )
        raise KitError(
            f"not a provenance record: {problem}",
            path=where,
            key=key,
            fix="restore it from the run's copy, or capture it again with `make env` in a new run",
        ) from None


def read_provenance(path: Path) -> Provenance:
    return parse_provenance(read_json_object(path), str(path))


# ----------------------------------------------------------------------------- identity

# The packages whose versions change what a run measures or the files it makes.
IDENTITY_PACKAGES = ("tensorrt_llm", "tensorrt", "torch", "modelopt", "transformers")


class MachineIdentity(BaseModel):
    """What must be equal for two captures to be "the same machine and software"."""

    model_config = STRICT

    gpus: list[str | None]  # the GPUs CUDA used, by model (not which ones, nor the host's others)
    driver_version: str | None
    cuda_driver_version: str | None
    image_digest: str | None
    packages: dict[str, str | None]


# The parts each check compares. Capture: everything. The stage cache: what makes the bytes of a
# checkpoint or engine (a driver update does not). Merge: the GPU model and image the shards ran
# (bench.stages.merge; it compares their files' digests separately, which must match too).
WHOLE = ("gpus", "driver_version", "cuda_driver_version", "image_digest", "packages")
MAKES_FILES = ("gpus", "image_digest", "packages")


def machine_identity(prov: Provenance) -> MachineIdentity:
    used = prov.used_gpus()
    return MachineIdentity(
        gpus=[g.name for g in used],
        driver_version=used[0].driver_version if used else None,
        cuda_driver_version=used[0].cuda_driver_version if used else None,
        image_digest=prov.software.container.digest,
        packages={name: prov.software.packages.get(name) for name in IDENTITY_PACKAGES},
    )


def identity_changes(
    old: MachineIdentity, new: MachineIdentity, parts: tuple[str, ...] = WHOLE
) -> list[str]:
    """Each difference as "name: old -> new" (packages by their own name), in `parts` order."""
    out = []
    for part in parts:
        a, b = getattr(old, part), getattr(new, part)
        if part == "packages":
            out += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in a if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{part}: {a!r} -> {b!r}")
    return out


def provenance_json_schema() -> dict[str, Any]:
    """The JSON Schema of provenance.json, as published in schemas/."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA,
        **Provenance.model_json_schema(by_alias=True),
    }

"""results/<run>/summary.json: every record of a run with its identity and provenance digests, in
a form that dashboards and notebooks read without parsing markdown or CSV.

The document's shape is the pydantic model `RunSummary`; schemas/summary.schema.json is generated
from it (`python -m bench.schema.publish`, checked by tests/test_schemas.py) and every summary.json
is validated against that published file before it is written.
Units are in the key names (`_tok_s`, `_ms`, `_mib`, `_gib`); README "Data dictionary" lists them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench.core.errors import KitError
from bench.core.fileio import atomic_write_json, dumps_json, read_json, sha256_bytes
from bench.core.results import run_provenance
from bench.schema.provenance import Provenance as Captured
from bench.schema.provenance import Software
from bench.schema.record import PointResult, sort_key

# /2: records are trtllm-repro/point-result/2 (latency fields); a /1 document still validates.
SCHEMA: Final = "trtllm-repro/summary/2"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "summary.schema.json"
SUMMARY_JSON = "summary.json"


class Provenance(BaseModel):
    """What pins the measurement: sha256 digests over recorded files, and the machine."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(description="sha256 over the model files' names and sha256")
    checkpoint: str | None = Field(description="sha256 over the quantized checkpoint's files")
    engine: str | None = Field(description="sha256 over the TensorRT engine's files (none: None)")
    datasets: str | None = Field(description="sha256 over the request datasets' files")
    manifest: str | None = Field(description="sha256 of manifest.resolved.toml")
    image_digest: str | None = Field(description="the container image digest, when in the image")
    tensorrt_llm: str | None = Field(description="TensorRT-LLM version installed where it ran")
    gpus: list[str] = Field(description="names of the GPUs CUDA used")
    drivers: list[str] = Field(description="NVIDIA driver versions of those GPUs")


class RunSummary(BaseModel):
    """One run's records (bench.schema.record.PointResult) with their provenance."""

    model_config = ConfigDict(extra="forbid", title="trtllm-repro run summary")

    schema_: Literal["trtllm-repro/summary/1", "trtllm-repro/summary/2"] = Field(alias="schema")
    run: str
    provenance: Provenance
    records: list[PointResult]


def json_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA,
        **RunSummary.model_json_schema(by_alias=True),
    }


# ----------------------------------------------------------------------------- digests (pure)


def files_digest(files: Mapping[str, Mapping[str, Any]], prefix: str) -> str | None:
    """One digest over every recorded file under a key prefix (name and sha256), or None."""
    lines = sorted(f"{k} {v['sha256']}" for k, v in files.items() if k.startswith(prefix))
    return sha256_bytes("\n".join(lines).encode()) if lines else None


def provenance_of(
    artifacts: Mapping[str, Any], manifest_text: str | None, captured: Captured | None
) -> Provenance:
    files = artifacts.get("files", {})
    software = captured.software if captured else Software()
    gpus = captured.used_gpus() if captured else []
    return Provenance(
        model=files_digest(files, "models:"),
        checkpoint=files_digest(files, "work:checkpoint/"),
        engine=files_digest(files, "work:engine/"),
        datasets=files_digest(files, "run:datasets/"),
        manifest=sha256_bytes(manifest_text.encode()) if manifest_text is not None else None,
        image_digest=software.container.digest,
        tensorrt_llm=software.packages.get("tensorrt_llm"),
        gpus=[str(g.name) for g in gpus],
        drivers=sorted({str(g.driver_version) for g in gpus}),
    )


def summary_document(name: str, provenance: Provenance, records: Sequence[PointResult]) -> dict:
    doc = RunSummary(
        schema=SCHEMA, run=name, provenance=provenance, records=sorted(records, key=sort_key)
    )
    return json.loads(dumps_json(doc.model_dump(mode="json", by_alias=True)))


@cache
def published_schema() -> dict[str, Any]:
    return read_json(SCHEMA_FILE)


def check(doc: Mapping[str, Any], where: str) -> None:
    """Validate against the published schema file; the first problem, with its key path."""
    import jsonschema

    errors = sorted(
        jsonschema.Draft202012Validator(published_schema()).iter_errors(doc),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        key = ".".join(str(p) for p in errors[0].absolute_path) or "(document)"
        raise KitError(
            f"does not match {SCHEMA_FILE.name}: {errors[0].message}",
            path=where,
            key=key,
            fix="regenerate schemas/ with `python -m bench.schema.publish` if the record changed",
        )


# ----------------------------------------------------------------------------- I/O edge


def run_artifacts(root: Path) -> dict[str, Any]:
    """artifacts.json, or during a merge the first shard's (merge requires equal digests)."""
    own = root / "artifacts.json"
    if own.is_file():
        return read_json(own)
    shards = sorted((root / "shards").glob("*/artifacts.json"))
    return read_json(shards[0]) if shards else {}


def write_summary_json(root: Path, records: Sequence[PointResult]) -> Path:
    """results/<run>/summary.json beside summary.csv, validated before it is written."""
    manifest = root / "manifest.resolved.toml"
    text = manifest.read_text(encoding="utf-8") if manifest.is_file() else None
    provenance = provenance_of(run_artifacts(root), text, run_provenance(root).record)
    doc = summary_document(root.name, provenance, records)
    path = root / SUMMARY_JSON
    check(doc, str(path))
    atomic_write_json(path, doc)
    return path

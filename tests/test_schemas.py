"""schemas/: the published JSON Schemas equal what their pydantic models generate, and accept
the documents the kit writes while refusing what its readers refuse."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bench.core.errors import KitError
from bench.core.fileio import dumps_json
from bench.schema import publish
from bench.schema.record import Distribution, Identity, Metrics, PointResult

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE_CAPTURES = sorted((ROOT / "tests" / "data" / "provenance").glob("*.json"))


def published(name: str) -> dict:
    return json.loads((ROOT / "schemas" / name).read_text(encoding="utf-8"))


def test_the_committed_schemas_are_the_generated_ones():
    assert publish.stale() == [], "regenerate them: python -m bench.schema.publish"


def test_check_names_a_stale_or_missing_schema(tmp_path, capsys):
    for name, text in publish.rendered().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert publish.stale(tmp_path) == []
    (tmp_path / "provenance.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "summary.schema.json").unlink()
    assert publish.stale(tmp_path) == ["provenance.schema.json", "summary.schema.json"]


def record() -> PointResult:
    return PointResult(
        isl=128,
        osl=128,
        requests=10,
        status="ok",
        source="test",
        identity=Identity(model="m", tp_size=1),
        metrics=Metrics(output_tok_s=1000.0, ttft_ms=Distribution(p50=10.0, p99=25.0, count=10)),
        scenario="online",
        streaming=True,
    )


def test_a_record_as_written_matches_its_schema():
    doc = json.loads(dumps_json(record().to_json()))
    jsonschema.Draft202012Validator(published("point-result.schema.json")).validate(doc)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["metrics"].update(output_tok_s="fast"),
        lambda d: d["metrics"]["ttft_ms"].update(p99="slow"),
        lambda d: d.update(scenario="server"),
        lambda d: d["identity"].update(gpu="H100"),
        lambda d: d.pop("isl"),
    ],
)
def test_the_record_schema_refuses_what_the_reader_refuses(change):
    doc = json.loads(dumps_json(record().to_json()))
    change(doc)
    assert list(
        jsonschema.Draft202012Validator(published("point-result.schema.json")).iter_errors(doc)
    )
    with pytest.raises(KitError, match="not a point record"):
        PointResult.from_json(doc, "result.json")


@pytest.mark.parametrize("capture", PROVENANCE_CAPTURES, ids=lambda p: p.name)
def test_real_provenance_captures_match_the_provenance_schema(capture):
    doc = json.loads(capture.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(published("provenance.schema.json")).validate(doc)

"""bench.core.results: a run is loaded once, with its kind; a run of two kinds is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.core.artifacts import Artifacts
from bench.core.errors import EXIT_BAD_INPUT, KitError
from bench.core.fileio import atomic_write_json
from bench.core.results import kind_of, kind_problems, load_run_results
from bench.stages import compare, report, verify
from tests.test_report import RECORDS, make_run


def test_a_pipeline_run(run_roots: Path) -> None:
    make_run(run_roots, RECORDS, name="p")
    run = load_run_results("p")
    assert (run.kind, run.import_summary, run.shards) == ("pipeline", None, ())
    assert run.manifest is not None and run.manifest_text.startswith('name = "t"')
    assert run.records() == sorted(RECORDS, key=lambda r: (r.isl, r.osl))


def test_an_imported_run_without_a_manifest(run_roots: Path) -> None:
    make_run(run_roots, RECORDS, manifest=False, name="i")
    run = load_run_results("i")
    assert (run.kind, run.manifest, run.manifest_text) == ("imported", None, None)
    assert run.import_summary == {"source": "/logs", "points": len(RECORDS)}


def test_a_merged_run_names_its_shards_in_merge_order(run_roots: Path) -> None:
    paths = make_run(run_roots, RECORDS, name="m", merged=True)
    shards = ("m-shard2of2", "m-shard1of2")
    for shard in shards:
        atomic_write_json(paths.shards / shard / "provenance.json", {"gpus": []})
    arts = Artifacts(paths)
    made = [arts.path(key) for key in arts.stages["merge"]["outputs"]]
    provenances = [paths.shards / s / "provenance.json" for s in shards]
    arts.record("merge", {}, made + provenances, {"shards": list(shards), "partial": ["x"]})
    run = load_run_results("m")
    assert (run.kind, run.shards, run.partial) == ("merged", shards, ("x",))
    assert run.provenance().files == tuple(provenances)  # merge's order, not the names'
    assert run.provenance().source.startswith("shards/m-shard2of2/provenance.json (first of 2")


def test_no_such_run(run_roots: Path) -> None:
    with pytest.raises(KitError, match=r"no such run \(artifacts.json is missing\)"):
        load_run_results("nope")


# ----------------------------------------------------------------------------- two kinds at once


def imported_with_shards(paths) -> None:
    (paths.shards / "a").mkdir(parents=True)


def pipeline_with_import_summary(paths) -> None:
    atomic_write_json(paths.import_summary, {"source": "/elsewhere", "points": 1})


def merged_and_imported(paths) -> None:
    arts = Artifacts(paths)
    arts.record("merge", {}, [], {"shards": ["a"]})


CONTRADICTIONS = [
    (
        "import.json and shards/",
        False,
        imported_with_shards,
        "both import.json (imported) and shards/ (merged)",
    ),
    (
        "import.json in a pipeline run",
        True,
        pipeline_with_import_summary,
        "holds import.json but artifacts.json records no import",
    ),
    (
        "a merge recorded in an imported run",
        False,
        merged_and_imported,
        "records the stages of two kinds of run: import (imported), merge (merged)",
    ),
]


@pytest.mark.parametrize(
    ("manifest", "tamper", "words"),
    [c[1:] for c in CONTRADICTIONS],
    ids=[c[0] for c in CONTRADICTIONS],
)
def test_a_run_of_two_kinds_is_one_clear_error_everywhere(
    run_roots: Path, capsys: pytest.CaptureFixture[str], manifest, tamper, words
) -> None:
    paths = make_run(run_roots, RECORDS, manifest=manifest, name="x")
    make_run(run_roots, RECORDS, name="fine")
    tamper(paths)
    with pytest.raises(KitError, match="not one kind of run: .*" + re.escape(words)):
        load_run_results("x")
    capsys.readouterr()
    assert report.main(["--run", "x"]) == EXIT_BAD_INPUT
    assert verify.main(["--run", "x"]) == EXIT_BAD_INPUT
    assert compare.main(["--base", "fine", "--run", "x"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count(words) == 3 and "Traceback" not in err
    assert "run 'x': not one kind of run" in err  # compare says which of its two runs


@pytest.mark.parametrize(
    ("stages", "import_summary", "shards", "kind", "problems"),
    [
        ({"init", "sweep", "report"}, False, False, "pipeline", 0),
        ({"init"}, False, False, "pipeline", 0),  # nothing measured yet
        ({"init", "import"}, False, False, "imported", 0),  # imported with a manifest
        ({"import"}, True, False, "imported", 0),
        ({"fetch", "build", "merge"}, False, True, "merged", 0),
        ({"merge"}, False, False, "merged", 0),  # shards/ deleted: verify's file check says so
        ({"sweep", "merge"}, False, True, "merged", 1),
        ({"sweep", "import", "merge"}, True, True, "merged", 2),
        ({"sweep"}, False, True, "pipeline", 1),
    ],
)
def test_kind_from_the_record_and_the_files(stages, import_summary, shards, kind, problems):
    assert kind_of(stages) == kind
    assert len(kind_problems(stages, import_summary, shards)) == problems

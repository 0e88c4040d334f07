"""Issue 9's tampering and merge family: nothing changed, missing or misplaced reaches a PASS.

One row per attack. Each row builds a finished run (or two shards), tampers with it the way a
hostile or careless user would, runs one stage through its CLI entry point, and names the exit
code and the words the stage must print. The next case is one more row.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_report import RECORDS, make_run, ok, reported_run

from bench.core.artifacts import Artifacts
from bench.core.cost import Estimator, shard_tasks
from bench.core.errors import KitError, run_main
from bench.core.fileio import atomic_write_json
from bench.core.manifest import Point
from bench.core.results import run_provenance
from bench.core.run import RunPaths, load_run, open_run
from bench.core.runlock import writer_lock
from bench.core.stage_cache import cache_key, make_or_reuse
from bench.schema.record import RESULT, write_summary
from bench.stages import import_logs, merge, report, sweep, verify
from bench.stages.sweep import JOURNAL, PARTIAL, Task, clean_interrupted, publish, shard_details
from tests.conftest import RunTemplates, point_roots

POINT = "run:points/isl128_osl128/result.json"
TWO_POINTS = """\
name = "m"
[model]
source = "builtin"
repo = "trtllm-repro/tiny-llama-3.1"
revision = "v1"
[quantization]
method = "none"
format = "none"
[engine]
backend = "hf-transformers"
max_seq_len = 4096
[runtime]
device = "cpu"
[sweep]
points = [{ isl = 128, osl = 128, requests = 10 }, { isl = 256, osl = 256, requests = 10 }]
[hardware]
gpu = "cpu"
"""


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    return tmp_path


# ----------------------------------------------------------------------------- building runs


def verified_run(roots: Path, templates: RunTemplates, *, manifest: bool = True) -> RunPaths:
    """A finished run with a report and a PASSED verify.md and stamp (to see them go). The run
    with a manifest is a copy of a template (test_a_copied_run_verifies_as_the_run_itself)."""
    if manifest:
        templates.copy(reported_run, roots)
        paths = RunPaths.for_run("t")
    else:
        paths = make_run(roots, RECORDS, manifest=False)
        report.make_report("t")
    assert verify.main(["--run", "t"]) == 0
    assert paths.stamp("verify").is_file()
    return paths


def shard_run(roots: Path, index: int, count: int, name: str | None = None) -> Path:
    """Shard index/count of TWO_POINTS as the sweep leaves it: its points, recorded with the
    shard it ran, and its sweep stamp."""
    (roots / "m.toml").write_text(TWO_POINTS)
    run = open_run(roots / "m.toml", name or f"m-shard{index}of{count}")
    tasks = [Task(p, 0) for p in run.manifest.sweep.points]
    mine = shard_tasks(tasks, index, count, Estimator(run.manifest))
    dataset = run.paths.datasets / "synthetic.jsonl"
    dataset.parent.mkdir(parents=True)
    dataset.write_text('{"input_ids": [1, 2]}\n')
    outputs = [dataset]
    for task in mine:
        target = run.paths.points / task.name / RESULT
        atomic_write_json(target, ok(task.point.isl, task.point.osl, 900.0).to_json())
        outputs.append(target)
    write_summary(run.paths.summary, [ok(t.point.isl, t.point.osl, 900.0) for t in mine])
    outputs += [run.paths.summary, run.paths.summary_json]
    Artifacts(run.paths).record("sweep", {}, outputs, shard_details((index, count), mine))
    return run.paths.root


def two_shards(roots: Path) -> list[Path]:
    return [shard_run(roots, 1, 2), shard_run(roots, 2, 2)]


# ----------------------------------------------------------------------------- tampering


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def edit_artifacts(paths: RunPaths, change: Callable[[dict], None]) -> None:
    data = json.loads(paths.artifacts.read_text())
    change(data)
    paths.artifacts.write_text(json.dumps(data))


def drop_point(paths: RunPaths, name: str) -> None:
    """Delete a point's folder and its entries: the record no longer knows it existed."""
    shutil.rmtree(paths.points / name)

    def forget(data: dict) -> None:
        for key in [k for k in data["files"] if k.startswith(f"run:points/{name}/")]:
            del data["files"][key]
        for stage in data["stages"].values():
            stage["outputs"] = [
                k for k in stage["outputs"] if not k.startswith(f"run:points/{name}")
            ]

    edit_artifacts(paths, forget)


def record_model_then_remove_root(paths: RunPaths) -> None:
    config = paths.models / "org--m" / "rev" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    Artifacts(paths).record("fetch", {}, [config])
    shutil.rmtree(paths.models)


def point_folder_to_symlink(paths: RunPaths) -> None:
    folder = paths.points / "isl128_osl128"
    elsewhere = paths.root.parent / "elsewhere"
    shutil.move(folder, elsewhere)
    folder.symlink_to(elsewhere, target_is_directory=True)


def record_to_symlink_out_of_run(paths: RunPaths) -> None:
    record = paths.points / "isl128_osl128" / "result.json"
    outside = paths.root.parent / "outside-result.json"
    shutil.move(record, outside)
    record.symlink_to(outside)


def record_datasets_then_remove_them(paths: RunPaths) -> None:
    dataset = paths.datasets / "synthetic.jsonl"
    dataset.parent.mkdir(parents=True)
    dataset.write_text('{"input_ids": [1, 2]}\n')
    Artifacts(paths).record("datasets", {}, [dataset])
    shutil.rmtree(paths.datasets)


def drop_manifest_then_point(paths: RunPaths) -> None:
    """The manifest and its entry gone, then a point and its entries: the summary still lists it."""
    paths.resolved_manifest.unlink()

    def forget(data: dict) -> None:
        del data["files"]["run:manifest.resolved.toml"]
        for stage in data["stages"].values():
            stage["outputs"] = [k for k in stage["outputs"] if k != "run:manifest.resolved.toml"]

    edit_artifacts(paths, forget)
    drop_point(paths, "isl128_osl128")


def add_point_never_asked_for(paths: RunPaths) -> None:
    record = paths.points / "isl512_osl512" / RESULT
    atomic_write_json(record, ok(512, 512, 5.0).to_json())
    Artifacts(paths).record("sweep", {}, [record], replace=False)


def unknown_root_entry(paths: RunPaths) -> None:
    def add(data: dict) -> None:
        data["files"]["scratch:x.bin"] = {"size": 1, "sha256": "0" * 64, "stage": "sweep"}
        data["stages"]["sweep"]["outputs"].append("scratch:x.bin")

    edit_artifacts(paths, add)


# ----------------------------------------------------------------------------- verify fails closed


@dataclass(frozen=True)
class VerifyCase:
    name: str
    tamper: Callable[[RunPaths], None]
    exit_code: int
    says: tuple[str, ...]  # each must appear in stdout + stderr
    manifest: bool = True  # False: an imported run, held to its import.json


VERIFY_CASES = [
    VerifyCase(
        "corrupt result.json",
        lambda p: (p.points / "isl128_osl128" / RESULT).write_text("{not json"),
        2,
        ("points/isl128_osl128/result.json: unreadable point record",),
    ),
    VerifyCase(
        "result.json not an object",
        lambda p: (p.points / "isl128_osl128" / RESULT).write_text("[1, 2]"),
        2,
        ("points/isl128_osl128/result.json: not a point record",),
    ),
    VerifyCase(
        "broken artifacts.json",
        lambda p: p.artifacts.write_text('{"schema": "trtllm-repro/artifacts/1", "files": {'),
        2,
        ("artifacts.json: unreadable",),
    ),
    VerifyCase(
        "entry missing a field",
        lambda p: edit_artifacts(p, lambda d: d["files"][POINT].pop("sha256")),
        2,
        (f"artifacts.json: not an artifact record: files.{POINT}.sha256: Field required",),
    ),
    VerifyCase(
        "files of the wrong type",
        lambda p: edit_artifacts(p, lambda d: d.update(files=[])),
        2,
        ("artifacts.json: not an artifact record: files: Input should be a valid dictionary",),
    ),
    VerifyCase(
        "a manifest point deleted with its entries",
        lambda p: drop_point(p, "isl128_osl128"),
        1,
        ("| point isl128_osl128 of the manifest's 4 point(s) | **FAIL** |", "Result: FAILED"),
    ),
    VerifyCase(
        "an imported point deleted with its entries",
        lambda p: drop_point(p, "isl256_osl128"),
        1,
        ("| 4 imported point(s) (import.json) are all here | **FAIL** |", "3 found"),
        manifest=False,
    ),
    VerifyCase(
        "models root removed",
        record_model_then_remove_root,
        3,
        (
            "Result: INCOMPLETE",
            "models is absent on this machine: `models:org--m/rev/config.json`",
            "make fetch",
        ),
    ),
    VerifyCase(
        "datasets removed from a run that is not merged",
        record_datasets_then_remove_them,
        1,
        ("| `run:datasets/synthetic.jsonl` | **missing** |", "Result: FAILED"),
    ),
    VerifyCase(
        "manifest deleted with its entry, then a point with its entries",
        drop_manifest_then_point,
        1,
        (
            "| manifest.resolved.toml (what the run was asked to measure) | **FAIL** |",
            "| point isl128_osl128 listed in summary.csv | **FAIL** |",
            "| point isl128_osl128 listed in summary.json | **FAIL** |",
        ),
    ),
    VerifyCase(
        "a point the manifest never asked for",
        add_point_never_asked_for,
        1,
        ("| point isl512_osl512 is not one of the manifest's 4 point(s) | **FAIL** |",),
    ),
    VerifyCase(
        "entry under an unknown root",
        unknown_root_entry,
        1,
        ("| `scratch:x.bin` | **unknown root** |",),
    ),
    VerifyCase(
        "point folder replaced by a symlink",
        point_folder_to_symlink,
        1,
        ("| `run:points/isl128_osl128` | **symlink** |", "Result: FAILED"),
    ),
    VerifyCase(
        "record a symlink out of the run",
        record_to_symlink_out_of_run,
        1,
        (f"| `{POINT}` | **symlink** |",),
    ),
]


def test_a_copied_run_verifies_as_the_run_itself(
    tmp_path: Path, tmp_path_factory, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The cases below tamper with copies of one reported run (conftest.RunTemplates): a copy
    must verify exactly as the run it copies does, or they would prove nothing about a run."""
    copy = tmp_path / "copy"
    copy.mkdir()
    original = RunTemplates(tmp_path_factory).copy(reported_run, copy).folder  # not the session's
    seen = []
    for roots in (original, copy):
        point_roots(monkeypatch, roots)
        capsys.readouterr()
        assert verify.main(["--run", "t"]) == 0
        record = json.loads((roots / "results" / "t" / "artifacts.json").read_text())
        del record["stages"]["verify"]["finished_at"]
        files = {
            p.relative_to(roots): p.read_bytes()
            for p in roots.rglob("*")
            if p.is_file() and p.name not in ("artifacts.json", "hashes.json")  # hashes: a cache
        }
        seen.append((capsys.readouterr().out.replace(str(roots), "<roots>"), record, files))
    assert seen[1] == seen[0] and "Result: PASSED" in seen[0][0]
    assert Path("reports/t/verify.md") in seen[0][2] and "reports:verify.md" in seen[0][1]["files"]


@pytest.mark.parametrize("case", VERIFY_CASES, ids=lambda c: c.name)
def test_verify_fails_closed(
    roots: Path, capsys, run_templates: RunTemplates, case: VerifyCase
) -> None:
    paths = verified_run(roots, run_templates, manifest=case.manifest)
    capsys.readouterr()
    case.tamper(paths)
    assert verify.main(["--run", "t"]) == case.exit_code
    captured = capsys.readouterr()
    said = captured.out + captured.err
    for words in case.says:
        assert words in said, said[-2000:]
    assert "Traceback" not in said
    assert not paths.stamp("verify").exists(), "the old PASSED stamp must go"
    verdict = paths.reports / "verify.md"
    assert not verdict.exists() or "Result: PASSED" not in verdict.read_text()


# ----------------------------------------------------------------------------- laundering


@dataclass(frozen=True)
class LaunderCase:
    name: str
    build: Callable[[Path], list[Path]]  # the runs the stage reads (results/ folders)
    tamper: Callable[[list[Path]], None]
    stage: Callable[[list[Path]], int]  # the stage's CLI, returning its exit code
    exit_code: int
    says: tuple[str, ...]


def resume_sweep(runs: list[Path]) -> int:
    run = load_run(runs[0].name)
    return run_main(lambda: clean_interrupted(run, Artifacts(run.paths)) or 0, "bench.stages.sweep")


def merge_all(runs: list[Path], *flags: str) -> int:
    return merge.main(["--run", "merged", *flags, *map(str, runs)])


def one_finished_run(roots: Path) -> list[Path]:
    return [make_run(roots, RECORDS).root]


def tamper_result(runs: list[Path], point: str = "isl128_osl128") -> None:
    rewrite(runs[-1] / "points" / point / RESULT, "900.0", "990.0")


def hand_written_point(runs: list[Path], *, journal: bool = False) -> None:
    """A point folder the sweep never published, claiming a number; optionally with a journal
    entry for other bytes (the folder changed after the rename)."""
    record = runs[0] / "points" / "isl512_osl512" / RESULT
    atomic_write_json(record, ok(512, 512, 5.0).to_json())
    if journal:
        entry = {"point": "isl512_osl512", "files": {RESULT: "0" * 64}}
        atomic_write_json(runs[0] / ".stamps" / JOURNAL / "isl512_osl512.json", entry)
    atomic_write_json(record, ok(512, 512, 99999.0).to_json())


LAUNDER_CASES = [
    LaunderCase(
        "resumed sweep: tampered result.json plus an unrecorded file",
        one_finished_run,
        lambda runs: (
            rewrite(runs[0] / "points" / "isl128_osl128" / RESULT, "1000.0", "1900.0"),
            (runs[0] / "points" / "isl128_osl128" / "notes.txt").write_text("x"),
        ),
        resume_sweep,
        2,
        (f"{POINT} changed (sha256", "run:points/isl128_osl128/notes.txt unexpected"),
    ),
    LaunderCase(
        "resumed sweep: a stray file in a finished point",
        one_finished_run,
        lambda runs: (runs[0] / "points" / "isl256_osl128" / "extra.log").write_text("x"),
        resume_sweep,
        2,
        ("run:points/isl256_osl128/extra.log unexpected (not written by the sweep)",),
    ),
    LaunderCase(
        "resumed sweep: a finished point's record deleted",
        one_finished_run,
        lambda runs: (runs[0] / "points" / "isl128_osl128" / RESULT).unlink(),
        resume_sweep,
        2,
        (f"{POINT} missing", "or remove"),
    ),
    LaunderCase(
        "merge: a shard's result.json changed",
        two_shards,
        lambda runs: tamper_result(runs),
        merge_all,
        2,
        ("m-shard2of2: run:points/isl128_osl128/result.json changed",),
    ),
    LaunderCase(
        "merge: an unrecorded file in a shard's point",
        two_shards,
        lambda runs: (runs[0] / "points" / "isl256_osl256" / "x.log").write_text("x"),
        merge_all,
        2,
        ("m-shard1of2: run:points/isl256_osl256/x.log missing (not in its artifacts.json)",),
    ),
    LaunderCase(
        "resumed sweep: a hand-written point folder",
        one_finished_run,
        hand_written_point,
        resume_sweep,
        2,
        ("run:points/isl512_osl512 unrecorded (never published by the sweep)",),
    ),
    LaunderCase(
        "resumed sweep: a journaled point folder changed after its rename",
        one_finished_run,
        lambda runs: hand_written_point(runs, journal=True),
        resume_sweep,
        2,
        ("run:points/isl512_osl512/result.json unexpected (differs from the sweep's journal)",),
    ),
    LaunderCase(
        "merge: one of two shards",
        lambda roots: [shard_run(roots, 1, 2)],
        lambda runs: None,
        merge_all,
        2,
        ("1 point(s) of the manifest are in no shard: isl128_osl128", "PARTIAL=1"),
    ),
    LaunderCase(
        "merge: shards of different N",
        lambda roots: [shard_run(roots, 1, 2), shard_run(roots, 2, 3), shard_run(roots, 3, 3)],
        lambda runs: None,
        merge_all,
        2,
        ("shards of different splits: m-shard1of2 ran 1/2, m-shard2of3 ran 2/3",),
    ),
    LaunderCase(
        "report: a record changed after it was recorded",
        one_finished_run,
        lambda runs: rewrite(runs[0] / "points" / "isl128_osl128" / RESULT, "1000.0", "1900.0"),
        lambda runs: report.main(["--run", runs[0].name]),
        1,
        (f"UNVERIFIED: records differ from artifacts.json: `{POINT}`: changed",),
    ),
    LaunderCase(
        "report: an unrecorded record",
        one_finished_run,
        lambda runs: atomic_write_json(
            runs[0] / "points" / "isl512_osl512" / RESULT, ok(512, 512, 5.0).to_json()
        ),
        lambda runs: report.main(["--run", runs[0].name]),
        1,
        ("`run:points/isl512_osl512/result.json`: missing (never recorded)",),
    ),
]


@pytest.mark.parametrize("case", LAUNDER_CASES, ids=lambda c: c.name)
def test_changed_files_are_never_recorded_as_good(roots: Path, capsys, case: LaunderCase) -> None:
    runs = case.build(roots)
    points_before = [recorded_points(r) for r in runs]
    case.tamper(runs)
    assert case.stage(runs) == case.exit_code
    captured = capsys.readouterr()
    said = captured.out + captured.err
    for words in case.says:
        assert words in said, said[-2000:]
    assert "Traceback" not in said
    assert [recorded_points(r) for r in runs] == points_before, "changed files were re-recorded"
    assert not (roots / "results" / "merged").exists()


def recorded_points(run: Path) -> dict[str, dict]:
    return {
        k: v
        for k, v in json.loads((run / "artifacts.json").read_text())["files"].items()
        if k.startswith("run:points/")
    }


def test_the_unverified_report_says_so_at_the_top(roots: Path) -> None:
    paths = make_run(roots, RECORDS)
    rewrite(paths.points / "isl128_osl128" / RESULT, "1000.0", "1900.0")
    assert report.main(["--run", "t"]) == 1
    text = (paths.reports / "report.md").read_text()
    assert text.startswith("> **UNVERIFIED**") and f"`{POINT}`: changed" in text.split("\n\n")[0]
    assert not paths.stamp("report").exists()


class Killed(Exception):
    """Stands in for SIGKILL at the worst moment of publish."""


def test_a_sweep_killed_between_rename_and_record_is_adopted_via_its_journal(
    roots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash window the resume exists for: renamed into place, killed before its record."""
    paths = make_run(roots, RECORDS)
    run = load_run("t")
    task = Task(Point(isl=512, osl=512, requests=10), 0)
    (paths.points / f"{task.name}{PARTIAL}").mkdir()
    (paths.points / f"{task.name}{PARTIAL}" / "console.log").write_text("measured\n")

    def killed(*args, **kwargs) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(Artifacts, "record", killed)
        with pytest.raises(Killed):
            publish(run, Artifacts(paths), task, ok(512, 512, 5.0))
    assert (paths.points / task.name / RESULT).is_file()
    assert "run:points/isl512_osl512/result.json" not in Artifacts(paths).files
    clean_interrupted(run, Artifacts(paths))
    assert "run:points/isl512_osl512/result.json" in Artifacts(paths).files
    assert not list((paths.root / ".stamps" / JOURNAL).glob("*"))


def test_a_retried_failure_killed_before_its_rename_keeps_its_recorded_folder(
    roots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """publish forgets the failed folder's entries, then is killed before replacing it."""
    paths = make_run(roots, RECORDS)
    run = load_run("t")
    task = Task(Point(isl=256, osl=256, requests=10), 0)
    (paths.points / f"{task.name}{PARTIAL}").mkdir()

    def killed(*args, **kwargs) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(sweep.shutil, "rmtree", killed)
        with pytest.raises(Killed):
            publish(run, Artifacts(paths), task, ok(256, 256, 5.0))
    assert "run:points/isl256_osl256/failure.json" not in Artifacts(paths).files
    clean_interrupted(run, Artifacts(paths))
    assert "run:points/isl256_osl256/failure.json" in Artifacts(paths).files
    assert not (paths.points / f"{task.name}{PARTIAL}").exists()


# ----------------------------------------------------------------------------- merges


def test_a_whole_split_merges_and_verifies(roots: Path, capsys) -> None:
    assert merge_all(two_shards(roots)) == 0
    assert verify.main(["--run", "merged"]) == 0
    out = capsys.readouterr().out
    assert "every point of the union of 2 shard(s)' manifest points (2)" in out


def test_a_partial_merge_asked_for_says_partial_in_report_and_verify(roots: Path, capsys) -> None:
    assert merge_all([shard_run(roots, 1, 2)], "--allow-partial") == 0
    assert report.main(["--run", "merged"]) == 0
    text = (roots / "reports" / "merged" / "report.md").read_text()
    assert text.startswith("> **PARTIAL**") and "isl128_osl128" in text.split("\n\n")[0]
    assert verify.main(["--run", "merged"]) == 4
    out = capsys.readouterr().out
    assert "**Result: PARTIAL**" in out and "| point isl128_osl128 of the union" in out
    assert not RunPaths.for_run("merged").stamp("verify").exists()


def test_a_point_deleted_from_a_merged_run_fails_verify(roots: Path, capsys) -> None:
    assert merge_all(two_shards(roots)) == 0
    drop_point(RunPaths.for_run("merged"), "isl128_osl128")
    assert verify.main(["--run", "merged"]) == 1
    assert "| point isl128_osl128 of the union of 2 shard(s)" in capsys.readouterr().out


def test_a_shard_file_changed_between_check_and_copy_is_refused(
    roots: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = two_shards(roots)
    checked = merge.shard_file_problems

    def check_then_tamper(shard: Path) -> list[str]:
        problems = checked(shard)
        if shard == shards[-1]:
            tamper_result(shards)  # after its check, before its copy
        return problems

    monkeypatch.setattr(merge, "shard_file_problems", check_then_tamper)
    assert merge_all(shards) == 2
    said = capsys.readouterr().err
    assert "shard files changed while they were merged" in said
    assert "m-shard2of2: run:points/isl128_osl128/result.json changed" in said
    assert not (roots / "results" / "merged").exists()


def test_a_shard_being_written_is_not_merged(roots: Path, capsys) -> None:
    shards = two_shards(roots)
    with writer_lock(RunPaths.for_run(shards[1].name), "sweep"):
        assert merge_all(shards) == 2
    assert "another process is writing this run" in capsys.readouterr().err
    assert not (roots / "results" / "merged").exists()


def test_datasets_removed_from_a_merged_run_that_copied_them_fail_verify(
    roots: Path, capsys
) -> None:
    assert merge_all(two_shards(roots)) == 0
    shutil.rmtree(RunPaths.for_run("merged").datasets)
    assert verify.main(["--run", "merged"]) == 1
    assert "| `run:datasets/synthetic.jsonl` | **missing** |" in capsys.readouterr().out


def test_a_merged_runs_gpu_is_the_one_its_shards_measured(roots: Path) -> None:
    """Not the manifest's declared GPU: the method check compares what ran."""
    merged = RunPaths.for_run("merged")
    atomic_write_json(
        merged.root / "shards" / "m-shard1of2" / "provenance.json",
        {"gpus": [{"name": "NVIDIA H100 PCIe", "index": 0}], "environment": {}},
    )
    assert verify.recorded_gpu(run_provenance(merged.root).record) == "H100-PCIe"


def test_a_shard_run_is_held_to_its_own_points(roots: Path, capsys) -> None:
    shard = shard_run(roots, 2, 2)
    assert verify.main(["--run", shard.name]) == 0
    assert "every point of shard 2/2 of the manifest's 2 point(s)" in capsys.readouterr().out
    drop_point(RunPaths.for_run(shard.name), "isl128_osl128")
    assert verify.main(["--run", shard.name]) == 1


# ----------------------------------------------------------------------------- other recorders


INPUTS = {"run:manifest.resolved.toml": "a" * 64}
ENV = {"gpus": ["NVIDIA H100 80GB HBM3"], "image_digest": "sha256:1", "packages": {}}


def make_engine(target: Path) -> Callable[[], list[Path]]:
    def make() -> list[Path]:
        target.mkdir(parents=True, exist_ok=True)
        (target / "rank0.engine").write_bytes(os.urandom(8))
        return [target / "rank0.engine"]

    return make


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda entry, index: (entry / "rank1.engine").write_bytes(b"x"),
            "not in the entry's index",
        ),
        (lambda entry, index: index.write_text("{"), "unreadable cache index"),
        (lambda entry, index: index.write_text('{"files": []}'), "not a cache index"),
    ],
    ids=["an extra file in the entry", "a corrupt index", "an index without its file table"],
)
def test_the_stage_cache_hands_out_only_what_it_recorded(tmp_path, tamper, message) -> None:
    cache = tmp_path / "cache"
    make_or_reuse(cache, "build", INPUTS, ENV, tmp_path / "a", make_engine(tmp_path / "a"), "a")
    key = cache_key(INPUTS, ENV)
    tamper(cache / "build" / key, cache / "build" / f"{key}.json")
    target = tmp_path / "b"
    with pytest.raises(KitError, match=message) as err:
        make_or_reuse(cache, "build", INPUTS, ENV, target, make_engine(target), "b")
    assert "remove" in err.value.fix and not target.exists()


def test_import_refuses_a_log_that_changes_while_it_is_read(roots: Path, monkeypatch) -> None:
    logs = roots / "logs"
    logs.mkdir()
    log = logs / "result_128_128_10.txt"
    log.write_text("no performance section\n")
    parse = import_logs.read_point

    def parse_then_change(point, raw_files):
        result = parse(point, raw_files)
        log.write_text("rewritten after it was hashed\n")
        return result

    monkeypatch.setattr(import_logs, "read_point", parse_then_change)
    with pytest.raises(KitError, match="changed while it was being imported"):
        import_logs.run_import(logs, "imp", None)
    assert "import" not in Artifacts(RunPaths.for_run("imp")).stages

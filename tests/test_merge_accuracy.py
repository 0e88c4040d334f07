"""A merged run keeps the accuracy gate: merge carries the shards' agreeing accuracy records,
refuses shards whose records differ, and verify re-derives the gate on the merged run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_integrity_tampering import TWO_POINTS
from test_report import ok

from bench.analysis import accuracy_metrics as am
from bench.core.artifacts import Artifacts
from bench.core.cost import Estimator, shard_tasks
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_json
from bench.core.run import RunPaths, open_run
from bench.schema.record import RESULT, write_summary
from bench.stages import accuracy as accmod
from bench.stages import merge, verify
from bench.stages.sweep import Task, shard_details

REPO = Path(__file__).resolve().parents[1]
WITH_ACCURACY = (
    TWO_POINTS.replace(
        'method = "none"\nformat = "none"',
        'method = "modelopt"\nformat = "fp8"\ndevice = "cpu"\n'
        '[quantization.calibration]\nsource = "synthetic"\nsize = 2\nseq_len = 8',
    )
    + """
[accuracy]
method = "agreement"
prompts = "manifests/accuracy/agreement-prompts.jsonl"
prompts_sha256 = "4e7d956e1970cc07df178a6432affad9665a5effdf083b313d91caaf6655bf0f"
min_top1_agreement = 0.8
"""
)
ROPE = {"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.removesuffix("_DIR").lower()))
    monkeypatch.chdir(REPO)
    return tmp_path


def shard(roots: Path, index: int, *, top1_matches: int | None = 90) -> Path:
    """Shard index/2 as the pipeline leaves it: the checkpoint every shard shares (one stage
    cache), its accuracy record on that checkpoint (none when top1_matches is None), its points."""
    (roots / "m.toml").write_text(WITH_ACCURACY)
    run = open_run(roots / "m.toml", f"m-shard{index}of2")
    arts = Artifacts(run.paths)
    checkpoint = run.paths.checkpoint / "model.bin"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"the shared fp8 checkpoint")
    arts.record("quantize", {}, [checkpoint])
    if top1_matches is not None:
        prompts = [am.PromptAgreement(100, top1_matches, 0.001, 8)]
        checks = am.agreement_checks(prompts, run.manifest.accuracy) + am.config_checks(ROPE, ROPE)
        record = accmod.evaluation_record(
            run.manifest.accuracy,
            {"fp8": {"score": top1_matches / 100}, "bf16": {"score": 1.0}},
            checks,
            prompts=[vars(p) for p in prompts],
            evaluated={"fp8": "work:checkpoint", "bf16": "models:x"},
        )
        atomic_write_json(accmod.result_path(run.paths), record)
        inputs = arts.input_digests([checkpoint])
        arts.record(accmod.STAGE, inputs, [accmod.result_path(run.paths)], {"configured": True})
    tasks = [Task(p, 0) for p in run.manifest.sweep.points]
    mine = shard_tasks(tasks, index, 2, Estimator(run.manifest))
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
    arts.record("sweep", {}, outputs, shard_details((index, 2), mine))
    return run.paths.root


def merged_verify(roots, shards, capsys) -> tuple[int, str]:
    assert merge.merge("merged", shards) == 0
    capsys.readouterr()
    code = verify.main(["--run", "merged"])
    return code, capsys.readouterr().out


def test_merge_carries_the_agreeing_accuracy_record_and_verify_rederives_it(roots, capsys):
    code, out = merged_verify(roots, [shard(roots, 1), shard(roots, 2)], capsys)
    assert code == 0, out
    assert "| top-1 next-token agreement | PASS" in out and "merge does not carry" not in out
    recorded = json.loads(RunPaths.for_run("merged").artifacts.read_text())
    assert recorded["stages"]["accuracy"]["details"]["agreed_by"] == ["m-shard1of2", "m-shard2of2"]
    assert "run:accuracy/accuracy.json" in recorded["files"]


def test_a_failed_gate_in_the_shards_fails_the_merged_run(roots, capsys):
    code, out = merged_verify(
        roots, [shard(roots, 1, top1_matches=50), shard(roots, 2, top1_matches=50)], capsys
    )
    assert code == 1 and "accuracy gate failed" in out


def test_shards_whose_accuracy_records_differ_are_refused(roots):
    shards = [shard(roots, 1, top1_matches=90), shard(roots, 2, top1_matches=85)]
    with pytest.raises(KitError, match=r"m-shard2of2: accuracy record differs from m-shard1of2"):
        merge.merge("merged", shards)
    assert not RunPaths.for_run("merged").root.exists()


def test_a_tampered_shard_accuracy_record_is_refused(roots):
    shards = [shard(roots, 1), shard(roots, 2)]
    record = accmod.result_path(RunPaths.for_run(shards[1].name))
    record.write_text(record.read_text().replace('"passed": true', '"passed": false '))
    with pytest.raises(KitError, match=r"m-shard2of2: run:accuracy/accuracy.json changed"):
        merge.merge("merged", shards)


def test_a_merged_run_without_the_record_its_manifest_asks_for_fails(roots, capsys):
    shards = [shard(roots, 1, top1_matches=None), shard(roots, 2, top1_matches=None)]
    code, out = merged_verify(roots, shards, capsys)
    assert code == 1, out
    assert "the manifest has [accuracy] but the run has no accuracy.json" in out

"""bench.core.stage: one rule decides whether a stage is current; tests that try to break it.

A comment-only edit (the kit's source bytes) reruns nothing; a VERSION bump, a changed input byte,
a changed tool version and a changed command each rerun, saying why. The sweep resumes across an
unrelated code edit and refuses to resume when what measures its points changed.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from bench.backends.trtllm import parse as parse_trtllm
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError
from bench.core.fileio import atomic_write_bytes, atomic_write_text
from bench.core.run import open_run
from bench.schema.record import PointResult
from bench.stages import datasets, fetch, sweep
from tests.conftest import CPU_MANIFEST_TOML, DEMO_MANIFEST

KEY = rule.StageKey("x", 1, ["tool", "--flag", "1"], {"run:a": "a" * 64}, {"tool": "1.0"})


# ----------------------------------------------------------------------------- the key


def test_a_recorded_key_compares_equal_after_json(tmp_path):
    """Tuples, paths and lists: what artifacts.json gives back equals what was made."""
    key = rule.StageKey("x", 1, ("tool", Path("/a")), {"run:a": "a" * 64}, {"t": ("1", 2)})
    stored = tmp_path / "k.json"
    rule.write_key_file(stored, key)
    assert rule.differences(rule.read_key_file(stored), key) == []


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"version": 2}, "VERSION 1 -> 2"),
        ({"command": ["tool", "--flag", "2"]}, "command changed"),
        ({"inputs": {"run:a": "b" * 64}}, "input run:a changed"),
        ({"inputs": {"run:a": "a" * 64, "run:b": "b" * 64}}, "new input run:b"),
        ({"inputs": {}}, "input run:a gone"),
        ({"tools": {"tool": "1.1"}}, "tool 1.0 -> 1.1"),
        ({"tools": {"tool": "1.0", "other": None}}, "other None -> None"),
    ],
)
def test_each_part_of_the_key_is_compared(tmp_path, change, said):
    stored = tmp_path / "k.json"
    rule.write_key_file(stored, KEY)
    changed = dataclasses.replace(KEY, **change)
    if said == "other None -> None":  # a tool absent before and after is no change
        assert rule.differences(rule.read_key_file(stored), changed) == []
    else:
        assert said in rule.differences(rule.read_key_file(stored), changed)


def test_a_record_without_key_is_never_current():
    assert rule.differences(None, KEY) == ["never ran"]
    assert "older kit" in rule.differences({"inputs": KEY.inputs}, KEY)[0]


# ----------------------------------------------------------------------------- with a run


@pytest.fixture
def arts(run_roots) -> Artifacts:
    return Artifacts(open_run(DEMO_MANIFEST, "t").paths)


def test_current_needs_equal_key_stamp_and_intact_outputs(arts, capsys):
    out = arts.paths.root / "out.txt"
    atomic_write_bytes(out, b"made")
    rule.record(arts, KEY, [out])
    assert rule.skip_if_current(Artifacts(arts.paths), KEY, "out.txt")
    assert "[x] current: skipped (out.txt intact)" in capsys.readouterr().err
    arts.paths.stamp("x").unlink()
    assert rule.reasons_to_run(Artifacts(arts.paths), KEY) == ["no stamp"]
    arts.write_stamp("x")
    atomic_write_bytes(out, b"MADE")  # same size: the cache sees a new mtime, the hash differs
    assert rule.reasons_to_run(Artifacts(arts.paths), KEY) == ["output run:out.txt changed"]
    assert not rule.skip_if_current(Artifacts(arts.paths), KEY, "out.txt")
    assert "[x] runs: output run:out.txt changed" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real stage


def fetch_demo(folder: Path) -> None:
    """The demo's run with its model fetched and its datasets written (the model: ~1 s)."""
    assert fetch.main(["--manifest", str(DEMO_MANIFEST), "--run", "t"]) == 0
    assert datasets.main(["--manifest", str(DEMO_MANIFEST), "--run", "t"]) == 0


@pytest.fixture
def fetched(run_templates, run_roots):
    """A copy of that run in this test's roots: each stage re-hashes what it reads."""
    run_templates.copy(fetch_demo, run_roots)
    return open_run(DEMO_MANIFEST, "t")


def datasets_again(capsys) -> str:
    capsys.readouterr()
    assert datasets.main(["--manifest", str(DEMO_MANIFEST), "--run", "t"]) == 0
    return capsys.readouterr().err


def dataset_mtimes(run) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in run.paths.datasets.glob("*.jsonl")}


def test_a_comment_in_the_stage_and_its_tools_code_reruns_nothing(fetched, capsys, tmp_path):
    """The key holds no source bytes: the stage's own module and the argv builder, edited."""
    before = dataset_mtimes(fetched)
    for module in (datasets, sweep, parse_trtllm):
        edited = tmp_path / Path(module.__file__).name
        shutil.copy(module.__file__, edited)
        edited.write_text(edited.read_text() + "\n# a comment\n")
        module.__file__ = str(edited)  # what the old key hashed; restored below
    try:
        said = datasets_again(capsys)
    finally:
        for module in (datasets, sweep, parse_trtllm):
            module.__file__ = str(Path(module.__spec__.origin))
    assert "[datasets] current: skipped" in said
    assert dataset_mtimes(fetched) == before
    fetch_again = fetch.main(["--manifest", str(DEMO_MANIFEST), "--run", "t"])
    assert fetch_again == 0 and "[fetch] current: skipped" in capsys.readouterr().err


def test_a_version_bump_reruns(fetched, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "VERSION", datasets.VERSION + 1)
    said = datasets_again(capsys)
    assert f"[datasets] runs: VERSION {datasets.VERSION - 1} -> {datasets.VERSION}" in said
    assert "current: skipped" in datasets_again(capsys)  # recorded under the new VERSION


def test_a_changed_input_byte_reruns(fetched, capsys):
    tokenizer = next(fetched.paths.models.rglob("tokenizer.json"))
    atomic_write_text(tokenizer, tokenizer.read_text() + " ")
    said = datasets_again(capsys)
    assert "[datasets] runs: input models:" in said and "tokenizer.json changed" in said


def test_a_changed_tool_version_reruns(fetched, capsys, monkeypatch):
    real = rule.tool_versions

    def newer_numpy(*names):
        return {**real(*names), "numpy": "99.0"} if "numpy" in names else real(*names)

    monkeypatch.setattr(rule, "tool_versions", newer_numpy)
    said = datasets_again(capsys)
    assert "[datasets] runs: numpy " in said and "-> 99.0" in said


def test_a_changed_command_reruns(fetched, capsys, monkeypatch):
    real = datasets.datasets_command
    monkeypatch.setattr(datasets, "datasets_command", lambda run: {**real(run), "extra": "--x"})
    assert "[datasets] runs: command changed" in datasets_again(capsys)


# ----------------------------------------------------------------------------- sweep resume


@pytest.fixture
def cpu_run(run_roots, monkeypatch):
    """A CPU run with datasets stamped and a sweep whose points fail fast (no model runs)."""
    manifest = run_roots / "cpu.toml"
    manifest.write_text(CPU_MANIFEST_TOML)
    run = open_run(manifest, "c")
    atomic_write_text(run.paths.datasets / "d.jsonl", "{}\n")
    atomic_write_text(run.paths.stamp("datasets"), "")

    def fails_fast(run, task, sampler_factory) -> PointResult:
        workdir = run.paths.points / (task.name + sweep.PARTIAL)
        workdir.mkdir(parents=True)
        (workdir / "console.log").write_text("no model here\n")
        p = task.point
        result = PointResult.failed(
            "crash", "fake", source=parse_trtllm.SOURCE_CONSOLE, isl=p.isl, osl=p.osl,
            requests=p.requests,
        )  # fmt: skip
        return dataclasses.replace(result, raw_files=(f"points/{task.name}/console.log",))

    monkeypatch.setattr(sweep, "run_task", fails_fast)
    return run


def test_resume_survives_a_code_edit_and_refuses_a_changed_key(cpu_run, monkeypatch):
    assert sweep.sweep(cpu_run, None, None) == 0
    assert sweep.sweep(cpu_run, None, None) == 0  # nothing in the key changed: resumes
    monkeypatch.setattr(sweep, "VERSION", sweep.VERSION + 1)
    with pytest.raises(KitError, match=r"changed since this run's points.*VERSION 1 -> 2"):
        sweep.sweep(cpu_run, None, None)
    monkeypatch.setattr(sweep, "VERSION", sweep.VERSION - 1)
    real = sweep.attempt_argv

    def other_argv(run, task, fraction, workdir):
        argv, report, log = real(run, task, fraction, workdir)
        return [*argv, "--new-flag"], report, log

    monkeypatch.setattr(sweep, "attempt_argv", other_argv)
    with pytest.raises(KitError, match=r"command changed"):
        sweep.sweep(cpu_run, None, None)
    monkeypatch.setattr(sweep, "attempt_argv", real)
    monkeypatch.setattr(sweep, "sweep_tools", lambda run, aiperf_bin: {"torch": "0.0"})
    with pytest.raises(KitError, match=r"torch .* -> 0.0"):
        sweep.sweep(cpu_run, None, None)

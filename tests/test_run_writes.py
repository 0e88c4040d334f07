"""Writing a run under attack: a second writer, a full disk, stray files in points/. Each stops
with one line and exit code, and no finished point is lost or changed. The sweep's measuring
step is replaced by a fake that writes a console log, so only the kit's own writing is tested."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.analysis import secondary
from bench.core.artifacts import Artifacts
from bench.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, KitError
from bench.core.manifest import load_manifest
from bench.core.results import run_provenance
from bench.core.run import RunPaths, open_run
from bench.core.runlock import writer_lock
from bench.schema.record import Metrics, PointResult
from bench.stages import (
    accuracy,
    audit,
    build,
    compare,
    datasets,
    fetch,
    import_logs,
    provenance,
    quantize,
    report,
    sweep,
    verify,
)
from tests.conftest import CPU_MANIFEST_TOML, ROOT

SECOND_POINT = "[[sweep.points]]\nisl = 32\nosl = 16\nrequests = 4\n"


@pytest.fixture
def manifest(run_roots, tmp_path) -> Path:
    """A two-point CPU manifest whose run is open and whose datasets stage is done."""
    path = tmp_path / "m.toml"
    path.write_text(CPU_MANIFEST_TOML + SECOND_POINT, encoding="utf-8")
    run = open_run(path, "r")
    run.paths.stamp("datasets").parent.mkdir(parents=True, exist_ok=True)
    run.paths.stamp("datasets").write_text("done\n")
    return path


def fake_measure(run, task, sampler_factory) -> PointResult:
    workdir = run.paths.points / (task.name + sweep.PARTIAL)
    workdir.mkdir(parents=True)
    (workdir / "console.log").write_text(f"one report for {task.name}\n")
    p = task.point
    metrics = Metrics(num_requests=p.requests, avg_input_len=p.isl, avg_output_len=p.osl)
    return PointResult(
        isl=p.isl,
        osl=p.osl,
        requests=p.requests,
        status="ok",
        source="test",
        metrics=metrics,
        raw_files=(f"points/{task.name}/console.log",),
    )


def run_sweep(manifest: Path, capsys) -> tuple[int, str]:
    code = sweep.main(["--manifest", str(manifest), "--run", "r"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def finished(points: Path) -> dict[str, bytes]:
    return {str(p.relative_to(points)): p.read_bytes() for p in sorted(points.rglob("*.*"))}


# ----------------------------------------------------------------------------- full disk


def test_a_full_disk_is_one_line_and_loses_no_finished_point(manifest, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "run_task", fake_measure)
    real_write = sweep.atomic_write_json

    def disk_full_on_second_point(path, obj):
        if path.parent.name.startswith("isl32_osl16"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, obj)

    monkeypatch.setattr(sweep, "atomic_write_json", disk_full_on_second_point)
    code, err = run_sweep(manifest, capsys)
    assert code == EXIT_FAILED
    assert "isl32_osl16.partial/result.json: No space left on device (ENOSPC)" in err
    assert "fix: free space on that disk" in err and "finished results are kept" in err
    points = RunPaths.for_run("r").points
    first = finished(points / "isl16_osl16")
    assert set(first) == {"console.log", "result.json"}

    monkeypatch.setattr(sweep, "atomic_write_json", real_write)  # space freed: resume
    code, err = run_sweep(manifest, capsys)
    assert code == 0, err
    assert "1 of 2 points already done" in err
    assert finished(points / "isl16_osl16") == first
    assert (points / "isl32_osl16" / "result.json").is_file()


# ----------------------------------------------------------------------------- stray entries


@pytest.mark.parametrize(
    ("make_stray", "shown"),
    [
        (lambda p: (p / "notes.txt").write_text("x"), "notes.txt"),
        (lambda p: (p / "isl999_osl1").mkdir(), "isl999_osl1/"),
        (lambda p: (p / "isl32_osl16").symlink_to(p / "isl16_osl16"), "isl32_osl16/"),
        (lambda p: (p / "isl16_osl16.bak").mkdir(), "isl16_osl16.bak/"),
    ],
    ids=["file", "foreign folder", "symlinked point", "renamed copy"],
)
def test_stray_entries_in_points_stop_the_sweep(manifest, monkeypatch, capsys, make_stray, shown):
    monkeypatch.setattr(sweep, "run_task", fake_measure)
    sweep_once = sweep.main(["--manifest", str(manifest), "--run", "r"])
    assert sweep_once == 0
    paths = RunPaths.for_run("r")
    (paths.points / "isl32_osl16").rename(paths.root / "moved")  # as if not measured yet
    before = paths.artifacts.read_bytes()
    make_stray(paths.points)
    capsys.readouterr()
    code, err = run_sweep(manifest, capsys)
    assert code == EXIT_BAD_INPUT
    assert f"not a point of this manifest: {shown}" in err
    assert paths.artifacts.read_bytes() == before  # nothing re-recorded


# ----------------------------------------------------------------------------- one writer


def test_a_second_sweep_is_refused_naming_the_holder(manifest, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "run_task", fake_measure)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from bench.core.run import RunPaths\n"
            "from bench.core.runlock import writer_lock\n"
            "with writer_lock(RunPaths.for_run('r'), 'sweep'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = run_sweep(manifest, capsys)
        assert code == EXIT_BAD_INPUT
        assert f"another process is writing this run: pid {holder.pid} on " in err
        assert f"on {socket.gethostname()}, sweep, since " in err
        assert not RunPaths.for_run("r").points.exists()  # the refused one wrote nothing
    finally:
        holder.kill()
        holder.wait()
    code, err = run_sweep(manifest, capsys)  # the kernel dropped the lock with its holder
    assert code == 0, err


def stage_calls(manifest: Path, logs: Path) -> dict[str, object]:
    run = ["--manifest", str(manifest), "--run", "r"]
    return {
        "env": lambda: provenance.main(run),
        "fetch": lambda: fetch.main(run),
        "quantize": lambda: quantize.main(run),
        "build": lambda: build.main(run),
        "datasets": lambda: datasets.main(run),
        "sweep": lambda: sweep.main(run),
        "report": lambda: report.main(["--run", "r"]),
        "verify": lambda: verify.main(["--run", "r"]),
        "import": lambda: import_logs.main(["--logs", str(logs), "--run", "r"]),
        "audit": lambda: audit.main(["--logs", str(logs), "--run", "r"]),
        "accuracy": lambda: accuracy.main(run),
        "compare": lambda: compare.main(["--base", "r", "--run", "r"]),
    }


@pytest.mark.parametrize(
    "stage",
    [
        "env",
        "fetch",
        "quantize",
        "build",
        "datasets",
        "sweep",
        "report",
        "verify",
        "import",
        "audit",
        "accuracy",
        "compare",
    ],
)
def test_every_stage_that_writes_a_run_takes_the_lock(manifest, tmp_path, capsys, stage):
    logs = tmp_path / "logs"
    logs.mkdir()
    paths = RunPaths.for_run("r")
    with writer_lock(paths, "a test"):
        before = sorted(p.name for p in paths.root.rglob("*"))
        code = stage_calls(manifest, logs)[stage]()
        err = capsys.readouterr().err
        assert sorted(p.name for p in paths.root.rglob("*")) == before
    assert code == EXIT_BAD_INPUT, err
    assert f"another process is writing this run: pid {os.getpid()}" in err


def test_report_and_verify_of_a_missing_run_create_nothing(run_roots, capsys):
    assert verify.main(["--run", "nope"]) == EXIT_BAD_INPUT
    assert report.main(["--run", "nope"]) == EXIT_BAD_INPUT
    assert not (run_roots / "results" / "nope").exists()


# ----------------------------------------------------------------------------- corrupt records


def _accuracy_gate(paths: RunPaths) -> object:
    demo = load_manifest(ROOT / "manifests" / "demo.toml")
    return verify.accuracy_verdicts(paths, demo, Artifacts(paths))


# (recorded file, its corrupt text, the reader, words of the refusal)
CORRUPT = [
    ("provenance.json", "{", lambda p: run_provenance(p.root), "provenance.json: unreadable JSON"),
    (
        "provenance.json",
        "[]",
        lambda p: run_provenance(p.root),
        "provenance.json: holds a JSON list",
    ),
    (
        "provenance.json",
        json.dumps({"gpus": [{"name": 3}]}),
        lambda p: run_provenance(p.root),
        "provenance.json: gpus.0.name: not a provenance record: input should be a valid string",
    ),
    (
        "shards/r-shard1of2/provenance.json",
        json.dumps({"software": {"container": {"digest": "sha256:a", "tag": "x"}}}),
        lambda p: run_provenance(p.root, ("r-shard1of2",)),
        "provenance.json: software.container.tag: not a provenance record: unknown key",
    ),
    ("secondary/evidence.json", "{not", lambda p: secondary.load(p.root), "unreadable JSON"),
    ("secondary/evidence.json", "7", lambda p: secondary.load(p.root), "holds a JSON int"),
    (
        "secondary/evidence.json",
        json.dumps({"schema": secondary.SCHEMA, "files": [{"name": 1}]}),
        lambda p: secondary.load(p.root),
        "evidence.json: not trtllm-repro/secondary-evidence/1",
    ),
    ("accuracy/accuracy.json", "[1, 2]", _accuracy_gate, "accuracy.json: holds a JSON list"),
    ("accuracy/accuracy.json", "{", _accuracy_gate, "accuracy.json: unreadable JSON"),
]


@pytest.mark.parametrize(
    ("name", "text", "reader", "words"), CORRUPT, ids=[f"{c[0]} {c[1]}" for c in CORRUPT]
)
def test_a_corrupt_record_is_a_kit_error_naming_it(run_roots, name, text, reader, words):
    paths = RunPaths.for_run("r")
    target = paths.root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    with pytest.raises(KitError, match=words.replace(".", r"\.")):
        reader(paths)
    assert target.read_text(encoding="utf-8") == text  # reported, never rewritten

"""bench.stages.import_logs: a folder of trtllm-bench outputs becomes a run with records and
provenance."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from bench.core.errors import EXIT_BAD_INPUT
from bench.schema.record import read_record
from bench.stages.import_logs import VERSION, main, plan_points
from tests.conftest import ROOT, SHARED

DATA = Path(__file__).parent / "data" / "trtllm"
SEED_LOGS = SHARED / "fixtures" / "trtllm-bench-0.16-logs"
MANIFEST = """\
name = "imported"
[model]
source = "hf"
repo = "meta-llama/Llama-3.1-8B-Instruct"
revision = "0123456789abcdef0123456789abcdef01234567"
[quantization]
method = "none"
format = "none"
[engine]
backend = "trtllm-pytorch"
max_seq_len = 4096
[sweep]
points = [{isl = 128, osl = 128, requests = 200}]
"""


@pytest.fixture
def roots(tmp_path, monkeypatch) -> Path:
    for name in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.split("_")[0].lower()))
    return tmp_path / "results"


@pytest.fixture
def logs(tmp_path) -> Path:
    """A folder in the shape of the seed's, from the hand-written samples."""
    folder = tmp_path / "logs"
    folder.mkdir()
    for sample, name in [
        ("report_1.0.json", "result_128_128_200.json"),
        ("console_1.0.txt", "result_128_128_200.txt"),
        ("console_0.16.txt", "result_256_256_100.txt"),  # measured 128/128: invalid
        ("silent.txt", "result_512_512_50.txt"),
        ("oom.txt", "result_1024_1024_10.txt"),
    ]:
        shutil.copyfile(DATA / sample, folder / name)
    # The JSON and the log of one run agree on the backend (the samples were written apart).
    log = folder / "result_128_128_200.txt"
    log.write_text(log.read_text().replace("= PYTORCH BACKEND", "= ENGINE DETAILS"))
    (folder / "notes.md").write_text("not a result\n", encoding="utf-8")
    (folder / "old").mkdir()
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_plan_points_groups_and_ignores(tmp_path):
    names = [
        "result_2_1_5.json",
        "result_2_1_5.txt",
        "result_1_9_3.txt",
        "summary.log",
        "result_x.txt",
    ]
    points, ignored = plan_points(names, tmp_path)
    assert [(p.name, p.requests, [f.name for f in p.files]) for p in points] == [
        ("isl1_osl9", 3, ["result_1_9_3.txt"]),
        ("isl2_osl1", 5, ["result_2_1_5.json", "result_2_1_5.txt"]),
    ]
    assert [i["name"] for i in ignored] == ["result_x.txt", "summary.log"]


def test_import_sample_folder(roots, logs, capsys):
    assert main(["--logs", str(logs), "--run", "sample"]) == 0
    run = roots / "sample"
    points = run / "points"
    assert sorted(p.name for p in points.iterdir()) == [
        "isl1024_osl1024",
        "isl128_osl128",
        "isl256_osl256",
        "isl512_osl512",
    ]
    # JSON and log of one point: numbers from the JSON, sizes from the log, both kept raw.
    both = read_record(points / "isl128_osl128" / "result.json")
    assert (both.status, both.source, both.identity.backend) == (
        "ok",
        "trtllm-bench-json",
        "trtllm-tensorrt",
    )
    assert (both.memory.kv_cache_gib, both.memory.kv_cache_max_tokens) == (61.75, 505856)
    assert both.raw_files == (
        "points/isl128_osl128/raw/result_128_128_200.json",
        "points/isl128_osl128/raw/result_128_128_200.txt",
    )
    for rel in both.raw_files:
        assert (run / rel).read_bytes() == (logs / Path(rel).name).read_bytes()
    invalid = read_record(points / "isl256_osl256" / "result.json")
    assert (invalid.status, invalid.failure) == ("invalid", "length_mismatch")
    silent = read_record(points / "isl512_osl512" / "failure.json")
    oom = read_record(points / "isl1024_osl1024" / "failure.json")
    assert (silent.failure, oom.failure) == ("silent", "oom")
    assert not (points / "isl512_osl512" / "result.json").exists()

    rows = summary_rows(run)
    assert [(r["isl"], r["status"], r["failure"]) for r in rows] == [
        ("128", "ok", ""),
        ("256", "invalid", "length_mismatch"),
        ("512", "failed", "silent"),
        ("1024", "failed", "oom"),
    ]
    assert rows[0]["output_tok_s"] == "12800.0000"

    info = json.loads((run / "import.json").read_text())
    assert (info["source"], info["files"], info["points"]) == (str(logs), 5, 4)
    assert info["status"] == {"ok": 1, "invalid": 1, "failed": 2}
    assert info["identity"]["engine_versions"] == ["0.16.0", "1.0.0"]
    assert info["identity"]["tp_sizes"] == [1, 2]
    assert info["ignored"] == [
        {"name": "notes.md", "reason": "not named result_<ISL>_<OSL>_<requests>.txt|.json"},
        {"name": "old", "reason": "a folder"},
    ]
    assert not (run / "manifest.resolved.toml").exists()

    arts = json.loads((run / "artifacts.json").read_text())
    stage = arts["stages"]["import"]
    assert stage["inputs"][str(logs / "notes.md")] == sha256(logs / "notes.md")
    assert stage["key"]["version"] == VERSION  # the import's code, by its VERSION
    assert "run:import.json" in stage["outputs"] and "run:summary.csv" in stage["outputs"]
    assert (run / ".stamps" / "import.ok").is_file()
    assert "import: 4 points (1 ok, 1 invalid, 2 failed), 2 ignored" in capsys.readouterr().err


def test_import_again_is_a_no_op(roots, logs, capsys):
    assert main(["--logs", str(logs), "--run", "sample"]) == 0
    before = (roots / "sample" / "artifacts.json").read_text()
    assert main(["--logs", str(logs), "--run", "sample"]) == 0
    assert "is up to date" in capsys.readouterr().err
    assert (roots / "sample" / "artifacts.json").read_text() == before


def test_import_changed_folder_replaces_its_own_outputs(roots, logs):
    assert main(["--logs", str(logs), "--run", "sample"]) == 0
    (logs / "result_1024_1024_10.txt").unlink()
    assert main(["--logs", str(logs), "--run", "sample"]) == 0
    run = roots / "sample"
    assert not (run / "points" / "isl1024_osl1024").exists()
    assert len(summary_rows(run)) == 3
    arts = json.loads((run / "artifacts.json").read_text())
    assert not [k for k in arts["files"] if "isl1024" in k]


def test_import_with_manifest_fixes_it_in_the_run(roots, logs, tmp_path):
    manifest = tmp_path / "imported.toml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    assert main(["--logs", str(logs), "--run", "m", "--manifest", str(manifest)]) == 0
    run = roots / "m"
    assert (run / "manifest.resolved.toml").is_file()
    assert not (run / "import.json").exists()
    arts = json.loads((run / "artifacts.json").read_text())
    assert set(arts["stages"]) == {"init", "import"}
    assert arts["stages"]["import"]["inputs"][str(manifest.resolve())] == sha256(manifest)


def test_import_with_a_bad_manifest_writes_nothing(roots, logs, tmp_path, capsys):
    manifest = tmp_path / "bad.toml"
    manifest.write_text(
        MANIFEST.replace('backend = "trtllm-pytorch"', 'backend = "vllm"'), encoding="utf-8"
    )
    assert main(["--logs", str(logs), "--run", "m", "--manifest", str(manifest)]) == EXIT_BAD_INPUT
    assert "engine.backend" in capsys.readouterr().err
    assert not (roots / "m").exists()


def test_import_refuses_a_folder_holding_other_work(roots, logs, capsys):
    (roots / "busy").mkdir(parents=True)
    (roots / "busy" / "mine.txt").write_text("x", encoding="utf-8")
    assert main(["--logs", str(logs), "--run", "busy"]) == EXIT_BAD_INPUT
    assert "already holds other work (run:mine.txt)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["result_128_128_100.txt", "result_128_128_200.json"], "different request counts"),
        (["notes.md"], "no result_<ISL>_<OSL>_<requests>.txt|.json files"),
    ],
)
def test_import_bad_folder(roots, tmp_path, capsys, files, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("", encoding="utf-8")
    assert main(["--logs", str(folder), "--run", "bad"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "fix:" in err
    assert not (roots / "bad").exists()


def test_import_missing_folder(roots, tmp_path, capsys):
    assert main(["--logs", str(tmp_path / "nope"), "--run", "x"]) == EXIT_BAD_INPUT
    assert "nope: not a folder" in capsys.readouterr().err


def test_import_seed_logs(roots):
    if not SEED_LOGS.is_dir():
        pytest.skip(f"{SEED_LOGS} is absent (needs ../shared)")
    assert main(["--logs", str(SEED_LOGS), "--run", "seed"]) == 0
    run = roots / "seed"
    rows = summary_rows(run)
    assert len(rows) == 48
    assert sum(r["status"] == "ok" for r in rows) == 47
    [failed] = [r for r in rows if r["status"] == "failed"]
    assert (failed["isl"], failed["osl"], failed["failure"]) == ("16384", "16384", "silent")
    assert {
        (r["model"], r["tp_size"], r["engine_version"]) for r in rows if r["status"] == "ok"
    } == {("meta-llama/Llama-3.1-70B-Instruct", "8", "0.16.0")}
    row = next(r for r in rows if (r["isl"], r["osl"]) == ("128", "128"))
    assert (row["output_tok_s"], row["req_s"], row["total_tok_s"]) == ("14389.7989", "112.4203", "")

    arts = json.loads((run / "artifacts.json").read_text())
    sources = sorted(SEED_LOGS.resolve().glob("result_*.txt"))  # ../shared may be a link
    assert len(sources) == 48
    for source in sources:
        isl, osl, _ = source.stem.split("_")[1:]
        key = f"run:points/isl{isl}_osl{osl}/raw/{source.name}"
        assert arts["files"][key]["sha256"] == sha256(source), key
        assert key in arts["stages"]["import"]["outputs"]
        assert arts["stages"]["import"]["inputs"][str(source)] == sha256(source)
    info = json.loads((run / "import.json").read_text())
    # the summaries are secondary evidence now (bench.analysis.secondary), not ignored files
    assert [i["name"] for i in info["ignored"]] == ["sweep_config.csv"]
    assert info["secondary_evidence"] == ["summary_results.log", "throughput_summary.csv"]
    assert info["identity"]["models"] == ["meta-llama/Llama-3.1-70B-Instruct"]


def test_make_audit_names_the_run_after_the_logs_unless_run_is_given():
    """The default RUN is the manifest's: an audit must not import into that run's folder."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "RUN"}

    def dry_run(*args: str) -> str:
        argv = ["make", "-n", "-C", str(ROOT), "audit", "LOGS=logs", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout

    assert "--run" not in dry_run()
    assert "--run mine" in dry_run("RUN=mine")

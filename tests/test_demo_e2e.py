"""End to end on the embedded demo: `make all` with manifests/demo.toml, as a user runs it.

One pipeline run is shared by the tests of this module (it takes about a minute on 2 cores);
tests that damage a run work on a copy. Slow tests, but they are the ones that prove the kit.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.fileio import read_json
from tests.conftest import DEMO_MANIFEST, ROOT

pytestmark = pytest.mark.slow
PLANTED_TOKEN = "hf_PLANTEDtokenNEVERwrittenANYWHERE0123456789"
STAGES = ("env", "fetch", "quantize", "build", "accuracy", "datasets", "sweep", "report")
# manifests/demo.toml: 4 offline points and 32/16 at concurrency 1 and 4, x 3 repeats (repeat 0
# has no suffix)
DEMO_SHAPES = ["isl32_osl16", "isl32_osl32", "isl64_osl16", "isl64_osl32"]
DEMO_POINTS = sorted(
    f"{name}{f'_r{r}' if r else ''}"
    for name in [*DEMO_SHAPES, "isl32_osl16_c1", "isl32_osl16_c4"]
    for r in range(3)
)


def roots_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        env[name] = str(base / name.split("_")[0].lower())
    env["CACHE_DIR"] = str(base / "work" / ".cache")  # `make test` exports the repo's own
    env["HF_TOKEN"] = PLANTED_TOKEN
    env["PYTHONUNBUFFERED"] = "1"
    return env


def make(
    base: Path, *targets: str, run: str = "demo", **variables: str
) -> subprocess.CompletedProcess:
    argv = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        *targets,
        f"PYTHON={sys.executable}",
        f"MANIFEST={DEMO_MANIFEST}",
        f"RUN={run}",
        *(f"{k}={v}" for k, v in variables.items()),
    ]
    return subprocess.run(argv, env=roots_env(base), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("demo")
    first = make(base, "all")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    return base, first


def stamps(base: Path, run: str = "demo") -> dict[str, float]:
    """Stage stamps; verify's is left out: verify is a check, it runs every time."""
    folder = base / "results" / run / ".stamps"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.ok") if p.name != "verify.ok"}


def test_pipeline_writes_every_stage_output(demo):
    base, first = demo
    run = base / "results" / "demo"
    assert set(stamps(base)) >= {f"{s}.ok" for s in STAGES}
    for f in ("manifest.resolved.toml", "artifacts.json", "provenance.json", "summary.csv"):
        assert (run / f).is_file(), f
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert len(rows) == len(DEMO_POINTS) and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert float(r["output_tok_s"]) > 0
        assert float(r["avg_output_len"]) == float(r["osl"])
        # streamed: TTFT and TPOT measured per token by the CPU runner
        assert 0 < float(r["ttft_p50_ms"]) <= float(r["ttft_p99_ms"])
        assert 0 < float(r["tpot_p50_ms"]) <= float(r["tpot_p99_ms"])
        assert float(r["e2e_p99_ms"]) >= float(r["ttft_p99_ms"])
        assert r["backend"] == "hf-transformers" and r["model"] == "trtllm-repro/tiny-llama-3.1"
    report = base / "reports" / "demo" / "report.md"
    assert report.is_file() and "isl" in report.read_text().lower()
    assert "run demo:" in first.stdout


def test_the_console_is_one_line_per_point_and_the_summaries(demo):
    """The runner's console goes to each point's log; the terminal gets a line per point, the
    stage summary and verify's verdict with its path, not the file list (issue 15)."""
    base, first = demo
    sweep = [line for line in first.stderr.splitlines() if line.startswith("[sweep]")]
    n = len(DEMO_POINTS)
    progress = re.compile(
        rf"\[sweep\] (\d+)/{n} (isl\d+_osl\d+(?:_c\d+)?(?:_r\d)?): "
        r"ok [\d.]+ output tok/s in [\d.]+ s "
        r"\| elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$"
    )
    matched = [m for line in sweep if (m := progress.match(line))]
    assert [int(m.group(1)) for m in matched] == list(range(1, n + 1)), sweep
    assert sorted(m.group(2) for m in matched) == DEMO_POINTS
    assert len(sweep) == n + 2, sweep  # plus where the logs go, and "done"
    console = first.stdout + first.stderr
    for tool_line in ("PERFORMANCE OVERVIEW", "HF TRANSFORMERS RUNNER", "+ "):
        assert not any(line.startswith(tool_line) for line in console.splitlines()), tool_line
    log = (base / "results" / "demo" / "points" / "isl32_osl16_r2" / "console.log").read_text()
    assert "= PERFORMANCE OVERVIEW" in log and "= HF TRANSFORMERS RUNNER" in log
    verify_md = base / "reports" / "demo" / "verify.md"
    assert f"Result: PASSED; every file checked, by name: {verify_md}" in first.stdout
    assert "<summary>Re-hashed</summary>" in verify_md.read_text()
    assert "<summary>" not in first.stdout and "run demo:" in first.stdout
    assert len(console.splitlines()) < 150, len(console.splitlines())


def test_second_make_all_reruns_nothing_and_says_so(demo):
    base, _ = demo
    before = stamps(base)
    again = make(base, "all")
    assert again.returncode == 0, again.stderr[-3000:]
    assert stamps(base) == before
    for stage in STAGES:
        assert f"{stage}" in again.stdout and "skipped" in again.stdout
    assert "ran " not in again.stdout.replace("last ran", "")


def test_after_a_code_edit_make_asks_every_stage_and_none_reruns(demo):
    """A code edit makes every stamp older than the code, so Make asks every stage; the stage
    rule (bench.core.stage) holds no source bytes, so each answers "current" and nothing runs."""
    base, _ = demo
    hour_ago = time.time() - 3600
    for stamp in (base / "results" / "demo" / ".stamps").glob("*.ok"):
        os.utime(stamp, (hour_ago, hour_ago))
    again = make(base, "all")
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in STAGES:
        assert f"[{stage}] current: skipped" in again.stderr, stage
    assert "ran " not in again.stdout.replace("last ran", "")


def test_every_artifact_is_recorded_and_verifies(demo):
    base, _ = demo
    arts = read_json(base / "results" / "demo" / "artifacts.json")
    keys = set(arts["files"])
    for expected in (
        "models:trtllm-repro--tiny-llama-3.1/v1/model.safetensors",
        "work:checkpoint/model.safetensors",
        "work:checkpoint/hf_quant_config.json",
        "run:datasets/isl32_osl16_n16.jsonl",
        "run:points/isl64_osl32/result.json",
        "run:points/isl64_osl32/report.json",
        "run:points/isl64_osl32/console.log",
        "run:provenance.json",
        "run:summary.csv",
        "reports:report.md",
    ):
        assert expected in keys, expected
    for stage in ("fetch", "quantize", "datasets"):
        assert arts["stages"][stage]["inputs"], stage
    verify = make(base, "verify")
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]


def test_tampering_is_named_by_verify(demo, tmp_path):
    base, _ = demo
    copy = tmp_path / "copy"
    shutil.copytree(base, copy, symlinks=True)
    result = copy / "results" / "demo" / "points" / "isl32_osl16" / "result.json"
    result.write_text(result.read_text().replace('"ok"', '"ok" '))
    (copy / "results" / "demo" / "datasets" / "isl64_osl32_n16.jsonl").unlink()
    (copy / "results" / "demo" / "points" / "extra.txt").write_text("?")
    out = make(copy, "verify")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Result: FAILED" in text, text[-3000:]
    assert "points/isl32_osl16/result.json" in text
    assert "datasets/isl64_osl32_n16.jsonl" in text
    assert "points/extra.txt" in text


def test_planted_token_is_written_nowhere(demo):
    base, _ = demo
    leaks = [p for p in base.rglob("*") if p.is_file() and PLANTED_TOKEN.encode() in p.read_bytes()]
    assert leaks == []


def test_sweep_killed_mid_point_resumes_exactly_once(demo, tmp_path):
    base, _ = demo
    work = tmp_path / "resume"
    shutil.copytree(base / "models", work / "models")
    env = roots_env(work)
    for target in ("datasets",):
        assert make(work, target, run="r").returncode == 0
    argv = [
        sys.executable,
        "-m",
        "bench.stages.sweep",
        "--manifest",
        str(DEMO_MANIFEST),
        "--run",
        "r",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    points = work / "results" / "r" / "points"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # one point done and the next one running
        done = list(points.glob("*/result.json")) if points.exists() else []
        if done and list(points.glob("*.partial/console.log")):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the sweep never reached its second point")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(points.glob("*.partial"))  # the interrupted point left a partial folder

    resumed = make(work, "all", run="r")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already done; skipped" in resumed.stderr
    assert "discarding interrupted point" in resumed.stderr
    names = sorted(p.name for p in points.iterdir())
    assert names == DEMO_POINTS
    rows = list(csv.DictReader((work / "results" / "r" / "summary.csv").open()))
    measured = [(r["isl"], r["osl"], r["concurrency"], r["repeat"]) for r in rows]
    assert sorted(measured) == sorted(set(measured))
    assert len(rows) == len(DEMO_POINTS)


def test_demo_points_record_measured_latency(demo):
    """The CPU runner's streamer: requests.csv per point, the record's distributions equal to
    what requests.csv gives, inter-token gaps pooled, and the window the requests spanned."""
    from bench.analysis.latency import distributions, read_requests

    base, _ = demo
    points = base / "results" / "demo" / "points"
    for folder in sorted(points.iterdir()):
        record = read_json(folder / "result.json")
        rows = read_requests(folder / "requests.csv")
        assert len(rows) == record["requests"] == (16 if record["concurrency"] is None else 8)
        mine = distributions(rows)
        m = record["metrics"]
        for key in ("request_latency_ms", "ttft_ms", "tpot_ms"):
            assert m[key]["p99"] == pytest.approx(mine[key].p99, rel=1e-6), (folder.name, key)
        # every gap of every request
        assert m["itl_ms"]["count"] == record["requests"] * (record["osl"] - 1)
        window_ms = (record["window_end_ns"] - record["window_start_ns"]) / 1e6
        assert window_ms == pytest.approx(m["total_latency_ms"], rel=1e-6)
        assert max(r.start_ms + r.latency_ms for r in rows) == pytest.approx(window_ms, abs=1e-3)
        if record["concurrency"] == 1:  # one request at a time: starts never overlap
            ends = sorted(r.start_ms + r.latency_ms for r in rows)
            starts = sorted(r.start_ms for r in rows)
            assert all(s >= e - 1e-3 for s, e in zip(starts[1:], ends, strict=False))
        # a fork of the sweep's preloaded interpreter ran it (bench.core.forkserver), and said so
        assert "a fork of the sweep's preloaded interpreter" in (folder / "console.log").read_text()
        # the demo's [slo]: each record is judged and its goodput counted (0 when none met)
        assert record["metrics"]["goodput_req_s"] is not None, folder.name
    report = (base / "reports" / "demo" / "report.md").read_text()
    assert "## Service-level objective (SLO)" in report and "No [slo]" not in report
    assert "Highest output throughput under the SLO, per ISL/OSL" in report


def test_accuracy_stage_shows_the_agreement_metrics(demo):
    base, first = demo
    record = read_json(base / "results" / "demo" / "accuracy" / "accuracy.json")
    assert record["method"] == "agreement" and record["passed"] is True
    assert record["evaluated"] == {
        "fp8": "work:checkpoint",
        "bf16": "models:trtllm-repro--tiny-llama-3.1/v1",
    }
    report = (base / "reports" / "demo" / "report.md").read_text()
    accuracy = report[report.index("## Accuracy\n") : report.index("## Metric definitions")]
    for metric in ("top-1 next-token agreement", "mean KL", "mean matching greedy prefix"):
        assert metric in accuracy, metric
    assert "| Accuracy gate | PASSED" in report
    assert "accuracy gate passed: top-1 next-token agreement" in first.stderr


def test_three_shards_merge_into_one_verified_run(demo, tmp_path):
    base, _ = demo
    work = tmp_path / "shards"
    shutil.copytree(base / "models", work / "models")
    shard_dirs = []
    for i in (1, 2, 3):
        out = make(work, "all", run=f"demo-shard{i}of3", SHARD=f"{i}/3")
        assert out.returncode == 0, out.stderr[-3000:]
        # the first shard quantizes; the others take its checkpoint from the shared cache
        assert ("[quantize] reused" in out.stderr) == (i > 1), out.stderr[-3000:]
        shard_dirs.append(str(work / "results" / f"demo-shard{i}of3"))
    counts = [len(list((Path(d) / "points").iterdir())) for d in shard_dirs]
    assert sum(counts) == len(DEMO_POINTS)
    merged = make(work, "merge", run="merged", SHARDS=" ".join(shard_dirs))
    assert merged.returncode == 0, merged.stderr[-3000:]
    points = sorted(p.name for p in (work / "results" / "merged" / "points").iterdir())
    assert points == DEMO_POINTS
    for target in ("report", "verify"):
        out = make(work, target, run="merged")
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # the checkpoint stayed with the shards: verify says it took those digests from their record
    taken = re.search(r"Not re-hashed \(recorded digest taken from the record\): (\d+)", out.stdout)
    assert taken and int(taken.group(1)) > 0, out.stdout[-3000:]

"""The H100 pipeline end to end on a CPU machine, the fake TensorRT-LLM 1.0 tools first on PATH.

Real stages (real ModelOpt FP8 calibration on the CPU), fake trtllm-build / trtllm-bench /
prepare_dataset.py / nvidia-smi from tests/fakes/, and scripted failures: one point out of memory
at KV fraction 0.95 only (recovers at 0.90), one always out of memory, one hanging past the
point timeout, one exiting silently, one generating 20% short outputs. Runs `make all` as a user
does, and shards of one sweep through `make merge`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.proc import GRACE_S

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "tests" / "fakes"
TENSORRT = REPO / "tests" / "data" / "manifests" / "fake-h100-tensorrt.toml"
PYTORCH = REPO / "tests" / "data" / "manifests" / "fake-h100-pytorch.toml"
TIMEOUT_S = 20  # runtime.point_timeout_s of the fake manifests
INJECT = {
    "FAKE_TRTLLM_OOM": "64/32@0.95,64/64",
    "FAKE_TRTLLM_HANG": "96/32",
    "FAKE_TRTLLM_SILENT": "96/64",
    "FAKE_TRTLLM_SHORT": "128/32",
}
EXPECTED = {  # (isl, osl) -> (status, failure)
    (32, 32): ("ok", ""),
    (64, 32): ("ok", ""),
    (64, 64): ("failed", "oom"),
    (96, 32): ("failed", "timeout"),
    (96, 64): ("failed", "silent"),
    (128, 32): ("invalid", "length_mismatch"),
}


def path_without_fakes() -> str:
    return os.pathsep.join(
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if Path(p).resolve() != (FAKES / "bin").resolve()
    )


def pipeline_env(
    tmp_path: Path, *, fakes: bool, inject: dict[str, str], release: str = "1.0"
) -> dict[str, str]:
    """The fakes of one TensorRT-LLM release first on PATH, its packages' metadata (the versions
    `make doctor` checks) first on PYTHONPATH, and every run root under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_TRTLLM_", "MAKE"))}
    path = path_without_fakes()
    env["PATH"] = f"{FAKES / 'bin'}{os.pathsep}{path}" if fakes else path
    env["FAKE_TRTLLM_RELEASE"] = release
    env["PYTHONPATH"] = str(FAKES / "site" / release)
    env["TRTLLM_PREPARE_DATASET"] = str(FAKES / "prepare_dataset.py")
    for name in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        env[name] = str(tmp_path / name.removesuffix("_DIR").lower())
    env["CACHE_DIR"] = str(tmp_path / "work" / ".cache")  # `make test` exports the repo's own
    return env | inject


def make(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["make", *args, f"PYTHON={sys.executable}"],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=170,
    )
    return proc.returncode, proc.stdout + proc.stderr


def run_pipeline(manifest: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    return make(env, "all", f"MANIFEST={manifest.relative_to(REPO)}", *args)


def records(run_dir: Path) -> dict[tuple[int, int], dict]:
    out = {}
    for folder in (run_dir / "points").iterdir():
        assert not folder.name.endswith(".partial"), f"left behind: {folder}"
        (record,) = [folder / n for n in ("result.json", "failure.json") if (folder / n).exists()]
        data = json.loads(record.read_text())
        out[(data["isl"], data["osl"])] = data
    return out


def no_process_reads(needle: str) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle.encode() in cmdline.read_bytes():
                return False
        except OSError:
            continue
    return True


@pytest.mark.slow
def test_tensorrt_pipeline_with_injected_failures(tmp_path):
    env = pipeline_env(tmp_path, fakes=True, inject=INJECT)
    started = time.monotonic()
    code, out = run_pipeline(TENSORRT, env)
    assert time.monotonic() - started < 170
    run_dir = tmp_path / "results" / TENSORRT.stem

    # every point has its record, in order, and the sweep went on after each failure
    got = records(run_dir)
    assert {k: (r["status"], r["failure"] or "") for k, r in got.items()} == EXPECTED
    with open(run_dir / "summary.csv", newline="") as f:
        rows = {
            (int(r["isl"]), int(r["osl"])): (r["status"], r["failure"]) for r in csv.DictReader(f)
        }
    assert rows == EXPECTED

    # OOM at 0.95 only: retried at 0.90 and measured there
    recovered = got[(64, 32)]
    assert [(a["kv_cache_fraction"], a["outcome"]) for a in recovered["attempts"]] == [
        (0.95, "oom"),
        (0.9, "ok"),
    ]
    assert recovered["identity"]["kv_cache_fraction"] == pytest.approx(0.9)
    # always OOM: three tries, then failed
    assert [(a["kv_cache_fraction"], a["outcome"]) for a in got[(64, 64)]["attempts"]] == [
        (0.95, "oom"),
        (0.9, "oom"),
        (0.85, "oom"),
    ]
    assert "out of memory" in got[(64, 64)]["failure_detail"]
    # hang: killed at the point timeout (plus the kill grace), and really gone
    (hang,) = got[(96, 32)]["attempts"]
    assert hang["outcome"] == "timeout" and hang["exit_code"] is None
    assert TIMEOUT_S <= hang["seconds"] <= TIMEOUT_S + GRACE_S + 5
    # this run's own path: other runs of this test on a shared machine are not ours to judge
    assert no_process_reads(str(run_dir / "datasets" / "isl96_osl32_n16.jsonl"))
    # silent: exit 0 without a report
    assert got[(96, 64)]["attempts"][0]["exit_code"] == 0
    assert "Preparing to run throughput benchmark" in got[(96, 64)]["failure_detail"]
    # short outputs: measured, but marked invalid
    assert got[(128, 32)]["metrics"]["avg_output_len"] == pytest.approx(32 * 0.8, abs=1)
    # the measured points carry the fake engine's identity and memory lines
    ok = got[(32, 32)]
    assert (
        ok["identity"]["backend"] == "trtllm-tensorrt"
        and ok["identity"]["engine_version"] == "1.0.0"
    )
    assert ok["identity"]["max_seq_len"] == 256 and ok["identity"]["quantization"] == "FP8"
    assert ok["memory"]["engine_size_mib"] and ok["memory"]["kv_cache_max_tokens"]

    # engine and datasets are recorded with their true sha256
    arts = json.loads((run_dir / "artifacts.json").read_text())["files"]
    work = tmp_path / "work" / TENSORRT.stem
    expected_files = {
        "work:engine/config.json": work / "engine" / "config.json",
        "work:engine/rank0.engine": work / "engine" / "rank0.engine",
    }
    for data in sorted((run_dir / "datasets").glob("*.jsonl")):
        expected_files[f"run:datasets/{data.name}"] = data
    assert len(expected_files) == 2 + len(EXPECTED)
    for key, path in expected_files.items():
        assert arts[key]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), key
    engine_config = json.loads((work / "engine" / "config.json").read_text())
    assert engine_config["build_config"]["max_seq_len"] == 256
    assert engine_config["pretrained_config"]["quantization"]["quant_algo"] == "FP8"

    # report and verify: the report names each failed point and why; verify fails the run
    run = TENSORRT.stem
    assert code != 0, "verify must fail a run whose points failed or are invalid"
    verify_out = out[out.rindex("bench.stages.ifchanged verify") :]
    assert f"run {run}:" in verify_out, "make all prints the stage summary after a failed verify"
    assert point_named(verify_out, 128, 32), verify_out[-3000:]  # the invalid (short) point
    report = (tmp_path / "reports" / run / "report.md").read_text()
    for (isl, osl), (status, kind) in EXPECTED.items():
        if status == "failed":
            assert point_named(report, isl, osl) and kind in report, (isl, osl, kind)

    # NVIDIA's 1.0 numbers are another method (PyTorch backend, NVIDIA's checkpoint)
    nvidia = "manifests/published/nvidia-perf-overview-1.0.toml"
    _, verify_out = make(env, "verify", f"RUN={run}", f"REFERENCE={nvidia}")
    claims = verify_out.split("## Reference claims")[1].split("## Cross-method")[0]
    claims = claims.split("\nResult: ")[0]  # the console's last line is the run's own verdict
    rows = [line for line in claims.splitlines() if line.startswith("| ISL ")]
    assert len(rows) == 10 and all("| NOT COMPARABLE |" in line for line in rows)
    assert "backend trtllm-tensorrt vs trtllm-pytorch" in rows[0] and "checkpoint " in rows[0]
    assert "| PASS |" not in claims and "FAIL" not in claims

    # the accuracy gate ran trtllm-eval on the engine the sweep measured and on the BF16 model
    accuracy = json.loads((run_dir / "accuracy" / "accuracy.json").read_text())
    fp8, bf16 = accuracy["argv"]["fp8"], accuracy["argv"]["bf16"]
    assert fp8[:3] == ["trtllm-eval", "--model", str(work / "engine")] and "--tokenizer" in fp8
    assert bf16[2] == str(tmp_path / "models" / "trtllm-repro--tiny-llama-3.1" / "v1")
    assert "--backend tensorrt" in " ".join(fp8) and "--backend tensorrt" in " ".join(bf16)
    assert accuracy["passed"] and accuracy["fp8"]["n"] == 114
    assert arts["run:accuracy/fp8.log"]["stage"] == "accuracy"


def point_named(text: str, isl: int, osl: int) -> bool:
    return f"ISL {isl} / OSL {osl}" in text or f"isl{isl}_osl{osl}" in text


@pytest.mark.slow
def test_pytorch_pipeline_without_failures(tmp_path):
    env = pipeline_env(tmp_path, fakes=True, inject={})
    code, out = run_pipeline(PYTORCH, env)
    run_dir = tmp_path / "results" / PYTORCH.stem
    got = records(run_dir)
    assert {k: r["status"] for k, r in got.items()} == dict.fromkeys(EXPECTED, "ok")
    for record in got.values():
        assert record["identity"]["backend"] == "trtllm-pytorch"
        assert record["identity"]["kv_cache_fraction"] == pytest.approx(0.95)
        assert record["memory"]["engine_size_mib"] is None  # no engine on this path
    assert not (tmp_path / "work" / PYTORCH.stem / "engine").exists()
    assert code == 0, out[-3000:]


@pytest.mark.slow
def test_a_failed_accuracy_gate_marks_the_run_and_fails_verify(tmp_path):
    """FP8 scores 60 against BF16's 68.4: the sweep still runs, every throughput figure says
    "accuracy gate failed", and `make all` (its verify) fails naming the metric and threshold."""
    env = pipeline_env(tmp_path, fakes=True, inject={"FAKE_TRTLLM_EVAL_SCORE": "fp8=60.0"})
    code, out = run_pipeline(PYTORCH, env)
    assert code != 0
    assert "accuracy gate FAILED: mmlu FP8/BF16 score ratio = 0.8" in out
    assert "required >= 0.99" in out
    got = records(tmp_path / "results" / PYTORCH.stem)
    assert {r["status"] for r in got.values()} == {"ok"}  # the sweep ran all the same
    verify = (tmp_path / "reports" / PYTORCH.stem / "verify.md").read_text()
    assert "| mmlu FP8/BF16 score ratio | **FAIL** |" in verify
    assert "accuracy gate failed: required >= 0.99" in verify
    report = (tmp_path / "reports" / PYTORCH.stem / "report.md").read_text()
    assert "| Accuracy gate | **FAILED**: mmlu FP8/BF16 score ratio" in report
    for heading in ("## Executive summary", "## Top 10 points by output tok/s", "## Best per ISL"):
        assert f"{heading} (accuracy gate failed)" in report, heading


def test_toolcheck_without_fakes_names_trtllm_bench(tmp_path):
    """Without the tools the pipeline must stop at once, saying what is missing and what to run."""
    env = pipeline_env(tmp_path, fakes=False, inject={})
    if shutil.which("trtllm-bench", path=env["PATH"]):
        pytest.skip("a real trtllm-bench is on PATH")
    started = time.monotonic()
    code, out = run_pipeline(TENSORRT, env)
    assert time.monotonic() - started < 10
    assert code == 2
    assert "trtllm-bench" in out
    assert "make docker-all" in out and "make demo" in out
    assert not (tmp_path / "results" / TENSORRT.stem / "points").exists()


@pytest.mark.slow
def test_tensorrt_shards_share_one_engine_and_merge(tmp_path):
    """Two builds of one checkpoint differ (the fake, like TensorRT, varies its tactics), so shards
    merge only because the second takes the first's checkpoint and engine from the shared cache;
    a shard that built its own is refused by merge, which says how to fix it."""
    env = pipeline_env(tmp_path, fakes=True, inject={})
    shard_runs = {"1/2": "trt-shard1of2", "2/2": "trt-shard2of2"}
    outs = {}
    for shard, run in shard_runs.items():
        code, outs[shard] = run_pipeline(TENSORRT, env, f"SHARD={shard}", f"RUN={run}")
        assert code == 0, outs[shard][-3000:]
    assert "[build] reused" not in outs["1/2"]
    assert "[quantize] reused" in outs["2/2"] and "[build] reused" in outs["2/2"]
    engines = [tmp_path / "work" / run / "engine" / "rank0.engine" for run in shard_runs.values()]
    assert engines[0].read_bytes() == engines[1].read_bytes()
    arts = json.loads((tmp_path / "results" / "trt-shard2of2" / "artifacts.json").read_text())
    assert arts["stages"]["build"]["details"]["cache"]["made_by"] == "trt-shard1of2"

    shards = " ".join(str(tmp_path / "results" / run) for run in shard_runs.values())
    code, out = make(env, "merge", "RUN=trt-merged", f"SHARDS={shards}")
    assert code == 0, out[-3000:]
    code, out = make(env, "verify", "RUN=trt-merged")
    assert code == 0, out[-3000:]

    # the same shard 2 with the cache off builds its own engine: merge refuses, naming the fix
    code, out = run_pipeline(TENSORRT, env, "SHARD=2/2", "RUN=own-shard2of2", "CACHE_DIR=")
    assert code == 0, out[-3000:]
    own = tmp_path / "work" / "own-shard2of2" / "engine" / "rank0.engine"
    assert own.read_bytes() != engines[0].read_bytes()
    shards = f"{tmp_path / 'results' / 'trt-shard1of2'} {tmp_path / 'results' / 'own-shard2of2'}"
    code, out = make(env, "merge", "RUN=refused", f"SHARDS={shards}")
    assert code != 0
    assert "work:engine/rank0.engine sha256" in out and "CACHE_DIR" in out
    assert not (tmp_path / "results" / "refused").exists()


LATENCY = REPO / "tests" / "data" / "manifests" / "fake-h100-latency.toml"


@pytest.mark.slow
def test_concurrency_sweep_with_streaming_end_to_end(tmp_path):
    """[sweep] concurrency + streaming through the fake 1.2 trtllm-bench: each point passes
    --concurrency/--streaming/--request_json, its record carries the tool's percentiles and the
    measured window, requests.csv matches them, and summary.csv has the headline columns."""
    env = pipeline_env(tmp_path, fakes=True, inject={}, release="1.2")
    code, out = run_pipeline(LATENCY, env)
    assert code == 0, out[-4000:]
    run_dir = tmp_path / "results" / LATENCY.stem
    names = sorted(p.name for p in (run_dir / "points").iterdir())
    assert names == ["isl32_osl32_c1", "isl32_osl32_c4", "isl64_osl16_c1", "isl64_osl16_c4"]
    from bench.analysis.latency import distributions, read_requests

    for name in names:
        folder = run_dir / "points" / name
        record = json.loads((folder / "result.json").read_text())
        assert record["status"] == "ok" and record["streaming"] is True
        expected = 8 if record["concurrency"] == 1 else 16  # max(8, 4 x concurrency)
        assert record["requests"] == record["metrics"]["num_requests"] == expected
        (request_json,) = folder.glob("kv*.request.json")  # beside kv0.95.report.json
        assert request_json.read_text().startswith("[\n    {")  # 1.2: indent 4
        rows = read_requests(folder / "requests.csv")
        assert len(rows) == expected and all(r.ttft_ms is not None for r in rows)
        mine = distributions(rows)
        m = record["metrics"]
        for key in ("request_latency_ms", "ttft_ms", "tpot_ms"):
            assert m[key]["p99"] == pytest.approx(mine[key].p99, rel=1e-6), key
        assert m["per_user_output_tok_s"]["count"] == expected
        window_s = (record["window_end_ns"] - record["window_start_ns"]) / 1e9
        assert window_s == pytest.approx(m["total_latency_ms"] / 1000, rel=1e-3)
    with open(run_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["concurrency"] for r in rows} == {"1", "4"}
    for r in rows:
        assert float(r["ttft_p99_ms"]) >= float(r["ttft_p50_ms"]) > 0
        assert float(r["tpot_p99_ms"]) > 0 and float(r["e2e_p99_ms"]) > 0
        assert float(r["output_tok_s_per_user"]) > 0
    # what the sweep ran, as its stage key recorded it (the console shows one line per point)
    key = json.loads((run_dir / "artifacts.json").read_text())["stages"]["sweep"]["key"]
    argv_lines = [" ".join(argv) for argv in key["command"] if argv[0] == "trtllm-bench"]
    assert argv_lines and all("--streaming" in line for line in argv_lines)
    assert all("--request_json" in line for line in argv_lines)

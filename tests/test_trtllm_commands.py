"""Every command line bench/backends/trtllm/commands.py builds is one TensorRT-LLM 1.0 accepts,
and the fakes in tests/fakes/ behave like the real tools: they reject what the release rejects
and write the real formats, which bench/backends/trtllm/parse.py reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench import backends
from bench.backends.base import PointPaths
from bench.backends.trtllm import commands as trtllm
from bench.backends.trtllm import parse as parse_trtllm
from bench.core.manifest import parse_manifest

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "tests" / "fakes"
BIN = FAKES / "bin"
sys.path.insert(0, str(FAKES))

import fakelib  # noqa: E402
import trtllm_options as opts  # noqa: E402

MANIFESTS = [
    REPO / "manifests" / "demo.toml",
    REPO / "tests" / "data" / "manifests" / "fake-h100-tensorrt.toml",
    REPO / "tests" / "data" / "manifests" / "fake-h100-pytorch.toml",
]
REFERENCE_RUNNER_ONLY = {"--device"}  # the reference runner's one option trtllm-bench lacks


def manifest_with(path: Path, drop: tuple[tuple[str, str], ...] = (), **changes):
    """The manifest at path with some keys replaced or dropped, validated like any manifest."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for table, values in changes.items():
        data.setdefault(table, {}).update(values)
    for table, key in drop:
        data[table].pop(key)
    return parse_manifest(data, str(path))


def variants():
    base = MANIFESTS[1]
    for backend in backends.names():
        engine = {"backend": backend}
        runtime = {"device": "cpu"} if backend == "hf-transformers" else {}
        yield backend, manifest_with(base, engine=engine, runtime=runtime)
        yield (
            f"{backend}-streaming-extra",
            manifest_with(
                base,
                engine=engine,
                sweep={"streaming": True, "concurrency": [1, 4]},
                runtime={
                    **runtime,
                    "extra_llm_api_options": {
                        "cuda_graph_config": {"enable_padding": True, "batch_sizes": [1, 2, 4]}
                    },
                },
            ),
        )
    yield (
        "trtllm-pytorch-no-limits",
        manifest_with(
            MANIFESTS[2], drop=(("engine", "max_batch_size"), ("engine", "max_num_tokens"))
        ),
    )
    yield "demo", manifest_with(MANIFESTS[0])


@pytest.fixture
def paths(tmp_path):
    """Inputs that click.Path(exists=True) options need."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "d.jsonl").write_text("{}\n")
    (tmp_path / "extra.yaml").write_text("{}\n")
    return tmp_path


@pytest.mark.parametrize("name,manifest", list(variants()), ids=[n for n, _ in variants()])
def test_throughput_argv_is_accepted_by_trtllm_bench(name, manifest, paths):
    for point in manifest.sweep.points:
        for extra in (None, paths / "extra.yaml"):
            point_paths = PointPaths(
                model_path=paths / "ckpt",
                dataset=paths / "d.jsonl",
                report_json=paths / "r.json",
                workspace=paths / "ws",
                engine_dir=paths / "engine",
                extra_options=extra,
                request_json=paths / "requests.json",
            )
            argv = backends.get(manifest.engine.backend).run_argv(
                manifest, point, point_paths, kv_fraction=0.95
            )
            if manifest.engine.backend == "hf-transformers":
                assert argv[1:3] == ["-m", "bench.backends.hf_transformers.runner"]
                argv = reference_runner_as_trtllm_bench(argv)
            else:
                assert argv[0] == trtllm.TRTLLM_BENCH
            parsed = opts.parse(opts.TRTLLM_BENCH, argv[1:])
            assert parsed.subcommand == "throughput"
            sub = parsed.sub.values
            assert sub["eos_id"] == -1 and sub["num_requests"] == 0
            assert sub["streaming"] is manifest.sweep.streaming
            assert sub["concurrency"] == (point.concurrency or -1)
            assert sub["request_json"] == str(paths / "requests.json")
            if manifest.engine.needs_build:
                assert sub["engine_dir"] and sub["max_seq_len"] is None  # not a runtime option


def reference_runner_as_trtllm_bench(argv: list[str]) -> list[str]:
    """The CPU runner's argv with its own additions removed: what is left is trtllm-bench's."""
    out = ["trtllm-bench"]
    rest = argv[3:]
    i = 0
    while i < len(rest):
        if rest[i] in REFERENCE_RUNNER_ONLY:
            i += 2
            continue
        out.append("pytorch" if rest[i] == "hf-transformers" else rest[i])
        i += 1
    return out


@pytest.mark.parametrize("manifest_path", MANIFESTS[1:2])
def test_build_argv_is_accepted_by_trtllm_build(manifest_path, tmp_path):
    manifest = manifest_with(manifest_path)
    argv = trtllm.build_argv(manifest, checkpoint_dir=tmp_path / "ckpt", engine_dir=tmp_path / "e")
    v = opts.parse(opts.TRTLLM_BUILD, argv[1:]).values
    assert (v["max_batch_size"], v["max_num_tokens"], v["max_seq_len"]) == (64, 512, 256)
    assert v["max_input_len"] == max(p.isl for p in manifest.sweep.points)
    assert v["use_paged_context_fmha"] == v["use_fp8_context_fmha"] == "enable"


@pytest.mark.parametrize("manifest_path", MANIFESTS)
def test_prepare_dataset_argv_is_accepted(manifest_path, tmp_path):
    manifest = manifest_with(manifest_path)
    for point in manifest.sweep.points:
        argv = trtllm.prepare_dataset_argv(manifest, point, tokenizer=tmp_path)
        assert argv[0] == sys.executable
        parsed = opts.parse(opts.PREPARE_DATASET, argv[2:])
        assert parsed.values["stdout"] is True
        assert parsed.subcommand == "token-norm-dist"
        assert parsed.sub.values["num_requests"] == point.requests


# ----------------------------------------------------------------------------- rejection


def run(tool: str | Path, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(tool)] if str(tool).endswith(".py") else [str(tool)]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize(
    "tool,args,message",
    [
        (
            BIN / "trtllm-bench",
            ["--model", "m", "--bogus", "1", "throughput"],
            "Error: No such option: --bogus",
        ),
        (
            BIN / "trtllm-bench",
            ["--model", "m", "throughput", "--bogus"],
            "Error: No such option: --bogus",
        ),
        # NVIDIA's perf-overview puts --tp before `throughput`; 1.0 rejects that.
        (
            BIN / "trtllm-bench",
            ["--tp", "1", "--model", "m", "throughput"],
            "Error: No such option: --tp",
        ),
        (BIN / "trtllm-bench", ["throughput"], "Error: Missing option '--model' / '-m'."),
        (
            BIN / "trtllm-bench",
            ["-m", "m", "throughput", "--backend", "trt"],
            "Error: Invalid value for '--backend': 'trt' is not one of",
        ),
        (
            BIN / "trtllm-bench",
            ["-m", "m", "throughput", "--tp", "x"],
            "'x' is not a valid integer",
        ),
        (
            BIN / "trtllm-bench",
            ["-m", "m", "throughput", "--dataset", "/nonexistent.jsonl"],
            "Path '/nonexistent.jsonl' does not exist.",
        ),
        (BIN / "trtllm-bench", ["-m", "m", "latancy"], "Error: No such command 'latancy'."),
        (
            BIN / "trtllm-build",
            ["--checkpoint_dir", "c", "--bogus", "1"],
            "trtllm-build: error: unrecognized arguments: --bogus 1",
        ),
        (BIN / "trtllm-build", ["--max_batch", "8"], "unrecognized arguments: --max_batch 8"),
        (
            BIN / "trtllm-build",
            ["--gemm_plugin", "fp4"],
            "argument --gemm_plugin: invalid choice: 'fp4'",
        ),
        (BIN / "trtllm-build", ["--max_seq_len"], "argument --max_seq_len: expected one argument"),
        (
            FAKES / "prepare_dataset.py",
            ["--tokenizer", "t", "--bogus", "token-norm-dist"],
            "Error: No such option: --bogus",
        ),
        (
            FAKES / "prepare_dataset.py",
            ["--stdout", "token-norm-dist"],
            "Error: Missing option '--tokenizer'.",
        ),
        (
            FAKES / "prepare_dataset.py",
            ["--tokenizer", "t", "token-norm-dist", "--num-requests", "1"],
            "Error: Missing option '--input-mean'.",
        ),
    ],
)
def test_fakes_reject_what_the_release_rejects(tool, args, message):
    proc = run(tool, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


# ----------------------------------------------------------------------------- formats


def tiny_checkpoint(folder: Path) -> Path:
    """A TensorRT-LLM checkpoint as ModelOpt exports it (weights are placeholder bytes)."""
    folder.mkdir(parents=True)
    config = {
        "architecture": "LlamaForCausalLM",
        "dtype": "bfloat16",
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_size": 64,
        "head_size": 16,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1},
        "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "rank0.safetensors").write_bytes(b"\0" * 64)
    return folder


def tokenizer_dir(tmp_path: Path) -> Path:
    """The HF model folder trtllm-bench reads the tokenizer from (--model_path)."""
    folder = tmp_path / "hf"
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer_config.json").write_text("{}")
    return folder


def engine_throughput(
    engine: Path, tmp_path: Path, data: Path, *extra: str, **kwargs
) -> subprocess.CompletedProcess[str]:
    """`trtllm-bench throughput` on the fake engine, as the sweep calls it for `tensorrt`."""
    return run(
        BIN / "trtllm-bench",
        "-m",
        "tiny",
        "--model_path",
        str(tokenizer_dir(tmp_path)),
        "throughput",
        "--backend",
        "tensorrt",
        "--engine_dir",
        str(engine),
        "--dataset",
        str(data),
        *extra,
        **kwargs,
    )


def dataset(path: Path, isl: int, osl: int, n: int = 8) -> Path:
    lines = [
        json.dumps(
            {"task_id": i, "input_ids": list(range(1, isl + 1)), "output_tokens": osl},
            separators=(",", ":"),
        )
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def build_small_engine(ckpt: Path, out: Path) -> subprocess.CompletedProcess:
    """The fake trtllm-build on ckpt with small, fixed limits."""
    return run(
        BIN / "trtllm-build",
        "--checkpoint_dir",
        str(ckpt),
        "--output_dir",
        str(out),
        "--max_batch_size",
        "8",
        "--max_num_tokens",
        "256",
        "--max_seq_len",
        "128",
        "--max_input_len",
        "64",
        "--use_fp8_context_fmha",
        "enable",
    )


@pytest.fixture
def engine(tmp_path):
    out = tmp_path / "engine"
    proc = build_small_engine(tiny_checkpoint(tmp_path / "ckpt"), out)
    assert proc.returncode == 0, proc.stderr
    assert "Total time of building all engines" in proc.stdout
    return out


def test_trtllm_build_writes_the_engine_layout(engine, tmp_path):
    config = json.loads((engine / "config.json").read_text())
    assert set(config) == {"version", "pretrained_config", "build_config"}
    assert config["pretrained_config"]["quantization"] == {
        "quant_algo": "FP8",
        "kv_cache_quant_algo": "FP8",
    }
    b = config["build_config"]
    assert (b["max_batch_size"], b["max_num_tokens"], b["max_seq_len"], b["max_input_len"]) == (
        8,
        256,
        128,
        64,
    )
    assert b["plugin_config"]["use_paged_context_fmha"] is True
    assert b["plugin_config"]["use_fp8_context_fmha"] is True
    first = (engine / "rank0.engine").read_bytes()
    again = tmp_path / "again"
    build_small_engine(tmp_path / "ckpt", again)
    # like TensorRT: the same inputs give the same engine but for its timing-chosen tactics
    second = (again / "rank0.engine").read_bytes()
    assert len(second) == len(first) and second != first
    assert second[: -fakelib.TACTICS_BYTES] == first[: -fakelib.TACTICS_BYTES]


def test_trtllm_build_needs_the_checkpoint_weights(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    (ckpt / "rank0.safetensors").unlink()
    proc = run(
        BIN / "trtllm-build", "--checkpoint_dir", str(ckpt), "--output_dir", str(tmp_path / "e")
    )
    assert proc.returncode == 1
    assert "rank0.safetensors" in proc.stderr


@pytest.mark.parametrize("streaming", [False, True])
def test_trtllm_bench_report_has_the_keys_the_parser_reads(engine, tmp_path, streaming):
    report = tmp_path / "report.json"
    data = dataset(tmp_path / "d.jsonl", isl=32, osl=16)
    proc = run(
        BIN / "trtllm-bench",
        "--model",
        "tiny",
        "--model_path",
        str(tokenizer_dir(tmp_path)),
        "--workspace",
        str(tmp_path / "ws"),
        "throughput",
        "--backend",
        "tensorrt",
        "--engine_dir",
        str(engine),
        "--dataset",
        str(data),
        "--report_json",
        str(report),
        "--kv_cache_free_gpu_mem_fraction",
        "0.9",
        *(["--streaming"] if streaming else []),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(report.read_text())
    sections = [
        "engine",
        "world_info",
        "request_info",
        "performance",
        *(["streaming_metrics"] if streaming else []),
        "dataset",
    ]
    assert list(doc) == sections
    for section, key in parse_trtllm.REPORT_JSON_FIELDS:
        if section in doc:
            assert key in doc[section], f"{section}.{key}"
    result = parse_trtllm.parse_report_json(doc, isl=32, osl=16, requests=8, source_file="r")
    assert result.status == "ok"
    assert result.identity.backend == "trtllm-tensorrt" and result.identity.max_seq_len == 128
    assert result.metrics.avg_input_len == 32 and result.metrics.avg_output_len == 16
    assert (result.metrics.avg_ttft_ms is not None) is streaming
    console = parse_trtllm.parse_console(proc.stdout, isl=32, osl=16, requests=8)
    assert console.metrics.output_tok_s == pytest.approx(result.metrics.output_tok_s, abs=1e-4)
    assert console.identity.kv_cache_fraction == pytest.approx(0.9)
    memory = parse_trtllm.memory_from_log(proc.stdout)
    assert memory.engine_size_mib == 1 and memory.kv_cache_max_tokens > 0


def test_trtllm_bench_refuses_requests_longer_than_the_engine(engine, tmp_path):
    data = dataset(tmp_path / "d.jsonl", isl=64, osl=100)
    proc = engine_throughput(engine, tmp_path, data)
    assert proc.returncode == 1
    assert "Engine supports a max sequence of 128" in proc.stderr


def test_trtllm_bench_rejects_a_dataset_line_without_output_tokens(engine, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"task_id":0,"input_ids":[1,2]}\n')
    proc = engine_throughput(engine, tmp_path, data)
    assert proc.returncode == 1
    assert "output_tokens\n  Field required" in proc.stderr


def test_fake_oom_fails_only_at_its_fraction(engine, tmp_path):
    data = dataset(tmp_path / "d.jsonl", isl=32, osl=16)
    env = {"PATH": "/usr/bin:/bin", "FAKE_TRTLLM_OOM": "32/16@0.95"}
    codes = {}
    for fraction in ("0.95", "0.9"):
        proc = engine_throughput(
            engine, tmp_path, data, "--kv_cache_free_gpu_mem_fraction", fraction, env=env
        )
        codes[fraction] = proc.returncode
        if proc.returncode:
            kind, _ = parse_trtllm.classify_failure(proc.stdout + proc.stderr, 1, False)
            assert kind == "oom"
    assert codes == {"0.95": 1, "0.9": 0}


def test_prepare_dataset_writes_trtllm_bench_jsonl(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 50, "eos_token_id": [3, 7]}))
    argv = [
        "--tokenizer",
        str(tmp_path),
        "--stdout",
        "--random-seed",
        "420",
        "token-norm-dist",
        "--num-requests",
        "5",
        "--input-mean",
        "20",
        "--input-stdev",
        "0",
        "--output-mean",
        "9",
        "--output-stdev",
        "0",
    ]
    first, second = (
        run(FAKES / "prepare_dataset.py", *argv),
        run(FAKES / "prepare_dataset.py", *argv),
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    lines = first.stdout.splitlines()
    assert len(lines) == 5 and lines[0].startswith('{"task_id":0,"input_ids":[')
    for i, line in enumerate(lines):
        request = json.loads(line)
        assert (
            list(request) == ["task_id", "input_ids", "output_tokens"] and request["task_id"] == i
        )
        assert len(request["input_ids"]) == 20 and request["output_tokens"] == 9
        assert not {3, 7} & set(request["input_ids"])
        assert all(0 <= t < 50 for t in request["input_ids"])


def test_fake_nvidia_smi_lists_one_h100():
    proc = run(BIN / "nvidia-smi", "-L")
    assert proc.stdout.startswith("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-")
    xml = run(BIN / "nvidia-smi", "-q", "-x").stdout
    assert "<nvidia_smi_log>" in xml and "H100" in xml

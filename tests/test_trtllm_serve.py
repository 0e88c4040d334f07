"""trtllm-serve for the online scenario (issue 12): the command the kit builds is one TensorRT-LLM
1.0 accepts with the offline sweep's settings, and the fake server (tests/fakes/bin/trtllm-serve)
behaves like the real one for a client that drives it as AIPerf does: OpenAI routes, SSE
streaming with usage, exact output lengths, the protocol's strict request fields, the runtime's
prompt limits, start-up refusal and SIGTERM. The last test drives it with AIPerf itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_fake_h100_e2e import pipeline_env
from test_trtllm_commands import manifest_with

from bench.backends import aiperf
from bench.backends.hf_transformers import demo_model
from bench.backends.server import ServerCommand
from bench.backends.trtllm import commands as trtllm
from bench.backends.trtllm.commands import tool_backend_of
from bench.core import cost
from bench.core.errors import KitError
from bench.core.manifest import load_manifest
from bench.core.run import Run, RunPaths
from bench.schema.record import Identity
from bench.stages import doctor, plan, serve
from bench.stages.sweep import Task, tasks_of
from tests.conftest import needs_aiperf

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "tests" / "fakes"
SERVE = FAKES / "bin" / "trtllm-serve"
sys.path.insert(0, str(FAKES))

import fakelib  # noqa: E402
import trtllm_options as opts  # noqa: E402
from serve_tokenizer import ByteLevelBPE  # noqa: E402

ONLINE = REPO / "manifests" / "llama-3.1-8b-fp8-h100-online.toml"
FAKE_TENSORRT = REPO / "tests" / "data" / "manifests" / "fake-h100-tensorrt.toml"
FAKE_PYTORCH = REPO / "tests" / "data" / "manifests" / "fake-h100-pytorch.toml"
FAKE_ONLINE = REPO / "tests" / "data" / "manifests" / "fake-h100-online.toml"


# ----------------------------------------------------------------------------- the command


def serve_manifests():
    yield "online-pytorch", load_manifest(ONLINE)
    yield "tensorrt", manifest_with(FAKE_TENSORRT)
    yield "tensorrt-chunked", manifest_with(FAKE_TENSORRT, runtime={"enable_chunked_context": True})
    yield "pytorch", manifest_with(FAKE_PYTORCH)


@pytest.mark.parametrize("release", ["1.0", "1.2"])
@pytest.mark.parametrize(
    "name,manifest", list(serve_manifests()), ids=[n for n, _ in serve_manifests()]
)
def test_serve_argv_is_accepted_by_trtllm_serve(name, manifest, release, tmp_path):
    command = trtllm.trtllm_serve_command(
        manifest,
        tmp_path / "hf",
        8123,
        extra_options=tmp_path / "serve.yaml",
        engine_dir=tmp_path / "engine",
        kv_fraction=0.9,
    )
    assert command.argv[0] == "trtllm-serve"
    table = opts.RELEASES[release].tools["trtllm-serve"]
    v = opts.parse(table, opts.serve_argv(command.argv[1:])).values
    e = manifest.engine
    assert v["backend"] == tool_backend_of(manifest)
    assert (v["tp_size"], v["pp_size"]) == (e.tp_size, e.pp_size)
    assert v["kv_cache_free_gpu_memory_fraction"] == 0.9 and v["port"] == 8123
    assert v["extra_llm_api_options"] == str(tmp_path / "serve.yaml")
    assert v["max_batch_size"] == (e.max_batch_size or 2048)
    if e.backend == "trtllm-tensorrt":  # MODEL is the engine; the tokenizer is the fetched model
        assert v["model"] == str(tmp_path / "engine") and v["tokenizer"] == str(tmp_path / "hf")
        assert v["max_seq_len"] is None  # the engine's own, as trtllm-bench requires
    else:
        assert v["model"] == str(tmp_path / "hf") and v["tokenizer"] is None
        assert v["max_seq_len"] == e.max_seq_len
    assert command.base_url == "http://127.0.0.1:8123" and command.health_path == "/health"
    assert command.model_name == v["model"]


@pytest.mark.parametrize(
    "name,manifest", list(serve_manifests()), ids=[n for n, _ in serve_manifests()]
)
def test_serve_yaml_is_the_manifests_llm_arguments_plus_its_chunking(name, manifest):
    options = yaml.safe_load(trtllm.serve_options_yaml(manifest))
    assert opts.llm_api_errors(options, opts.LLM_API_1_0) == []
    assert options.pop("enable_chunked_prefill") is manifest.runtime.enable_chunked_context
    assert options == (manifest.runtime.extra_llm_api_options or {})


def test_1_0_has_no_chunking_flag_so_the_kit_never_passes_one():
    """--enable_chunked_prefill is in a 1.1-line serve.py only; 1.0's table rejects it."""
    with pytest.raises(opts.UsageError, match="No such option: --enable_chunked_prefill"):
        opts.parse(opts.TRTLLM_SERVE, ["/m", "--enable_chunked_prefill"])
    assert opts.parse(opts.TRTLLM_SERVE_1_2, ["/m", "--enable_chunked_prefill"]).values["model"]


def test_the_cpu_runner_has_no_trtllm_serve(tmp_path):
    demo = load_manifest(REPO / "manifests" / "demo.toml")
    with pytest.raises(KitError, match="trtllm-serve serves TensorRT-LLM backends"):
        trtllm.trtllm_serve_command(demo, tmp_path, 8000, extra_options=tmp_path / "x.yaml")


# ----------------------------------------------------------------------------- the fake server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    """An HF-format folder the PyTorch backend serves: the demo model's config and tokenizer."""
    out = tmp_path_factory.mktemp("hf")
    (out / "config.json").write_text(json.dumps(demo_model.config()))
    demo_model.write_tokenizer(demo_model.tokenizer_source(), out)
    return out


@pytest.fixture(scope="module")
def hf_tokenizer(hf_model):
    """transformers' tokenizer, the class AutoTokenizer picks (the one tokenizer_config names)
    imported directly: AutoTokenizer's own import costs about 2 s more."""
    from transformers import PreTrainedTokenizerFast

    config = json.loads((hf_model / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == PreTrainedTokenizerFast.__name__
    return PreTrainedTokenizerFast.from_pretrained(str(hf_model))


@pytest.fixture(scope="module")
def pytorch_port(hf_model, tmp_path_factory):
    """One PyTorch-backend fake for the request tests (its start is most of their time)."""
    tmp_path = tmp_path_factory.mktemp("serve")
    argv = [
        str(hf_model),
        "--backend",
        "pytorch",
        "--extra_llm_api_options",
        str(yaml_file(tmp_path)),
    ]
    with serving(argv, tmp_path) as (port, _):
        yield port


def engine(tmp_path: Path, hf_model: Path, max_seq_len=256, max_num_tokens=64) -> Path:
    pretrained = fakelib.hf_pretrained_config(hf_model, "test")
    build = {"max_seq_len": max_seq_len, "max_num_tokens": max_num_tokens, "max_batch_size": 8}
    build |= {"max_input_len": max_seq_len, "plugin_config": {"use_paged_context_fmha": True}}
    fakelib.write_engine(tmp_path / "engine", pretrained, build, "weights")
    return tmp_path / "engine"


def yaml_file(tmp_path: Path, **options) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(options))
    return path


@contextlib.contextmanager
def serving(argv: list[str], tmp_path: Path, python: str | None = None):
    """The fake on a free port until health answers; SIGTERM on the way out. It runs through its
    shebang (python3 on PATH, as the pipeline runs it) unless python is given."""
    port = free_port()
    cmd = [*([python] if python else []), str(SERVE), *argv, "--port", str(port)]
    with started(cmd, port, tmp_path) as proc:
        yield port, proc


@contextlib.contextmanager
def started(cmd: list[str], port: int, tmp_path: Path, env: dict[str, str] | None = None):
    """cmd in its own session until GET /health on port answers 200; SIGTERM on the way out."""
    out, err = (tmp_path / "serve.out").open("w"), (tmp_path / "serve.err").open("w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.err").read_text()
            with contextlib.suppress(OSError):
                if get(port, "/health")[0] == 200:
                    break
            assert time.monotonic() < deadline, "the fake never became healthy"
            time.sleep(0.01)  # a refused connect costs little; the fake is up in ~0.3 s
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.close()
        err.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def post(port: int, path: str, body: dict) -> tuple[int, dict | list[dict]]:
    """JSON, or for a 200 SSE stream the list of its events (the last one is the string [DONE])."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    response = conn.getresponse()
    if response.getheader("content-type", "").startswith("text/event-stream"):
        events = []
        for line in response.read().decode().split("\n\n"):
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
        return response.status, events
    return response.status, json.loads(response.read())


PROMPT = "The quick brown fox jumps over the lazy dog, then naps. " * 3


def test_streaming_completion_has_exact_length_and_true_usage(pytorch_port, hf_model, hf_tokenizer):
    port = pytorch_port
    assert get(port, "/health") == (200, b"")
    status, models = get(port, "/v1/models")
    assert status == 200 and json.loads(models)["data"][0]["id"] == str(hf_model)
    body = {"model": str(hf_model), "prompt": PROMPT, "max_tokens": 12, "ignore_eos": True}
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    status, events = post(port, "/v1/completions", body)
    assert status == 200 and events[-1] == "[DONE]"
    *tokens, last_usage, _ = events
    assert len(tokens) == 12 and all(e["object"] == "text_completion" for e in tokens)
    assert [e["choices"][0]["finish_reason"] for e in tokens] == [None] * 11 + ["length"]
    text = "".join(e["choices"][0]["text"] for e in tokens)
    assert len(hf_tokenizer.encode(text, add_special_tokens=False)) == 12  # a client's own count
    usage = last_usage["usage"]
    assert last_usage["choices"] == []
    assert usage["prompt_tokens"] == len(hf_tokenizer.encode(PROMPT))  # BOS included
    assert usage["completion_tokens"] == 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + 12


def test_output_length_rules_and_strict_request_fields(pytorch_port):
    port, base = pytorch_port, {"model": "m", "prompt": "hello", "max_tokens": 10}
    short = post(port, "/v1/completions", base)[1]
    exact = post(port, "/v1/completions", base | {"min_tokens": 10})[1]
    unknown = post(port, "/v1/completions", base | {"max_new_tokens": 10})
    later = post(port, "/v1/completions", base | {"thinking_token_budget": 5})
    options = post(port, "/v1/completions", base | {"stream_options": {"include_usage": True}})
    no_usage = post(port, "/v1/completions", base | {"stream": True, "ignore_eos": True})[1]
    missing = post(port, "/v1/completions", {"model": "m"})
    # without ignore_eos the "model" stops early: a client that forgets it measures short outputs
    assert short["usage"]["completion_tokens"] == 5
    assert short["choices"][0]["finish_reason"] == "stop"
    assert exact["usage"]["completion_tokens"] == 10
    assert unknown[0] == 400 and unknown[1]["type"] == "BadRequestError"
    assert "max_new_tokens: Extra inputs are not permitted" in unknown[1]["message"]
    assert later[0] == 400  # a field of a later protocol
    assert options[0] == 400 and "only be defined when stream is true" in options[1]["message"]
    assert len(no_usage) == 11 and all(e["usage"] is None for e in no_usage[:-1])  # not asked
    assert missing[0] == 400 and "body.prompt: Field required" in missing[1]["message"]
    assert get(port, "/v1/embeddings")[0] == 404


@pytest.mark.slow  # transformers loads in the server: ~20 s on the shared machine
def test_chat_without_a_chat_template_is_refused_like_transformers(tmp_path, hf_model):
    """Chat renders the tokenizer's template through transformers (run with the kit's python)."""
    argv = [str(hf_model), "--backend", "pytorch"]
    argv += ["--extra_llm_api_options", str(yaml_file(tmp_path))]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with serving(argv, tmp_path, python=sys.executable) as (port, _):
        status, reply = post(port, "/v1/chat/completions", body)
    assert status == 400 and "chat_template is not set" in reply["message"]


@pytest.mark.parametrize("chunked", [False, True])
def test_engine_prompt_limit_is_the_tensorrt_runtimes(tmp_path, hf_model, hf_tokenizer, chunked):
    """max_seq_len 256, max_num_tokens 64: without chunking a prompt may have 64 tokens (the
    fake trtllm-bench's rule), with it 255; prompt + output never beyond 256."""
    argv = [str(engine(tmp_path, hf_model)), "--backend", "tensorrt", "--tokenizer", str(hf_model)]
    argv += ["--extra_llm_api_options", str(yaml_file(tmp_path, enable_chunked_prefill=chunked))]
    prompt = " ".join(["word"] * 99)  # 100 tokens with BOS
    assert len(hf_tokenizer.encode(prompt)) == 100
    with serving(argv, tmp_path) as (port, _):
        fits = post(port, "/v1/completions", {"model": "m", "prompt": prompt, "max_tokens": 8})
        too_long = post(
            port,
            "/v1/completions",
            {"model": "m", "prompt": prompt, "max_tokens": 157, "ignore_eos": True},
        )
    if chunked:
        assert fits[0] == 200
    else:
        assert fits[0] == 400
        assert "Prompt length (100) exceeds maximum input length (64)" in fits[1]["message"]
    assert too_long[0] == 400 and "should not exceed max_seq_len (256)" in too_long[1]["message"]


def test_prompt_counts_are_transformers(pytorch_port, hf_model, hf_tokenizer):
    """The fake counts prompts with its own standard-library byte-level BPE; the counts are
    transformers'."""
    texts = [
        PROMPT,
        "  It's 12345 tokens,\n\n  don't   stop_me now!! <|begin_of_text|> x",
        "café naïve 日本語 テスト",
        "\t\tdef f():\n    return a_b + 1\n",
    ]
    expected = [len(hf_tokenizer.encode(t)) for t in texts]
    bpe = ByteLevelBPE(json.loads((hf_model / "tokenizer.json").read_text()))
    assert [bpe.count(t) for t in texts] == expected
    body = {"model": "m", "max_tokens": 1}
    replies = [post(pytorch_port, "/v1/completions", body | {"prompt": t})[1] for t in texts]
    assert [r["usage"]["prompt_tokens"] for r in replies] == expected


def test_sigterm_stops_it_with_uvicorns_lines(tmp_path, hf_model):
    argv = [
        str(hf_model),
        "--backend",
        "pytorch",
        "--extra_llm_api_options",
        str(yaml_file(tmp_path)),
    ]
    with serving(argv, tmp_path) as (_, proc):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    err = (tmp_path / "serve.err").read_text()
    for line in ("Started server process", "Application startup complete.", "Uvicorn running on"):
        assert line in err
    assert err.index("Uvicorn running on") < err.index("Shutting down")
    assert "Finished server process" in err


def test_the_kits_server_command_starts_the_fake_and_serves_a_point(tmp_path, hf_model):
    """trtllm_serve_command for the fake online manifest, found on PATH as the runner finds it,
    with the YAML the plan writes; one request shaped as AIPerf sends it."""
    m = load_manifest(FAKE_ONLINE)
    e = m.engine
    eng = engine(tmp_path, hf_model, max_seq_len=e.max_seq_len, max_num_tokens=e.max_num_tokens)
    options = tmp_path / "serve_llm_api_options.yaml"
    options.write_text(trtllm.serve_options_yaml(m))
    port = free_port()
    command = trtllm.trtllm_serve_command(m, hf_model, port, extra_options=options, engine_dir=eng)
    env = os.environ | {"PATH": f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}"} | command.env
    body = {"model": command.model_name, "prompt": PROMPT, "max_tokens": 32, "min_tokens": 32}
    body |= {"ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    with started(command.argv, port, tmp_path, env) as proc:
        status, events = post(port, "/v1/completions", body)
        os.killpg(proc.pid, signal.SIGTERM)  # what the runner does: its whole session
        assert proc.wait(timeout=10) == 0
    assert status == 200 and events[-2]["usage"]["completion_tokens"] == 32
    err = (tmp_path / "serve.out").read_text() + (tmp_path / "serve.err").read_text()
    assert "maxInputLen: 255 = maxSequenceLen - 1 since chunked context is enabled" in err


def run_fake(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SERVE), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["/m", "--bogus", "1"], "Error: No such option: --bogus"),
        (
            ["/m", "--backend", "trtllm"],
            "Error: Invalid value for '--backend': 'trtllm' is not one of",
        ),
        (["/m", "--tp", "1"], "Error: No such option: --tp"),  # trtllm-bench's spelling
        (
            ["/m", "--kv_cache_free_gpu_mem_fraction", "0.9"],
            "No such option: --kv_cache_free_gpu_mem_fraction",
        ),
        (["--port", "8000"], "Error: Missing argument 'MODEL'."),
    ],
    ids=["unknown", "bad-choice", "bench-tp", "bench-kv", "no-model"],
)
def test_the_fake_rejects_what_1_0_rejects(tmp_path, argv, message):
    proc = run_fake(tmp_path, *argv)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Usage: trtllm-serve serve [OPTIONS] MODEL" in proc.stderr


@pytest.mark.parametrize("backend", ["tensorrt", "pytorch"])
def test_the_fake_refuses_to_start_without_its_model(tmp_path, hf_model, backend):
    model = tmp_path / "absent"
    argv = [
        str(model),
        "--backend",
        backend,
        "--tokenizer",
        str(hf_model),
        "--port",
        str(free_port()),
    ]
    proc = run_fake(tmp_path, *argv, "--extra_llm_api_options", str(yaml_file(tmp_path)))
    assert proc.returncode == 1 and "No such file or directory" in proc.stderr
    assert "Uvicorn running" not in proc.stderr


def test_a_wrong_tp_or_a_bad_yaml_stops_it_before_it_listens(tmp_path, hf_model):
    eng = str(engine(tmp_path, hf_model))
    good = ["--backend", "tensorrt", "--tokenizer", str(hf_model), "--port", str(free_port())]
    proc = run_fake(
        tmp_path, eng, *good, "--tp_size", "2", "--extra_llm_api_options", str(yaml_file(tmp_path))
    )
    assert proc.returncode == 1 and "built for tp_size=1" in proc.stderr
    bad = yaml_file(tmp_path, use_cuda_graph=True)  # 0.21's key, gone in 1.0
    proc = run_fake(tmp_path, eng, *good, "--extra_llm_api_options", str(bad))
    assert (
        proc.returncode == 1 and "use_cuda_graph\n  Extra inputs are not permitted" in proc.stderr
    )


# ----------------------------------------------------------------------------- plan and doctor


def plan_run(manifest_path: Path, tmp_path: Path) -> Run:
    return Run(RunPaths.for_run("online"), load_manifest(manifest_path), manifest_path)


def test_plan_lists_the_server_every_client_and_the_gpu_time(tmp_path, run_roots):
    run = plan_run(ONLINE, tmp_path)
    lines = plan.plan_lines(run, None)
    (server,) = [line for line in lines if line.startswith("trtllm-serve ")]
    assert "--kv_cache_free_gpu_memory_fraction 0.95" in server and "--backend pytorch" in server
    assert "enable_chunked_prefill: false" in lines  # the YAML heredoc
    clients = [line for line in lines if line.startswith("aiperf profile ")]
    m = run.manifest
    assert len(clients) == len(m.sweep.points) == 8
    # the client AIPerf runs: streaming, exact lengths forced by ignore_eos and min_tokens
    assert all("--streaming" in c and "ignore_eos:true" in c for c in clients)
    assert not any(line.startswith("trtllm-bench") for line in lines)
    estimator = cost.Estimator(m)
    expected = estimator.c.startup_s + sum(
        cost.online_seconds(
            estimator,
            p.model_copy(update={"requests": p.requests + m.runtime.warmup}),
            p.concurrency,
        )
        for p in m.sweep.points
    )
    assert lines[-1].startswith(f"# estimated sweep time: {cost.hms(expected)} for 8 points (GPU")


def test_sweep_concurrency_expands_points_without_their_own(tmp_path, run_roots):
    text = ONLINE.read_text().replace(
        'scenario = "online"', 'scenario = "online"\nconcurrency = [2, 4]'
    )
    text = text.replace("requests = 64, concurrency = 1 }", "requests = 64 }")
    path = tmp_path / "online.toml"
    path.write_text(text)
    names = [t.name for t in tasks_of(plan_run(path, tmp_path))]
    assert names[:3] == ["isl128_osl128_c2", "isl128_osl128_c4", "isl128_osl128_c8"]
    assert len(names) == 10


def test_online_time_is_latency_bound_at_low_concurrency():
    m = load_manifest(ONLINE)
    estimator = cost.Estimator(m)
    point = m.sweep.points[4]  # 1000/1000, 64 requests, concurrency 1
    one = cost.online_seconds(estimator, point, 1)
    assert one == pytest.approx(64 * (estimator.scale * 1000 * 2.75e-5 + 1000 * 0.005))
    busy = m.sweep.points[7]  # 1000/1000, 1280 requests: 10 waves of 128 are throughput-bound
    bound = estimator.seconds(busy) - estimator.c.startup_s
    assert cost.online_seconds(estimator, busy, 128) == pytest.approx(bound)
    assert bound > 10 * (estimator.scale * 1000 * 2.75e-5 + 1000 * 0.005)


def test_online_shards_are_balanced_by_the_online_estimate(tmp_path, run_roots):
    """1000/1000 at concurrency 1 is 64 requests one after another: the online model's longest
    point by far (the offline model, throughput-bound, ranks it among the cheapest)."""
    run = plan_run(ONLINE, tmp_path)
    estimator = cost.Estimator(run.manifest)
    tasks = tasks_of(run)
    serial = next(t for t in tasks if t.name == "isl1000_osl1000_c1")
    assert estimator.sweep_seconds(serial.point) > sum(
        estimator.sweep_seconds(t.point) for t in tasks if t is not serial
    )
    assert cost.shard_tasks(tasks, 1, 2, estimator) == [serial]
    lines = plan.shard_lines(run, 2)
    once = estimator.c.startup_s  # each shard starts its own server
    assert lines[0] == (
        f"# shard 1/2: 1 points, est. {cost.hms(once + estimator.sweep_seconds(serial.point))}"
    )


def test_the_session_writes_the_server_files_the_plan_prints(tmp_path, run_roots):
    """The YAML trtllm-serve reads comes from the backend's Serving: the plan prints it as a
    heredoc, the server's --extra_llm_api_options names it, the session writes and records it."""
    run = plan_run(ONLINE, tmp_path)
    lines = plan.plan_lines(run, None)
    recorded: list[Path] = []
    with serve.session(run, None, sys.executable, recorded.extend):
        pass  # no point measured: no server started
    ((path, text),) = serve.serving_for(run, prepare=False).config_files.items()
    assert path.read_text() == text and recorded == [path]
    start = lines.index(f"cat > {path} <<'EOF'")
    assert "\n".join(lines[start + 1 : lines.index("EOF", start)]) + "\n" == text
    (server,) = [line for line in lines if line.startswith("trtllm-serve ")]
    assert f"--extra_llm_api_options {path} " in server + " "


def test_doctor_checks_trtllm_serve_for_an_online_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTLLM_PREPARE_DATASET", str(FAKES / "prepare_dataset.py"))
    m = load_manifest(ONLINE)
    usages = {u.tool: u for u in doctor.usages(m)}
    assert "trtllm-serve" in usages and "trtllm-bench throughput" not in usages
    assert usages["trtllm-serve"].help_argv == ("trtllm-serve", "serve", "--help")

    @functools.cache  # the second diagnosis asks again: the fakes' help does not change
    def help_text(argv: tuple[str, ...]) -> str:
        tool = FAKES / "bin" / argv[0] if argv[0].startswith("trtllm") else Path(argv[1])
        rest = argv[1:] if argv[0].startswith("trtllm") else argv[2:]
        out = subprocess.run([sys.executable, str(tool), *rest], capture_output=True, text=True)
        return out.stdout

    def help_of(argv, edit=("", "")):
        return help_text(tuple(argv)).replace(*edit)

    versions = {"tensorrt_llm": "1.0.0", "nvidia-modelopt": "0.33.0", "transformers": "4.53.1"}
    kwargs = {"versions": lambda *names: versions, "missing": lambda raw: []}
    kwargs["llm_api_fields"] = lambda backend: (opts.LLM_API_1_0, "")
    lines, problems = doctor.diagnose(m, doctor.pins.load_pins(), help_of=help_of, **kwargs)
    assert problems == [] and any(line.startswith("ok   trtllm-serve:") for line in lines)
    renamed = ("--kv_cache_free_gpu_memory_fraction", "--free_gpu_memory_fraction")
    _, problems = doctor.diagnose(
        m, doctor.pins.load_pins(), help_of=lambda a: help_of(a, renamed), **kwargs
    )
    assert problems and "trtllm-serve: option --kv_cache_free_gpu_memory_fraction" in problems[0]


def test_make_plan_and_doctor_on_the_fake_online_manifest(tmp_path):
    env = pipeline_env(tmp_path, fakes=True, inject={})
    manifest = str(FAKE_ONLINE.relative_to(REPO))

    def stage(name: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", f"bench.stages.{name}", "--manifest", manifest]
        return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    checked = stage("doctor")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok   trtllm-serve:" in checked.stdout and "ok   trtllm-build:" in checked.stdout
    planned = stage("plan")
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    (serve,) = [line for line in lines if line.startswith("trtllm-serve ")]
    engine_dir = str(tmp_path / "work" / "fake-h100-online" / "engine")
    assert serve.startswith(f"trtllm-serve {engine_dir} ") and " --tokenizer " in serve
    clients = [line.rsplit("# ", 1)[1] for line in lines if line.startswith("aiperf profile ")]
    names = ["isl32_osl32_c1", "isl64_osl32_c2", "isl64_osl32_c4", "isl128_osl64_c8"]
    assert [c.split(",")[0] for c in clients] == names


# ----------------------------------------------------------------------------- a real client


@pytest.mark.slow
def test_aiperf_drives_the_fake_as_the_plan_says(tmp_path, hf_model, run_roots):
    """AIPerf 0.13 with the client argv the plan prints (bench.stages.serve.point_argv: the
    backend's route and fixed-length fields) against the fake: every request completes with the
    point's exact ISL/OSL, the server sees exactly the prompt's tokens, and the streaming metrics
    are there."""
    aiperf_bin = needs_aiperf()
    run = plan_run(ONLINE, tmp_path)
    planned = dataclasses.replace(serve.serving_for(run, prepare=False), tokenizer=hf_model)
    assert planned.endpoint == "completions"  # the tiny model has no chat template (HTTP 400)
    point = run.manifest.sweep.points[0].model_copy(
        update={"isl": 64, "osl": 16, "requests": 12, "concurrency": 4}
    )
    argv = [
        str(hf_model),
        "--backend",
        "pytorch",
        "--extra_llm_api_options",
        str(yaml_file(tmp_path)),
    ]
    with serving(argv, tmp_path) as (port, _):
        command = ServerCommand([], base_url=f"http://127.0.0.1:{port}", model_name=str(hf_model))
        client = serve.point_argv(
            run, Task(point, 0), command, planned, str(aiperf_bin), tmp_path / "aiperf"
        )
        proc = subprocess.run(client, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    export = json.loads((tmp_path / "aiperf" / "profile_export_aiperf.json").read_text())
    assert export["request_count"]["avg"] == 12
    assert export["output_sequence_length"]["min"] == export["output_sequence_length"]["max"] == 16
    # AIPerf sends ISL - 1 tokens of text and the server adds BOS: the server sees the ISL
    assert export["input_sequence_length"]["min"] == export["input_sequence_length"]["max"] == 63
    assert export["usage_prompt_tokens"]["min"] == export["usage_prompt_tokens"]["max"] == 64
    assert export["time_to_first_token"]["count"] == 12 and export["inter_token_latency"]["avg"] > 0
    assert not export.get("error_summary")
    # the record takes the server's count: the point is valid at its exact ISL
    result, rows = aiperf.parse_exports(
        tmp_path / "aiperf",
        isl=64,
        osl=16,
        requests=12,
        concurrency=4,
        repeat=0,
        identity=Identity(),
        gpus=1,
    )
    assert result.status == "ok" and result.metrics.avg_input_len == 64
    assert {(r.input_tokens, r.output_tokens) for r in rows} == {(64, 16)} and len(rows) == 12

"""The hf-transformers runner: trtllm-bench's `throughput` interface over Hugging Face transformers.

Reads:  a trtllm-bench JSONL dataset and the quantized FP8 checkpoint (unified HF format)
Writes: --report_json in trtllm-bench's section and key names; a trtllm-bench-style console report
Usage:  python -m bench.backends.hf_transformers.runner --model NAME --model_path CKPT throughput \
            --backend hf-transformers --dataset D.jsonl --report_json R.json \
            --max_batch_size 8 --device cpu

It exists so the demo exercises the same sweep, parsers, report and verify code as the H100 path.
FP8 weights are dequantized to float32 (transformers cannot run FP8 on a CPU), so the numbers
measure this machine, not FP8 kernels; `engine.backend` says "hf-transformers" to keep that honest.
Requests are grouped by (input, output) length and run in static batches, greedy, with EOS
suppressed so each request produces exactly `output_tokens` tokens.

Concurrency N (`--concurrency`, capped by --max_batch_size as trtllm-bench's batch is): N
requests generated together as one static batch, the next N when they finish. With the kit's
fixed ISL/OSL points every request of a batch ends on the same decode step, so this is "N in
flight, refilled as requests finish" except for the last, partial batch; requests are not
admitted mid-batch (no continuous batching), and one batch shares one clock.
`--streaming`: a streamer stamps every decode step (time.perf_counter_ns, as trtllm-bench stamps
requests), so TTFT, TPOT, inter-token gaps and per-user tok/s are measured, not derived; the
report then has trtllm-bench's streaming_metrics, plus `itl_percentiles` (the pooled gaps between
tokens, which trtllm-bench does not report). `--request_json` writes trtllm-bench's per-request
records (ns), from which the sweep writes requests.csv and the measured window.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from itertools import groupby
from pathlib import Path

from bench import __version__
from bench.core.errors import KitError, run_main
from bench.core.fileio import atomic_write_json

BACKEND = "hf-transformers"
MODULE = "bench.backends.hf_transformers.runner"
# The console report's first block title (bench.backends.trtllm.parse.CONSOLE_SECTIONS knows it).
RUNNER_TITLE = "HF TRANSFORMERS RUNNER"
# TEST KNOB, not a setting: the runner's clock runs this many times slow (2.0: every timed duration
# doubles, throughput halves), a simulated slower machine whose work and noise are real. Scaling the
# clock rather than sleeping keeps the slowed run in step with runs measured beside it, so both meet
# the same load. Honoured only under pytest (PYTEST_CURRENT_TEST set), announced on the console
# log, never read on the H100 path. The tests of `make compare` use it for a known regression.
TEST_SLOWDOWN_ENV = "TRTLLM_REPRO_TEST_SLOWDOWN"


def slowdown_factor(env: Mapping[str, str]) -> float:
    """The test knob's factor (1.0 outside pytest); a bad value is one clear error."""
    text = env.get(TEST_SLOWDOWN_ENV)
    if not text or "PYTEST_CURRENT_TEST" not in env:
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not 1.0 <= factor <= 100.0:
        raise KitError(
            f"{TEST_SLOWDOWN_ENV}={text!r} is not a factor from 1 to 100",
            fix=f"unset {TEST_SLOWDOWN_ENV}, or set it to e.g. 2.0 in a test",
        )
    return factor


def percentiles(values: list[float]) -> dict[str, float]:
    """trtllm-bench's percentile record: index-based on the sorted values."""
    s = sorted(values)
    pick = {f"p{q}": s[min(len(s) - 1, int(len(s) * q / 100))] for q in (50, 90, 95, 99)}
    return {**pick, "minimum": s[0], "maximum": s[-1], "average": sum(s) / len(s)}


def percentile_dict(values: list[float]) -> dict[str, float] | None:
    return percentiles(values) if values else None


@dataclass(frozen=True)
class Timed:
    """One measured request: perf_counter_ns stamps (first_token -1 when not streamed) and the
    times of each of its tokens after the first."""

    index: int
    input_tokens: int
    output_tokens: int
    start_ns: int
    first_token_ns: int
    end_ns: int
    token_ns: tuple[int, ...] = ()

    @property
    def latency_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token_ns < 0 else (self.first_token_ns - self.start_ns) / 1e6

    @property
    def tpot_ms(self) -> float | None:
        if self.ttft_ms is None or self.output_tokens < 2:
            return None
        return (self.latency_ms - self.ttft_ms) / (self.output_tokens - 1)


def request_record(t: Timed) -> dict:
    """trtllm-bench's --request_json entry: RequestRecord fields, raw ns, tokens per ns."""
    e2e = t.end_ns - t.start_ns
    ttft = 0 if t.first_token_ns < 0 else t.first_token_ns - t.start_ns
    gen = e2e - ttft
    return {
        "id": t.index,
        "num_input_tokens": t.input_tokens,
        "error_tokens": 0,
        "start_timestamp": t.start_ns,
        "first_token_timestamp": t.first_token_ns,
        "end_timestamp": t.end_ns,
        "decode_iteration": t.output_tokens - 1,
        "num_total_output_tokens": t.output_tokens,
        "num_generated_tokens": t.output_tokens - 1,
        "generation_time": gen,
        "time_to_first_token": float(ttft),
        "intertoken_latency": gen / (t.output_tokens - 1)
        if t.first_token_ns >= 0 and t.output_tokens > 1
        else 0.0,
        "end_to_end_latency": e2e,
        "total_token_throughput": (t.input_tokens + t.output_tokens) / e2e if e2e else 0.0,
        "generation_token_throughput": (t.output_tokens - 1) / gen if gen > 0 else 0.0,
        "output_token_throughput": t.output_tokens / e2e if e2e else 0.0,
        "output_tokens": t.output_tokens,
    }


def streaming_metrics(timed: list[Timed]) -> dict:
    """trtllm-bench's streaming_metrics (ms; gen_tps per user excludes the first token) and the
    kit's itl_percentiles: the gaps between consecutive tokens, pooled over requests."""
    ttft = [t.ttft_ms for t in timed if t.ttft_ms is not None]
    tpot = [t.tpot_ms for t in timed if t.tpot_ms is not None]
    gaps = [(b - a) / 1e6 for t in timed for a, b in itertools.pairwise(t.token_ns)]
    return {
        "token_output_speed_tok_s": 1000.0 / statistics.fmean(tpot) if tpot else None,
        "avg_ttft_ms": statistics.fmean(ttft) if ttft else None,
        "avg_tpot_ms": statistics.fmean(tpot) if tpot else None,
        "tpot_percentiles": percentile_dict(tpot),
        "ttft_percentiles": percentile_dict(ttft),
        "gen_tps_percentiles": percentile_dict([1000.0 / x for x in tpot if x > 0]),
        "itl_percentiles": percentiles(gaps) | {"count": len(gaps)} if gaps else None,
    }


def batches(requests: list[dict], max_batch: int) -> list[list[dict]]:
    """Static batches of requests that share input and output length (no padding needed)."""

    def shape(r: dict) -> tuple[int, int]:
        return (len(r["input_ids"]), int(r["output_tokens"]))

    out = []
    for _, group in groupby(sorted(requests, key=shape), key=shape):
        items = list(group)
        out += [items[i : i + max_batch] for i in range(0, len(items), max_batch)]
    return out


def build_report(
    *,
    model: str,
    model_path: str,
    dataset: str,
    requests: list[dict],
    latencies_ms: list[float],
    output_lens: list[int],
    total_s: float,
    max_batch: int,
    device: str,
    dtype: str,
    timed: list[Timed] | None = None,
) -> dict:
    n = len(requests)
    isl = [len(r["input_ids"]) for r in requests]
    out_tokens, in_tokens = sum(output_lens), sum(isl)
    return {
        "engine": {
            "model": model,
            "model_path": model_path,
            "engine_dir": "None",
            "version": f"trtllm-repro-{__version__}",
            "backend": BACKEND,
            "dtype": dtype,
            "kv_cache_dtype": dtype,
            "quantization": "FP8",
            "runner": f"transformers {version('transformers')}, torch {version('torch')}, {device}",
        },
        "world_info": {
            "tp_size": 1,
            "pp_size": 1,
            "ep_size": 1,
            "world_size": 1,
            "max_batch_size": max_batch,
            "max_num_tokens": None,
            "scheduling_policy": f"static batches of up to {max_batch}",
            "kv_cache_percentage": None,
            "issue_rate": None,
        },
        "request_info": {
            "num_requests": n,
            "avg_num_concurrent_requests": sum(latencies_ms) / (total_s * 1000.0),
            "avg_input_length": in_tokens / n,
            "avg_output_length": out_tokens / n,
        },
        "performance": {
            "total_latency_ms": total_s * 1000.0,
            "avg_request_latency_ms": sum(latencies_ms) / n,
            "request_throughput_req_s": n / total_s,
            "system_output_throughput_tok_s": out_tokens / total_s,
            "system_total_throughput_tok_s": (out_tokens + in_tokens) / total_s,
            "output_throughput_per_user_tok_s": statistics.fmean(
                o / (lat / 1000.0) for o, lat in zip(output_lens, latencies_ms, strict=True)
            ),
            "output_throughput_per_gpu_tok_s": out_tokens / total_s,
            "request_latency_percentiles_ms": percentiles(latencies_ms),
        },
        **({"streaming_metrics": streaming_metrics(timed)} if timed else {}),
        "dataset": {
            "dataset_path": dataset,
            "num_requests": n,
            "isl_stats": percentiles([float(x) for x in isl]),
            "osl_stats": percentiles([float(r["output_tokens"]) for r in requests]),
            "max_isl": max(isl),
            "max_osl": max(int(r["output_tokens"]) for r in requests),
            "avg_isl": round(in_tokens / n),
            "avg_osl": round(sum(int(r["output_tokens"]) for r in requests) / n),
        },
    }


def console_report(report: dict) -> str:
    """trtllm-bench 1.0's labels, so the console parser reads both; the first block says what
    ran (the transformers runner, its versions and device), not TensorRT-LLM."""
    e, w, q, p = (report[k] for k in ("engine", "world_info", "request_info", "performance"))
    bar = "=" * 59
    return "\n".join(
        [
            bar,
            f"= {RUNNER_TITLE}",
            bar,
            f"Model:\t\t\t{e['model']}",
            f"Model Path:\t\t{e['model_path']}",
            f"Backend:\t\t{e['backend']}",
            f"Runner:\t\t\t{e['runner']} ({e['version']}; not TensorRT-LLM)",
            f"Dtype:\t\t\t{e['dtype']}",
            f"KV Cache Dtype:\t\t{e['kv_cache_dtype']}",
            f"Quantization:\t\t{e['quantization']}",
            "",
            bar,
            "= REQUEST DETAILS",
            bar,
            f"Number of requests:\t\t{q['num_requests']}",
            f"Average Input Length (tokens):\t{q['avg_input_length']:.4f}",
            f"Average Output Length (tokens):\t{q['avg_output_length']:.4f}",
            "",
            bar,
            "= WORLD + RUNTIME INFORMATION",
            bar,
            f"TP Size:\t\t{w['tp_size']}",
            f"PP Size:\t\t{w['pp_size']}",
            f"Max Runtime Batch Size:\t{w['max_batch_size']}",
            "",
            bar,
            "= PERFORMANCE OVERVIEW",
            bar,
            f"Request Throughput (req/sec):\t\t\t{p['request_throughput_req_s']:.4f}",
            f"Total Output Throughput (tokens/sec):\t\t{p['system_output_throughput_tok_s']:.4f}",
            f"Total Token Throughput (tokens/sec):\t\t{p['system_total_throughput_tok_s']:.4f}",
            f"Total Latency (ms):\t\t\t\t{p['total_latency_ms']:.4f}",
            f"Average request latency (ms):\t\t\t{p['avg_request_latency_ms']:.4f}",
            f"Per GPU Output Throughput (tps/gpu):\t\t{p['output_throughput_per_gpu_tok_s']:.4f}",
            *streaming_lines(report.get("streaming_metrics")),
            bar,
            "",
        ]
    )


def streaming_lines(s: dict | None) -> list[str]:
    """trtllm-bench's streaming lines of the PERFORMANCE OVERVIEW, with its labels."""
    if not s or s.get("avg_ttft_ms") is None:
        return []
    lines = [
        f"Average time-to-first-token [TTFT] (ms):\t{s['avg_ttft_ms']:.4f}",
        f"Average time-per-output-token [TPOT] (ms):\t{s['avg_tpot_ms']:.4f}"
        if s.get("avg_tpot_ms") is not None
        else "Average time-per-output-token [TPOT] (ms):\tNone",
    ]
    for tag, key in (("TTFT", "ttft"), ("TPOT", "tpot")):
        stats = s.get(f"{key}_percentiles")
        if stats:
            lines += [f"[{tag}] {k.upper():<7}: {stats[k]:.4f}" for k in ("p50", "p99")]
    return lines


def slowed(timed: list[Timed], factor: float) -> list[Timed]:
    """The test knob: every stamp moved away from the first start by `factor`."""
    if factor == 1.0 or not timed:
        return timed
    origin = min(t.start_ns for t in timed)

    def scale(ns: int) -> int:
        return ns if ns < 0 else origin + round((ns - origin) * factor)

    return [
        dataclasses.replace(
            t,
            start_ns=scale(t.start_ns),
            first_token_ns=scale(t.first_token_ns),
            end_ns=scale(t.end_ns),
            token_ns=tuple(scale(x) for x in t.token_ns),
        )
        for t in timed
    ]


def step_stamper() -> type:
    """A transformers streamer class that stamps each decode step (perf_counter_ns). generate()
    calls put() once with the prompt, then once per step with that step's tokens of the whole
    batch (after moving them to the CPU, so a CUDA step is finished when it is stamped)."""
    from transformers.generation.streamers import BaseStreamer

    class StepStamper(BaseStreamer):
        def __init__(self) -> None:
            self.prompt_seen = False
            self.steps: list[int] = []

        def put(self, value: object) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            self.steps.append(time.perf_counter_ns())

        def end(self) -> None:
            pass

    return StepStamper


# ----------------------------------------------------------------------------- I/O edge


def load_requests(path: Path, num_requests: int) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        requests = [json.loads(line) for line in f if line.strip()]
    if not requests:
        raise KitError("dataset has no requests", path=str(path))
    return requests[:num_requests] if num_requests > 0 else requests


def preload() -> None:
    """What run_throughput imports, for bench.core.forkserver to import once per sweep."""
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import tqdm  # noqa: F401
    from transformers import LlamaConfig, LlamaForCausalLM  # noqa: F401
    from transformers.generation.streamers import BaseStreamer  # noqa: F401

    import bench.stages.quantize  # noqa: F401


def run_throughput(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from bench.stages.quantize import load_dequantized

    torch.manual_seed(0)
    requests = load_requests(args.dataset, args.num_requests)
    max_batch = (
        min(args.max_batch_size, args.concurrency) if args.concurrency > 0 else args.max_batch_size
    )
    model = load_dequantized(args.model_path, device=args.device)
    slowdown = slowdown_factor(os.environ)
    if slowdown != 1.0:
        print(f"TEST KNOB {TEST_SLOWDOWN_ENV}={slowdown:g}: the clock runs slow", file=sys.stderr)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")

    streamer_cls = step_stamper()

    def generate(batch: list[dict], start_index: int) -> list[Timed]:
        ids = torch.tensor([r["input_ids"] for r in batch], device=args.device)
        n_new = int(batch[0]["output_tokens"])
        streamer = streamer_cls() if args.streaming else None
        start = time.perf_counter_ns()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                pad_token_id=0,
                streamer=streamer,
            )
        if args.device == "cuda":
            torch.cuda.synchronize()
        end = time.perf_counter_ns()
        steps = tuple(streamer.steps) if streamer else ()
        return [
            Timed(
                index=start_index + k,
                input_tokens=ids.shape[1],
                output_tokens=out.shape[1] - ids.shape[1],
                start_ns=start,
                first_token_ns=steps[0] if steps else -1,
                end_ns=end,
                token_ns=steps,
            )
            for k in range(len(batch))
        ]

    for batch in batches(requests[: args.warmup], max_batch):
        generate(batch, 0)
    timed: list[Timed] = []
    bar = tqdm(total=len(requests), desc="requests", unit="req", file=sys.stderr, mininterval=1.0)
    for batch in batches(requests, max_batch):
        timed += generate(batch, len(timed))
        bar.update(len(batch))
    bar.close()
    timed = slowed(timed, slowdown)
    first, last = min(t.start_ns for t in timed), max(t.end_ns for t in timed)
    total_s = (last - first) / 1e9
    report = build_report(
        model=args.model,
        model_path=str(args.model_path),
        dataset=str(args.dataset),
        requests=requests,
        latencies_ms=[t.latency_ms for t in timed],
        output_lens=[t.output_tokens for t in timed],
        total_s=total_s,
        max_batch=max_batch,
        device=args.device,
        dtype=dtype,
        timed=timed if args.streaming else None,
    )
    if args.request_json is not None:
        atomic_write_json(args.request_json, [request_record(t) for t in timed])
    atomic_write_json(args.report_json, report)
    print(console_report(report), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench.core import forkserver

    argv = sys.argv[1:] if argv is None else argv
    if (code := forkserver.delegate(MODULE, argv)) is not None:
        return code
    parser = argparse.ArgumentParser(
        prog="bench.backends.hf_transformers.runner", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", required=True, help="model name, as recorded in the report")
    parser.add_argument("--model_path", type=Path, required=True, help="FP8 checkpoint (HF format)")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--backend", choices=[BACKEND], required=True)
    t.add_argument("--dataset", type=Path, required=True)
    t.add_argument("--report_json", type=Path, required=True)
    t.add_argument("--num_requests", type=int, default=0)
    t.add_argument(
        "--eos_id", type=int, choices=[-1], default=-1, help="-1 only: EOS is always ignored"
    )
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--max_batch_size", type=int, default=8)
    t.add_argument("--concurrency", type=int, default=-1)
    t.add_argument("--streaming", action="store_true", help="time every token (a streamer)")
    t.add_argument("--request_json", type=Path, help="per-request records (ns), trtllm-bench's")
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args(argv)
    return run_main(lambda: run_throughput(args), "bench.backends.hf_transformers.runner")


if __name__ == "__main__":
    raise SystemExit(main())

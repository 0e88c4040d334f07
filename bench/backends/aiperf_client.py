"""The AIPerf command that drives one online point, for `make plan`, the doctor and the tests.

Stand-in: the online runner's branch writes bench/backends/aiperf.py (argv and export parser);
at merge its argv builder replaces this module. Options are AIPerf 0.13's (`aiperf profile
--help`). Every request asks for exactly the point's output length, as trtllm-bench's
`--eos_id -1` does offline: `ignore_eos` and `min_tokens` go in the request body.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.manifest import Manifest, Point

AIPERF = "aiperf"


def goodput_spec(manifest: Manifest) -> str | None:
    """AIPerf --goodput from [slo]: one quoted string of tag:value in ms (AIPerf's display unit)."""
    slo = manifest.slo
    if slo is None:
        return None
    parts = [
        f"{tag}:{value:g}"
        for tag, value in (
            ("time_to_first_token", slo.ttft_p99_ms),
            ("inter_token_latency", slo.tpot_p99_ms),
        )
        if value is not None
    ]
    return " ".join(parts) or None


def profile_argv(
    manifest: Manifest,
    point: Point,
    *,
    url: str,
    model_name: str,
    tokenizer: Path,
    artifact_dir: Path,
) -> list[str]:
    """One point: `point.concurrency` requests in flight (None: all of them at once)."""
    d, r = manifest.dataset, manifest.runtime
    concurrency = point.concurrency or point.requests
    argv = [
        AIPERF,
        "profile",
        "--model",
        model_name,
        "--url",
        url,
        "--endpoint-type",
        "completions",
        "--tokenizer",
        str(tokenizer),
        "--concurrency",
        str(concurrency),
        "--request-count",
        str(point.requests),
        "--isl",
        str(point.isl),
        "--isl-stddev",
        str(d.input_stdev),
        "--osl",
        str(point.osl),
        "--osl-stddev",
        str(d.output_stdev),
        "--extra-inputs",
        "ignore_eos:true",
        "--random-seed",
        str(manifest.sweep.seed),
        "--no-server-metrics",
        "--no-gpu-telemetry",
        "--ui",
        "none",
        "--artifact-dir",
        str(artifact_dir),
    ]
    if d.output_stdev == 0:
        argv += ["--extra-inputs", f"min_tokens:{point.osl}"]
    if r.warmup > 0:
        argv += ["--warmup-request-count", str(r.warmup)]
    if manifest.sweep.streaming:
        argv += ["--streaming"]
    goodput = goodput_spec(manifest)
    if goodput is not None:
        argv += ["--goodput", goodput]
    return argv

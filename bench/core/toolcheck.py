"""Fail fast when a manifest needs tools this machine lacks; stdlib only, runs before any install.

Usage: python3 -m bench.core.toolcheck manifests/llama-3.1-8b-fp8-h100.toml

`make all` runs this first, so on a laptop without a GPU or TensorRT-LLM the pipeline stops within
a second saying what is missing and what to run instead. Full validation comes next
(bench.core.manifest).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from bench import backends

# NVIDIA's dataset tool inside the release image; TRTLLM_PREPARE_DATASET overrides it.
PREPARE_DATASET = "/app/tensorrt_llm/benchmarks/cpp/prepare_dataset.py"


def prepare_dataset_script() -> str:
    return os.environ.get("TRTLLM_PREPARE_DATASET", PREPARE_DATASET)


def missing_tools(
    manifest: dict, which=shutil.which, exists=os.path.exists, gpu_ok=None
) -> list[str]:
    """What this manifest needs that is not here, one line each (an unknown backend needs
    nothing here: validating the manifest names it next)."""
    backend = backends.find(manifest.get("engine", {}).get("backend"))
    needs_gpu = (backend is not None and backend.needs_gpu) or manifest.get("quantization", {}).get(
        "device"
    ) == "cuda"
    online = manifest.get("sweep", {}).get("scenario") == "online"
    missing: list[str] = []
    if backend is not None:
        tools = backend.online_tools if online else backend.tools
        missing = [f"{tool} ({backend.name}) is not on PATH" for tool in tools if not which(tool)]
    if manifest.get("dataset", {}).get("generator") == "prepare_dataset":
        script = prepare_dataset_script()
        if not exists(script):
            missing.append(f"NVIDIA's prepare_dataset.py is not at {script}")
    if needs_gpu and not (gpu_ok or _nvidia_gpu_present)():
        missing.append("no NVIDIA GPU: `nvidia-smi -L` lists none")
    return missing


def _nvidia_gpu_present() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m bench.core.toolcheck MANIFEST", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        manifest = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"{path}: error: cannot read the manifest: {exc}", file=sys.stderr)
        return 2
    name = manifest.get("engine", {}).get("backend")
    if isinstance(name, str) and name in backends.RENAMED:
        print(
            f"{path}: error: engine.backend = {name!r}: {backends.problem(name)}", file=sys.stderr
        )
        return 2
    missing = missing_tools(manifest)
    if missing:
        lines = "\n".join(f"  - {m}" for m in missing)
        print(
            f"{path}: error: this manifest needs tools this machine does not have:\n{lines}\n"
            f"  fix: on an H100 host run `make docker-all MANIFEST={path}` (the pinned\n"
            "       TensorRT-LLM container), or run the whole pipeline on this CPU with\n"
            "       `make demo`.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the fake TensorRT-LLM tools share: log lines, failures, checkpoints, engines. Stdlib only.

Log lines look like TensorRT-LLM 1.0's: Python `[MM/DD/YYYY-HH:MM:SS] [TRT-LLM] [I] msg`, C++
`[TensorRT-LLM][INFO] msg`, and the start-up banner `[TensorRT-LLM] TensorRT-LLM version: 1.0.0`.
An engine is config.json (version, pretrained_config, build_config) plus rank<N>.engine: 4 KiB of
bytes derived from the configs and the checkpoint's weights, but for 32 bytes that differ on every
build, as TensorRT's timing-chosen tactics make two real builds of one checkpoint differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

# The release the fakes play (FAKE_TRTLLM_RELEASE, see trtllm_options.RELEASES).
VERSION = {"1.0": "1.0.0", "1.2": "1.2.1"}[os.environ.get("FAKE_TRTLLM_RELEASE", "1.0")]
ENGINE_BYTES = 4096
TACTICS_BYTES = 32  # the part of an engine that differs between two builds of one checkpoint
LEVELS = {"I": "INFO", "W": "WARNING", "E": "ERROR"}


def banner() -> None:
    print(f"[TensorRT-LLM] TensorRT-LLM version: {VERSION}", flush=True)


def log(message: str, level: str = "I") -> None:
    """The Python logger of trtllm-bench / trtllm-build."""
    stamp = time.strftime("%m/%d/%Y-%H:%M:%S")
    print(f"[{stamp}] [TRT-LLM] [{level}] {message}", flush=True)


def cpp(message: str, level: str = "I") -> None:
    """The C++ runtime's logger."""
    print(f"[TensorRT-LLM][{LEVELS[level]}] {message}", flush=True)


def die(exc: str, message: str, where: str) -> None:
    """An uncaught Python exception, as the interpreter prints it; exit code 1."""
    sys.stdout.flush()
    print(
        f'Traceback (most recent call last):\n  File "{where}", line 1, in <module>\n'
        f"{exc}: {message}",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(1)


def read_json(path: Path, where: str) -> dict:
    if not path.is_file():
        die("FileNotFoundError", f"[Errno 2] No such file or directory: '{path}'", where)
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- checkpoints


def hf_pretrained_config(model_dir: Path, where: str) -> dict:
    """A TensorRT-LLM pretrained_config from a Hugging Face folder (unified FP8 or plain)."""
    cfg = read_json(model_dir / "config.json", where)
    quant = {"quant_algo": None, "kv_cache_quant_algo": None}
    hf_quant = model_dir / "hf_quant_config.json"
    if hf_quant.is_file():
        q = json.loads(hf_quant.read_text(encoding="utf-8")).get("quantization", {})
        quant = {
            "quant_algo": q.get("quant_algo"),
            "kv_cache_quant_algo": q.get("kv_cache_quant_algo"),
        }
    heads = cfg.get("num_attention_heads", 1)
    return {
        "architecture": (cfg.get("architectures") or ["LlamaForCausalLM"])[0],
        "dtype": cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16",
        "vocab_size": cfg.get("vocab_size"),
        "hidden_size": cfg.get("hidden_size"),
        "num_hidden_layers": cfg.get("num_hidden_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.get("num_key_value_heads", heads),
        "head_size": cfg.get("head_dim") or cfg.get("hidden_size", heads) // heads,
        "max_position_embeddings": cfg.get("max_position_embeddings"),
        "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1},
        "quantization": quant,
    }


def kv_bytes_per_token(pretrained: dict) -> int:
    layers = pretrained.get("num_hidden_layers") or 32
    heads = pretrained.get("num_attention_heads") or 32
    kv_heads = pretrained.get("num_key_value_heads") or heads
    head = pretrained.get("head_size") or (pretrained.get("hidden_size") or 4096) // heads
    kv_fp8 = (pretrained.get("quantization") or {}).get("kv_cache_quant_algo") == "FP8"
    return 2 * layers * kv_heads * head * (1 if kv_fp8 else 2)


def weights_digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        with open(f, "rb") as stream:
            while chunk := stream.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- engines


def engine_bytes(pretrained: dict, build_config: dict, weights: str, rank: int) -> bytes:
    """Bytes that follow from the build's inputs, but for a last block that differs every build:
    TensorRT chooses kernels by timing them, so two builds of one checkpoint differ like this."""
    seed = json.dumps([pretrained, build_config, weights, rank], sort_keys=True).encode()
    out = bytearray(b"FAKE-TRTLLM-ENGINE\0" + VERSION.encode() + b"\0")
    block = hashlib.sha256(seed).digest()
    while len(out) < ENGINE_BYTES - TACTICS_BYTES:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[: ENGINE_BYTES - TACTICS_BYTES]) + os.urandom(TACTICS_BYTES)


def write_engine(
    output_dir: Path, pretrained: dict, build_config: dict, weights: str
) -> list[Path]:
    """config.json and one rank<N>.engine per rank of the mapping; returns the files."""
    output_dir.mkdir(parents=True, exist_ok=True)
    config = {"version": VERSION, "pretrained_config": pretrained, "build_config": build_config}
    files = [output_dir / "config.json"]
    files[0].write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
    world = (pretrained.get("mapping") or {}).get("world_size", 1)
    for rank in range(world):
        path = output_dir / f"rank{rank}.engine"
        path.write_bytes(engine_bytes(pretrained, build_config, weights, rank))
        files.append(path)
    return files


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"

"""The OpenAI-compatible server an online point is measured against, as data.

`ServerCommand` is what the online runner (bench.stages.serve) needs from a backend: how to start
the server, where it listens, how to ask whether it is up, and the model name to send. Backends
build it: `trtllm-serve` on the H100 path (bench.backends.trtllm), `transformers serve` here.

The CPU demo serves its tiny model with `transformers serve` (transformers >= 4.54), which has no
`ignore_eos`/`min_tokens` (HTTP 422) and counts nothing for the client: AIPerf counts output tokens
by re-tokenizing the streamed text. So the served copy of the model (`write_served_model`) keeps
the token ids and weights and changes only what makes the count exact:
- a WordLevel tokenizer over the same 128,256 ids ("t<id>" words, Llama's special-token names),
  split on whitespace, so decode -> encode gives back the same number of tokens (the Llama BPE
  re-merges streamed text: 16 tokens came back as 16 to 20);
- `suppress_tokens` = every special id (EOS included) and greedy decoding in
  generation_config.json, so each request yields exactly `max_tokens` tokens;
- a chat template that is the user's text alone, so the model sees exactly the prompt's ISL;
- `model_input_names` without token_type_ids (with it, generate() fails in the server's thread
  and the stream hangs).
The weights are the quantized checkpoint dequantized to float32, as the offline runner does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.core.errors import KitError
from bench.core.fileio import atomic_write_text

LOOPBACK = "127.0.0.1"
# The user's text alone: the served model sees exactly the ISL tokens AIPerf counted.
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
SERVED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)


@dataclass(frozen=True)
class ServerCommand:
    """How to start one OpenAI-compatible server and reach it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the kit's environment
    base_url: str = f"http://{LOOPBACK}:8000"
    health_path: str = "/health"  # 200 once the server answers
    model_name: str = ""  # the `model` field of each request

    @property
    def health_url(self) -> str:
        return self.base_url + self.health_path


# The OpenAI route AIPerf drives (its --endpoint-type): "completions" sends the prompt as text
# and nothing else (the offline method: prompt tokens in, exact output tokens out); "chat" goes
# through the model's chat template, which a server refuses for a model without one.
Endpoint = Literal["chat", "completions"]


@dataclass(frozen=True)
class Serving:
    """What a backend gives the online runner: its server, the route AIPerf drives, the tokenizer
    AIPerf counts with, the request fields that make both lengths exact, the files it prepared
    (recorded), and the text files its server reads, which the session writes and `make plan`
    prints."""

    command: Callable[[int], ServerCommand]  # port -> command
    endpoint: Endpoint
    tokenizer: Path
    fixed_length_inputs: Callable[[int], dict[str, Any]]  # OSL -> extra request fields
    prepared: list[Path]
    engine_version: str | None
    dtype: str | None = None  # what the server computes in, where not the manifest's (CPU: float32)
    config_files: dict[Path, str] = field(default_factory=dict)  # path -> text, for the command


def transformers_serve_command(
    model_dir: Path, model_name: str, port: int, python: str = sys.executable
) -> ServerCommand:
    """`transformers serve` on the loopback, pinned to one local model folder, on the CPU.

    --force_model makes every request use model_dir whatever name it sends; /health answers
    once uvicorn listens (/v1/models returns a hard-coded Hub list); the model loads on the
    first request, so the runner's warmup requests absorb that. --continuous_batching fails on
    the CPU (4.57.3). --model_timeout: never unload the model between points.
    OMP_NUM_THREADS=1: the 64-wide model gains nothing from a second thread, and OpenMP's
    spin-waiting on the shared 2-core machine made one stream 25x slower (32 tokens: 25-28 s
    with 2 threads, 1.1-2.3 s with 1, measured side by side at load average 16).
    """
    return ServerCommand(
        argv=[
            python,
            "-m",
            "transformers.commands.transformers_cli",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--force_model",
            str(model_dir.resolve()),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--model_timeout",
            "86400",
            "--log_level",
            "warning",
        ],
        env={
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
        },
        base_url=f"http://{LOOPBACK}:{port}",
        health_path="/health",
        model_name=model_name,
    )


# ----------------------------------------------------------------------------- the served model


def word_level_tokenizer(vocab_size: int, special: dict[int, str]) -> dict:
    """tokenizer.json: one whitespace-free word per id, so text round-trips to the same count.

    Base ids are "t<id>"; special ids keep their names and are special (skipped when decoding;
    never generated, see `served_generation_config`).
    """
    vocab = {special.get(i, f"t{i}"): i for i in range(vocab_size)}
    if len(vocab) != vocab_size:
        raise KitError("special token names collide with the word vocabulary")
    unk = special[min(special)] if special else "t0"
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": name,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, name in sorted(special.items())
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk},
    }


def served_tokenizer_config(special: dict[int, str], eos_id: int) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "chat_template": CHAT_TEMPLATE,
        "unk_token": special[min(special)],
        "eos_token": special[eos_id],
        "pad_token": special[eos_id],
        "clean_up_tokenization_spaces": False,
    }


def served_generation_config(model_generation: dict, special_ids: list[int]) -> dict:
    """Greedy, and no special token can be generated: exactly max_tokens tokens per request
    (the server honours max_tokens but neither ignore_eos nor min_tokens)."""
    eos = model_generation.get("eos_token_id")
    eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return {
        "bos_token_id": model_generation.get("bos_token_id"),
        "eos_token_id": eos_ids,
        "pad_token_id": eos_ids[0] if eos_ids else None,
        "do_sample": False,
        "suppress_tokens": sorted(special_ids),
    }


def special_tokens_of(tokenizer_json: dict) -> dict[int, str]:
    return {
        int(t["id"]): str(t["content"])
        for t in tokenizer_json.get("added_tokens", [])
        if t.get("special")
    }


def write_served_model(checkpoint: Path, model_dir: Path, out: Path) -> list[Path]:
    """The served copy of the model in `out` (see the module docstring); returns its files.

    checkpoint: the quantized checkpoint (FP8, unified HF); model_dir: the fetched model, for
    its tokenizer's special tokens and its generation defaults.
    """
    import torch
    from safetensors.torch import save_file

    from bench.stages.quantize import load_dequantized

    out.mkdir(parents=True, exist_ok=True)
    model = load_dequantized(checkpoint)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    special = special_tokens_of(tokenizer)
    generation = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8"))
    if not special:
        raise KitError(
            "the model's tokenizer.json names no special tokens",
            path=str(model_dir / "tokenizer.json"),
        )
    vocab_size = int(config["vocab_size"])
    served_gen = served_generation_config(generation, list(special))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    tmp = out / "model.safetensors.tmp"
    save_file({k: v.to(torch.float32) for k, v in state.items()}, str(tmp), {"format": "pt"})
    tmp.replace(out / "model.safetensors")
    config["torch_dtype"] = "float32"
    files = {
        "config.json": config,
        "generation_config.json": served_gen,
        "tokenizer.json": word_level_tokenizer(vocab_size, special),
        "tokenizer_config.json": served_tokenizer_config(special, served_gen["eos_token_id"][0]),
    }
    for name, data in files.items():
        atomic_write_text(out / name, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return [out / n for n in SERVED_FILES]

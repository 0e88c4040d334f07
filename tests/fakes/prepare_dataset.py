#!/usr/bin/env python3
"""Fake benchmarks/cpp/prepare_dataset.py (TensorRT-LLM 1.0) for tests: its options, its formats.

Usage:  python prepare_dataset.py --tokenizer DIR --stdout [--random-seed 420] \
            token-norm-dist --num-requests N --input-mean I --input-stdev 0 \
            --output-mean O --output-stdev 0 > dataset.jsonl
Reads:  DIR/config.json (vocab_size, eos_token_id) and DIR/tokenizer.json (the base vocabulary:
        model.vocab, special tokens excluded) - a local folder only, there is no Hub here
Writes: with --stdout one JSON line per request, compact, keys in NVIDIA's order:
        {"task_id":0,"input_ids":[...],"output_tokens":128}; else --output holds
        {"metadata": {...}, "samples": [...]}

Written for the kit from the documented behaviour (not NVIDIA's code): lengths
max(1, ceil(normal(mean, stdev))), input and output drawn from one seed so they share z-scores,
token ids uniform over range(base vocabulary) avoiding the EOS ids, Python's random seeded with
--random-seed. Log lines go to stderr so stdout stays the dataset.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trtllm_options import PREPARE_DATASET, parse_or_exit


def fail(exc: str, message: str) -> None:
    print(
        f'Traceback (most recent call last):\n  File "prepare_dataset.py", line 1, in <module>\n'
        f"{exc}: {message}",
        file=sys.stderr,
    )
    raise SystemExit(1)


def vocabulary(tokenizer: str) -> tuple[int, set[int]]:
    """(base vocabulary size, EOS ids) of a local tokenizer folder."""
    folder = Path(tokenizer)
    if not (folder / "config.json").is_file() and not (folder / "tokenizer.json").is_file():
        fail(
            "OSError",
            f"Can't load tokenizer for '{tokenizer}'. If you were trying to load it "
            "from 'https://huggingface.co/models', make sure you don't have a local directory "
            "with the same name (fake: a local folder with config.json/tokenizer.json is needed)",
        )
    config = {}
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    eos = config.get("eos_token_id")
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if (folder / "tokenizer.json").is_file():
        tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        size = len(tok["model"]["vocab"])
    else:
        size = int(config["vocab_size"])
    return size, eos_ids


def norm_lengths(seed: int, mean: int, stdev: int, n: int) -> list[int]:
    rng = random.Random(seed)  # re-seeded per call: input and output share z-scores
    if stdev == 0:
        return [mean] * n
    return [max(1, math.ceil(rng.gauss(mean, stdev))) for _ in range(n)]


def unif_lengths(seed: int, low: int, high: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(n)]


def token_ids(seed: int, lengths: list[int], vocab: int, eos_ids: set[int]) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for n in lengths:
        ids = rng.sample(range(vocab), n) if n < vocab else rng.choices(range(vocab), k=n)
        out.append([(t + 1) % vocab if t in eos_ids else t for t in ids])
    return out


def main(argv: list[str]) -> int:
    parsed = parse_or_exit(PREPARE_DATASET, argv)
    g, (_, v) = parsed.values, parsed.chosen()
    seed = g["random_seed"]
    n = v["num_requests"]
    if parsed.subcommand == "token-norm-dist":
        inputs = norm_lengths(seed, v["input_mean"], v["input_stdev"], n)
        outputs = norm_lengths(seed, v["output_mean"], v["output_stdev"], n)
    else:
        inputs = unif_lengths(seed, v["input_min"], v["input_max"], n)
        outputs = unif_lengths(seed, v["output_min"], v["output_max"], n)
    vocab, eos_ids = vocabulary(g["tokenizer"])
    ids = token_ids(seed, inputs, vocab, eos_ids)
    if g["log_level"] == "debug":
        print(f"[fake prepare_dataset] {n} requests, vocabulary {vocab}", file=sys.stderr)
    if g["stdout"]:
        for i, (tokens, osl) in enumerate(zip(ids, outputs, strict=True)):
            line = {"task_id": i, "input_ids": tokens, "output_tokens": osl}
            sys.stdout.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
        return 0
    metadata = {
        "workload_type": parsed.subcommand,
        **v,
        "tokenize_vocabsize": vocab,
        "max_input_len": max(inputs),
        "max_output_len": max(outputs),
    }
    metadata["workload_name"] = "__".join(f"{k}:{val}" for k, val in metadata.items())
    samples = [
        {"input_len": len(t), "input_ids": t, "output_len": o, "task_id": g["task_id"]}
        for t, o in zip(ids, outputs, strict=True)
    ]
    out = Path(g["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metadata": metadata, "samples": samples}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

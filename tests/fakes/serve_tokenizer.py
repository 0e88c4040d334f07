"""Token counts for the fake trtllm-serve: the served model's own tokenizer, in the standard
library.

The real server counts a prompt with the model's Hugging Face tokenizer (BOS included) and
applies its chat template to chat messages. The fake reads tokenizer.json itself: Llama 3's
byte-level BPE (its pre-tokenizer regex, the byte-to-unicode map, the merges by rank, the
template's BOS), so it starts in a second on any python3 with PyYAML, as the other fakes do;
tests/test_trtllm_serve.py checks its counts are transformers'. A chat request loads transformers
(the template needs jinja2) and is refused where it is not installed.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from pathlib import Path
from typing import Any

# Llama 3's pre-tokenizer (tokenizer.json Split regex) and its translation to Python's `re`, which
# has no \p{..}: a letter is [^\W\d_], "neither letter nor number" is [^\w] or "_". Exact for
# ASCII text; digits outside Nd may split differently.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT_RE = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class ChatUnsupported(Exception):
    """A chat request the tokenizer cannot render; str() is the error the server returns."""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map that byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


class ByteLevelBPE:
    """Llama 3's tokenizer.json, encoded in the standard library (counts only)."""

    def __init__(self, data: dict) -> None:
        model = data["model"]
        split = _split_pattern(data.get("pre_tokenizer") or {})
        if model.get("type") != "BPE" or split != LLAMA3_SPLIT:
            raise ValueError(
                "not a Llama 3 byte-level BPE tokenizer.json (fake: install transformers)"
            )
        self.vocab: dict[str, int] = model["vocab"]
        self.ignore_merges = bool(model.get("ignore_merges"))
        # keyed "left right" as tokenizer.json spells a merge (no token here holds a space: the
        # byte map turns it into "Ġ"), so a start builds no 280k tuples
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        self.ranks = dict(zip(merges, range(len(merges)), strict=True))
        self.byte_map = bytes_to_unicode()
        added = sorted((t["content"] for t in data.get("added_tokens", [])), key=len, reverse=True)
        self.added = re.compile("|".join(map(re.escape, added))) if added else None
        self.prefix = _template_specials(data.get("post_processor") or {})

    def count(self, text: str, add_special_tokens: bool = True) -> int:
        n = len(self.prefix) if add_special_tokens else 0
        pieces = self.added.split(text) if self.added else [text]
        specials = len(self.added.findall(text)) if self.added else 0
        for piece in pieces:
            for word in LLAMA3_SPLIT_RE.findall(piece):
                n += len(self._bpe("".join(self.byte_map[b] for b in word.encode("utf-8"))))
        return n + specials

    def token_text(self, token: str) -> str:
        """A vocabulary entry as the text it decodes to."""
        inverse = {c: b for b, c in self.byte_map.items()}
        return bytes(inverse[c] for c in token).decode("utf-8", errors="replace")

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (one tokenizer per process)
    def _bpe(self, word: str) -> tuple[str, ...]:
        if self.ignore_merges and word in self.vocab:
            return (word,)
        parts = list(word)
        while len(parts) > 1:
            pairs = [
                (self.ranks.get(f"{a} {b}", len(self.ranks)), i)
                for i, (a, b) in enumerate(itertools.pairwise(parts))
            ]
            rank, i = min(pairs)
            if rank == len(self.ranks):
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return tuple(parts)


def _split_pattern(pre: dict) -> str | None:
    steps = pre.get("pretokenizers", [pre])
    for step in steps:
        if step.get("type") == "Split":
            return (step.get("pattern") or {}).get("Regex")
    return None


def _template_specials(post: dict) -> list[str]:
    """Special tokens TemplateProcessing puts before a single sequence (Llama 3: BOS)."""
    for step in post.get("processors", [post]):
        if step.get("type") == "TemplateProcessing":
            out = []
            for item in step.get("single", []):
                if "Sequence" in item:
                    break
                out.append(item["SpecialToken"]["id"])
            return out
    return []


class ServedTokenizer:
    """What the fake server needs: prompt counts, chat prompt counts, one output token's text."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bpe = ByteLevelBPE(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
        # One output token whose text, repeated, re-tokenizes to exactly as many tokens: a client
        # that counts output tokens itself (AIPerf) then counts what the server generated.
        self.output_piece = self.bpe.token_text("Ġthe") if "Ġthe" in self.bpe.vocab else " a"

    def count(self, text: str, add_special_tokens: bool = True) -> int:
        return self.bpe.count(text, add_special_tokens)

    @functools.cached_property
    def hf(self) -> Any | None:
        """transformers' tokenizer for chat templates; None where transformers is absent."""
        try:
            from transformers import AutoTokenizer
        except ImportError:
            return None
        return AutoTokenizer.from_pretrained(str(self.folder))

    def count_chat(self, messages: list[dict]) -> int:
        if self.hf is None:
            raise ChatUnsupported("fake trtllm-serve: chat needs transformers for the template")
        if not getattr(self.hf, "chat_template", None):
            raise ChatUnsupported(
                "Cannot use chat template functions because tokenizer.chat_template is not set "
                "and no template argument was passed! For information about writing templates "
                "and setting the tokenizer.chat_template attribute, please see the documentation "
                "at https://huggingface.co/docs/transformers/main/en/chat_templating"
            )
        ids = self.hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        return len(ids)

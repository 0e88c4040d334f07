"""bench.stages.datasets: deterministic trtllm-bench JSONL with exact lengths and no EOS."""

from __future__ import annotations

import json

import pytest

from bench.core.manifest import Point
from bench.stages.datasets import (
    Vocabulary,
    check_dataset,
    jsonl,
    length_stats,
    synthetic_requests,
    vocabulary_of,
)

VOCAB = Vocabulary(size=50, eos_ids=frozenset({3, 7}))


def test_exact_lengths_no_eos_and_trtllm_keys():
    point = Point(isl=40, osl=9, requests=30)
    lines = jsonl(synthetic_requests(point, VOCAB, seed=1)).splitlines()
    assert len(lines) == 30
    for i, line in enumerate(lines):
        request = json.loads(line)
        assert list(request) == ["task_id", "input_ids", "output_tokens"]
        assert request["task_id"] == i
        assert len(request["input_ids"]) == 40 and request["output_tokens"] == 9
        assert not {3, 7} & set(request["input_ids"])
        assert all(0 <= t < 50 for t in request["input_ids"])
    assert ", " not in lines[0]  # compact, as prepare_dataset writes


def test_same_seed_same_bytes_other_seed_other_bytes():
    point = Point(isl=8, osl=4, requests=5)
    first = jsonl(synthetic_requests(point, VOCAB, seed=420))
    assert first == jsonl(synthetic_requests(point, VOCAB, seed=420))
    assert first != jsonl(synthetic_requests(point, VOCAB, seed=421))


def test_spread_draws_positive_lengths_around_the_mean():
    point = Point(isl=100, osl=50, requests=400)
    stats = length_stats(iter(jsonl(synthetic_requests(point, VOCAB, 5, 20, 10)).splitlines()))
    assert stats.min_isl >= 1 and stats.min_isl < 100 < stats.max_isl
    assert abs(stats.avg_isl - 100) < 5 and abs(stats.avg_osl - 50) < 3


def test_check_dataset_names_what_is_off():
    point = Point(isl=8, osl=4, requests=5)
    stats = length_stats(iter(jsonl(synthetic_requests(point, VOCAB, 1)).splitlines()))
    assert check_dataset(stats, point, 0, 0) is None
    assert "6 requests" not in (check_dataset(stats, Point(isl=8, osl=4, requests=6), 0, 0) or "")
    assert check_dataset(stats, Point(isl=8, osl=4, requests=6), 0, 0) == "5 requests, expected 6"
    assert "expected exactly 9" in check_dataset(stats, Point(isl=9, osl=4, requests=5), 0, 0)


def test_vocabulary_uses_the_base_vocabulary_of_the_tokenizer():
    config = {"vocab_size": 128256, "eos_token_id": [128001, 128009]}
    tokenizer = {"model": {"vocab": {str(i): i for i in range(1000)}}}
    assert vocabulary_of(config, tokenizer) == Vocabulary(1000, frozenset({128001, 128009}))
    assert vocabulary_of({"vocab_size": 10, "eos_token_id": 2}, None) == Vocabulary(
        10, frozenset({2})
    )


def test_empty_dataset_is_an_error():
    with pytest.raises(ValueError, match="dataset is empty"):
        length_stats(iter([]))

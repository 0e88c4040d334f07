"""bench.core.cost: estimates and cost-balanced shards that cover every point exactly once."""

from __future__ import annotations

import itertools

import pytest

from bench.core.cost import Estimator, hms, shard_tasks
from bench.core.manifest import Point, load_manifest
from bench.stages.sweep import Task
from tests.conftest import DEMO_MANIFEST

GRID = [128, 256, 512, 1024, 2048, 4096, 8192, 16384]


@pytest.fixture
def gpu_estimator():
    m = load_manifest(DEMO_MANIFEST)
    gpu = m.model_copy(update={"engine": m.engine.model_copy(update={"backend": "trtllm-pytorch"})})
    return Estimator(gpu)


def grid_tasks() -> list[Task]:
    return [
        Task(Point(isl=i, osl=o, requests=max(50, 4_000_000 // (i + o))), 0)
        for i, o in itertools.product(GRID, GRID)
    ]


def test_long_points_cost_far_more(gpu_estimator):
    startup = gpu_estimator.seconds(Point(isl=1, osl=1, requests=1))
    small = gpu_estimator.seconds(Point(isl=128, osl=128, requests=100)) - startup
    large = gpu_estimator.seconds(Point(isl=16384, osl=16384, requests=100)) - startup
    assert large > 500 * small


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_partition_the_points(gpu_estimator, n):
    tasks = grid_tasks()
    shards = [shard_tasks(tasks, i, n, gpu_estimator) for i in range(1, n + 1)]
    names = [t.name for shard in shards for t in shard]
    assert sorted(names) == sorted(t.name for t in tasks)
    assert len(names) == len(set(names))
    assert shards == [shard_tasks(tasks, i, n, gpu_estimator) for i in range(1, n + 1)]


def test_shards_balance_cost_better_than_count(gpu_estimator):
    tasks, n = grid_tasks(), 4
    loads = [
        sum(gpu_estimator.seconds(t.point) for t in shard_tasks(tasks, i, n, gpu_estimator))
        for i in range(1, n + 1)
    ]
    by_count = [sum(gpu_estimator.seconds(t.point) for t in tasks[i::n]) for i in range(n)]
    assert max(loads) / min(loads) < 1.1
    assert max(loads) / min(loads) < max(by_count) / min(by_count)


def test_hms():
    assert hms(0) == "0:00:00" and hms(3725.4) == "1:02:05" and hms(-3) == "0:00:00"

"""One contract, run over every registered backend (bench.backends.names()): what the stages ask
of a backend holds end to end against its fake (tests/fakes/bin/<tool>) or its real, cheap tool.

A new backend passes this file unchanged or fails it: its package under bench/backends/ and its
fake under tests/fakes/bin/ are all it adds. The last test registers a throwaway package and runs
the sweep stage on it, to show that registering is all it takes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import backends
from bench.backends.base import Backend, PointPaths
from bench.core.artifacts import Artifacts
from bench.core.manifest import load_manifest
from bench.core.run import open_run
from bench.schema.record import PointResult, judge
from bench.stages import datasets, sweep
from tests.conftest import CPU_MANIFEST_TOML, ROOT

FAKES = ROOT / "tests" / "fakes"
ISL, OSL, REQUESTS = 16, 16, 4

sys.path.insert(0, str(ROOT / "tests"))
from test_trtllm_commands import tiny_checkpoint  # noqa: E402


def manifest_text(backend: str) -> str:
    """The smallest CPU manifest, on `backend`, with the engine limits a build needs."""
    return CPU_MANIFEST_TOML.replace(
        'backend = "hf-transformers"',
        f'backend = "{backend}"\nmax_batch_size = 8\nmax_num_tokens = 512',
    )


def manifest_for(tmp_path: Path, backend: str):
    path = tmp_path / f"{backend}.toml"
    path.write_text(manifest_text(backend), encoding="utf-8")
    return load_manifest(path)


def with_fakes() -> dict[str, str]:
    """The environment a backend's tool runs in here: the fakes first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_TRTLLM_")}
    env["PATH"] = f"{FAKES / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def request_file(path: Path) -> Path:
    """A dataset in trtllm-bench's JSONL (the format bench.stages.datasets writes)."""
    lines = [
        json.dumps({"task_id": i, "input_ids": list(range(1, ISL + 1)), "output_tokens": OSL})
        for i in range(REQUESTS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    """The demo's tiny Llama as a Hugging Face folder: what an "hf" checkpoint loads as."""
    from bench.backends.hf_transformers import demo_model

    out = tmp_path_factory.mktemp("tiny-llama")
    demo_model.make_tiny_llama(out, demo_model.SEED)
    return out


@pytest.fixture(params=backends.names())
def backend(request) -> Backend:
    return backends.get(request.param)


def run_tool(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env=with_fakes(), cwd=cwd
    )


# ----------------------------------------------------------------------------- the contract


def test_declares_what_the_stages_read(backend: Backend) -> None:
    assert backends.get(backend.name) is backend and backend.name not in backends.RENAMED
    for tool in backend.tools:  # a tool the kit runs has its fake here, which CI runs instead
        assert (FAKES / "bin" / tool).is_file(), f"{backend.name}: no fake tests/fakes/bin/{tool}"
    assert backend.dataset_format in datasets.WRITES
    assert backend.checkpoint_format in ("hf", "tensorrt_llm")
    assert backend.provenance_packages and all(
        dists and all(isinstance(d, str) for d in dists)
        for dists in backend.provenance_packages.values()
    )
    c = backend.cost
    assert min(c.startup_s, c.prefill_s_per_token, c.decode_s_per_token, c.scale) > 0
    assert not backend.builds_engine or backend.checkpoint_format == "tensorrt_llm"


def test_registered_names_are_the_manifest_vocabulary(tmp_path, backend: Backend) -> None:
    m = manifest_for(tmp_path, backend.name)
    assert m.engine.backend == backend.name
    assert m.engine.needs_build is backend.builds_engine
    assert backend.engine_problem(m.engine) is None


def test_argv_runs_and_its_outputs_parse_into_a_valid_record(
    tmp_path, backend: Backend, hf_model: Path
) -> None:
    """Build (if it builds), run one point through its fake or real tool, parse the outputs."""
    m = manifest_for(tmp_path, backend.name)
    point = m.sweep.points[0]
    engine = None
    if backend.builds_engine:
        engine = tmp_path / "engine"
        argv = backend.build_argv(
            m, checkpoint_dir=tiny_checkpoint(tmp_path / "ckpt"), engine_dir=engine
        )
        built = run_tool(argv, tmp_path)
        assert built.returncode == 0, built.stderr
    report, log = tmp_path / "report.json", tmp_path / "console.log"
    paths = PointPaths(
        model_path=hf_model,
        dataset=request_file(tmp_path / "d.jsonl"),
        report_json=report,
        workspace=tmp_path / "ws",
        engine_dir=engine,
    )
    argv = backend.run_argv(m, point, paths, kv_fraction=backend.kv_fractions(m)[0] or 0.0)
    proc = run_tool(argv, tmp_path)
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert backend.finished(report, log.read_text())
    key = {"isl": ISL, "osl": OSL, "requests": REQUESTS, "concurrency": None, "repeat": 0}
    result = judge(backend.parse(report, log, **key))
    assert isinstance(result, PointResult)
    assert (result.status, result.isl, result.osl, result.requests) == ("ok", ISL, OSL, REQUESTS)
    assert result.metrics.output_tok_s and result.metrics.output_tok_s > 0
    assert result.identity.backend == backend.name  # records speak the manifest's names
    PointResult.from_json(result.to_json())


@pytest.mark.parametrize(
    "log,exit_code,timed_out,kind",
    [
        ("starting\nTraceback (most recent call last):\nRuntimeError: boom\n", 1, False, "crash"),
        ("starting\nstill running\n", None, True, "timeout"),
        ("starting\n", 0, False, "silent"),
    ],
    ids=["crash", "timeout", "silent"],
)
def test_failures_are_classified_with_one_line_of_evidence(
    backend: Backend, log: str, exit_code: int | None, timed_out: bool, kind: str
) -> None:
    got, detail = backend.classify_failure(log, exit_code, timed_out)
    assert got == kind and detail and "\n" not in detail
    key = {"isl": ISL, "osl": OSL, "requests": REQUESTS}
    record = backend.failed_result(got, detail, **key)
    assert (record.status, record.failure, record.failure_detail) == ("failed", kind, detail)


@pytest.mark.parametrize("old,new", sorted(backends.RENAMED.items()))
def test_an_old_name_says_the_new_one(tmp_path, old: str, new: str) -> None:
    path = tmp_path / "old.toml"
    path.write_text(CPU_MANIFEST_TOML.replace('"hf-transformers"', f'"{old}"'), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.core.toolcheck", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"{path}: error: engine.backend = '{old}': backend '{old}' was renamed: write '{new}'"
    )


def test_a_published_reference_with_an_old_name_says_the_new_one(tmp_path) -> None:
    from bench.analysis.reference import load_reference
    from bench.core.errors import KitError

    published = ROOT / "manifests" / "published" / "nvidia-perf-overview-1.0.toml"
    old = tmp_path / "old.toml"
    old.write_text(
        published.read_text().replace('backend = "trtllm-pytorch"', 'backend = "pytorch"')
    )
    assert load_reference(published).identity.backend == "trtllm-pytorch"
    with pytest.raises(KitError, match=r"backend 'pytorch' was renamed: write 'trtllm-pytorch'"):
        load_reference(old)


def test_the_registry_imports_with_the_standard_library_only() -> None:
    """bench.core.toolcheck reads the registry before any install (system python3, no venv)."""
    code = (
        "import sys, bench.backends as b, bench.core.toolcheck; b.names();"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'yaml', 'numpy', 'torch', 'tomli_w')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert proc.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- one more package

TOY_PACKAGE = '''
"""A test-only backend: its "tool" is a python script that echoes every request's tokens."""
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.backends.base import Backend, Coefficients

TOOL = Path(__file__).with_name("echo_tool.py")


@dataclass(frozen=True)
class Echo(Backend):
    name: str = "toy-echo"
    tools: tuple = ()
    needs_gpu: bool = False
    builds_engine: bool = False
    checkpoint_format: str = "hf"
    dataset_format: str = "trtllm-bench-jsonl"
    provenance_packages: dict = field(default_factory=lambda: {"toy": ("toy",)})
    cost: Coefficients = Coefficients(1.0, 1e-6, 1e-6, 1e-9)
    gpu_ceilings_apply: bool = False
    log_source: str = "toy-echo-console"

    def run_argv(self, manifest, point, paths, *, kv_fraction):
        return [sys.executable, str(TOOL), str(paths.dataset), str(paths.report_json)]

    def finished(self, report_json, log_text):
        return report_json.exists()

    def parse(self, report_json, log, **key):
        from bench.schema.record import Identity, Metrics, PointResult

        data = json.loads(report_json.read_text())
        return PointResult(
            status="ok",
            source="toy-echo-json",
            identity=Identity(backend=self.name),
            metrics=Metrics(**data),
            **key,
        )

    def classify_failure(self, log_text, exit_code, timed_out):
        return ("timeout", "timed out") if timed_out else ("crash", f"exit code {exit_code}")


BACKENDS = (Echo(),)
'''

TOY_TOOL = """
import json, sys, time
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
start = time.monotonic()
out = sum(r["output_tokens"] for r in rows)
seconds = max(time.monotonic() - start, 1e-3)
json.dump({
    "num_requests": len(rows),
    "avg_input_len": sum(len(r["input_ids"]) for r in rows) / len(rows),
    "avg_output_len": out / len(rows),
    "output_tok_s": out / seconds,
}, open(sys.argv[2], "w"))
print("echoed", len(rows), "requests")
"""


def add_package(tmp_path: Path, monkeypatch, name: str, init: str) -> Path:
    """One more package beside bench/backends/'s own, found the way every backend is."""
    import bench.backends as package

    folder = tmp_path / "plugins" / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(init))
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder.parent)])
    backends.registry.cache_clear()
    return folder


@pytest.fixture
def fresh_registry():
    yield
    backends.registry.cache_clear()
    for name in [m for m in sys.modules if m.startswith("bench.backends.toy_")]:
        del sys.modules[name]


@pytest.fixture
def toy_registered(tmp_path, monkeypatch, fresh_registry):
    folder = add_package(tmp_path, monkeypatch, "toy_echo", TOY_PACKAGE)
    (folder / "echo_tool.py").write_text(textwrap.dedent(TOY_TOOL))


def test_a_name_registered_twice_is_refused(tmp_path, monkeypatch, fresh_registry) -> None:
    add_package(
        tmp_path,
        monkeypatch,
        "toy_twice",
        "from bench.backends.hf_transformers.backend import HfTransformers\n"
        "BACKENDS = (HfTransformers(),)\n",
    )
    with pytest.raises(backends.UnknownBackend, match=r"'hf-transformers' is registered twice"):
        backends.names()


class NoTelemetry:
    def __init__(self, path: Path) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def summary(self, window_ns=None, output_tokens=None) -> dict:
        return {"available": False, "reason": "test"}


def test_one_more_package_is_all_the_sweep_needs(tmp_path, run_roots, toy_registered) -> None:
    assert "toy-echo" in backends.names()
    manifest = tmp_path / "toy.toml"
    manifest.write_text(manifest_text("toy-echo"), encoding="utf-8")
    run = open_run(manifest, "toy")
    point = run.manifest.sweep.points[0]
    run.paths.datasets.mkdir(parents=True)
    data = request_file(datasets.dataset_path(run, point))
    Artifacts(run.paths).record("datasets", {}, [data])
    assert sweep.sweep(run, None, NoTelemetry) == 0
    (record,) = [
        PointResult.from_json(json.loads(p.read_text()))
        for p in run.paths.points.glob("*/result.json")
    ]
    assert (record.status, record.source, record.identity.backend) == (
        "ok",
        "toy-echo-json",
        "toy-echo",
    )
    assert record.metrics.avg_output_len == OSL and record.attempts[0]["outcome"] == "ok"
    assert dataclasses.asdict(record)["raw_files"]

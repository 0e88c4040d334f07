"""Published or claimed numbers to hold a run against: one small TOML schema, a loader, and a check
of each reference's own internal consistency.

Reads:  manifests/published/<name>.toml
Usage:  python -m bench.analysis.reference manifests/published/seed-report-claims.toml
        (prints the reference and what in it contradicts itself; exit 1 when something does)

A reference says where its numbers come from (source, date), what they claim to measure
(identity: model, TP, GPUs, ...), and the numbers: measured points (output tok/s, optionally
req/s, requests, total tokens, rank in a "top N" table; an online point's concurrency and
latencies), "best per ISL/OSL" rows and a peak.
A run's point that the reference does not list is NOT PUBLISHED there.

Its [identity] states or leaves open (`leaves_open`) every field of METHOD_FIELDS; a published
reference is compared only with a run of the same method (compare_method), where `minor` knobs
may differ and are named. kind = "claims" marks a report's claims, held to the logs they came from.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bench import backends
from bench.core.errors import KitError, run_main
from bench.core.manifest import Manifest
from bench.core.tomlconfig import read_toml, validate
from bench.schema.record import PointResult

SCHEMA = "trtllm-repro/reference/1"
RATE_TOLERANCE = 0.001  # output tok/s vs req/s x OSL: 0.1%
TOTAL_TOKENS_TOLERANCE = 0.01  # "~8.6M" style totals: 1%

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_renamed(name: str) -> str:
    """A published method may name an engine the kit lacks, but never one of the kit's old names."""
    if name in backends.RENAMED:
        raise ValueError(backends.problem(name))
    return name


class RefIdentity(_Table):
    """The method the numbers were measured with. Every field of METHOD_FIELDS is either stated
    here or named in `leaves_open` (the source does not say), so a reader sees what was checked.
    `minor`: stated knobs the source itself lets vary (e.g. the KV fraction "0.90 or lower on
    out-of-memory"); a difference there is noted, and the numbers are still compared."""

    model: str | None = None  # the base model
    checkpoint: str | None = None  # the weights as loaded, e.g. a pre-quantized repo
    checkpoint_revision: str | None = None
    quantization: str | None = None  # weights
    activations: str | None = None
    kv_cache_dtype: str | None = None
    backend: Annotated[str, AfterValidator(_not_renamed)] | None = None  # bench.backends' names
    engine_version: str | None = None  # the TensorRT-LLM release
    tp_size: Positive | None = None
    pp_size: Positive | None = None
    gpus: Positive | None = None
    gpu: str | None = None  # model and form factor, as bench.gpu.gpus names it ("H100-SXM")
    dataset_generator: str | None = None
    input_stdev: Annotated[int, Field(ge=0)] | None = None
    output_stdev: Annotated[int, Field(ge=0)] | None = None
    kv_cache_fraction: PositiveFloat | None = None
    cuda_graphs: bool | None = None
    chunked_prefill: bool | None = None
    # How the load was offered (issue 12): "offline" = every request queued at once (trtllm-bench
    # throughput, MLPerf Offline); "online" = requests arriving at a server (AIPerf against
    # trtllm-serve, MLPerf Server). streaming: tokens returned as generated (TTFT/TPOT measured).
    scenario: Literal["offline", "online"] | None = None
    streaming: bool | None = None
    leaves_open: list[str] = Field(default_factory=list)
    minor: list[str] = Field(default_factory=list)

    def model_ids(self) -> set[str]:
        return {m for m in (self.model, self.checkpoint) if m}

    def stated(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in METHOD_FIELDS if getattr(self, f) is not None}


# What makes two measurements the same method; each reference states or leaves open every one.
METHOD_FIELDS = (
    "model",
    "checkpoint",
    "checkpoint_revision",
    "quantization",
    "activations",
    "kv_cache_dtype",
    "backend",
    "engine_version",
    "tp_size",
    "pp_size",
    "gpus",
    "gpu",
    "dataset_generator",
    "input_stdev",
    "output_stdev",
    "kv_cache_fraction",
    "cuda_graphs",
    "chunked_prefill",
    "scenario",
    "streaming",
)


class RefLatency(_Table):
    """One published latency of an online point, named by the record's distribution that holds
    the same quantity (bench.schema.record.Metrics): a per-request inter-token latency (AIPerf's
    ITL, as bench.backends.aiperf records it) is `tpot_ms`, a pooled gap is `itl_ms`. stat None:
    the source does not say which statistic it printed (mean? median?): shown, never graded."""

    metric: Literal["ttft_ms", "tpot_ms", "itl_ms", "request_latency_ms"]
    stat: Literal["mean", "p50", "p90", "p95", "p99"] | None = None
    value: PositiveFloat  # in ms, as published

    @property
    def label(self) -> str:
        return f"{self.metric} {self.stat or '(statistic not stated)'}"


class RefPoint(_Table):
    isl: Positive
    osl: Positive
    concurrency: Positive | None = None  # requests in flight; None: no limit (all at once)
    requests: Positive | None = None
    output_tok_s: PositiveFloat
    req_s: PositiveFloat | None = None
    total_tokens: Positive | None = None
    rank: Positive | None = None  # position in the source's "top N" table
    tolerance_pct: PositiveFloat | None = None
    latency: list[RefLatency] = Field(default_factory=list)  # an online point's TTFT, ITL, ...
    note: str = ""

    @property
    def label(self) -> str:
        load = f" / concurrency {self.concurrency}" if self.concurrency else ""
        return f"ISL {self.isl} / OSL {self.osl}{load}"


class BestRow(_Table):
    isl: Positive
    osl: Positive
    output_tok_s: PositiveFloat
    requests: Positive | None = None


class Peak(_Table):
    output_tok_s: PositiveFloat | None = None
    req_s: PositiveFloat | None = None
    isl: Positive | None = None
    osl: Positive | None = None


class ScenarioResult(_Table):
    """A result over a dataset of varying lengths (MLPerf's CNN/DailyMail): no single ISL/OSL, so
    no run point is graded against it; its own latencies are checked against its limits."""

    id: str = Field(min_length=1)  # e.g. MLPerf's "5.1-0083"
    scenario: Literal["offline", "server", "interactive"]
    output_tok_s: PositiveFloat  # whole system
    ttft_p99_ms: PositiveFloat | None = None  # measured
    tpot_p99_ms: PositiveFloat | None = None
    ttft_limit_p99_ms: PositiveFloat | None = None  # the scenario's limits
    tpot_limit_p99_ms: PositiveFloat | None = None
    target_qps: PositiveFloat | None = None
    note: str = ""


class Reference(_Table):
    schema_: Literal["trtllm-repro/reference/1"] = Field(alias="schema")
    # published: numbers to reproduce, compared only with a run of the same method.
    # claims: a report's numbers said to come from the very logs audited; held to those logs
    # whatever their method (an identity that differs is a finding, FAIL, not a reason to skip).
    kind: Literal["published", "claims"] = "published"
    title: str = Field(min_length=1)
    source: str = Field(min_length=1)
    date: str = Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    metric: Literal["output_tok_s"] = "output_tok_s"
    tolerance_pct: PositiveFloat = 5.0
    notes: str = ""
    identity: RefIdentity = RefIdentity()
    points: list[RefPoint] = Field(default_factory=list)
    best_per_isl: list[BestRow] = Field(default_factory=list)
    best_per_osl: list[BestRow] = Field(default_factory=list)
    peak: Peak | None = None
    scenario_results: list[ScenarioResult] = Field(default_factory=list)

    def tolerance(self, point: RefPoint) -> float:
        return point.tolerance_pct if point.tolerance_pct is not None else self.tolerance_pct


# ----------------------------------------------------------------------------- pure functions


def parse_reference(data: dict[str, Any], path: str = "<reference>") -> Reference:
    ref = validate(Reference, data, path, "see manifests/published/*.toml for valid references")
    declared = ref.identity
    for name in (*declared.leaves_open, *declared.minor):
        if name not in METHOD_FIELDS:
            raise KitError(
                f"{name!r} is not a method field",
                path=path,
                key="identity",
                fix=f"use one of: {', '.join(METHOD_FIELDS)}",
            )
    for name in METHOD_FIELDS:
        stated = getattr(declared, name) is not None
        if stated == (name in declared.leaves_open):
            what = "both stated and in" if stated else "neither stated nor in"
            raise KitError(
                f"identity.{name} is {what} identity.leaves_open",
                path=path,
                key=f"identity.{name}",
                fix="state what the source says, or list the field in leaves_open if it is silent",
            )
    for name in declared.minor:
        if name in ("scenario", "streaming"):  # another way of offering the load: never minor
            raise KitError(
                f"identity.minor names {name}: how the load was offered is never a minor knob",
                path=path,
                key="identity.minor",
                fix=f"drop {name} from minor (a run that differs there is NOT COMPARABLE)",
            )
        if getattr(declared, name) is None:
            raise KitError(
                f"identity.minor names {name}, which the reference does not state",
                path=path,
                key="identity.minor",
                fix="state its value, or drop it from minor",
            )
    online = declared.scenario == "online"
    seen: dict[tuple[int, int, int | None], int] = {}
    for i, p in enumerate(ref.points):
        if online and p.concurrency is None:
            raise KitError(
                "an online reference's point states no concurrency",
                path=path,
                key=f"points[{i}].concurrency",
                fix="state the requests in flight the source measured it at",
            )
        if p.latency and not online:
            raise KitError(
                "latency on a point of a reference that is not online",
                path=path,
                key=f"points[{i}].latency",
                fix='set identity.scenario = "online" (what the source measured), or drop it',
            )
        if (p.isl, p.osl, p.concurrency) in seen:
            raise KitError(
                f"duplicate of points[{seen[p.isl, p.osl, p.concurrency]}] "
                f"(isl={p.isl}, osl={p.osl}"
                + (f", concurrency={p.concurrency})" if p.concurrency else ")"),
                path=path,
                key=f"points[{i}]",
                fix="list each ISL/OSL (and concurrency) once",
            )
        seen[p.isl, p.osl, p.concurrency] = i
    return ref


def load_reference(path: str | Path) -> Reference:
    data = read_toml(
        path, "reference", "pass REFERENCE=manifests/published/<name>.toml (see that folder)"
    )
    return parse_reference(data, str(path))


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _facts(ref: Reference) -> dict[tuple[int, int], tuple[float, str]]:
    """Every (ISL, OSL) -> output tok/s the reference states anywhere, with where it says it."""
    facts: dict[tuple[int, int], tuple[float, str]] = {}
    for i, p in enumerate(ref.points):  # over a concurrency sweep: the highest
        if (p.isl, p.osl) not in facts or p.output_tok_s > facts[p.isl, p.osl][0]:
            facts[p.isl, p.osl] = (p.output_tok_s, f"points[{i}]")
    for table in ("best_per_isl", "best_per_osl"):
        for i, row in enumerate(getattr(ref, table)):
            facts.setdefault((row.isl, row.osl), (row.output_tok_s, f"{table}[{i}]"))
    return facts


def consistency_problems(ref: Reference) -> list[str]:
    """What in the reference contradicts the reference itself (empty when nothing does).

    Checks: output tok/s vs req/s x OSL (0.1%); total tokens vs requests x (ISL + OSL) (1%);
    a value stated twice for one ISL/OSL; each "best per ISL/OSL" row against every number the
    reference states for that ISL/OSL; the peak against every number; a "top N" table's order.
    """
    problems = []
    for i, p in enumerate(ref.points):
        where = f"points[{i}] (ISL {p.isl}, OSL {p.osl})"
        if p.req_s is not None:
            implied = p.req_s * p.osl
            if not _close(p.output_tok_s, implied, RATE_TOLERANCE):
                problems.append(
                    f"{where}: output {p.output_tok_s:,.2f} tok/s but req/s x OSL = "
                    f"{p.req_s:g} x {p.osl} = {implied:,.2f} "
                    f"({abs(p.output_tok_s - implied) / implied:.2%} > 0.1%)"
                )
        if p.total_tokens is not None and p.requests is not None:
            implied_total = p.requests * (p.isl + p.osl)
            if not _close(p.total_tokens, implied_total, TOTAL_TOKENS_TOLERANCE):
                problems.append(
                    f"{where}: total tokens {p.total_tokens:,} but requests x "
                    f"(ISL + OSL) = {implied_total:,}"
                )
    facts = _facts(ref)
    for table in ("best_per_isl", "best_per_osl"):
        for i, row in enumerate(getattr(ref, table)):
            where = f"{table}[{i}] (ISL {row.isl}, OSL {row.osl}, {row.output_tok_s:,.2f})"
            stated = facts.get((row.isl, row.osl))
            if stated is not None and not _close(stated[0], row.output_tok_s, RATE_TOLERANCE):
                problems.append(f"{where}: {stated[1]} states {stated[0]:,.2f} for the same point")
            axis = 0 if table == "best_per_isl" else 1
            value = row.isl if axis == 0 else row.osl
            rivals = [
                (v, k, w)
                for k, (v, w) in facts.items()
                if k[axis] == value and v > row.output_tok_s * (1 + RATE_TOLERANCE)
            ]
            if rivals:
                v, k, w = max(rivals)
                problems.append(
                    f"{where}: not the best; {w} states ISL {k[0]}, OSL {k[1]} at {v:,.2f}"
                )
    if ref.peak is not None and ref.peak.output_tok_s is not None and facts:
        v, k, w = max((v, k, w) for k, (v, w) in facts.items())
        if v > ref.peak.output_tok_s * (1 + RATE_TOLERANCE):
            problems.append(
                f"peak {ref.peak.output_tok_s:,.2f} is below {w} "
                f"(ISL {k[0]}, OSL {k[1]}) at {v:,.2f}"
            )
    for i, r in enumerate(ref.scenario_results):
        for what, measured, limit in (
            ("TTFT", r.ttft_p99_ms, r.ttft_limit_p99_ms),
            ("TPOT", r.tpot_p99_ms, r.tpot_limit_p99_ms),
        ):
            if measured is not None and limit is not None and measured > limit:
                problems.append(
                    f"scenario_results[{i}] ({r.id}, {r.scenario}): {what} p99 {measured:g} ms "
                    f"is above its own limit {limit:g} ms: not a valid result"
                )
        if r.scenario == "offline" and (r.ttft_limit_p99_ms or r.tpot_limit_p99_ms):
            problems.append(
                f"scenario_results[{i}] ({r.id}): an offline result has no latency limit"
            )
    ranked = sorted((p for p in ref.points if p.rank is not None), key=lambda p: p.rank or 0)
    for a, b in itertools.pairwise(ranked):
        if b.output_tok_s > a.output_tok_s:
            problems.append(
                f"rank {b.rank} (ISL {b.isl}, OSL {b.osl}, {b.output_tok_s:,.2f}) is "
                f"above rank {a.rank} ({a.output_tok_s:,.2f})"
            )
    return problems


# ----------------------------------------------------------------------------- same method?

SAME, DIFFERS, MINOR, OPEN = "same", "DIFFERS", "minor: differs, still compared", "left open"


@dataclass(frozen=True)
class FieldCheck:
    field: str
    reference: Any  # None: the reference leaves it open
    run: Any  # None: the run does not record it
    outcome: str  # SAME, DIFFERS, MINOR or OPEN
    run_source: str = ""  # where the run's value comes from

    def describe(self) -> str:
        run = "not recorded" if self.run is None else self.run
        return f"{self.field} {run} vs {self.reference}"


@dataclass(frozen=True)
class MethodCheck:
    fields: tuple[FieldCheck, ...]

    @property
    def differences(self) -> list[FieldCheck]:
        return [f for f in self.fields if f.outcome == DIFFERS]

    @property
    def minor_differences(self) -> list[FieldCheck]:
        return [f for f in self.fields if f.outcome == MINOR]

    @property
    def comparable(self) -> bool:
        return not self.differences


def run_method(
    manifest: Manifest | None, records: Sequence[PointResult], gpu: str | None
) -> dict[str, tuple[Any, str]]:
    """The run's value of each method field and where it comes from; unknown ones are absent.

    The records (what the tool printed) win over the manifest (what the kit asked for); the GPU
    is the one provenance recorded, else the manifest's declared one (said so).
    """
    out: dict[str, tuple[Any, str]] = {}

    def recorded(field: str) -> Any:
        values = sorted({getattr(r.identity, field) for r in records} - {None}, key=str)
        return values[0] if len(values) == 1 else (", ".join(map(str, values)) or None)

    for field in ("backend", "engine_version", "tp_size", "pp_size", "kv_cache_dtype"):
        if (value := recorded(field)) is not None:
            out[field] = (value, "records")
    if (value := recorded("model")) is not None:
        out["model"] = (value, "records")
    for field in ("scenario", "streaming"):  # recorded per point by the producers (issue 12)
        values = sorted({getattr(r, field) for r in records}, key=str)
        if values:
            out[field] = (values[0] if len(values) == 1 else ", ".join(map(str, values)), "records")
    if gpu:
        out["gpu"] = (gpu, "provenance")
    if manifest is not None:
        m = manifest
        q = m.quantization
        declared = {
            "model": m.model.repo,
            "checkpoint": m.model.repo
            if q.method in ("prequantized", "none")
            else f"{m.model.repo} quantized by this kit ({q.method} {q.format})",
            "checkpoint_revision": m.model.revision,
            "quantization": q.format if q.method != "none" else "none",
            "activations": q.format if q.method == "modelopt" else None,
            "kv_cache_dtype": q.kv_cache_dtype,
            "backend": m.engine.backend,
            "tp_size": m.engine.tp_size,
            "pp_size": m.engine.pp_size,
            "gpu": m.hardware.gpu,
            "dataset_generator": m.dataset.generator,
            "input_stdev": m.dataset.input_stdev,
            "output_stdev": m.dataset.output_stdev,
            "kv_cache_fraction": m.runtime.kv_cache_free_gpu_mem_fraction,
            "cuda_graphs": _llm_option_on(m.runtime.extra_llm_api_options, CUDA_GRAPH_KEYS),
            "chunked_prefill": _llm_option_on(
                m.runtime.extra_llm_api_options, ("enable_chunked_prefill",)
            ),
            "scenario": getattr(m.sweep, "scenario", "offline"),  # the online helpers' key
            "streaming": m.measures_streaming(),
        }
        for field, value in declared.items():
            if value is not None:
                where = "manifest, declared: no provenance" if field == "gpu" else "manifest"
                out.setdefault(field, (value, where))
    if "tp_size" in out:
        tp, pp = out["tp_size"][0], out.get("pp_size", (1, ""))[0]
        if isinstance(tp, int) and isinstance(pp, int):
            out["gpus"] = (tp * pp, "TP x PP")
    return out


CUDA_GRAPH_KEYS = ("cuda_graph_config", "use_cuda_graph")


def _llm_option_on(options: dict[str, Any] | None, keys: Sequence[str]) -> bool:
    """Whether extra_llm_api_options turns a feature on (a table, or true); absent = off."""
    return any((options or {}).get(k) not in (None, False) for k in keys)


def _same(field: str, ref: Any, run: Any, model_ids: set[str]) -> bool:
    if field == "model":
        return run in model_ids
    if field == "gpu":  # "H100" states no form factor: any H100 form matches it
        run_gpu, ref_gpu = str(run).lower(), str(ref).lower()
        return run_gpu == ref_gpu or ("-" not in ref_gpu and run_gpu.startswith(ref_gpu + "-"))
    if isinstance(ref, bool) or isinstance(run, bool):
        return ref is run
    if isinstance(ref, float | int) and isinstance(run, float | int):
        return abs(ref - run) <= 1e-9 * max(abs(ref), abs(run), 1)
    return str(ref).lower() == str(run).lower()


def compare_method(identity: RefIdentity, run: dict[str, tuple[Any, str]]) -> MethodCheck:
    """Each method field: the same, different (not comparable), a declared-minor difference,
    or left open by the reference. A stated field the run does not record is a difference:
    sameness cannot be shown."""
    checks = []
    for field in METHOD_FIELDS:
        ref_value = getattr(identity, field)
        run_value, source = run.get(field, (None, ""))
        if ref_value is None:
            outcome = OPEN
        elif run_value is not None and _same(field, ref_value, run_value, identity.model_ids()):
            outcome = SAME
        else:
            outcome = MINOR if field in identity.minor else DIFFERS
        checks.append(FieldCheck(field, ref_value, run_value, outcome, source))
    # A reference that leaves the scenario open is an offline measurement (trtllm-bench, or logs
    # of it): a run whose points were measured online (a server driven by AIPerf) is another
    # method, never graded against it. One that states it was compared above, like any field.
    scenario, source = run.get("scenario", ("offline", ""))
    if identity.scenario is None and scenario != "offline":
        checks.append(FieldCheck("scenario", "offline", scenario, DIFFERS, source))
    return MethodCheck(tuple(checks))


def point_method_notes(
    identity: RefIdentity, point: RefPoint, got: PointResult
) -> tuple[list[str], list[str]]:
    """What of one point's own method differs, as (differences, declared-minor differences):
    its request count (the dataset), its concurrency (requests in flight; none = all at once),
    and a KV fraction that fell back from the reference's."""
    major: list[str] = []
    minor: list[str] = []
    if point.requests is not None and got.requests != point.requests:
        major.append(f"requests {got.requests} vs {point.requests}")
    if got.concurrency != point.concurrency:
        major.append(f"concurrency {in_flight(got.concurrency)} vs {in_flight(point.concurrency)}")
    fraction = got.identity.kv_cache_fraction
    wanted = identity.kv_cache_fraction
    if wanted is not None and fraction is not None and abs(fraction - wanted) > 1e-9:
        note = f"KV fraction {fraction:g} vs {wanted:g}"
        (minor if "kv_cache_fraction" in identity.minor else major).append(note)
    return major, minor


def in_flight(concurrency: int | None) -> str:
    return "no limit" if concurrency is None else str(concurrency)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.analysis.reference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("reference", type=Path)
    args = parser.parse_args(argv)

    def run() -> int:
        ref = load_reference(args.reference)
        problems = consistency_problems(ref)
        print(
            f"{args.reference}: {ref.title} ({ref.source}, {ref.date}); {len(ref.points)} points, "
            f"tolerance {ref.tolerance_pct:g}%"
        )
        for line in problems:
            print(f"  inconsistent: {line}")
        if not problems:
            print("  internally consistent (as far as it can be checked)")
        return 1 if problems else 0

    return run_main(run, "bench.analysis.reference")


if __name__ == "__main__":
    raise SystemExit(main())

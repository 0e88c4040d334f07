"""The accuracy gate's arithmetic: scores, confidence intervals, checks. Pure, no I/O, no torch.

bench.stages.accuracy (the stage) measures; this module decides. verify re-runs the same functions
on the
recorded raw values (the tool logs, the per-prompt agreement numbers), so a gate verdict can be
re-derived anywhere from the run's files alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from bench.core.manifest import Accuracy

SCHEMA = "trtllm-repro/accuracy/1"
# trtllm-eval mmlu's last result line, e.g. "MMLU weighted average accuracy: 68.12 (1026)"
# (tensorrt_llm/evaluate/mmlu.py, compute_score).
SCORE_LINE = {"mmlu": re.compile(r"MMLU weighted average accuracy: ([0-9.]+) \((\d+)\)")}


@dataclass(frozen=True)
class Check:
    """One gate condition: `metric op threshold` must hold."""

    metric: str
    value: float | str | None
    threshold: float | str | None
    op: Literal[">=", "<=", "=="]
    ci: tuple[float, float] | None = None

    @property
    def passed(self) -> bool:
        value, threshold = self.value, self.threshold
        if value is None:
            return False
        if self.op == "==":
            return value == threshold
        if not isinstance(value, int | float) or not isinstance(threshold, int | float):
            return False  # an order needs two numbers: text or a missing threshold fails the gate
        if self.op == ">=":
            return value >= threshold
        return value <= threshold

    def line(self) -> str:
        """The one line a failed gate prints: metric, value, threshold."""
        verdict = "passed" if self.passed else "FAILED"
        ci = f" ({self.ci[0]:.4g}..{self.ci[1]:.4g} CI)" if self.ci else ""
        return (
            f"accuracy gate {verdict}: {self.metric} = {_shown(self.value)}{ci}, "
            f"required {self.op} {_shown(self.threshold)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "op": self.op,
            "ci": list(self.ci) if self.ci else None,
            "passed": self.passed,
        }


def _shown(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------- statistics


def z_of(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: float, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion: sane at p near 0 or 1, unlike p +- z sqrt(pq/n)."""
    if n <= 0:
        return (0.0, 1.0)
    z, p = z_of(confidence), successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def ratio_ci(p1: float, n1: int, p2: float, n2: int, confidence: float) -> tuple[float, float]:
    """Interval of p1/p2 (proportions) by the delta method, the two taken as independent.

    FP8 and BF16 answer the same questions, so their errors correlate and the true interval is
    narrower: this one is conservative. trtllm-eval prints only the totals, not per-question marks.
    """
    r = p1 / p2
    var = r * r * ((1 - p1) / (n1 * p1) + (1 - p2) / (n2 * p2))
    half = z_of(confidence) * math.sqrt(var)
    return (r - half, r + half)


# ----------------------------------------------------------------------------- trtllm-eval


def parse_score(text: str, task: str) -> tuple[float, int] | None:
    """(accuracy in percent, questions) from trtllm-eval's output; None when it printed none."""
    found = SCORE_LINE[task].findall(text)
    if not found:
        return None
    score, n = found[-1]
    return float(score), int(n)


def eval_checks(
    fp8: tuple[float, int], bf16: tuple[float, int], acc: Accuracy, task: str
) -> list[Check]:
    """FP8 score >= min_ratio x BF16 score, with the ratio's confidence interval."""
    (s8, n8), (s16, n16) = fp8, bf16
    if s16 <= 0:
        return [Check(f"{task} BF16 score", s16, 0.0, ">=")]
    ci = ratio_ci(s8 / 100, n8, s16 / 100, n16, acc.confidence) if s8 > 0 else None
    # rounded: scores carry two decimals, and 67.32 / 68.0 must meet 0.99, not miss by 1e-17
    return [Check(f"{task} FP8/BF16 score ratio", round(s8 / s16, 9), acc.min_ratio, ">=", ci)]


# ----------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class PromptAgreement:
    """One prompt: teacher-forced positions compared, how many argmaxes agree, summed KL,
    and how many greedy tokens match before the first difference."""

    positions: int
    top1_matches: int
    kl_sum: float
    greedy_prefix: int


def agreement_summary(prompts: Sequence[PromptAgreement]) -> dict[str, float | int]:
    positions = sum(p.positions for p in prompts)
    return {
        "prompts": len(prompts),
        "positions": positions,
        "top1_agreement": sum(p.top1_matches for p in prompts) / positions,
        "mean_kl": sum(p.kl_sum for p in prompts) / positions,
        "mean_greedy_prefix": sum(p.greedy_prefix for p in prompts) / len(prompts),
    }


def agreement_checks(prompts: Sequence[PromptAgreement], acc: Accuracy) -> list[Check]:
    s = agreement_summary(prompts)
    matches = sum(p.top1_matches for p in prompts)
    return [
        Check(
            "top-1 next-token agreement",
            s["top1_agreement"],
            acc.min_top1_agreement,
            ">=",
            wilson(matches, int(s["positions"]), acc.confidence),
        ),
        Check(
            "mean KL(full precision || FP8) per token, nats", s["mean_kl"], acc.max_mean_kl, "<="
        ),
        Check(
            f"mean matching greedy prefix, tokens of {acc.max_new_tokens}",
            s["mean_greedy_prefix"],
            acc.min_greedy_prefix,
            ">=",
        ),
    ]


# ----------------------------------------------------------------------------- configuration


ROPE_SCALING_ALWAYS = ("rope_type", "factor")  # compared even when the export omits them


def _number(value: object) -> object:
    """500000 and 500000.0 are the same RoPE base; JSON and TOML keep the difference."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def normalized_rope(config: Mapping[str, Any]) -> dict[str, Any]:
    """RoPE settings from a Hugging Face config, a TensorRT-LLM checkpoint or an engine config,
    in one vocabulary: rope_theta (rotary_base) and rope_scaling (rotary_scaling, whose `type`
    is `rope_type`), numbers as floats, an empty scaling as None."""
    config = config.get("pretrained_config", config)
    theta = config.get("rope_theta", config.get("rotary_base"))
    scaling = config.get("rope_scaling", config.get("rotary_scaling")) or None
    if isinstance(scaling, Mapping):
        renamed = {("rope_type" if k == "type" else k): _number(v) for k, v in scaling.items()}
        if "rope_type" in scaling:
            renamed["rope_type"] = scaling["rope_type"]
        scaling = renamed
    return {"rope_theta": _number(theta), "rope_scaling": scaling}


def rope_comparison(
    model: Mapping[str, Any], evaluated: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """key -> (evaluated's value, model's value), equal when the model's RoPE is kept. Scaling
    compares its type and factor always, its other keys (llama3's low/high_freq_factor,
    original_max_position_embeddings) where the export has them (absent: the runtime's llama3
    defaults, which are Llama 3.1's). The one comparison quantize and the accuracy gate share."""
    want, got = normalized_rope(model), normalized_rope(evaluated)
    out: dict[str, tuple[Any, Any]] = {"rope_theta": (got["rope_theta"], want["rope_theta"])}
    scaling_want, scaling_got = want["rope_scaling"], got["rope_scaling"]
    if isinstance(scaling_want, Mapping) and isinstance(scaling_got, Mapping):
        keys = [k for k in scaling_want if k in ROPE_SCALING_ALWAYS or k in scaling_got]
        scaling_want = {k: scaling_want[k] for k in keys}
        scaling_got = {k: scaling_got.get(k) for k in keys}
    out["rope_scaling"] = (scaling_got, scaling_want)
    return out


def config_checks(model: Mapping[str, Any], evaluated: Mapping[str, Any]) -> list[Check]:
    """The evaluated checkpoint keeps the model's RoPE (theta and llama3 scaling).

    Short prompts on a random model cannot show a dropped rope_scaling (measured: the demo's KL
    is unchanged to 1e-6 at 1,024 tokens), and a real model shows it only past 8k tokens, so the
    configuration is compared itself.
    """
    return [
        Check(f"checkpoint {key} = model's", _canonical(got), _canonical(want), "==")
        for key, (got, want) in rope_comparison(model, evaluated).items()
    ]


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def passed(checks: Sequence[Check]) -> bool:
    return bool(checks) and all(c.passed for c in checks)


# ----------------------------------------------------------------------------- re-derivation


def rederive(record: Mapping[str, Any], acc: Accuracy, logs: Mapping[str, str]) -> list[Check]:
    """The gate's checks recomputed from the raw evidence and the manifest's own thresholds
    (not the thresholds written in the record): what verify trusts instead of `passed`."""
    if record.get("method") == "agreement":
        checks = agreement_checks([PromptAgreement(**p) for p in record["prompts"]], acc)
    else:
        scores = {label: parse_score(logs.get(label, ""), acc.task) for label in ("fp8", "bf16")}
        missing = [label for label, score in scores.items() if score is None]
        fp8, bf16 = scores["fp8"], scores["bf16"]
        if fp8 is None or bf16 is None:
            return [Check(f"trtllm-eval score line in {', '.join(missing)}.log", None, 0.0, ">=")]
        checks = eval_checks(fp8, bf16, acc, acc.task)
    return checks + [
        Check(c["metric"], c["value"], c["threshold"], c["op"])
        for c in record.get("checks", [])
        if c["op"] == "=="
    ]

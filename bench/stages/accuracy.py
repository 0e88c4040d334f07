"""Stage `accuracy`: does the FP8 model the sweep measures still answer like the model it came from?

Reads:  the fetched model (models/<repo>/<revision>/), the engine (tensorrt backend) or the FP8
        checkpoint (work/<run>/), and the pinned evaluation: a prompt set shipped in the kit
        (method "agreement") or an archive pinned by sha256 (method "trtllm-eval")
Writes: results/<run>/accuracy/accuracy.json (scores, ratio, CI, every check, the verdict),
        results/<run>/accuracy/{fp8,bf16}.log (trtllm-eval's own output, the raw evidence);
        a downloaded archive goes to work/<run>/accuracy/
Usage:  python -m bench.stages.accuracy --manifest manifests/demo.toml [--run demo]

trtllm-bench feeds random token ids and ignores EOS, so a broken quantization is measured as fast
as a good one. This stage runs after build and before the sweep on exactly the engine or
checkpoint the sweep loads. A failed gate does not stop the pipeline (the sweep still runs when
asked); report and verify mark the run, and `make verify` fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from bench.analysis import accuracy_metrics as am
from bench.backends.trtllm.commands import eval_backend, max_input_len
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, StageFailed, run_main
from bench.core.fileio import atomic_write_json, read_json, sha256_file
from bench.core.library_log import library_output_to
from bench.core.manifest import AGREEMENT, Accuracy, Manifest, Point
from bench.core.narrow import present
from bench.core.proc import run_logged
from bench.core.run import Run, RunPaths, add_run_args, open_run
from bench.core.runlock import locked

STAGE = "accuracy"
VERSION = 1  # bump when the accuracy record this stage writes would change
RESULT = "accuracy.json"
TRTLLM_EVAL = "trtllm-eval"
MMLU_MAX_INPUT = 4094  # trtllm-eval mmlu's --max_input_length default (1.0)
MMLU_MAX_OUTPUT = 2  # its --max_output_length default: the answer letter


def accuracy_dir(paths: RunPaths) -> Path:
    return paths.root / "accuracy"


def result_path(paths: RunPaths) -> Path:
    return accuracy_dir(paths) / RESULT


def fp8_target(run: Run) -> Path:
    """What the sweep loads: the engine, else the FP8 checkpoint (bench.stages.sweep's choice)."""
    return run.paths.engine if run.manifest.engine.needs_build else run.paths.checkpoint


def model_dir(run: Run) -> Path:
    return run.paths.model_dir(run.manifest.model.repo, run.manifest.model.revision)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


# ----------------------------------------------------------------------------- trtllm-eval argv


def eval_max_input(manifest: Manifest) -> int:
    """One prompt limit for both models, so both answer the same (truncated) prompts."""
    limit = MMLU_MAX_INPUT
    if manifest.engine.needs_build:
        limit = min(limit, max_input_len(manifest), manifest.engine.max_seq_len - MMLU_MAX_OUTPUT)
    return limit


def eval_argv(
    manifest: Manifest, *, model: Path, tokenizer: Path | None, engine: bool, dataset_dir: Path
) -> list[str]:
    """trtllm-eval (TensorRT-LLM 1.0, tensorrt_llm/commands/eval.py and evaluate/mmlu.py).

    The unquantized model is given as a Hugging Face folder with the manifest's backend, so both
    scores come from the same runtime; the engine needs --tokenizer (it holds none).
    """
    acc, e = present(manifest.accuracy, "accuracy"), manifest.engine
    max_input = eval_max_input(manifest)
    argv = [TRTLLM_EVAL, "--model", str(model)]
    if tokenizer is not None:
        argv += ["--tokenizer", str(tokenizer)]
    argv += ["--backend", eval_backend(manifest)]
    argv += ["--tp_size", str(e.tp_size), "--pp_size", str(e.pp_size)]
    if not engine:  # an engine has its limits built in
        argv += ["--max_seq_len", str(max_input + MMLU_MAX_OUTPUT)]
    return [
        *argv,
        acc.task,
        "--dataset_path",
        str(dataset_dir),
        "--num_samples",
        str(acc.num_samples),
        "--random_seed",
        str(acc.random_seed),
        "--max_input_length",
        str(max_input),
    ]


def eval_targets(run: Run) -> dict[str, tuple[Path, Path | None, bool]]:
    """label -> (--model, --tokenizer, is an engine)."""
    engine = run.manifest.engine.needs_build
    fp8 = (
        (run.paths.engine, model_dir(run), True) if engine else (run.paths.checkpoint, None, False)
    )
    return {"fp8": fp8, "bf16": (model_dir(run), None, False)}


MMLU_SUBJECTS = 57  # trtllm-eval samples ceil(num_samples / 57) questions per subject
MMLU_MEAN_PROMPT_TOKENS = 600  # 5-shot prompt, an estimate for the plan (not measured here)
BF16_ENGINE_BUILD_S = 300  # the LLM API builds a BF16 engine first on the tensorrt backend (guess)


def questions(acc: Accuracy) -> int:
    return (
        math.ceil(present(acc.num_samples, "accuracy.num_samples") / MMLU_SUBJECTS) * MMLU_SUBJECTS
    )


def plan_lines(run: Run) -> list[str]:
    """What `make plan` prints for this stage: the commands, or what runs in-process, and time."""
    acc = run.manifest.accuracy
    if acc is None:
        return ["# accuracy: no [accuracy] table (accuracy: not evidenced)"]
    if acc.method == AGREEMENT:
        return [
            f"# accuracy: FP8 {fp8_target(run)} vs full precision {model_dir(run)}: top-1 "
            f"agreement, KL, greedy prefix ({acc.max_new_tokens} tokens) on {acc.prompts}, "
            f"in-process ({run.manifest.runtime.device}), est. seconds"
        ]
    from bench.core import cost

    point = Point(isl=MMLU_MEAN_PROMPT_TOKENS, osl=MMLU_MAX_OUTPUT, requests=questions(acc))
    each = cost.Estimator(run.manifest).seconds(point)
    lines, total = [], 0.0
    for label, (model, tokenizer, engine) in eval_targets(run).items():
        argv = eval_argv(
            run.manifest,
            model=model,
            tokenizer=tokenizer,
            engine=engine,
            dataset_dir=Path(
                "<extracted " + Path(present(acc.dataset, "accuracy.dataset").archive).name + ">"
            ),
        )
        seconds = each + (
            0 if engine or not run.manifest.engine.needs_build else BF16_ENGINE_BUILD_S
        )
        total += seconds
        lines.append(f"{shlex.join(argv)}  # accuracy {label}, est. {cost.hms(seconds)}")
    return [
        *lines,
        f"# estimated accuracy time: {cost.hms(total)} GPU ({questions(acc)} {acc.task} "
        f"questions x 2 models, ~{MMLU_MEAN_PROMPT_TOKENS}-token prompts assumed)",
    ]


# ----------------------------------------------------------------------------- the dataset


def archive_path(run: Run) -> Path:
    """The pinned archive on this machine: a kit path as is, a URL downloaded into work/<run>/."""
    ds = present(present(run.manifest.accuracy, "accuracy").dataset, "accuracy.dataset")
    if not ds.archive.startswith(("https://", "http://")):
        return Path(ds.archive)
    return run.paths.work / "accuracy" / Path(ds.archive).name


def fetch_archive(run: Run) -> Path:
    ds = present(present(run.manifest.accuracy, "accuracy").dataset, "accuracy.dataset")
    path = archive_path(run)
    if not path.is_file() and ds.archive.startswith(("https://", "http://")):
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"[accuracy] downloading {ds.archive}", file=sys.stderr)
        partial = path.with_name(path.name + ".partial")
        with urllib.request.urlopen(ds.archive, timeout=600) as response, open(partial, "wb") as f:
            shutil.copyfileobj(response, f)
        partial.replace(path)
    if not path.is_file():
        raise KitError(
            "the evaluation archive does not exist", path=str(path), key="accuracy.dataset.archive"
        )
    digest = sha256_file(path)
    if ds.sha256 is None:
        raise KitError(
            f"not pinned: the archive's sha256 is {digest}",
            path=str(run.manifest_path),
            key="accuracy.dataset.sha256",
            fix=f'check the archive, then add sha256 = "{digest}" to [accuracy.dataset]',
        )
    if digest != ds.sha256:
        raise KitError(
            f"sha256 {digest} != pinned {ds.sha256}",
            path=str(path),
            key="accuracy.dataset.sha256",
            fix="the archive changed upstream or was damaged: delete it and rerun, or re-pin",
        )
    return path


def extract(archive: Path, into: Path) -> Path:
    """Unpack (no links, no paths outside `into`); the folder holding test/ is the dataset."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    for candidate in [into, *sorted(p for p in into.iterdir() if p.is_dir())]:
        if (candidate / "test").is_dir():
            return candidate
    raise KitError("the archive has no test/ folder (MMLU layout: dev/, test/)", path=str(archive))


def run_eval(run: Run, dataset_dir: Path) -> tuple[dict[str, dict], dict[str, list[str]]]:
    out_dir = accuracy_dir(run.paths)
    scores, argvs = {}, {}
    for label, (model, tokenizer, engine) in eval_targets(run).items():
        argv = eval_argv(
            run.manifest, model=model, tokenizer=tokenizer, engine=engine, dataset_dir=dataset_dir
        )
        log = out_dir / f"{label}.log"
        log.unlink(missing_ok=True)
        timeout_s = present(run.manifest.accuracy, "accuracy").timeout_s
        result = run_logged(argv, log, timeout_s=timeout_s)
        found = am.parse_score(log.read_text(encoding="utf-8", errors="replace"), argv_task(argv))
        if result.exit_code != 0 or found is None:
            why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
            raise StageFailed(
                f"trtllm-eval on the {label} model {why}"
                + ("" if found else " and printed no score"),
                path=str(log),
                fix="read the log; the model path and the options above are the inputs",
            )
        scores[label], argvs[label] = {"score": found[0], "n": found[1]}, argv
    return scores, argvs


def argv_task(argv: list[str]) -> str:
    return next(a for a in argv if a in am.SCORE_LINE)


# ----------------------------------------------------------------------------- agreement (torch)


def load_prompts(path: Path, sha256: str) -> list[str]:
    if not path.is_file():
        raise KitError("the prompt set does not exist", path=str(path), key="accuracy.prompts")
    if (digest := sha256_file(path)) != sha256:
        raise KitError(
            f"sha256 {digest} != pinned {sha256}", path=str(path), key="accuracy.prompts_sha256"
        )
    return [json.loads(line)["prompt"] for line in path.read_text("utf-8").splitlines() if line]


def measure_agreement(
    reference, candidate, prompt_ids: list[list[int]], max_new_tokens: int, device: str
) -> list[am.PromptAgreement]:
    """Teacher-forced next-token distributions at every prompt position, then greedy decoding.

    All prompts go as one left-padded batch (one forward, max_new_tokens decode steps per
    model): the same inputs for both models, and seconds instead of minutes on the demo's CPU.
    """
    import torch

    width = max(len(ids) for ids in prompt_ids)
    x = torch.tensor([[0] * (width - len(ids)) + ids for ids in prompt_ids], device=device)
    mask = torch.tensor(
        [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=device
    )
    with torch.inference_mode():
        p = reference(x, attention_mask=mask).logits.double().log_softmax(-1)
        q = candidate(x, attention_mask=mask).logits.double().log_softmax(-1)
        kl = (p.exp() * (p - q)).sum(-1) * mask
        top1 = (p.argmax(-1) == q.argmax(-1)) * mask
        greedy = [
            m.generate(
                x,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                pad_token_id=0,
            )[:, width:].tolist()
            for m in (reference, candidate)
        ]
    out = []
    for i, ids in enumerate(prompt_ids):
        pairs = zip(greedy[0][i], greedy[1][i], strict=True)
        out.append(
            am.PromptAgreement(
                positions=len(ids),
                top1_matches=int(top1[i].sum()),
                kl_sum=float(kl[i].sum()),
                greedy_prefix=next((j for j, (a, b) in enumerate(pairs) if a != b), max_new_tokens),
            )
        )
    return out


def agreement_gate(
    source: Path, checkpoint: Path, acc: Accuracy, prompts: list[str], device: str
) -> tuple[list[am.PromptAgreement], list[am.Check]]:
    """The demo's gate: full precision (the fetched model) vs the FP8 checkpoint, dequantized
    as the hf-transformers runner loads it; the agreement checks, then the RoPE configuration."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.stages.quantize import load_dequantized

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    reference = (
        AutoModelForCausalLM.from_pretrained(str(source), torch_dtype=torch.float32)
        .to(device)
        .eval()
    )
    candidate = load_dequantized(checkpoint, device=device)
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    measured = measure_agreement(reference, candidate, ids, acc.max_new_tokens, device)
    config = am.config_checks(
        read_json(source / "config.json"), read_json(checkpoint / "config.json")
    )
    return measured, am.agreement_checks(measured, acc) + config


# ----------------------------------------------------------------------------- the record


def evaluation_record(
    acc: Accuracy, scores: dict[str, dict], checks: list[am.Check], **extra
) -> dict:
    return {
        "schema": am.SCHEMA,
        "method": acc.method,
        "confidence": acc.confidence,
        **scores,
        **extra,
        "checks": [c.as_dict() for c in checks],
        "passed": am.passed(checks),
    }


def agreement_record(run: Run, prompts: list[am.PromptAgreement], checks: list[am.Check]) -> dict:
    acc = present(run.manifest.accuracy, "accuracy")
    s = am.agreement_summary(prompts)
    top1 = checks[0]
    top1_ci = list(top1.ci) if top1.ci else None
    return evaluation_record(
        acc,
        {
            "fp8": {"score": s["top1_agreement"], "n": s["positions"], "ci": top1_ci},
            "bf16": {"score": 1.0, "n": s["positions"], "ci": None},
        },
        checks,
        task=f"top-1 agreement with full precision, {s['prompts']} prompts",
        subset=f"{acc.prompts} ({s['prompts']} prompts, {s['positions']} positions)",
        ratio=s["top1_agreement"],
        ratio_ci=top1_ci,
        summary=s,
        prompts=[dataclasses.asdict(p) for p in prompts],
    )


def eval_record(run: Run, scores, argvs, checks) -> dict:
    acc = present(run.manifest.accuracy, "accuracy")
    dataset = present(acc.dataset, "accuracy.dataset")
    ratio = checks[0]
    return evaluation_record(
        acc,
        {
            label: {
                **v,
                "ci": [
                    100 * b for b in am.wilson(v["score"] / 100 * v["n"], v["n"], acc.confidence)
                ],
            }
            for label, v in scores.items()
        },
        checks,
        task=acc.task,
        subset=f"{scores['fp8']['n']} questions (num_samples {acc.num_samples}, "
        f"seed {acc.random_seed}) of {dataset.archive}",
        ratio=ratio.value,
        ratio_ci=list(ratio.ci) if ratio.ci else None,
        dataset={"archive": dataset.archive, "sha256": dataset.sha256},
        argv=argvs,
    )


def accuracy_stage(run: Run) -> int:
    m, acc = run.manifest, run.manifest.accuracy
    arts = Artifacts(run.paths)
    if acc is None:
        print("[accuracy] no [accuracy] table: accuracy not evidenced", file=sys.stderr)
        arts.record(STAGE, {}, [], {"configured": False})
        return 0
    target, source = fp8_target(run), model_dir(run)
    evaluated = files_under(target) + files_under(source)
    if not files_under(target):
        raise KitError(f"nothing to evaluate in {target}", fix="run `make quantize build` first")
    if acc.method == AGREEMENT:
        pinned = [Path(present(acc.prompts, "accuracy.prompts"))]
    else:
        pinned = [fetch_archive(run)]
    inputs = arts.input_digests([run.paths.resolved_manifest, *evaluated, *pinned])
    command = {"accuracy": acc.model_dump(mode="json"), "device": m.runtime.device}
    tools = rule.tool_versions(
        *(("torch", "transformers") if acc.method == AGREEMENT else ("tensorrt_llm",))
    )
    key = rule.StageKey(STAGE, VERSION, command, inputs, tools)
    if rule.skip_if_current(arts, key, "accuracy record"):
        return 0
    out_dir = accuracy_dir(run.paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    if acc.method == AGREEMENT:
        log = run.paths.stage_log(STAGE)
        log.unlink(missing_ok=True)
        with library_output_to(log):
            prompts, checks = agreement_gate(
                source,
                target,
                acc,
                load_prompts(pinned[0], present(acc.prompts_sha256, "accuracy.prompts_sha256")),
                m.runtime.device,
            )
        record = agreement_record(run, prompts, checks)
        outputs = [log]
    else:
        with tempfile.TemporaryDirectory(prefix="trtllm-repro-eval-") as tmp:
            scores, argvs = run_eval(run, extract(pinned[0], Path(tmp)))
        checks = am.eval_checks(
            (scores["fp8"]["score"], scores["fp8"]["n"]),
            (scores["bf16"]["score"], scores["bf16"]["n"]),
            acc,
            acc.task,
        )
        checks += am.config_checks(
            read_json(source / "config.json"), read_json(target / "config.json")
        )
        record = eval_record(run, scores, argvs, checks)
        outputs = [out_dir / "fp8.log", out_dir / "bf16.log"]
        if pinned[0].is_relative_to(run.paths.work):
            outputs.append(pinned[0])
    record["evaluated"] = {"fp8": arts.key(target), "bf16": arts.key(source)}
    atomic_write_json(result_path(run.paths), record)
    for check in checks:
        print(f"[accuracy] {check.line()}", file=sys.stderr)
    verdict = "PASSED" if record["passed"] else "FAILED (the sweep still runs; verify will fail)"
    print(f"[accuracy] gate {verdict}", file=sys.stderr)
    rule.record(
        arts,
        key,
        [*outputs, result_path(run.paths)],
        {"configured": True, "method": acc.method, "passed": record["passed"]},
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.accuracy", description=__doc__.splitlines()[0]
    )
    add_run_args(parser)
    args = parser.parse_args(argv)

    def stage() -> int:
        return accuracy_stage(open_run(args.manifest, args.run))

    return run_main(
        locked(args.run or args.manifest.stem, "accuracy", stage), "bench.stages.accuracy"
    )


if __name__ == "__main__":
    raise SystemExit(main())

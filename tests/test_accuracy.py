"""bench.stages.accuracy and bench.analysis.accuracy_metrics: the gate fails a damaged FP8
checkpoint and passes a
good one, trtllm-eval's argv is valid for TensorRT-LLM 1.0, verify re-derives the verdict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.analysis import accuracy_metrics as am
from bench.backends.hf_transformers import demo_model
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError
from bench.core.manifest import Accuracy, Calibration, load_manifest, parse_manifest
from bench.core.run import Run, RunPaths
from bench.core.tomlconfig import read_toml
from bench.stages import accuracy
from bench.stages.quantize import quantize_fp8, synthetic_calibration
from bench.stages.verify import FAIL, NOT_RUN, PASS, accuracy_verdicts
from tests.conftest import DEMO_MANIFEST, ROOT

FAKES = ROOT / "tests" / "fakes"
sys.path.insert(0, str(FAKES))

from trtllm_eval_options import TRTLLM_EVAL  # noqa: E402
from trtllm_options import UsageError, parse  # noqa: E402

TENSORRT = ROOT / "tests" / "data" / "manifests" / "fake-h100-tensorrt.toml"
PYTORCH = ROOT / "tests" / "data" / "manifests" / "fake-h100-pytorch.toml"
MINI_MMLU = ROOT / "tests" / "data" / "accuracy" / "mmlu-mini.tar.gz"
EVAL_ACC = Accuracy(
    method="trtllm-eval",
    num_samples=1026,
    dataset={"archive": "x.tar", "sha256": "0" * 64},
)


# ----------------------------------------------------------------------------- statistics, checks


def test_wilson_interval_matches_the_textbook_value():
    lo, hi = am.wilson(68, 100, 0.95)  # 0.68 of 100: 0.5833..0.7624 (Wilson, z = 1.96)
    assert lo == pytest.approx(0.5833, abs=1e-3) and hi == pytest.approx(0.7624, abs=1e-3)


def test_ratio_interval_holds_the_ratio_and_narrows_with_n():
    small = am.ratio_ci(0.67, 100, 0.68, 100, 0.95)
    large = am.ratio_ci(0.67, 10000, 0.68, 10000, 0.95)
    assert small[0] < 0.67 / 0.68 < small[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 5


def test_the_score_is_the_last_result_line():
    log = (
        "[TRT-LLM] [I] MMLU weighted average accuracy: 12.00 (5)\n"
        "[TRT-LLM] [I] MMLU weighted average accuracy: 68.12 (1026)\n"
    )
    assert am.parse_score(log, "mmlu") == (68.12, 1026)
    assert am.parse_score("Traceback ...", "mmlu") is None


def test_ratio_gate_at_its_threshold():
    just = am.eval_checks((67.32, 1026), (68.0, 1026), EVAL_ACC, "mmlu")  # ratio 0.99
    below = am.eval_checks((67.0, 1026), (68.0, 1026), EVAL_ACC, "mmlu")
    assert am.passed(just) and not am.passed(below)
    line = below[0].line()
    assert "mmlu FP8/BF16 score ratio = 0.9853" in line and "required >= 0.99" in line
    assert "FAILED" in line and "CI" in line


def test_no_checks_is_not_a_pass():
    assert not am.passed([])


def test_config_check_compares_hf_and_engine_rope():
    model = {"rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}}
    engine = {
        "pretrained_config": {
            "rotary_base": 500000.0,
            "rotary_scaling": {"rope_type": "llama3", "factor": 8.0},
        }
    }
    assert am.passed(am.config_checks(model, engine))
    dropped = am.config_checks(model, {"pretrained_config": {"rotary_base": 500000.0}})
    assert [c.metric for c in dropped if not c.passed] == ["checkpoint rope_scaling = model's"]


# ----------------------------------------------------------------------------- manifest


def test_trtllm_eval_needs_a_pinned_dataset():
    data = read_toml(TENSORRT, "manifest", "")
    del data["accuracy"]["dataset"]
    with pytest.raises(KitError, match=r"accuracy: .*method 'trtllm-eval' needs dataset"):
        parse_manifest(data, "m.toml")


def test_accuracy_needs_a_model_to_compare_with():
    data = read_toml(TENSORRT, "manifest", "")
    data["quantization"] = {"method": "prequantized"}
    with pytest.raises(KitError, match=r"accuracy: .*unquantized model is not fetched"):
        parse_manifest(data, "m.toml")


# ----------------------------------------------------------------------------- trtllm-eval argv


def fake_run(manifest: Path, root: Path) -> Run:
    paths = RunPaths(manifest.stem, root / "results", root / "work", root / "models", root / "rep")
    return Run(paths, load_manifest(manifest), manifest)


@pytest.mark.parametrize("manifest", [TENSORRT, PYTORCH], ids=["tensorrt", "pytorch"])
def test_eval_argv_is_valid_for_trtllm_eval_1_0(manifest, tmp_path):
    run = fake_run(manifest, tmp_path)
    for label, (model, tokenizer, engine) in accuracy.eval_targets(run).items():
        argv = accuracy.eval_argv(
            run.manifest, model=model, tokenizer=tokenizer, engine=engine, dataset_dir=tmp_path
        )
        parsed = parse(TRTLLM_EVAL, argv[1:])
        assert parsed.subcommand == "mmlu"
        assert parsed.sub.values["num_samples"] == 114
        assert parsed.values["backend"] == ("tensorrt" if manifest == TENSORRT else "pytorch")
        if label == "fp8":
            assert Path(parsed.values["model"]) == accuracy.fp8_target(run)


def test_the_option_table_rejects_what_1_0_does_not_have():
    with pytest.raises(UsageError, match="No such option: --num_questions"):
        parse(TRTLLM_EVAL, ["--model", "m", "mmlu", "--num_questions", "5"])
    with pytest.raises(UsageError, match="No such command 'mmlu_pro'"):
        parse(TRTLLM_EVAL, ["--model", "m", "mmlu_pro"])


def test_prompts_fit_the_engine_it_evaluates():
    m = load_manifest(TENSORRT)
    assert accuracy.eval_max_input(m) == 128  # max_input_len of the fake engine (max ISL)


def fake_eval(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(FAKES / "bin" / "trtllm-eval"), *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_fake_trtllm_eval_reports_the_score_the_test_sets(tmp_path):
    data = accuracy.extract(MINI_MMLU, tmp_path / "data")
    model = tmp_path / "bf16"
    model.mkdir()
    (model / "config.json").write_text("{}")
    argv = accuracy.eval_argv(
        load_manifest(PYTORCH), model=model, tokenizer=None, engine=False, dataset_dir=data
    )
    out = fake_eval(argv, {"FAKE_TRTLLM_EVAL_SCORE": "bf16=50.0", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert am.parse_score(out.stdout, "mmlu") == (50.0, 114)
    bad = fake_eval([*argv, "--num_questions", "3"])
    assert bad.returncode == 2 and "No such option: --num_questions" in bad.stderr


def test_an_unpinned_archive_stops_with_its_digest(tmp_path):
    data = read_toml(PYTORCH, "manifest", "")
    del data["accuracy"]["dataset"]["sha256"]
    manifest = parse_manifest(data, "m.toml")
    run = Run(fake_run(PYTORCH, tmp_path).paths, manifest, Path("m.toml"))
    with pytest.raises(KitError, match=r"accuracy.dataset.sha256: not pinned: .* 2394047a"):
        accuracy.fetch_archive(run)


# ----------------------------------------------------------------------------- the demo's gate


@pytest.fixture(scope="module")
def demo_pair(tmp_path_factory):
    """The demo model and its FP8 checkpoint, made as the pipeline makes them."""
    root = tmp_path_factory.mktemp("demo-pair")
    demo_model.make_tiny_llama(root / "model", demo_model.SEED)
    calib = synthetic_calibration(Calibration(source="synthetic", size=16, seq_len=64), 128256, 420)
    quantize_fp8(
        root / "model", root / "ckpt", export_format="hf", calib_input_ids=calib, device="cpu"
    )
    return root / "model", root / "ckpt"


def damaged_copy(checkpoint: Path, target: Path, damage) -> Path:
    import torch  # noqa: F401  (safetensors.torch needs it)
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint, target)
    for f in target.glob("*.safetensors"):
        tensors = load_file(str(f))
        save_file({k: damage(k, v) for k, v in tensors.items()}, str(f))
    return target


def demo_gate(model: Path, checkpoint: Path) -> list[am.Check]:
    acc = load_manifest(DEMO_MANIFEST).accuracy
    prompts = accuracy.load_prompts(ROOT / acc.prompts, acc.prompts_sha256)
    return accuracy.agreement_gate(model, checkpoint, acc, prompts, "cpu")[1]


def failed_lines(checks: list[am.Check]) -> list[str]:
    return [c.line() for c in checks if not c.passed]


@pytest.mark.slow
def test_the_undamaged_checkpoint_passes_the_gate(demo_pair):
    checks = demo_gate(*demo_pair)
    assert failed_lines(checks) == []
    assert len(checks) == 5


@pytest.mark.slow
def test_scales_off_by_a_factor_fail_the_gate(demo_pair, tmp_path):
    model, checkpoint = demo_pair
    bad = damaged_copy(
        checkpoint, tmp_path / "c", lambda k, v: v * 2 if k.endswith("weight_scale") else v
    )
    lines = failed_lines(demo_gate(model, bad))
    assert any(
        line.startswith("accuracy gate FAILED: top-1 next-token agreement = ")
        and "required >= 0.8" in line
        for line in lines
    ), lines


@pytest.mark.slow
def test_one_zeroed_layer_fails_the_gate(demo_pair, tmp_path):
    import torch

    model, checkpoint = demo_pair

    def zero_layer_1(name, tensor):
        hit = name.startswith("model.layers.1.") and name.endswith("proj.weight")
        return torch.zeros_like(tensor) if hit else tensor

    lines = failed_lines(demo_gate(model, damaged_copy(checkpoint, tmp_path / "c", zero_layer_1)))
    assert any("mean KL" in line and "required <= 0.0001" in line for line in lines), lines


@pytest.mark.slow
def test_dropped_rope_scaling_fails_the_gate(demo_pair, tmp_path):
    model, checkpoint = demo_pair
    bad = shutil.copytree(checkpoint, tmp_path / "c")
    config = json.loads((bad / "config.json").read_text())
    del config["rope_scaling"]
    (bad / "config.json").write_text(json.dumps(config))
    lines = failed_lines(demo_gate(model, bad))
    assert len(lines) == 1 and "checkpoint rope_scaling = model's = null" in lines[0], lines


# ----------------------------------------------------------------------------- verify


def verify_run(tmp_path: Path, record: dict | None, logs: dict[str, str]) -> RunPaths:
    paths = RunPaths("r", tmp_path / "results", tmp_path / "work", tmp_path / "m", tmp_path / "rep")
    folder = accuracy.accuracy_dir(paths)
    folder.mkdir(parents=True)
    for label, text in logs.items():
        (folder / f"{label}.log").write_text(text)
    if record is not None:
        (folder / accuracy.RESULT).write_text(json.dumps(record))
    return paths


def score_log(score: float, n: int = 1026) -> str:
    return f"[TRT-LLM] [I] MMLU weighted average accuracy: {score:.2f} ({n})\n"


def test_verify_rederives_the_gate_from_the_raw_logs(tmp_path):
    """A record that says passed while its logs say 60 vs 68 is caught twice."""
    record = {"method": "trtllm-eval", "passed": True, "checks": [], "evaluated": {}}
    paths = verify_run(tmp_path, record, {"fp8": score_log(60.0), "bf16": score_log(68.0)})
    verdicts = accuracy_verdicts(paths, load_manifest(TENSORRT), Artifacts(paths))
    by_claim = {v.claim: v for v in verdicts}
    assert by_claim["mmlu FP8/BF16 score ratio"].verdict == FAIL
    assert by_claim["recorded verdict follows from the raw values"].verdict == FAIL


def test_verify_passes_a_consistent_record(tmp_path):
    record = {"method": "trtllm-eval", "passed": True, "checks": [], "evaluated": {}}
    paths = verify_run(tmp_path, record, {"fp8": score_log(68.0), "bf16": score_log(68.2)})
    verdicts = accuracy_verdicts(paths, load_manifest(TENSORRT), Artifacts(paths))
    assert verdicts[0].verdict == PASS
    # no engine files recorded: nothing shows the gate evaluated what the sweep measured
    assert verdicts[-1].verdict == FAIL and verdicts[-1].claim.startswith("evaluated")


def test_imported_runs_say_not_evidenced(tmp_path):
    paths = verify_run(tmp_path, None, {})
    (verdict,) = accuracy_verdicts(paths, None, Artifacts(paths))
    assert verdict.verdict == NOT_RUN and verdict.note.startswith("accuracy: not evidenced")


def test_a_missing_record_fails_a_run_that_asked_for_the_gate(tmp_path):
    paths = verify_run(tmp_path, None, {})
    (verdict,) = accuracy_verdicts(paths, load_manifest(TENSORRT), Artifacts(paths))
    assert verdict.verdict == FAIL and "make accuracy RUN=r" in verdict.note

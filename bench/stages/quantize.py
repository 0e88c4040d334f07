"""Stage `quantize`: FP8 post-training quantization with NVIDIA ModelOpt, CPU demo and H100 alike.

Reads:  the fetched model (models/<repo>/<revision>/), the calibration set
Writes: work/<run>/checkpoint/ in the format the runtime loads:
        `trtllm-tensorrt` -> TensorRT-LLM checkpoint (config.json, rank0.safetensors)
        `trtllm-pytorch`, `hf-transformers` -> unified Hugging Face FP8 checkpoint
Usage:  python -m bench.stages.quantize --manifest manifests/demo.toml [--run demo]

`quantize_fp8` is the one function both paths call; only device, model and calibration differ.
FP8 weights and activations (per-tensor scales, max calibration) and, with kv_cache_dtype "fp8",
FP8 KV cache scales: ModelOpt's FP8_DEFAULT_CFG plus its FP8_KV_CFG entry, as TensorRT-LLM's
examples/quantization/quantize.py configures it. A manifest with method "prequantized" (NVIDIA's
nvidia/Llama-3.1-8B-Instruct-FP8) or "none" records the stage as a no-op.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path
from typing import Literal

import numpy as np

from bench import backends
from bench.analysis.accuracy_metrics import rope_comparison
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, StageFailed, run_main
from bench.core.fileio import read_json, sha256_file
from bench.core.library_log import library_output_to
from bench.core.manifest import Calibration, Manifest
from bench.core.narrow import present
from bench.core.run import Run, add_run_args, open_run
from bench.core.runlock import locked
from bench.core.stage_cache import cache_root, make_or_reuse, run_environment

VERSION = 1  # bump when the checkpoint this stage writes would change

ExportFormat = Literal["hf", "tensorrt_llm"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def export_format_for(manifest: Manifest) -> ExportFormat:
    return backends.get(manifest.engine.backend).checkpoint_format


# ----------------------------------------------------------------------------- ModelOpt


def fp8_config(kv_cache_fp8: bool) -> dict:
    import modelopt.torch.quantization as mtq

    cfg = copy.deepcopy(mtq.FP8_DEFAULT_CFG)
    if kv_cache_fp8:
        for pattern, setting in copy.deepcopy(mtq.FP8_KV_CFG)["quant_cfg"].items():
            if pattern != "default":
                cfg["quant_cfg"][pattern] = setting
    return cfg


def quantize_fp8(
    model_dir: Path,
    out_dir: Path,
    *,
    export_format: ExportFormat,
    calib_input_ids: list[list[int]],
    device: str,
    kv_cache_fp8: bool = True,
    tp_size: int = 1,
    pp_size: int = 1,
) -> list[Path]:
    """Load, calibrate (one sequence per step), export; returns the files written."""
    import modelopt.torch.quantization as mtq
    import torch
    from modelopt.torch.export import export_hf_checkpoint, export_tensorrt_llm_checkpoint
    from transformers import AutoModelForCausalLM

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    dtype = torch.bfloat16
    model = (
        AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=dtype).to(device).eval()
    )

    def forward_loop(m) -> None:
        for ids in calib_input_ids:
            m(torch.tensor([ids], dtype=torch.long, device=device))

    with torch.no_grad():
        model = mtq.quantize(model, fp8_config(kv_cache_fp8), forward_loop)
        if export_format == "hf":
            export_hf_checkpoint(model, dtype=dtype, export_dir=str(out_dir))
            for name in TOKENIZER_FILES:
                if (model_dir / name).is_file():
                    shutil.copyfile(model_dir / name, out_dir / name)
        else:
            model.config.architectures = model.config.architectures or ["LlamaForCausalLM"]
            export_tensorrt_llm_checkpoint(
                model,
                decoder_type="llama",
                dtype=dtype,
                export_dir=str(out_dir),
                inference_tensor_parallel=tp_size,
                inference_pipeline_parallel=pp_size,
            )
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    for p in files:
        p.chmod(0o644)
    return files


def load_dequantized(checkpoint: Path, device: str = "cpu"):
    """A float32 LlamaForCausalLM from a unified-HF FP8 checkpoint (w = fp8 x weight_scale).

    transformers 4.57 would load this checkpoint *without* its scales (it warns "Unknown
    quantization type, got modelopt") and silently produce a broken model, hence this loader.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    tensors: dict = {}
    for f in sorted(Path(checkpoint).glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    if not tensors:
        raise KitError(
            "no *.safetensors in the checkpoint",
            path=str(checkpoint),
            fix="run the quantize stage (make quantize)",
        )
    cfg = LlamaConfig.from_pretrained(str(checkpoint))
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    state = {}
    for name, t in tensors.items():
        if name.endswith("_scale"):  # weight_scale, input_scale, k_scale, v_scale
            continue
        if t.dtype == torch.float8_e4m3fn:
            state[name] = t.float() * tensors[name.removesuffix("weight") + "weight_scale"].float()
        else:
            state[name] = t.float()
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    rotary = model.model.rotary_emb  # a non-persistent buffer built on meta: rebuild it
    inv_freq, scaling = rotary.rope_init_fn(rotary.config, torch.device("cpu"))
    rotary.register_buffer("inv_freq", inv_freq, persistent=False)
    rotary.original_inv_freq, rotary.attention_scaling = inv_freq, scaling
    return model.float().to(device).eval()


# ----------------------------------------------------------------------------- calibration


def synthetic_calibration(cal: Calibration, vocab_size: int, seed: int) -> list[list[int]]:
    """Random token sequences: enough to set FP8 scales of the demo's random-weight model."""
    rng = np.random.Generator(np.random.PCG64([seed, 0xCA11B]))
    return rng.integers(0, vocab_size, size=(cal.size, cal.seq_len)).tolist()


def dataset_calibration(cal: Calibration, model_dir: Path) -> tuple[list[list[int]], Path]:
    """The pinned calibration file from the Hub (hashed), tokenized with the model's tokenizer."""
    import pandas as pd
    from huggingface_hub import hf_hub_download
    from transformers import AutoTokenizer

    repo = present(cal.dataset, "quantization.calibration.dataset")
    file = present(cal.file, "quantization.calibration.file")
    path = Path(hf_hub_download(repo, file, repo_type="dataset", revision=cal.revision))
    if cal.sha256 is not None and (digest := sha256_file(path)) != cal.sha256:
        raise KitError(
            f"calibration file sha256 {digest} != locked {cal.sha256}",
            path=str(path),
            key="quantization.calibration.sha256",
        )
    texts = pd.read_parquet(path, columns=[cal.text_column])[cal.text_column].tolist()[: cal.size]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = [tokenizer(t, truncation=True, max_length=cal.seq_len)["input_ids"] for t in texts]
    return ids, path


# ----------------------------------------------------------------------------- stage


def checkpoint_config_problems(
    source: dict, exported: dict, export_format: ExportFormat
) -> list[str]:
    """What the exported config.json lost that the source model's has: the model type the next
    tool reads (trtllm-build: `architecture`; the PyTorch backend: `model_type`) and Llama 3.1's
    RoPE scaling (type llama3, its factor) and base. A ModelOpt/transformers pair can drop RoPE
    silently (ModelOpt 0.47 with transformers 5); the model then runs, with wrong positions."""
    problems = []
    if export_format == "tensorrt_llm":
        want_arch = (source.get("architectures") or ["LlamaForCausalLM"])[0]
        if exported.get("architecture") != want_arch:
            problems.append(f"architecture is {exported.get('architecture')!r}, not {want_arch!r}")
        base_key = "rotary_base"
    else:
        if exported.get("model_type") != source.get("model_type"):
            problems.append(
                f"model_type is {exported.get('model_type')!r}, not {source.get('model_type')!r}"
            )
        base_key = "rope_theta"
    rope = rope_comparison(source, exported)
    got, want = rope["rope_scaling"]
    if want is not None and got != want:
        got, want = got or {}, want or {}
        problems.append(
            f"RoPE scaling is {got.get('rope_type')!r} with factor {got.get('factor')}, the "
            f"model's is {want.get('rope_type')!r} with factor {want.get('factor')} "
            f"(compared: {got} against {want})"
        )
    got, want = rope["rope_theta"]
    if want is not None and got != want:
        problems.append(f"{base_key} is {exported.get(base_key)}, not {source['rope_theta']}")
    return problems


def check_checkpoint_config(model_dir: Path, checkpoint: Path, export_format: ExportFormat) -> None:
    problems = checkpoint_config_problems(
        read_json(model_dir / "config.json"), read_json(checkpoint / "config.json"), export_format
    )
    if problems:
        raise StageFailed(
            "the exported checkpoint's config.json differs from the model's: "
            + "; ".join(problems),
            path=str(checkpoint / "config.json"),
            fix="use the ModelOpt/transformers pair of the pinned image (manifests/pins.toml); "
            "some pairs drop RoPE scaling on export",
        )


def quantize_command(m: Manifest) -> dict:
    """What the stage does, as parameters (the stage key's command)."""
    q = m.quantization
    if q.method != "modelopt":
        return {"method": q.method}
    return {
        "method": q.method,
        "export_format": export_format_for(m),
        "device": q.device,
        "kv_cache_dtype": q.kv_cache_dtype,
        "calibration": present(q.calibration, "quantization.calibration").model_dump(mode="json"),
        "seed": m.sweep.seed,
        "tp_size": m.engine.tp_size,
        "pp_size": m.engine.pp_size,
    }


def quantize_tools(m: Manifest) -> dict[str, str | None]:
    """ModelOpt and what it runs on; a no-op calls no tool."""
    if m.quantization.method != "modelopt":
        return {}
    return rule.tool_versions("nvidia-modelopt", "torch", "transformers")


def quantize_stage(run: Run) -> int:
    m = run.manifest
    arts = Artifacts(run.paths)
    model_dir = run.paths.model_dir(m.model.repo, m.model.revision)
    model_files = (
        sorted(p for p in model_dir.iterdir() if p.is_file()) if model_dir.is_dir() else []
    )
    if not model_files:
        raise KitError(
            "the model has not been fetched", path=str(model_dir), fix="run `make fetch`"
        )
    q = m.quantization
    # A no-op reads no model file, so it hashes none (the 16 GB of an 8B model take ~10 s).
    read = model_files if q.method == "modelopt" else []
    inputs = arts.input_digests([run.paths.resolved_manifest, *read])
    fmt = export_format_for(m)
    key = rule.StageKey("quantize", VERSION, quantize_command(m), inputs, quantize_tools(m))
    if rule.skip_if_current(arts, key, "checkpoint"):
        return 0
    if q.method != "modelopt":
        print(
            f"[quantize] no-op: quantization.method = {q.method!r} "
            "(the fetched model is used as is)",
            file=sys.stderr,
        )
        rule.record(arts, key, [], {"method": q.method})
        return 0
    calib_sha256 = None  # the file is pinned in the manifest (revision, sha256): not a key input
    calibration = present(q.calibration, "quantization.calibration")
    if calibration.source == "synthetic":
        vocab = read_json(model_dir / "config.json")["vocab_size"]
        calib = synthetic_calibration(calibration, vocab, m.sweep.seed)
    else:
        calib, calib_file = dataset_calibration(calibration, model_dir)
        calib_sha256 = arts.digest(calib_file)

    log = run.paths.stage_log("quantize")
    log.unlink(missing_ok=True)  # a reused checkpoint leaves none

    def make() -> list[Path]:
        print(
            f"[quantize] ModelOpt FP8 (KV cache {q.kv_cache_dtype}) on {q.device}, "
            f"{len(calib)} calibration sequences -> {fmt} checkpoint (library messages: {log})",
            file=sys.stderr,
        )
        with library_output_to(log):
            files = quantize_fp8(
                model_dir,
                run.paths.checkpoint,
                export_format=fmt,
                calib_input_ids=calib,
                device=q.device,
                kv_cache_fp8=q.kv_cache_dtype == "fp8",
                tp_size=m.engine.tp_size,
                pp_size=m.engine.pp_size,
            )
        check_checkpoint_config(model_dir, run.paths.checkpoint, fmt)  # never cache a bad one
        return files

    files, origin = make_or_reuse(
        cache_root(),
        "quantize",
        key.material(),
        run_environment(run.paths.provenance),
        run.paths.checkpoint,
        make,
        made_by=run.paths.name,
    )
    rule.record(
        arts,
        key,
        [*files, *([log] if log.is_file() else [])],
        {
            "method": "modelopt",
            "export_format": fmt,
            "device": q.device,
            "calibration": {
                "source": calibration.source,
                "size": len(calib),
                "seq_len": calibration.seq_len,
                "sha256": calib_sha256,
            },
            **origin,
        },
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.quantize", description=__doc__.splitlines()[0]
    )
    add_run_args(parser)
    args = parser.parse_args(argv)

    def stage() -> int:
        return quantize_stage(open_run(args.manifest, args.run))

    return run_main(
        locked(args.run or args.manifest.stem, "quantize", stage), "bench.stages.quantize"
    )


if __name__ == "__main__":
    raise SystemExit(main())

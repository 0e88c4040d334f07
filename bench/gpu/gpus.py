"""Physical limits: GPU datasheet constants, model shapes, and the two ceilings a point is held to.

Reads:  nothing (tables below); `shape_from_config` takes a parsed config.json
Used by: bench.analysis.tables (efficiency rows) and the report's efficiency section

The model is CEILING_DEFINITIONS below; every report prints it in its definitions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.schema.record import PointResult

CEILING_DEFINITIONS = """\
- FLOPs per request = 2 x P x (ISL + OSL) + 4 x L x d_attn x (ISL^2 / 2 + OSL x (ISL + OSL / 2)),
  where P = parameters in matrix multiplies (all layers and the LM head; the embedding lookup is
  free), L = layers, d_attn = heads x head_dim. The second term is QK^T and AV over the context
  each token sees (ISL/2 on average while prefilling, ISL + OSL/2 while decoding).
- % of compute ceiling = req/s x FLOPs per request / (dense peak FLOP/s x GPUs); the FP8 peak
  when the weights are FP8, else the BF16 peak.
- Bytes per output token (decode) = W / B + KV x (ISL + OSL / 2), where W = all weight bytes, read
  once per decode step and shared by the B sequences in flight; KV = 2 x L x kv_heads x head_dim x
  bytes per KV element; B = min(requests, max_batch_size, KV-cache tokens // (ISL + OSL)), each
  term only where recorded (a B too large raises the ceiling, it never hides a shortfall).
- % of bandwidth ceiling = output tok/s x bytes per output token / (HBM bandwidth x GPUs).
- Bound = the resource with the larger percentage (the one closer to saturation). Prefill weight
  reads and activation traffic are left out, so both ceilings are optimistic.
"""


@dataclass(frozen=True)
class GpuSpec:
    key: str
    fp8_dense_tflops: float
    bf16_dense_tflops: float
    hbm_tb_s: float
    memory_gb: float
    source: str


# Datasheet numbers (dense, i.e. without 2:4 sparsity). One row per GPU model, nowhere else.
GPUS: dict[str, GpuSpec] = {
    g.key: g
    for g in (
        GpuSpec("H100-SXM", 1979.0, 989.0, 3.35, 80.0, "NVIDIA H100 datasheet (SXM5)"),
        GpuSpec("H100-PCIe", 1513.0, 756.0, 2.0, 80.0, "NVIDIA H100 datasheet (PCIe)"),
        GpuSpec("H200", 1979.0, 989.0, 4.8, 141.0, "NVIDIA H200 datasheet (SXM)"),
    )
}


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool = False

    @property
    def matmul_params(self) -> int:
        """Parameters used in matrix multiplies per token: attention, MLP, LM head."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        attn = h * self.heads * self.head_dim * 2 + h * kv * 2  # q, o; k, v
        mlp = 3 * h * self.intermediate  # gate, up, down
        return self.layers * (attn + mlp) + self.vocab * h

    @property
    def all_params(self) -> int:
        """Everything stored: matmul weights, the embedding (unless tied), the norms."""
        norms = (2 * self.layers + 1) * self.hidden
        embed = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.matmul_params + embed + norms


# Used only when the model's config.json is not on this machine; keyed by the model id that the
# results themselves record (never a file or folder name).
LLAMA_31_8B = ModelShape(4096, 14336, 32, 32, 8, 128, 128256)
LLAMA_31_70B = ModelShape(8192, 28672, 80, 64, 8, 128, 128256)
MODELS: dict[str, ModelShape] = {
    "meta-llama/Llama-3.1-8B-Instruct": LLAMA_31_8B,
    "meta-llama/Llama-3.1-8B": LLAMA_31_8B,
    "nvidia/Llama-3.1-8B-Instruct-FP8": LLAMA_31_8B,
    "meta-llama/Llama-3.1-70B-Instruct": LLAMA_31_70B,
    "meta-llama/Llama-3.1-70B": LLAMA_31_70B,
    "nvidia/Llama-3.1-70B-Instruct-FP8": LLAMA_31_70B,
}


@dataclass(frozen=True)
class Efficiency:
    compute_pct: float
    bandwidth_pct: float
    batch: int
    flops_per_request: float
    bytes_per_output_token: float

    @property
    def bound(self) -> str:
        return "compute" if self.compute_pct >= self.bandwidth_pct else "bandwidth"


# ----------------------------------------------------------------------------- pure functions


def gpu_key(name: str | None, form_factor: str | None = None) -> str | None:
    """Table key for a GPU as the driver names it ("NVIDIA H100 80GB HBM3") or a manifest does
    ("H100-SXM"); None when it is not in the table."""
    if not name:
        return None
    if name in GPUS:
        return name
    upper = name.upper()
    if "H200" in upper:
        return "H200" if "NVL" not in upper else None
    if "H100" in upper:
        form = (form_factor or "").upper()
        if "NVL" in upper or form == "NVL":
            return None
        if "PCIE" in upper or form == "PCIE":
            return "H100-PCIe"
        if "SXM" in upper or form == "SXM" or re.search(r"H100 \d+GB HBM3\b", upper):
            return "H100-SXM"
    return None


def shape_from_config(config: dict[str, Any]) -> ModelShape:
    """A Llama-style config.json as a ModelShape (KeyError names a missing key)."""
    heads = config["num_attention_heads"]
    return ModelShape(
        hidden=config["hidden_size"],
        intermediate=config["intermediate_size"],
        layers=config["num_hidden_layers"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads", heads),
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        vocab=config["vocab_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def flops_per_request(shape: ModelShape, isl: int, osl: int) -> float:
    d_attn = shape.heads * shape.head_dim
    linear = 2.0 * shape.matmul_params * (isl + osl)
    attention = 4.0 * shape.layers * d_attn * (isl * isl / 2 + osl * (isl + osl / 2))
    return linear + attention


def bytes_per_element(dtype: str | None) -> float:
    """FP8 -> 1, FP4/NVFP4 -> 0.5, anything else (bf16, fp16, unknown) -> 2."""
    text = (dtype or "").upper()
    if "FP8" in text or "INT8" in text:
        return 1.0
    if "FP4" in text or "INT4" in text:
        return 0.5
    return 2.0


def decode_batch(
    requests: int, isl: int, osl: int, max_batch_size: int | None, kv_cache_max_tokens: int | None
) -> int:
    limits = [requests]
    if max_batch_size:
        limits.append(max_batch_size)
    if kv_cache_max_tokens:
        limits.append(max(1, kv_cache_max_tokens // (isl + osl)))
    return max(1, min(limits))


def efficiency(
    shape: ModelShape,
    gpu: GpuSpec,
    gpus: int,
    *,
    isl: int,
    osl: int,
    requests: int,
    req_s: float,
    output_tok_s: float,
    weight_dtype: str | None,
    kv_dtype: str | None,
    max_batch_size: int | None = None,
    kv_cache_max_tokens: int | None = None,
) -> Efficiency:
    """Achieved throughput as a share of the compute and the HBM-bandwidth ceiling."""
    peak_flops = (
        (gpu.fp8_dense_tflops if bytes_per_element(weight_dtype) <= 1 else gpu.bf16_dense_tflops)
        * 1e12
        * gpus
    )
    flops = flops_per_request(shape, isl, osl)
    batch = decode_batch(requests, isl, osl, max_batch_size, kv_cache_max_tokens)
    weight_bytes = shape.all_params * bytes_per_element(weight_dtype)
    kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * bytes_per_element(kv_dtype)
    per_token = weight_bytes / batch + kv_per_token * (isl + osl / 2)
    bandwidth = gpu.hbm_tb_s * 1e12 * gpus
    return Efficiency(
        compute_pct=100.0 * req_s * flops / peak_flops,
        bandwidth_pct=100.0 * output_tok_s * per_token / bandwidth,
        batch=batch,
        flops_per_request=flops,
        bytes_per_output_token=per_token,
    )


def record_efficiency(
    shape: ModelShape,
    gpu: GpuSpec,
    gpus: int,
    record: PointResult,
    *,
    req_s: float,
    output_tok_s: float,
) -> Efficiency:
    """efficiency() of a record's point (its lengths, dtypes and limits as recorded) at the given
    rates: the record's own, or the mean over its repeats."""
    ident = record.identity
    return efficiency(
        shape,
        gpu,
        gpus,
        isl=record.isl,
        osl=record.osl,
        requests=record.requests,
        req_s=req_s,
        output_tok_s=output_tok_s,
        weight_dtype=ident.quantization or ident.dtype,
        kv_dtype=ident.kv_cache_dtype,
        max_batch_size=ident.max_batch_size,
        kv_cache_max_tokens=record.memory.kv_cache_max_tokens,
    )

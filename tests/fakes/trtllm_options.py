"""The pinned TensorRT-LLM release's command-line options, as data, and a strict parser over them.

Used by the fake tools in tests/fakes/bin/ (so a flag the release does not have fails the way the
real tool fails: exit 2 with click's or argparse's message) and by tests/test_trtllm_commands.py
(so every argv bench/backends/trtllm/commands.py builds is checked without running anything).
Stdlib only.

Release: TensorRT-LLM 1.0.0 (tag v1.0.0 = commit ae8270b713446948246f16fadf4e2a32e35d0f62). The
tag's files are not in the source index, so each table names the stored NVIDIA/TensorRT-LLM
version it was read at (named above each table). Stricter than the real
tools in one way, on purpose: argparse would accept unambiguous abbreviations (`--max_batch`);
these tables accept full names only, so the kit never depends on abbreviation matching.
Options of `trtllm-bench latency` and prepare_dataset's `dataset` subcommand are not tabled: the
kit does not call them, and the fakes say so instead of pretending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLICK, ARGPARSE = "click", "argparse"


@dataclass(frozen=True)
class Opt:
    """One option. kind: int, float, str, path, flag (no value), bool (click BOOL value),
    choice, nargs+ (argparse, one or more values), int2 (click nargs=2)."""

    kind: str
    choices: tuple[str, ...] = ()
    required: bool = False
    default: object = None
    aliases: tuple[str, ...] = ()
    exists: bool = False  # click.Path(exists=True)
    min: int | None = None  # click.IntRange(min=...)


@dataclass(frozen=True)
class Command:
    prog: str
    style: str  # CLICK or ARGPARSE
    options: dict[str, Opt]
    subcommands: dict[str, Command] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()  # click positional arguments, all required ("MODEL")


LOG_LEVELS = ("internal_error", "error", "warning", "info", "verbose", "debug", "trace")
ENABLE = ("enable", "disable")

# ----------------------------------------------------------------------------- trtllm-bench
# Group: tensorrt_llm/commands/bench.py of the 1.0.0rc4 era (the 000a01de line): --model/-m,
# --model_path, --workspace/-w, --log_level. `--revision` came later (it is in the stored
# 0c9a37db1f06912c2109c13272029bd7a13cb248, a post-1.0 commit): 1.0 rejects it.
BENCH_GROUP = {
    "--model": Opt("str", required=True, aliases=("-m",)),
    "--model_path": Opt("path"),
    "--workspace": Opt("path", default="/tmp", aliases=("-w",)),
    "--log_level": Opt("choice", choices=LOG_LEVELS, default="info"),
}

# tensorrt_llm/bench/benchmark/throughput.py @ 000a01de66f0eab4ab05640711f0253f50f5209c (1.0.0rc4).
BENCH_THROUGHPUT = {
    # Engine run configuration
    "--engine_dir": Opt("path", exists=True),
    "--backend": Opt("choice", choices=("pytorch", "_autodeploy", "tensorrt"), default="pytorch"),
    "--extra_llm_api_options": Opt("str"),
    "--max_batch_size": Opt("int"),
    "--max_num_tokens": Opt("int"),
    "--max_seq_len": Opt("int"),
    "--beam_width": Opt("int", default=1),
    "--kv_cache_free_gpu_mem_fraction": Opt("float", default=0.90),
    # Engine input configuration (--dataset is click-optional; the code opens it regardless)
    "--dataset": Opt("path", exists=True),
    "--eos_id": Opt("int", default=-1),
    "--modality": Opt("choice", choices=("image", "video")),
    "--max_input_len": Opt("int", default=4096),
    "--num_requests": Opt("int", default=0),
    "--warmup": Opt("int", default=2),
    "--target_input_len": Opt("int", min=1),
    "--target_output_len": Opt("int", min=1),
    # World configuration
    "--tp": Opt("int", default=1),
    "--pp": Opt("int", default=1),
    "--ep": Opt("int"),
    "--cluster_size": Opt("int"),
    # Request load control
    "--concurrency": Opt("int", default=-1),
    "--streaming": Opt("flag"),
    # Reporting
    "--report_json": Opt("path"),
    "--iteration_log": Opt("path"),
    "--output_json": Opt("path"),
    "--request_json": Opt("path"),
    "--enable_chunked_context": Opt("flag"),
    "--scheduler_policy": Opt(
        "choice", choices=("guaranteed_no_evict", "max_utilization"), default="guaranteed_no_evict"
    ),
}

# The LLM arguments `--extra_llm_api_options` may set, as trtllm-bench 1.0 validates them: the LLM
# arguments are pydantic models with extra="forbid" (StrictBaseModel), so an unknown key at any
# level is a ValidationError. Top-level names: the fields of BaseLlmArgs + TorchLlmArgs in
# tensorrt_llm/llmapi/llm_args.py of the 1.0 line (source index id 1090804222); nested tables: the
# sub-models the kit may set, their fields read at the same file (CudaGraphConfig: batch_sizes,
# max_batch_size, enable_padding; 0.21's top-level `use_cuda_graph` is gone).
_LLM_API_SCALARS = (
    "model tokenizer tokenizer_mode skip_tokenizer_init trust_remote_code "
    "tensor_parallel_size dtype revision tokenizer_revision pipeline_parallel_size "
    "context_parallel_size gpus_per_node moe_cluster_parallel_size moe_tensor_parallel_size "
    "moe_expert_parallel_size enable_attention_dp cp_config load_format enable_lora "
    "lora_config quant_config enable_chunked_prefill guided_decoding_backend "
    "batched_logits_processor iter_stats_max_iterations request_stats_max_iterations "
    "peft_cache_config scheduler_config cache_transceiver_config speculative_config "
    "batching_type normalize_log_probs max_batch_size max_input_len max_seq_len "
    "max_beam_width max_num_tokens gather_generation_logits num_postprocess_workers "
    "postprocess_tokenizer_dir reasoning_parser garbage_collection_gen0_threshold backend "
    "build_config disable_overlap_scheduler moe_config attn_backend enable_mixed_sampler "
    "enable_trtllm_sampler kv_cache_dtype enable_iter_perf_stats enable_iter_req_stats "
    "print_iter_log torch_compile_config enable_autotuner enable_layerwise_nvtx_marker "
    "enable_min_latency stream_interval force_dynamic_quantization allreduce_strategy "
    "checkpoint_loader checkpoint_format"
)
LLM_API_1_0: dict[str, frozenset[str] | None] = dict.fromkeys(_LLM_API_SCALARS.split()) | {
    "cuda_graph_config": frozenset({"batch_sizes", "max_batch_size", "enable_padding"}),
    "kv_cache_config": frozenset(
        {
            "enable_block_reuse",
            "max_tokens",
            "max_attention_window",
            "sink_token_length",
            "free_gpu_memory_fraction",
            "host_cache_size",
            "onboard_blocks",
            "cross_kv_cache_fraction",
            "secondary_offload_min_priority",
            "event_buffer_max_size",
            "enable_partial_reuse",
            "copy_on_partial_reuse",
            "use_uvm",
            "dtype",
        }
    ),
}


def llm_api_errors(options: dict, table: dict[str, frozenset[str] | None]) -> list[str]:
    """pydantic's 'Extra inputs are not permitted' locations for every unknown key, nested too."""
    errors = []
    for key, value in options.items():
        if key not in table:
            errors.append(f"{key}\n  Extra inputs are not permitted [type=extra_forbidden]")
            continue
        nested = table[key]
        if nested is not None and isinstance(value, dict):
            errors += [
                f"{key}.{sub}\n  Extra inputs are not permitted [type=extra_forbidden]"
                for sub in value
                if sub not in nested
            ]
    return errors


# tensorrt_llm/bench/build/build.py @ 000a01de66f0eab4ab05640711f0253f50f5209c (1.0.0rc4).
# VALID_QUANT_ALGOS: only the tuned names the notes confirm; the release may accept more QuantAlgo
# names, which the fake rejects (the kit does not use them).
QUANT_ALGOS = ("FP8", "NVFP4", "FP8_BLOCK_SCALES")
BENCH_BUILD = {
    "--tp_size": Opt("int", default=1, aliases=("-tp",)),
    "--pp_size": Opt("int", default=1, aliases=("-pp",)),
    "--quantization": Opt("choice", choices=QUANT_ALGOS, aliases=("-q",)),
    "--max_seq_len": Opt("int", min=1),
    "--no_weights_loading": Opt("bool", default=False),
    "--trust_remote_code": Opt("bool", default=False),
    "--dataset": Opt("path", exists=True),
    "--max_batch_size": Opt("int", min=1),
    "--max_num_tokens": Opt("int", min=1),
    "--target_input_len": Opt("int", min=1),
    "--target_output_len": Opt("int", min=1),
}

TRTLLM_BENCH = Command(
    "trtllm-bench",
    CLICK,
    BENCH_GROUP,
    {
        "throughput": Command("trtllm-bench throughput", CLICK, BENCH_THROUGHPUT),
        "build": Command("trtllm-bench build", CLICK, BENCH_BUILD),
    },
)

# ----------------------------------------------------------------------------- trtllm-build
# tensorrt_llm/commands/build.py @ 008b2b8d23af95e4e19fa6f354f9c5f6349b2bfc (1.0 era) plus the
# plugin options of tensorrt_llm/plugin/plugin.py (add_plugin_argument) of the same era.
GEMM_PLUGIN = ("auto", "float16", "float32", "bfloat16", "int32", "fp8", "nvfp4", "disable")
PLUGIN_DTYPE = ("auto", "float16", "float32", "bfloat16", "int32", "disable")
FP8_PLUGIN = ("fp8", "disable")
BUILD = {
    "--checkpoint_dir": Opt("str"),
    "--model_config": Opt("str"),
    "--build_config": Opt("str"),
    "--model_cls_file": Opt("str"),
    "--model_cls_name": Opt("str"),
    "--output_dir": Opt("str", default="engine_outputs"),
    "--max_batch_size": Opt("int", default=2048),
    "--max_input_len": Opt("int", default=1024),
    "--max_seq_len": Opt("int"),
    "--max_decoder_seq_len": Opt("int"),
    "--max_beam_width": Opt("int", default=1),
    "--max_num_tokens": Opt("int", default=8192),
    "--opt_num_tokens": Opt("int"),
    "--max_encoder_input_len": Opt("int", default=1024),
    "--max_prompt_embedding_table_size": Opt("int", default=0),
    "--max_multimodal_len": Opt("int"),
    "--kv_cache_type": Opt("choice", choices=("continuous", "paged", "disabled")),
    "--paged_kv_cache": Opt("str"),
    "--input_timing_cache": Opt("str"),
    "--output_timing_cache": Opt("str", default="model.cache"),
    "--profiling_verbosity": Opt(
        "choice", choices=("layer_names_only", "detailed", "none"), default="layer_names_only"
    ),
    "--strip_plan": Opt("flag"),
    "--weight_sparsity": Opt("flag"),
    "--weight_streaming": Opt("flag"),
    "--fast_build": Opt("flag"),
    "--enable_debug_output": Opt("flag"),
    "--dry_run": Opt("flag"),
    "--monitor_memory": Opt("flag"),
    "--workers": Opt("int", default=1),
    "--log_level": Opt("choice", choices=LOG_LEVELS, default="info"),
    "--visualize_network": Opt("str"),
    "--logits_dtype": Opt("choice", choices=("float16", "float32")),
    "--gather_context_logits": Opt("flag"),
    "--gather_generation_logits": Opt("flag"),
    "--gather_all_token_logits": Opt("flag"),
    "--lora_dir": Opt("nargs+"),
    "--lora_ckpt_source": Opt("choice", choices=("hf", "nemo"), default="hf"),
    "--lora_target_modules": Opt("nargs+"),
    "--max_lora_rank": Opt("int", default=64),
    "--speculative_decoding_mode": Opt(
        "choice",
        choices=(
            "draft_tokens_external",
            "lookahead_decoding",
            "medusa",
            "explicit_draft_tokens",
            "eagle",
        ),
    ),
    "--max_draft_len": Opt("int", default=0),
    "--auto_parallel": Opt("int", default=1),
    "--gpus_per_node": Opt("int", default=8),
    "--cluster_key": Opt("str"),
    # plugins
    "--bert_attention_plugin": Opt("choice", choices=PLUGIN_DTYPE, default="auto"),
    "--gpt_attention_plugin": Opt("choice", choices=PLUGIN_DTYPE, default="auto"),
    "--gemm_plugin": Opt("choice", choices=GEMM_PLUGIN),
    "--gemm_swiglu_plugin": Opt("choice", choices=FP8_PLUGIN),
    "--fp8_rowwise_gemm_plugin": Opt("choice", choices=PLUGIN_DTYPE),
    "--lora_plugin": Opt("choice", choices=PLUGIN_DTYPE),
    "--dora_plugin": Opt("choice", choices=ENABLE, default="disable"),
    "--moe_plugin": Opt("choice", choices=PLUGIN_DTYPE, default="auto"),
    "--mamba_conv1d_plugin": Opt("choice", choices=PLUGIN_DTYPE, default="auto"),
    "--nccl_plugin": Opt("choice", choices=PLUGIN_DTYPE, default="auto"),
    "--low_latency_gemm_plugin": Opt("choice", choices=FP8_PLUGIN),
    "--low_latency_gemm_swiglu_plugin": Opt("choice", choices=FP8_PLUGIN),
    "--gemm_allreduce_plugin": Opt("choice", choices=PLUGIN_DTYPE),
    # plugin features: enable/disable
    "--context_fmha": Opt("choice", choices=ENABLE, default="enable"),
    "--bert_context_fmha_fp32_acc": Opt("choice", choices=ENABLE, default="disable"),
    "--remove_input_padding": Opt("choice", choices=ENABLE, default="enable"),
    "--tokens_per_block": Opt("int", default=32),
    "--use_paged_context_fmha": Opt("choice", choices=ENABLE, default="enable"),
    "--use_fp8_context_fmha": Opt("choice", choices=ENABLE, default="enable"),
    "--fuse_fp4_quant": Opt("choice", choices=ENABLE, default="disable"),
    "--multiple_profiles": Opt("choice", choices=ENABLE, default="disable"),
    "--paged_state": Opt("choice", choices=ENABLE, default="enable"),
    "--streamingllm": Opt("choice", choices=ENABLE, default="disable"),
    "--norm_quant_fusion": Opt("choice", choices=ENABLE, default="disable"),
    "--reduce_fusion": Opt("choice", choices=ENABLE, default="disable"),
    "--user_buffer": Opt("choice", choices=ENABLE, default="disable"),
    "--use_fused_mlp": Opt("choice", choices=ENABLE, default="enable"),
    "--pp_reduce_scatter": Opt("choice", choices=ENABLE, default="disable"),
}
TRTLLM_BUILD = Command("trtllm-build", ARGPARSE, BUILD)

# ----------------------------------------------------------------------------- prepare_dataset.py
# benchmarks/cpp/prepare_dataset.py (+ utils/prepare_synthetic_data.py), the older stored variant
# (source index id 1064076926, 1.0 line). The newer variant's --lora-dir/--trust-remote-code are
# left out: their presence at v1.0.0 is unconfirmed, so the kit must not use them.
PREPARE_GROUP = {
    "--tokenizer": Opt("str", required=True),
    "--output": Opt("str", default="preprocessed_dataset.json"),
    "--stdout": Opt("flag"),
    "--random-seed": Opt("int", default=420),
    "--task-id": Opt("int", default=-1),
    "--rand-task-id": Opt("int2"),
    "--log-level": Opt("choice", choices=("info", "debug"), default="info"),
}
TOKEN_NORM_DIST = {
    name: Opt("int", required=True)
    for name in (
        "--num-requests",
        "--input-mean",
        "--input-stdev",
        "--output-mean",
        "--output-stdev",
    )
}
TOKEN_UNIF_DIST = {
    name: Opt("int", required=True)
    for name in ("--num-requests", "--input-min", "--input-max", "--output-min", "--output-max")
}
PREPARE_DATASET = Command(
    "prepare_dataset.py",
    CLICK,
    PREPARE_GROUP,
    {
        "token-norm-dist": Command("prepare_dataset.py token-norm-dist", CLICK, TOKEN_NORM_DIST),
        "token-unif-dist": Command("prepare_dataset.py token-unif-dist", CLICK, TOKEN_UNIF_DIST),
    },
)


# ----------------------------------------------------------------------------- trtllm-serve
# tensorrt_llm/commands/serve.py, the 1.0/1.1-line version in the source index (id 901178132, its
# commit not returned; plain help strings, no stability tags, `asyncio.run(server(host, port))`
# without pre-bound sockets). `trtllm-serve` is a click DefaultGroup whose `serve` command runs
# when the first argument is no command name: `trtllm-serve MODEL [OPTIONS]` is
# `trtllm-serve serve MODEL [OPTIONS]`. That version also has --disagg_cluster_uri,
# --enable_chunked_prefill and --media_io_kwargs; whether v1.0.0 has them is unconfirmed, so the 1.0
# table leaves them out and the kit never passes them (chunked prefill goes in the YAML as the LLM
# argument enable_chunked_prefill, which 1.0 has). --reasoning_parser's choices are
# ReasoningParserFactory.parsers' keys, not read: tabled as a string (the kit passes none).
SERVE_1_0 = {
    "--tokenizer": Opt("str"),
    "--host": Opt("str", default="localhost"),
    "--port": Opt("int", default=8000),
    "--backend": Opt("choice", choices=("pytorch", "tensorrt", "_autodeploy"), default="pytorch"),
    "--log_level": Opt("choice", choices=LOG_LEVELS, default="info"),
    # BuildConfig's defaults (UNVERIFIED values): 1, 2048, 8192, None
    "--max_beam_width": Opt("int", default=1),
    "--max_batch_size": Opt("int", default=2048),
    "--max_num_tokens": Opt("int", default=8192),
    "--max_seq_len": Opt("int"),
    "--tp_size": Opt("int", default=1),
    "--pp_size": Opt("int", default=1),
    "--ep_size": Opt("int"),
    "--cluster_size": Opt("int"),
    "--gpus_per_node": Opt("int"),
    "--kv_cache_free_gpu_memory_fraction": Opt("float", default=0.9),
    "--num_postprocess_workers": Opt("int", default=0),
    "--trust_remote_code": Opt("flag"),
    "--extra_llm_api_options": Opt("str"),
    "--reasoning_parser": Opt("str"),  # a Choice whose list was not read
    "--metadata_server_config_file": Opt("str"),
    "--server_role": Opt("str"),
    "--fail_fast_on_attention_window_too_large": Opt("flag"),
}
# The same file's three later options; a 1.2 image has them (its newer options, such as
# --served_model_name and --custom_tokenizer, are not tabled: the kit does not use them).
SERVE_1_2 = {
    **SERVE_1_0,
    "--disagg_cluster_uri": Opt("str"),
    "--enable_chunked_prefill": Opt("flag"),
    "--media_io_kwargs": Opt("str"),
}
TRTLLM_SERVE = Command("trtllm-serve serve", CLICK, SERVE_1_0, arguments=("MODEL",))
TRTLLM_SERVE_1_2 = Command("trtllm-serve serve", CLICK, SERVE_1_2, arguments=("MODEL",))
# The DefaultGroup's own commands: any other first argument is serve's MODEL.
SERVE_GROUP_COMMANDS = ("serve", "disaggregated", "disaggregated_mpi_worker", "mm_embedding_serve")


def serve_argv(argv: list[str]) -> list[str]:
    """trtllm-serve's argv as its `serve` command sees it (DefaultGroup.resolve_command)."""
    return argv[1:] if argv[:1] == ["serve"] else argv


# ----------------------------------------------------------------------------- releases


@dataclass(frozen=True)
class Release:
    """One TensorRT-LLM release as the fakes and `make doctor` see it: data, not code branches.

    chunked_context_default: trtllm-bench throughput's chunking when no flag is given; the
    TensorRT runtime then caps a prompt at max_seq_len - 1, else at min(max_seq_len - 1,
    max_num_tokens).
    """

    version: str
    read_at: str
    tools: dict[str, Command]
    llm_api: dict[str, frozenset[str] | None]
    chunked_context_default: bool


RELEASE_1_0 = Release(
    "1.0.0",
    "1.0.0rc4-era commits named above each table (the v1.0.0 tag ae8270b7 is not stored)",
    {
        "trtllm-bench": TRTLLM_BENCH,
        "trtllm-build": TRTLLM_BUILD,
        "prepare_dataset.py": PREPARE_DATASET,
        "trtllm-serve": TRTLLM_SERVE,
    },
    LLM_API_1_0,
    chunked_context_default=False,
)

# A later 1.x whose trtllm-bench still has the tensorrt backend. trtllm-bench throughput read at
# tensorrt_llm/bench/benchmark/throughput.py @ 56851033051a6f9bd50e22219db64d68722a6f01 (the
# newest stored version; ALL_SUPPORTED_BACKENDS still lists "tensorrt" in the stored
# bench/benchmark/utils/general.py): chunked context became a flag pair, on by default; new
# --custom_module_dirs, --sampler_options, --no_skip_tokenizer_init, --image_data_format,
# --data_device. Group options @ 0c9a37db1f06912c2109c13272029bd7a13cb248 (adds --revision).
# trtllm-build, prepare_dataset.py and the LLM arguments are taken as 1.0's (not re-read).
BENCH_THROUGHPUT_1_2 = {
    **{k: v for k, v in BENCH_THROUGHPUT.items() if k != "--enable_chunked_context"},
    "--custom_module_dirs": Opt("path", exists=True),
    "--sampler_options": Opt("path", exists=True),
    "--no_skip_tokenizer_init": Opt("flag"),
    "--image_data_format": Opt("choice", choices=("pt", "pil"), default="pt"),
    "--data_device": Opt("choice", choices=("cuda", "cpu"), default="cuda"),
    "--enable_chunked_context": Opt("flag", default=True),
    "--disable_chunked_context": Opt("flag"),
}
TRTLLM_BENCH_1_2 = Command(
    "trtllm-bench",
    CLICK,
    {**BENCH_GROUP, "--revision": Opt("str")},
    {
        "throughput": Command("trtllm-bench throughput", CLICK, BENCH_THROUGHPUT_1_2),
        "build": Command("trtllm-bench build", CLICK, BENCH_BUILD),
    },
)
RELEASE_1_2 = Release(
    "1.2.1",
    "trtllm-bench @ 56851033 (newest stored); the rest as 1.0",
    {
        "trtllm-bench": TRTLLM_BENCH_1_2,
        "trtllm-build": TRTLLM_BUILD,
        "prepare_dataset.py": PREPARE_DATASET,
        "trtllm-serve": TRTLLM_SERVE_1_2,
    },
    LLM_API_1_0,
    chunked_context_default=True,
)
RELEASES = {"1.0": RELEASE_1_0, "1.2": RELEASE_1_2}


def release_from_env() -> Release:
    """The release a fake plays: FAKE_TRTLLM_RELEASE (1.0 or 1.2), 1.0 by default."""
    import os

    return RELEASES[os.environ.get("FAKE_TRTLLM_RELEASE", "1.0")]


def chunked_context(release: Release, values: dict[str, object]) -> bool:
    """Whether trtllm-bench throughput chunks the context, from its parsed options."""
    if values.get("disable_chunked_context"):
        return False
    return bool(values.get("enable_chunked_context")) or release.chunked_context_default


# ----------------------------------------------------------------------------- strict parser


class UsageError(Exception):
    """A command line the real tool rejects with exit code 2; str() is what it prints."""

    def __init__(self, command: Command, message: str) -> None:
        self.command = command
        self.message = message
        super().__init__(render_usage_error(command, message))


def render_usage_error(command: Command, message: str) -> str:
    if command.style == CLICK:
        tail = " COMMAND [ARGS]..." if command.subcommands else ""
        tail += "".join(f" {a}" for a in command.arguments)
        return (
            f"Usage: {command.prog} [OPTIONS]{tail}\n"
            f"Try '{command.prog} --help' for help.\n\nError: {message}"
        )
    prog = command.prog
    return f"usage: {prog} [-h] [options]\n{prog}: error: {message}"


@dataclass(frozen=True)
class Parsed:
    """Option values by name without dashes ("model_path"), defaults filled in; each value's
    type is the option's kind in the table (int, float, bool, str), known only at run time."""

    values: dict[str, Any]
    subcommand: str | None = None
    sub: Parsed | None = None

    def chosen(self) -> tuple[str, dict[str, Any]]:
        """(subcommand, its values), for a tool that has subcommands (parse insists on one)."""
        if self.subcommand is None or self.sub is None:
            raise ValueError("no subcommand was parsed")
        return self.subcommand, self.sub.values


def _name_of(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _lookup(command: Command, token: str) -> str | None:
    for name, opt in command.options.items():
        if token == name or token in opt.aliases:
            return name
    return None


def _shown(command: Command, name: str) -> str:
    opt = command.options[name]
    if command.style == CLICK:
        return " / ".join(f"'{n}'" for n in (name, *opt.aliases))
    return name


def _convert(command: Command, name: str, raw: str) -> object:
    opt = command.options[name]
    click = command.style == CLICK

    def bad(click_msg: str, argparse_msg: str) -> UsageError:
        if click:
            return UsageError(command, f"Invalid value for '{name}': {click_msg}")
        return UsageError(command, f"argument {name}: {argparse_msg}")

    if opt.kind in ("int", "int2"):
        try:
            value = int(raw)
        except ValueError:
            raise bad(f"{raw!r} is not a valid integer.", f"invalid int value: {raw!r}") from None
        if opt.min is not None and value < opt.min:
            raise bad(f"{value} is not in the range x>={opt.min}.", f"{value} < {opt.min}")
        return value
    if opt.kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise bad(f"{raw!r} is not a valid float.", f"invalid float value: {raw!r}") from None
    if opt.kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "t", "yes", "y", "on"):
            return True
        if lowered in ("0", "false", "f", "no", "n", "off"):
            return False
        raise bad(f"{raw!r} is not a valid boolean.", f"invalid bool value: {raw!r}")
    if opt.kind == "choice" and raw not in opt.choices:
        listed = ", ".join(repr(c) for c in opt.choices)
        raise bad(
            f"{raw!r} is not one of {listed}.", f"invalid choice: {raw!r} (choose from {listed})"
        )
    if opt.kind == "path" and opt.exists:
        from pathlib import Path

        if not Path(raw).exists():
            raise bad(f"Path {raw!r} does not exist.", f"path {raw!r} does not exist")
    return raw


def parse(command: Command, argv: list[str]) -> Parsed:
    """Parse argv exactly as strictly as the table says; raise UsageError like the real tool."""
    values: dict[str, object] = {}
    unknown: list[str] = []
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("--help", "-h"):
            raise SystemExit(_print_help(command))
        if not token.startswith("-") or token == "-":
            if command.subcommands:
                if token not in command.subcommands:
                    raise UsageError(command, f"No such command '{token}'.")
                _check_required(command, values)
                sub = parse(command.subcommands[token], argv[i + 1 :])
                return Parsed(_with_defaults(command, values), token, sub)
            if command.style == CLICK and len(positionals) < len(command.arguments):
                positionals.append(token)
                i += 1
                continue
            if command.style == CLICK:
                raise UsageError(command, f"Got unexpected extra argument ({token})")
            unknown.append(token)
            i += 1
            continue
        option, has_inline, inline = token.partition("=")
        name = _lookup(command, option)
        if name is None:
            if command.style == CLICK:
                raise UsageError(command, f"No such option: {option}")
            unknown.append(token)
            i += 1
            continue
        opt = command.options[name]
        if opt.kind == "flag":
            if has_inline:
                raise UsageError(command, f"Option '{option}' does not take a value.")
            values[_name_of(name)] = True
            i += 1
            continue
        arity = 2 if opt.kind == "int2" else 1
        if has_inline:
            raw_values, i = [inline], i + 1
        else:
            raw_values = argv[i + 1 : i + 1 + arity]
            if opt.kind == "nargs+":
                raw_values = []
                j = i + 1
                while j < len(argv) and not argv[j].startswith("-"):
                    raw_values.append(argv[j])
                    j += 1
            i += 1 + len(raw_values)
        if len(raw_values) < arity or any(v.startswith("--") for v in raw_values):
            if command.style == CLICK:
                which = "an argument" if arity == 1 else f"{arity} arguments"
                raise UsageError(command, f"Option '{option}' requires {which}.")
            raise UsageError(command, f"argument {name}: expected one argument")
        converted = [_convert(command, name, v) for v in raw_values]
        values[_name_of(name)] = converted if opt.kind in ("nargs+", "int2") else converted[0]
    if unknown:
        raise UsageError(command, f"unrecognized arguments: {' '.join(unknown)}")
    if command.subcommands:
        _check_required(command, values)
        raise UsageError(command, "Missing command.")
    _check_required(command, values)
    if len(positionals) < len(command.arguments):
        raise UsageError(command, f"Missing argument '{command.arguments[len(positionals)]}'.")
    values |= {a.lower(): v for a, v in zip(command.arguments, positionals, strict=False)}
    return Parsed(_with_defaults(command, values))


def _check_required(command: Command, values: dict[str, object]) -> None:
    missing = [n for n, o in command.options.items() if o.required and _name_of(n) not in values]
    if not missing:
        return
    if command.style == CLICK:
        raise UsageError(command, f"Missing option {_shown(command, missing[0])}.")
    raise UsageError(command, f"the following arguments are required: {', '.join(missing)}")


def _with_defaults(command: Command, values: dict[str, object]) -> dict[str, object]:
    out = {
        _name_of(n): (False if o.kind == "flag" else o.default) for n, o in command.options.items()
    }  # a flag's table default (1.2's --enable_chunked_context) is the release's, not the user's
    out.update(values)
    return out


def _print_help(command: Command) -> int:
    args = "".join(f" {a}" for a in command.arguments)
    lines = [f"Usage: {command.prog} [OPTIONS]{args}", "", "Options:"]
    for name, opt in command.options.items():
        shown = ", ".join((*opt.aliases, name))
        listed = "|".join(opt.choices) if command.style == CLICK else ",".join(opt.choices)
        shape = "[{}]" if command.style == CLICK else "{{{}}}"
        extra = " " + shape.format(listed) if opt.choices else f" {opt.kind.upper()}"
        lines.append(
            f"  {shown}{'' if opt.kind == 'flag' else extra}"
            + ("  [required]" if opt.required else "")
        )
    if command.subcommands:
        lines += ["", "Commands:", *(f"  {name}" for name in command.subcommands)]
    print("\n".join(lines))
    return 0


def parse_or_exit(command: Command, argv: list[str]) -> Parsed:
    """For the fakes' main(): a usage error prints like the real tool and exits 2."""
    import sys

    try:
        return parse(command, argv)
    except UsageError as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(2) from None

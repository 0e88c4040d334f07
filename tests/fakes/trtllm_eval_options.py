"""`trtllm-eval`'s options (TensorRT-LLM 1.0 line) as data, for the fake and the argv tests.

Read from the stored NVIDIA/TensorRT-LLM sources (the v1.0.0 tag itself, ae8270b, is not stored):
  group options: tensorrt_llm/commands/eval.py @ 01d0cc69952a180c71b7e76f8384cffb0583cf1a
  mmlu options:  tensorrt_llm/evaluate/mmlu.py @ 0c8de69a1ca6213eebb20a51873890ff128666c2
Subcommands there: cnn_dailymail, mmlu, gsm8k, gpqa_diamond, gpqa_main, gpqa_extended,
json_mode_eval; only `mmlu` is tabled (the kit calls nothing else, the fake says so). Its result
line is "MMLU weighted average accuracy: <percent> (<questions>)"; with --num_samples N it samples
ceil(N / 57) questions of each subject's test CSV (<dataset_path>/test/<subject>_test.csv, 5-shot
from dev/<subject>_dev.csv). Not confirmed at the tag: --chat_template_kwargs (may be newer).
"""

from __future__ import annotations

from trtllm_options import CLICK, LOG_LEVELS, Command, Opt

EVAL_GROUP = {
    "--model": Opt("str", required=True),
    "--tokenizer": Opt("str"),
    "--backend": Opt("choice", choices=("pytorch", "tensorrt"), default="pytorch"),
    "--log_level": Opt("choice", choices=LOG_LEVELS, default="info"),
    "--max_beam_width": Opt("int"),
    "--max_batch_size": Opt("int"),
    "--max_num_tokens": Opt("int"),
    "--max_seq_len": Opt("int"),
    "--tp_size": Opt("int", default=1),
    "--pp_size": Opt("int", default=1),
    "--ep_size": Opt("int"),
    "--gpus_per_node": Opt("int"),
    "--kv_cache_free_gpu_memory_fraction": Opt("float", default=0.9),
    "--trust_remote_code": Opt("flag"),
    "--extra_llm_api_options": Opt("str"),
}

MMLU = {
    "--dataset_path": Opt("str"),
    "--num_samples": Opt("int"),
    "--num_fewshot": Opt("int", default=5),
    "--random_seed": Opt("int", default=0),
    "--apply_chat_template": Opt("flag"),
    "--chat_template_kwargs": Opt("str"),
    "--system_prompt": Opt("str"),
    "--max_input_length": Opt("int", default=4094),
    "--max_output_length": Opt("int", default=2),
    "--check_accuracy": Opt("flag"),
    "--accuracy_threshold": Opt("float", default=30.0),
}

TRTLLM_EVAL = Command(
    "trtllm-eval", CLICK, EVAL_GROUP, subcommands={"mmlu": Command("trtllm-eval mmlu", CLICK, MMLU)}
)

# The 57 subjects MMLU's evaluator reads, in its order (mmlu.py SUBJECT_TO_SUBCATEGORIES keys).
MMLU_SUBJECTS = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]

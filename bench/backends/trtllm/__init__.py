"""TensorRT-LLM: the trtllm-bench and trtllm-build argv (commands), its report and console
parser (parse)."""

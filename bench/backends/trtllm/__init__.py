"""TensorRT-LLM: the trtllm-bench and trtllm-build argv (commands), its report and console
parser (parse), and the two backends that run them (backend)."""

from bench.backends.trtllm.backend import PYTORCH, TENSORRT

BACKENDS = (TENSORRT, PYTORCH)

"""trtllm-repro: reproduce LLM inference benchmarks end to end and prove what was measured.

Each pipeline stage is one module run as ``python -m bench.stages.<stage>``; see README.md for the
map.
"""

__version__ = "0.1.0"

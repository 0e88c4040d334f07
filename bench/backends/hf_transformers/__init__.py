"""Hugging Face transformers: the CPU runner (runner), the demo's embedded tiny Llama
(demo_model), and the `hf-transformers` backend that runs them (backend)."""

from bench.backends.hf_transformers.backend import HfTransformers

BACKENDS = (HfTransformers(),)

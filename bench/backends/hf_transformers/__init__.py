"""The CPU runner over Hugging Face transformers (runner) and the demo's embedded tiny Llama
(demo_model)."""

"""An inference server the online scenario starts: its command line and where it answers.

Pure data; bench.stages.serve starts it, polls `base_url + health_path` and stops it. Each backend
builds its own (bench.backends.trtllm.trtllm_serve_command for TensorRT-LLM).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerCommand:
    argv: list[str]
    env: dict[str, str]
    base_url: str  # http://host:port, no trailing slash
    health_path: str  # GET answers 200 once the model is loaded
    model_name: str  # the `model` a client sends and the server reports

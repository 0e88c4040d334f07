"""One module per pipeline stage or Make target, each run as ``python -m bench.stages.<name>``."""

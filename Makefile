# trtllm-repro: reproduce LLM inference benchmarks end to end and prove what was measured.
# Make is the map, Python does the work: each stage target calls `python -m bench.<stage>`.
# Stage targets are stamps (results/<run>/.stamps/<stage>.ok) written last by the stage, so a
# second `make all` reruns nothing whose inputs did not change. `make help` lists everything.

SHELL := bash
# pipefail: a failing stage is never hidden by `| tee`.
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DEFAULT_GOAL := help

# ============================================================================== Variables
MANIFEST ?= manifests/llama-3.1-8b-fp8-h100.toml## sweep manifest (TOML)
SHARD ?=## run only shard i/N of the points (e.g. 1/3), balanced by estimated cost
RUN ?= $(basename $(notdir $(MANIFEST)))$(if $(SHARD),-shard$(subst /,of,$(SHARD)))## run name (results/<run>/)
REFERENCE ?=## published numbers to verify against (manifests/published/*.toml)
LOGS ?=## folder of raw trtllm-bench logs for `make import` / `make audit`
SHARDS ?=## shard run folders for `make merge`
VENV ?= .venv## virtualenv that `make demo`/`make test` create (unused in the container)
PYTHON ?= $(VENV)/bin/python## interpreter for the stages (the image sets PYTHON=python3)
RESULTS_DIR ?= results## where runs live
WORK_DIR ?= work## large per-run files: checkpoint, engine
MODELS_DIR ?= models## model snapshots, shared by runs
CACHE_DIR ?= $(WORK_DIR)/.cache## checkpoints/engines shared by runs and shards with equal inputs (empty: off)
REPORTS_DIR ?= reports## reports/<run>/report.md, verify.md, figures
HF_HOME ?= $(HOME)/.cache/huggingface## Hugging Face cache mounted into the container
BASE ?=## the run `make compare` compares RUN against
THRESHOLD ?=## compare's gate: % worse that fails (default: the manifest's [compare], else 5)
COMPARE_SUMMARY ?=## also append compare's table to this file (CI: $GITHUB_STEP_SUMMARY)
TO ?=## where `make export` sends RUN (mlflow)
DEMO_MANIFEST := manifests/demo.toml
export RESULTS_DIR WORK_DIR MODELS_DIR REPORTS_DIR CACHE_DIR

R := $(RESULTS_DIR)/$(RUN)
# Any change to the kit's code makes Make ask every stage again; each stage then decides by the
# digest of the code that does its work (bench.artifacts.code_digest) whether to rerun or skip.
CODE := $(wildcard bench/*.py)
STAMP := $(R)/.stamps
ARGS := --manifest $(MANIFEST) --run $(RUN)
STARTED := $(shell date +%s.%N)# GNU date: nanoseconds; BSD prints a literal N, and status keeps the seconds
# The virtualenv is built only when PYTHON points into it (not inside the container).
ENV_READY := $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/.installed,)

include docker.mk

# ============================================================================== Pipeline
.PHONY: all demo env preflight fetch quantize build datasets sweep report verify plan validate

## whole pipeline for MANIFEST: env -> fetch -> quantize -> build -> datasets -> sweep -> report -> verify
all: $(STAMP)/report.ok
	$(PYTHON) -m bench.verify --run $(RUN) $(if $(REFERENCE),--reference $(REFERENCE))
	@$(PYTHON) -m bench.status --run $(RUN) --since $(STARTED)

## the whole pipeline on the embedded CPU demo (creates .venv; no GPU, no Hub)
demo: $(ENV_READY)
	@$(MAKE) --no-print-directory all MANIFEST=$(DEMO_MANIFEST) RUN=$(basename $(notdir $(DEMO_MANIFEST))) STARTED=$(STARTED)

## check the manifest: types, unknown keys, lengths, duplicates, max_seq_len (exit 2 names the key)
validate: $(ENV_READY)
	$(PYTHON) -m bench.manifest validate $(MANIFEST)

## print every command the pipeline would run and the estimated GPU time (runs nothing)
plan: $(ENV_READY)
	@$(PYTHON) -m bench.plan --manifest $(MANIFEST) $(if $(SHARD),--shard $(SHARD))

## GPU, host and software provenance (manifest -> results/<run>/provenance.json)
env: $(STAMP)/env.ok
$(STAMP)/env.ok: $(MANIFEST) $(CODE) | _toolcheck $(ENV_READY)
	$(PYTHON) -m bench.provenance $(ARGS)

## pre-run checks: GPU model, power, clocks, MIG, free disk, HF_TOKEN (reports; prints nvidia-smi advice)
preflight: $(STAMP)/env.ok
	$(PYTHON) -m bench.preflight $(ARGS)

## model files at the pinned revision, sha256-checked (manifest -> models/<repo>/<rev>/)
fetch: $(STAMP)/fetch.ok
$(STAMP)/fetch.ok: $(STAMP)/env.ok $(CODE) | preflight
	$(PYTHON) -m bench.fetch $(ARGS)

## FP8 post-training quantization with ModelOpt (model -> work/<run>/checkpoint/)
quantize: $(STAMP)/quantize.ok
$(STAMP)/quantize.ok: $(STAMP)/fetch.ok $(CODE)
	$(PYTHON) -m bench.quantize $(ARGS)

## TensorRT engine with trtllm-build; a recorded no-op for engine-less backends (-> work/<run>/engine/)
build: $(STAMP)/build.ok
$(STAMP)/build.ok: $(STAMP)/quantize.ok $(CODE)
	$(PYTHON) -m bench.build $(ARGS)

## synthetic requests per point, trtllm-bench JSONL (-> results/<run>/datasets/)
datasets: $(STAMP)/datasets.ok
$(STAMP)/datasets.ok: $(STAMP)/build.ok $(CODE)
	$(PYTHON) -m bench.datasets $(ARGS)

## every point (SHARD=i/N for a share), resumable (-> results/<run>/points/, summary.csv)
sweep: $(STAMP)/sweep.ok
$(STAMP)/sweep.ok: $(STAMP)/datasets.ok $(CODE)
	$(PYTHON) -m bench.sweep $(ARGS) $(if $(SHARD),--shard $(SHARD))

$(STAMP)/report.ok: $(STAMP)/sweep.ok $(CODE)
	$(PYTHON) -m bench.report --run $(RUN)

# report and verify read only results/<run>/, so they work on any run, anywhere (imported and
# merged runs included); `all` reaches them through the stamps above.
## report from the run's records only (results/<run>/ -> reports/<run>/report.md + figures)
report: $(ENV_READY)
	$(PYTHON) -m bench.report --run $(RUN)

## re-hash every artifact, check identity, compare with REFERENCE (-> reports/<run>/verify.md)
verify: $(ENV_READY)
	$(PYTHON) -m bench.verify --run $(RUN) $(if $(REFERENCE),--reference $(REFERENCE))

# ============================================================================== Runs
.PHONY: import audit merge clean-run clean-cache

## turn a folder of raw trtllm-bench logs/JSON into a run (LOGS=<folder> -> results/<run>/)
import: $(ENV_READY)
	@test -n "$(LOGS)" || { echo "make import: set LOGS=<folder of result_<ISL>_<OSL>_<N>.txt>" >&2; exit 2; }
	$(PYTHON) -m bench.import_logs --logs $(LOGS) --run $(RUN)

# An audit is named after its logs (audit-<folder>) unless RUN= is given: the default RUN is the
# manifest's, which has nothing to do with the logs.
RUN_IF_GIVEN = $(if $(filter-out file,$(origin RUN)),--run $(RUN))
## import LOGS, report and verify against REFERENCE in one step
audit: $(ENV_READY)
	@test -n "$(LOGS)" || { echo "make audit: set LOGS=<folder> [REFERENCE=manifests/published/...]" >&2; exit 2; }
	$(PYTHON) -m bench.audit --logs $(LOGS) $(RUN_IF_GIVEN) $(if $(REFERENCE),--reference $(REFERENCE))

## combine shard runs into one run (RUN=<merged> SHARDS="results/a results/b ...")
merge: $(ENV_READY)
	$(PYTHON) -m bench.merge --run $(RUN) $(SHARDS)

## delete one run's results, work files and report (RUN=<run>)
clean-run:
	rm -rf -- "$(R)" "$(WORK_DIR)/$(RUN)" "$(REPORTS_DIR)/$(RUN)"

## delete the shared checkpoint/engine cache (runs keep their own copies; the next build remakes it)
clean-cache:
	$(if $(CACHE_DIR),rm -rf -- "$(CACHE_DIR)/quantize" "$(CACHE_DIR)/build",@echo "CACHE_DIR is empty: no cache")

# ============================================================================== Compare, export
.PHONY: compare export

COMPARE_OPTIONS = $(if $(THRESHOLD),--threshold="$(THRESHOLD)") \
  $(if $(COMPARE_SUMMARY),--summary="$(COMPARE_SUMMARY)")
## RUN against BASE: identity first, verdicts per point; exit 1 on SLOWER beyond THRESHOLD
compare: $(ENV_READY)
	$(PYTHON) -m bench.compare --base="$(BASE)" --run $(RUN) $(strip $(COMPARE_OPTIONS))

## send RUN's metrics, manifest, identity and report to a tracking server (TO=mlflow)
export: $(ENV_READY)
	$(PYTHON) -m bench.export --run $(RUN) --to="$(TO)"

# ============================================================================== Checks
.PHONY: test lint bench info

## the test suite (creates .venv if needed)
test: $(ENV_READY)
	$(PYTHON) -m pytest -q

## ruff, shellcheck, hadolint, workflow checks
lint: $(ENV_READY)
	$(PYTHON) -m ruff check bench tests scripts
	$(PYTHON) -m ruff format --check bench tests scripts
	$(PYTHON) -m bench.lint_extra

## speed benchmarks you can rerun: hashing vs sha256sum, telemetry overhead
bench: $(ENV_READY)
	PYTHONPATH=. $(PYTHON) scripts/bench_hashing.py
	PYTHONPATH=. $(PYTHON) scripts/bench_telemetry_overhead.py

## resolved knobs, pins and detected tool versions
info: $(ENV_READY)
	@$(foreach v,MANIFEST RUN SHARD PYTHON RESULTS_DIR WORK_DIR MODELS_DIR REPORTS_DIR CACHE_DIR HF_HOME IMAGE,echo "$(v) = $($(v))";)
	@$(PYTHON) -m bench.pins
	@echo "tools:"; $(PYTHON) --version; \
	  $(PYTHON) -c "import importlib.metadata as m; print('tensorrt_llm', m.version('tensorrt_llm'))" 2>/dev/null \
	    || echo "tensorrt_llm: not installed (use the container)"; \
	  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: no GPU"; \
	  $(DOCKER) --version 2>/dev/null || echo "$(DOCKER): not installed"

_toolcheck:
	@python3 -m bench.toolcheck $(MANIFEST)

$(VENV)/.installed: requirements/demo.lock requirements/demo-nodeps.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements/demo.lock
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements/demo-nodeps.lock
	touch $@

# ============================================================================== Help
.PHONY: help
## this list
help:
	@awk 'BEGIN {FS = ":"} /^## / {doc = substr($$0, 4); next} \
	     /^[a-z][a-zA-Z_-]*:/ && doc != "" {printf "  \033[36m%-12s\033[0m %s\n", $$1, doc} {doc = ""}' \
	     $(MAKEFILE_LIST)
	@echo; echo "Variables (make VAR=value ...):"
	@grep -hE '^[A-Z_]+ \?=.*## ' $(MAKEFILE_LIST) | \
	  sed -E 's/^([A-Z_]+) \?= ?([^#]*)## (.*)/\1|\3 [\2]/' | awk -F'|' '{printf "  %-12s %s\n", $$1, $$2}'

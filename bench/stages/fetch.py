"""Stage `fetch`: the model files, pinned to a revision and checked file by file.

Reads:  the manifest's [model] table (source, repo, revision, files = {name: sha256} lock)
Writes: models/<org>--<name>/<revision>/ (shared by runs; immutable per revision)
Usage:  python -m bench.stages.fetch --manifest manifests/llama-3.1-8b-fp8-h100.toml [--run NAME]

`hf`: huggingface-hub `snapshot_download` at a 40-hex commit, then every file's sha256 is checked
against the digest the Hub publishes (LFS sha256, or the git blob id for small files) and against
the manifest's lock; a mismatch stops the pipeline naming the file. With HF_HUB_OFFLINE=1 a
complete local copy is checked against the lock alone. Gated repos need HF_TOKEN in the
environment; it is passed to the Hub client and never written anywhere.
`builtin`: the demo's tiny Llama, made offline by bench.backends.hf_transformers.demo_model,
checked against the lock.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from bench.backends.hf_transformers import demo_model
from bench.core import stage as rule
from bench.core.artifacts import Artifacts
from bench.core.errors import KitError, run_main
from bench.core.fileio import sha256_file
from bench.core.manifest import Model
from bench.core.run import Run, add_run_args, open_run
from bench.core.runlock import locked

VERSION = 1  # bump when the files this stage writes (or how it checks them) would change

# Meta's repos also hold the original consolidated checkpoint (16 GB) that no runtime here reads.
DEFAULT_IGNORE = ["original/*", "*.pth"]


def git_blob_id(path: Path) -> str:
    """The id the Hub publishes for a non-LFS file: sha1 of "blob <size>\\0" + content."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_lock(model: Model, files: dict[str, Path]) -> list[str]:
    """Problems between the fetched files and the manifest's lock, one line per file."""
    problems = []
    for name, expected in sorted(model.files.items()):
        path = files.get(name)
        if path is None:
            problems.append(f"{name}: locked in the manifest but not fetched")
        elif (got := sha256_file(path)) != expected:
            problems.append(f"{name}: sha256 {got} != locked {expected}")
    return problems


def lock_lines(files: dict[str, Path]) -> str:
    return "\n".join(f'"{n}" = "{sha256_file(p)}"' for n, p in sorted(files.items()))


# ----------------------------------------------------------------------------- sources


def fetch_builtin(model: Model, target: Path) -> dict[str, Path]:
    if model.repo != "trtllm-repro/tiny-llama-3.1":
        raise KitError(
            f"unknown builtin model {model.repo!r}",
            key="model.repo",
            fix='use "trtllm-repro/tiny-llama-3.1"',
        )
    return {p.name: p for p in demo_model.make_tiny_llama(target, demo_model.SEED)}


def hub_digests(model: Model, token: str | None) -> dict[str, tuple[str, str]]:
    """{file: ("sha256" | "git-sha1", digest)} as the Hub publishes them at the revision."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(model.repo, revision=model.revision, files_metadata=True, token=token)
    out = {}
    for s in info.siblings or []:
        if s.lfs is not None:
            out[s.rfilename] = ("sha256", s.lfs.sha256)
        elif s.blob_id:
            out[s.rfilename] = ("git-sha1", s.blob_id)
    return out


def fetch_hf(model: Model, target: Path) -> tuple[dict[str, Path], str]:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    token = os.environ.get("HF_TOKEN") or None
    offline = constants.HF_HUB_OFFLINE  # the client's own reading of HF_HUB_OFFLINE (1/true/yes/on)
    patterns = sorted(model.files) or None
    license_fix = (
        f"accept the license at https://huggingface.co/{model.repo}, then export "
        "HF_TOKEN=<a read token> (it is passed through the environment only)"
    )
    try:
        snapshot_download(
            model.repo,
            revision=model.revision,
            local_dir=target,
            token=token,
            allow_patterns=patterns,
            ignore_patterns=None if patterns else DEFAULT_IGNORE,
        )
        published = {} if offline else hub_digests(model, token)
    except GatedRepoError:
        hint = "HF_TOKEN is not set" if token is None else "HF_TOKEN was refused"
        raise KitError(
            f"{model.repo} is gated and {hint}", key="model.repo", fix=license_fix
        ) from None
    except RepositoryNotFoundError:
        raise KitError(
            f"{model.repo} was not found (or is private and HF_TOKEN is missing)",
            key="model.repo",
            fix="check the repo id, or export HF_TOKEN",
        ) from None
    except LocalEntryNotFoundError:
        raise KitError(
            f"{model.repo}@{model.revision} is not complete in {target} and the Hub "
            "cannot be reached (offline)",
            key="model.repo",
            fix="fetch once with network access, or unset HF_HUB_OFFLINE",
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        if status == 401:
            raise KitError(
                f"the Hub refused the credentials for {model.repo} (HTTP 401)",
                key="model.repo",
                fix=license_fix,
            ) from None
        raise KitError(
            f"the Hub answered HTTP {status} for {model.repo}",
            key="model.repo",
            fix="retry later; a complete local copy works with HF_HUB_OFFLINE=1",
        ) from None
    files = {
        p.relative_to(target).as_posix(): p
        for p in sorted(target.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(target).parts
    }
    if not files:
        raise KitError(
            f"no files of {model.repo}@{model.revision} in {target}",
            key="model.files",
            fix="fetch once with network access (an earlier refused download leaves none)",
        )
    published = {name: digest for name, digest in published.items() if name in files}
    problems = []
    for name, path in files.items():
        kind, digest = published.get(name, (None, None))
        got = sha256_file(path) if kind == "sha256" else git_blob_id(path) if kind else None
        if kind and got != digest:
            problems.append(f"{name}: {kind} {got} != published {digest}")
    if problems:
        raise KitError(
            "files differ from what the Hub publishes:\n  " + "\n  ".join(problems),
            path=str(target),
            fix=f"delete {target} and fetch again",
        )
    how = (
        "checked against the lock only (HF_HUB_OFFLINE=1)"
        if offline
        else f"checked against the Hub's digests for {len(published)} files"
    )
    return files, how


def fetch_stage(run: Run) -> int:
    m = run.manifest.model
    arts = Artifacts(run.paths)
    target = run.paths.model_dir(m.repo, m.revision)
    inputs = arts.input_digests([run.paths.resolved_manifest])
    if m.source == "builtin":
        inputs.update(arts.input_digests([demo_model.tokenizer_source()]))
    command: dict[str, str | int] = {"source": m.source, "repo": m.repo, "revision": m.revision}
    if m.source == "builtin":
        command["seed"] = demo_model.SEED
    tools = rule.tool_versions("numpy" if m.source == "builtin" else "huggingface_hub")
    key = rule.StageKey("fetch", VERSION, command, inputs, tools)
    if rule.skip_if_current(arts, key, "model files"):
        return 0
    print(f"[fetch] {m.repo}@{m.revision} ({m.source}) -> {target}", file=sys.stderr)
    if m.source == "builtin":
        how = "made offline by bench.backends.hf_transformers.demo_model"
        files = fetch_builtin(m, target)
    else:
        files, how = fetch_hf(m, target)
    if not m.files:
        print(
            "[fetch] warning: model.files is empty, nothing locks these files; "
            "add to the manifest:\n"
            f"[model.files]\n{lock_lines(files)}",
            file=sys.stderr,
        )
    if problems := check_lock(m, files):
        raise KitError(
            "fetched files do not match the manifest's lock:\n  " + "\n  ".join(problems),
            path=str(run.manifest_path),
            key="model.files",
            fix="a changed upstream file means a new revision: review it, then update the lock",
        )
    rule.record(
        arts,
        key,
        list(files.values()),
        {"repo": m.repo, "revision": m.revision, "verified": how},
    )
    print(f"[fetch] {len(files)} files, {how}; lock ok", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stages.fetch", description=__doc__.splitlines()[0])
    add_run_args(parser)
    args = parser.parse_args(argv)

    def stage() -> int:
        return fetch_stage(open_run(args.manifest, args.run))

    return run_main(locked(args.run or args.manifest.stem, "fetch", stage), "bench.stages.fetch")


if __name__ == "__main__":
    raise SystemExit(main())

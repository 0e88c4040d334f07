"""`make all`'s fast path: doctor and verify asked through the stage rule before they load.

Usage: python -m bench.stages.ifchanged doctor --manifest manifests/demo.toml
       python -m bench.stages.ifchanged verify --run demo [--reference FILE]

`make all` asks both on every call (Make cannot see installed tools or a file changed under a
stamp). Loading bench.stages.doctor or bench.stages.verify costs more than a second on a busy
machine (pydantic, numpy, the analysis modules), so the question comes first, here, with the
stage rule (bench.core.stage) and the stat-keyed hash cache (bench.core.hashcache):
- doctor is current while the manifest and pins bytes, the installed packages and the tools on
  PATH are the ones of its last passing check (key in WORK_DIR/.stamps/doctor-<manifest>.json);
- verify is current while its last verdict PASSED with the same reference, nothing in the run's
  record changed since, no file appeared, and every recorded file's (device, inode, size, mtime)
  is the one its digest was taken at. It then prints that verdict again.
Otherwise the real stage runs, as `make doctor` / `make verify` run it. `make verify` always
re-reads every byte: a file changed in place with its size and mtime forged back is only caught
there.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from bench.core import stage as rule
from bench.core.errors import run_main
from bench.core.fileio import dumps_json, sha256_bytes, sha256_file
from bench.core.toolcheck import prepare_dataset_script

PINS = Path(__file__).resolve().parents[2] / "manifests" / "pins.toml"

# ----------------------------------------------------------------------------- doctor

DOCTOR_VERSION = 1  # bump when the same tools and plan would get another diagnosis
DOCTOR_PACKAGES = ("tensorrt_llm", "nvidia-modelopt", "transformers", "torch")
TOOLS_ON_PATH = ("trtllm-bench", "trtllm-build", "trtllm-eval", "trtllm-serve")


def doctor_key(manifest_path: Path, pins_path: Path) -> rule.StageKey:
    """What a diagnosis depends on: the manifest's and pins' bytes, the installed packages and
    the tools whose help it reads (each as path, size and mtime: running them costs seconds)."""
    inputs = {str(p): sha256_file(p) for p in (manifest_path, pins_path) if p.is_file()}
    tools = rule.tool_versions(*DOCTOR_PACKAGES)
    tools |= {name: rule.executable_identity(name) for name in TOOLS_ON_PATH}
    tools[prepare_dataset_script()] = rule.executable_identity(prepare_dataset_script())
    command = {"manifest": str(manifest_path), "pins": str(pins_path)}
    return rule.StageKey("doctor", DOCTOR_VERSION, command, inputs, tools)


def doctor_key_file(manifest_path: Path) -> Path:
    """Where a passing diagnosis keeps its key: one file per manifest (by its absolute path)."""
    where = sha256_bytes(str(manifest_path.resolve()).encode())[:12]
    work = Path(os.environ.get("WORK_DIR", "work"))
    return work / ".stamps" / f"doctor-{manifest_path.stem}-{where}.json"


def doctor(manifest: Path) -> int:
    stamp = doctor_key_file(manifest)
    if not rule.differences(rule.read_key_file(stamp), doctor_key(manifest, PINS)):
        print(f"doctor: current: skipped (manifest, pins, packages and tools as checked; {stamp})")
        return 0
    from bench.stages import doctor as stage

    return stage.main(["--manifest", str(manifest)])


# ----------------------------------------------------------------------------- verify

VERIFY = "verify"
VERIFY_NAME = "verify.md"
VERIFY_VERSION = 1  # bump when the same run and reference would get another verdict


def verify_key(arts, reference: Path | None, scope: str) -> rule.StageKey:
    """What a verdict depends on besides the files' bytes: the run's record (every stage and
    file but verify's own), the reference, the scope."""
    others = {
        "files": {k: e.sha256 for k, e in arts.files.items() if e.stage != VERIFY},
        "stages": {k: v for k, v in arts.stages.items() if k != VERIFY},
    }
    inputs = {"artifacts.json (all but verify)": sha256_bytes(dumps_json(others).encode())}
    if reference is not None and reference.is_file():
        inputs |= arts.input_digests([reference])
    command = {"reference": str(reference) if reference else "", "scope": scope}
    return rule.StageKey(VERIFY, VERIFY_VERSION, command, inputs)


def manifest_reference(resolved_manifest: Path) -> Path | None:
    """The run manifest's `reference` (what verify uses without --reference)."""
    try:
        said = tomllib.loads(resolved_manifest.read_text(encoding="utf-8")).get("reference")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return Path(said) if isinstance(said, str) and said else None


def previous_verdict(run_name: str, reference: Path | None) -> str | None:
    """The last PASSED verify.md when it is current; None: verify for real."""
    from bench.core.artifacts import Artifacts
    from bench.core.run import RunPaths

    paths = RunPaths.for_run(run_name)
    if not paths.artifacts.is_file() or not paths.stamp(VERIFY).is_file():
        return None
    arts = Artifacts(paths)
    key = verify_key(arts, reference or manifest_reference(paths.resolved_manifest), "all")
    if rule.reasons_to_run(arts, key):
        return None
    keys = [k for k, e in arts.files.items() if e.stage != VERIFY]
    if any(not arts.roots.get(k.partition(":")[0], paths.root / "?").is_dir() for k in keys):
        return None  # a root absent here: verify says INCOMPLETE, never a repeated PASSED
    if arts.check(keys) or arts.unexpected():
        return None
    rule.skip_if_current(arts, key, "PASSED verdict")
    print(
        f"[verify] every recorded file's size and mtime are as hashed; `make verify RUN={run_name}`"
        " re-reads every byte",
        file=sys.stderr,
    )
    return (paths.reports / VERIFY_NAME).read_text(encoding="utf-8")


def verify(run_name: str, reference: Path | None) -> int:
    from bench.core.runlock import locked

    def gate() -> int:
        text = previous_verdict(run_name, reference)
        if text is None:
            return -1
        sys.stdout.write(text)
        return 0

    said = run_main(locked(run_name, VERIFY, gate, create=False), "bench.stages.verify")
    if said != -1:
        return said
    from bench.stages import verify as stage

    return stage.main(["--run", run_name, *(["--reference", str(reference)] if reference else [])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stages.ifchanged", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="stage", required=True)
    sub.add_parser("doctor").add_argument("--manifest", type=Path, required=True)
    v = sub.add_parser("verify")
    v.add_argument("--run", required=True)
    v.add_argument("--reference", type=Path)
    args = parser.parse_args(argv)
    if args.stage == "doctor":
        return run_main(lambda: doctor(args.manifest), "bench.stages.doctor")
    return verify(args.run, args.reference)


if __name__ == "__main__":
    raise SystemExit(main())

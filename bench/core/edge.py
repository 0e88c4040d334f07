"""Make's user variables, checked once against strict patterns before any recipe runs.

Make passes each value here single-quoted (never expanded by Make or the shell) and stops with
`$(error)` (exit 2, one line) unless this prints exactly `ok`. After this check a value holds no
character a shell or Make would act on, so recipes may use it as a plain word.
Stdlib only: it runs under the system python3 before the virtualenv exists.

Usage:  python3 -m bench.core.edge RUN=<value> SHARD=<value> ... [--clean-run=<origin of RUN>]
        [--not-settable=<names>] [--for-make]
        (`--clean-run=file`: the user gave no RUN, so `make clean-run` has nothing to name;
        `--not-settable`: other variables given on the command line, always refused;
        `--for-make`: after `ok`, two words Make reads, so it spawns no other python to learn
        them: the path of this python (Make's later stdlib checks then skip a version manager's
        shim, ~0.4 s a call under pyenv) and MANIFEST's [sweep] scenario (scenario_of))
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# A run name is one folder name under results/, work/ and reports/: no separator, no leading dot
# or dash, and short enough that results/<run>/points/<point>/raw/<file> stays far below the
# 255-byte file-name and 4096-byte path limits of Linux file systems.
RUN_NAME_MAX = 100
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A path may climb (LOGS=../shared/...) but holds no space, quote, `$`, backtick or glob, and no
# leading dash (it would read as an option).
PATH_MAX = 1024
SAFE_PATH = re.compile(r"[A-Za-z0-9._+/@=][A-Za-z0-9._+/@=-]*")
# A tool option's value (a Slurm partition list or time, a core count, an image tag, a GPU list).
SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:,/+=@-]{0,199}")
# A container image reference (registry/repo:tag or @digest) and a pinned digest.
IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Make's start time (`date +%s.%N`); BSD date prints a literal N after the dot.
STARTED = re.compile(r"[0-9]{1,20}(\.([0-9]{1,20}|N))?")
SHARD_SPEC = re.compile(r"(?P<index>[1-9][0-9]{0,3})/(?P<count>[1-9][0-9]{0,3})")

# Variable -> (may be empty, kind). SHARDS is a space-separated list of paths.
VARIABLES: dict[str, tuple[bool, str]] = {
    "RUN": (False, "run"),
    "MANIFEST": (False, "path"),
    "SHARD": (True, "shard"),
    "REFERENCE": (True, "path"),
    "LOGS": (True, "path"),
    "SHARDS": (True, "paths"),
    "RESULTS_DIR": (False, "path"),
    "WORK_DIR": (False, "path"),
    "REPORTS_DIR": (False, "path"),
    "MODELS_DIR": (False, "path"),
    "CACHE_DIR": (True, "path"),
    "VENV": (True, "path"),
    "AIPERF_VENV": (True, "path"),
    "PYTHON": (True, "path"),
    "HF_HOME": (True, "path"),
    "TEST_WORKERS": (True, "word"),
    "DOCKER": (True, "path"),
    "DOCKER_GPUS": (True, "word"),
    "IMAGE_TAG": (True, "word"),
    "PARTITION": (True, "word"),
    "TIME": (True, "word"),
    "GPUS_PER_TASK": (True, "word"),
    "CPUS_PER_TASK": (True, "word"),
    "CONTAINER": (True, "word"),
    "SLURM_IMAGE": (True, "path"),
    "PARTIAL": (True, "word"),
    "BASE": (True, "run"),
    "THRESHOLD": (True, "word"),
    "COMPARE_SUMMARY": (True, "path"),
    "TO": (True, "word"),
    "BENCH_MODEL_GIB": (False, "word"),
    "BASE_IMAGE": (True, "image"),
    "BASE_DIGEST": (True, "digest"),
    "STARTED": (True, "started"),
    "DEMO_MANIFEST": (True, "path"),
    "IMAGE": (True, "image"),
}
PATTERNS = {"word": SAFE_WORD, "image": IMAGE_REF, "digest": DIGEST, "started": STARTED}
EXAMPLES = {
    "run": "RUN=my-run (letters, digits, . _ -; at most 100 characters)",
    "path": "a relative or absolute path of letters, digits and . _ + / @ = -",
    "paths": 'SHARDS="results/a-shard1of2 results/a-shard2of2"',
    "shard": "SHARD=1/3 (shard i of N, 1 <= i <= N)",
    "word": "one word of letters, digits and . _ : , / + = @ - (no space, quote, $ or backtick)",
    "image": "an image reference such as nvcr.io/nvidia/tensorrt-llm/release:1.0.0",
    "digest": "sha256:<64 lowercase hex digits>",
    "started": "seconds since the epoch, e.g. 1764434352.123456789 (set by make itself)",
}


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot be a run name, or None. Used by the Makefile and by RunPaths."""
    if not name:
        return "is empty"
    if len(name) > RUN_NAME_MAX:
        return f"is {len(name)} characters long (at most {RUN_NAME_MAX})"
    if not RUN_NAME.fullmatch(name):
        return "must be one folder name: letters, digits, '.', '_', '-', not starting with . or -"
    return None


def _path_problem(value: str) -> str | None:
    if len(value) > PATH_MAX:
        return f"is {len(value)} characters long (at most {PATH_MAX})"
    if not SAFE_PATH.fullmatch(value):
        return "holds a character outside letters, digits and . _ + / @ = - (or starts with -)"
    return None


def _shard_problem(value: str) -> str | None:
    match = SHARD_SPEC.fullmatch(value)
    if not match:
        return "must be i/N with whole numbers 1 <= i <= N"
    if int(match["index"]) > int(match["count"]):
        return f"shard {match['index']} of {match['count']} does not exist"
    return None


def problem(name: str, value: str) -> str | None:
    """Why VARIABLE=value is refused, or None."""
    may_be_empty, kind = VARIABLES[name]
    if not value:
        return None if may_be_empty else "is empty"
    if kind == "run":
        return run_name_problem(value)
    if kind == "shard":
        return _shard_problem(value)
    if kind in PATTERNS:
        return None if PATTERNS[kind].fullmatch(value) else f"is not {EXAMPLES[kind].split(',')[0]}"
    if kind == "paths":
        return next(filter(None, map(_path_problem, value.split(" "))), None)
    return _path_problem(value)


# A folder the kit made for a run holds one of these (RESULTS_DIR=. RUN=bench must not qualify).
RUN_MARKERS = ("artifacts.json", "manifest.resolved.toml")


def existing_run_problem(run: str, results_dir: str) -> str | None:
    """`make clean-run` deletes results/<run>: it must be one real run folder of the kit."""
    folder = Path(results_dir) / run
    if folder.is_symlink() or not folder.is_dir():
        return f"{folder} is not an existing run folder"
    if not any((folder / marker).is_file() for marker in RUN_MARKERS):
        return f"{folder} is not a kit run (it holds neither {' nor '.join(RUN_MARKERS)})"
    return None


def shown(value: str) -> str:
    """A value quoted for the message, cut to 60 characters; no character Make would expand."""
    text = value if len(value) <= 60 else value[:57] + "..."
    return ascii(text).replace("$", "\\x24")


def check(
    values: dict[str, str], clean_run: str | None = None, not_settable: tuple[str, ...] = ()
) -> str:
    """`ok`, or the one line that says what is wrong, where, and the fix."""
    if not_settable:
        names = ", ".join(map(shown, not_settable))
        return (
            f"{names}: not a variable you may set (the Makefile computes it, or knows no such "
            "variable; ENV_READY may only be empty); fix: give only the variables `make help` lists"
        )
    for name, value in values.items():
        if name not in VARIABLES:
            return f"bench.core.edge: unknown variable {name}"
        why = problem(name, value)
        if why:
            kind = VARIABLES[name][1]
            return f"{name}={shown(value)} {why}; fix: {EXAMPLES[kind]}"
    if clean_run is not None:
        run, results = values.get("RUN", ""), values.get("RESULTS_DIR", "results")
        given = clean_run not in ("file", "default", "undefined")
        why = existing_run_problem(run, results) if given else "RUN is not set"
        if why:
            return f"clean-run: {why}; fix: RUN=<one folder of {results}/>, given explicitly"
    return "ok"


def scenario_of(path: Path) -> str:
    """[sweep] scenario of a manifest ("offline" by default; "" when unreadable or not one word:
    the manifest's own check reports that). Make builds the online scenario's tools only when it
    says "online"."""
    try:
        manifest = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    sweep = manifest.get("sweep")
    scenario = sweep.get("scenario", "offline") if isinstance(sweep, dict) else "offline"
    return scenario if isinstance(scenario, str) and SAFE_WORD.fullmatch(scenario) else ""


def main(argv: list[str]) -> int:
    flag, others, for_make = "--clean-run=", "--not-settable=", "--for-make"
    clean_run = next((a.removeprefix(flag) for a in argv if a.startswith(flag)), None)
    not_settable = next((a.removeprefix(others).split() for a in argv if a.startswith(others)), [])
    pairs = [a.partition("=") for a in argv if not a.startswith((flag, others)) and a != for_make]
    values = {name: value for name, _, value in pairs}
    verdict = check(values, clean_run, tuple(not_settable))
    if verdict != "ok" or for_make not in argv:
        print(verdict)
        return 0
    plain = sys.executable and not any(c.isspace() or c in "$'\"\\`" for c in sys.executable)
    python = sys.executable if plain else "python3"
    print(" ".join(filter(None, ("ok", python, scenario_of(Path(values.get("MANIFEST", "")))))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

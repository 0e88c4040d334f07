"""One error type for bad input, so every message names the file, the key and the fix.

Exit codes across the kit: 0 ok, 1 the work failed, 2 bad input (manifest, files, tools).
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class KitError(Exception):
    """Bad input or a broken precondition: says where (path, key) and what to do."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.path, self.key, self.message, self.fix = path, key, message, fix
        super().__init__(self.render())

    def render(self) -> str:
        where = ": ".join(p for p in (self.path, self.key) if p)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}\n  fix: {self.fix}" if self.fix else text


class StageFailed(KitError):
    """The work itself failed (a tool crashed, a point produced nothing)."""

    exit_code = EXIT_FAILED


# What to do about the OSErrors a stage meets while writing; the rest get the generic advice.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free space on that disk (`df -h`), then rerun the same command",
    errno.EDQUOT: "free space within your quota, then rerun the same command",
    errno.EROFS: "the file system is read-only: point RESULTS_DIR/WORK_DIR at a writable one",
    errno.EACCES: "make the folder writable for this user, then rerun the same command",
}


def os_error_line(err: OSError) -> str:
    """One line for an OSError: the file, the cause with its errno name, and the fix."""
    name = errno.errorcode.get(err.errno or 0, "OSError")
    what = f"{err.strerror or err} ({name})"
    where = f"{err.filename}: " if err.filename else ""
    fix = OS_ERROR_FIXES.get(err.errno or 0, "fix the cause, then rerun the same command")
    return f"{where}{what}\n  fix: {fix}; finished results are kept and the stage resumes"


def run_main(main: Callable[[], int], prog: str) -> int:
    """Run a stage's main, turning KitError into a one-line message and its exit code."""
    try:
        return main()
    except KitError as err:
        print(f"{prog}: error: {err.render()}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # disk full, read-only, permissions: the environment, not the kit
        print(f"{prog}: error: {os_error_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; finished results are kept, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130

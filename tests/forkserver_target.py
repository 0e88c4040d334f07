"""The command tests/test_forkserver.py runs through bench.core.forkserver."""

from __future__ import annotations

import os
import signal
import sys
import time

PRELOADED = False


def preload() -> None:
    global PRELOADED
    PRELOADED = True


def slow_preload() -> None:
    time.sleep(30)


def main(argv: list[str]) -> int:
    what = argv[0]
    if what == "echo":
        probe = os.environ.get("FORKSERVER_PROBE")
        print(f"{os.getpid()}|{PRELOADED}|{probe}|{os.getcwd()}", end="", flush=True)
        return int(argv[1])
    if what == "die":
        os.kill(os.getpid(), int(argv[1]))
        time.sleep(5)
    if what == "exit":
        sys.exit(None if argv[1] == "none" else argv[1])
    if what == "raise":
        raise RuntimeError("boom")
    if what == "sleep":
        print(os.getpid(), flush=True)
        time.sleep(120)
    print(f"unknown: {what}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(main(sys.argv[1:]))

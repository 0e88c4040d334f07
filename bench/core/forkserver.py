"""A preloaded interpreter that forks one fresh process per command: start-up paid once.

The CPU runner spends ~4.7 s of a ~5.5 s demo point importing torch and transformers (measured:
`python -X importtime`, 2 cores). The sweep keeps its rule of one process per point (its own log,
timeout and kill), but for a backend that allows it the point's process is a fork of this server,
which imported the heavy modules once:

    client (the argv the sweep runs)  --unix socket, argv + env + cwd + its fds 0/1/2-->  server
    server: fork -> child runs `module.main(argv)` on the client's fds; waitpid -> exit status
    client: exits with the child's status (a signal death is re-raised as that signal)

The child dies with its client: it watches the socket and SIGKILLs itself at EOF (the client was
killed: a point timeout, Ctrl-C, a SIGKILL of the kit), and with the server (parent-death signal).
When no server answers, or it refuses the request, the client runs the command in its own
process, as it would without one. The server forks from its only Python thread, between commands;
native BLAS worker threads exist by then (OpenBLAS starts them at import) and rely on the
library's own fork handlers, as any fork of a process that imported numpy does.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import importlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.core.proc import guarded_argv, stop_group

ENV = "TRTLLM_REPRO_FORKSERVER"  # the socket's path, set for the commands the sweep runs
READY_TIMEOUT_S = 120.0
OWNER_LOCK = "lock"  # beside the socket: flocked by the sweep for as long as it runs
PID_FILE = "pid"  # beside the socket: the server's pid, so a client stops waiting if it died
PREFIX = "trtllm-repro-fs-"  # of the server's folder in the temp directory
FAILED = ".failed"  # socket path + this: the preload raised
OWN = (PID_FILE, OWNER_LOCK)  # the files the sweep puts beside the socket
REFUSED = b"R"  # the server's answer to a request it cannot run: the client runs it itself
_MAX_MESSAGE = 1 << 20
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _exit_status(status: int) -> int:
    """waitpid's status as subprocess reports it: the exit code, or -signal."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# ----------------------------------------------------------------------------- client


def _ready(path: str) -> bool:
    """Wait while the server still preloads (it started with the sweep, not with this command);
    False when it died first (a bad preload) or never became ready."""
    pid_file = Path(path).with_name(PID_FILE)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not os.path.exists(path):
        if os.path.exists(path + FAILED) or not _alive(pid_file):
            return os.path.exists(path)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid_file: Path) -> bool:
    """The server runs: its pid answers and is no zombie (its parent, the sweep, reaps it only
    when the session ends)."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not sys.platform.startswith("linux")  # no /proc here: trust the kill
    except (OSError, ValueError, IndexError):
        return False
    return state != "Z"


def delegate(module: str, argv: list[str]) -> int | None:
    """Run `module.main(argv)` in a fork of the server named by $TRTLLM_REPRO_FORKSERVER and
    return its exit code; None when there is no server to ask (run it here instead)."""
    path = os.environ.get(ENV)
    if not path or not _ready(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    env = {k: v for k, v in os.environ.items() if k != ENV}
    message = json.dumps({"module": module, "argv": argv, "env": env, "cwd": os.getcwd()})
    payload = message.encode()
    fds = array.array("i", [0, 1, 2])
    with sock:
        # length-prefixed, the socket left open: its EOF is what tells the child we are gone
        sock.sendmsg(
            [len(payload).to_bytes(8, "big"), payload],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
        )
        reply = b""
        while chunk := sock.recv(64):
            reply += chunk
    if reply == REFUSED:
        return None
    if not reply.lstrip(b"-").isdigit():  # the server died during the command (its fork too)
        print(
            f"{module}: error: the fork server ({path}) stopped during this command",
            file=sys.stderr,
        )
        return 1
    code = int(reply)
    if code < 0:  # died of a signal: die of it too, so the caller sees what it would have seen
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's cannot be set, nor need be
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        time.sleep(1)
    return code


# ----------------------------------------------------------------------------- server


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the fork: take the client's fds, env and cwd, die with it, run the command. Never
    returns."""
    code = 1
    try:
        _die_with_parent()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)

        def watch() -> None:  # the client closed the socket: it was killed, so is this
            while conn.recv(64):
                pass
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        print(
            f"[forkserver] pid {os.getpid()}: a fork of the sweep's preloaded interpreter "
            f"(pid {os.getppid()}), not a fresh start; the measured code is the same",
            file=sys.stderr,
            flush=True,
        )
        sys.argv = [request["module"], *request["argv"]]
        code = int(importlib.import_module(request["module"]).main(request["argv"]) or 0)
    except SystemExit as stop:  # as CPython exits: None is 0, a message is printed, then 1
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """One length-prefixed JSON request and the fds that came with its first bytes."""
    data, fds = b"", array.array("i")
    size: int | None = None
    while size is None or len(data) < size + 8:
        chunk, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(3 * fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not chunk:
            raise ValueError("the client left before its request was complete")
        data += chunk
        if size is None and len(data) >= 8:
            size = int.from_bytes(data[:8], "big")
            if size > _MAX_MESSAGE:
                raise ValueError("request too large")
    return json.loads(data[8:]), list(fds)


def serve(path: str, preload: list[str]) -> None:
    """Import `preload`, listen on `path`, and run one forked command per connection, one at a
    time (the sweep runs its points one after another)."""
    try:
        for spec in preload:
            module, _, function = spec.partition(":")
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
    except BaseException:
        Path(path + FAILED).touch()  # clients stop waiting and run their commands themselves
        raise
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(4)
    os.replace(path + ".tmp", path)  # the path appears only once it accepts
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                request, fds = _receive(conn)
            except (ValueError, OSError) as err:
                print(f"[forkserver] refused a request: {err}", file=sys.stderr, flush=True)
                with contextlib.suppress(OSError):
                    conn.sendall(REFUSED)
                continue
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    conn.sendall(REFUSED)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                _child(conn, request, fds)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):  # the client is gone: nobody to tell
                conn.sendall(str(_exit_status(status)).encode())


@contextlib.contextmanager
def running(preload: list[str], log: Path) -> Iterator[str]:
    """A fork server for the duration of the block, its console in `log`; yields the socket
    path, set in os.environ[ENV] at once: the server preloads while the caller goes on (a sweep
    with nothing to run never waits for it), and the first command waits until it is ready."""
    import subprocess

    remove_stale_folders()
    folder = tempfile.mkdtemp(prefix=PREFIX)  # short: a socket path is <= 107 bytes
    owner = open(os.path.join(folder, OWNER_LOCK), "w")  # noqa: SIM115 (held for the block)
    fcntl.flock(owner, fcntl.LOCK_EX)  # released by the kernel however this process ends
    path = os.path.join(folder, "socket")
    argv = [sys.executable, "-m", "bench.core.forkserver", path, *preload]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            guarded_argv(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    Path(folder, PID_FILE).write_text(str(proc.pid))  # the trampoline execs: the same pid
    previous = os.environ.get(ENV)
    os.environ[ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        if proc.poll() not in (None, 0):  # it died on its own: the commands started afresh
            print(
                f"[forkserver] exited {proc.returncode} (its console: {log}); "
                "each command started afresh (slower, not wrong)",
                file=sys.stderr,
                flush=True,
            )
        stop_group(proc, grace_s=2.0)
        _remove(folder)
        owner.close()


def _remove(folder: str) -> None:
    path = os.path.join(folder, "socket")
    leftovers = (path, path + ".tmp", path + FAILED, *(os.path.join(folder, n) for n in OWN))
    for leftover in leftovers:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
    with contextlib.suppress(FileNotFoundError):  # another sweep found it stale first
        os.rmdir(folder)


def remove_stale_folders(min_age_s: float = 60.0) -> None:
    """Remove the folders whose sweep is gone: a SIGKILLed sweep cannot run its `finally`.
    A sweep holds its folder's lock for as long as it runs (even after its server died), so a
    folder is stale when its lock is free or absent; a young one is left (a sweep between
    creating its folder and locking it)."""
    for folder in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        with contextlib.suppress(OSError):
            if time.time() - folder.stat().st_mtime < min_age_s:
                continue
            try:
                lock = open(folder / OWNER_LOCK, "r+")  # noqa: SIM115 (closed below)
            except FileNotFoundError:
                _remove(str(folder))
                continue
            with lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its sweep runs
                _remove(str(folder))


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])

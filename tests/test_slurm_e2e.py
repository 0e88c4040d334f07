"""`make test-slurm`: the CPU demo through `make slurm CONTAINER=none` on a real Slurm.

Uses the Slurm that answers here, else stands up a one-node cluster under this module's control:
munged, slurmctld and slurmd in the foreground, configuration, state and logs in a temporary folder,
the node sized to this machine (its cores, no GPU gres). Every daemon started here is stopped by its
PID on every way out (a failure, Ctrl-C, SIGTERM). Skips with the reason where it cannot run:
outside `make test-slurm`, without Slurm's packages, or without root to start the daemons.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEMO_MANIFEST, ROOT

pytestmark = pytest.mark.slow
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
CHAIN_TIMEOUT_S = 1200  # two demo shards share 2 loaded cores: minutes, not hours
FAILURE_TIMEOUT_S = 300  # a bad manifest fails at fetch, seconds after the task starts
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).is_file()), None
    )


def slurm_answers(env: dict[str, str]) -> bool:
    """A controller already answers with the default configuration (a real cluster's node)."""
    if tool("scontrol") is None:
        return False
    out = subprocess.run(
        ["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return out.returncode == 0 and "is UP" in out.stdout


def why_not() -> str | None:
    if os.environ.get("SLURM_E2E") != "1":
        return "stands up Slurm as root: run by `make test-slurm` (SLURM_E2E=1)"
    if slurm_answers(dict(os.environ)):
        return None
    missing = [t for t in DAEMONS + CLIENTS if tool(t) is None]
    if missing:
        return (
            f"no Slurm here ({', '.join(missing)} missing); `make test-slurm` installs "
            "slurm-wlm and munge with apt-get when run as root on Debian"
        )
    if os.geteuid() != 0:
        return "not root: cannot start munged, slurmctld and slurmd"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(folder: Path, host: str, cpus: int) -> str:
    """A one-node cluster on this host: its cores, no GPUs, everything under `folder`."""
    ctld_port, d_port = free_port(), free_port()
    return f"""\
ClusterName=kittest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=kittest Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """munged + slurmctld + slurmd as child processes of this test; stop() ends each by PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"))

    def start(self) -> None:
        f = self.folder
        (f / "state").mkdir()
        (f / "spool").mkdir()
        f.chmod(0o755)  # munged wants its socket's folder searchable by all
        (f / "munge.key").write_bytes(os.urandom(1024))
        (f / "munge.key").chmod(0o400)
        host = socket.gethostname().split(".")[0]
        (f / "slurm.conf").write_text(slurm_conf(f, host, os.cpu_count() or 1))
        conf = str(f / "slurm.conf")
        munged = [
            tool("munged"), "--foreground", "--force", f"--key-file={f}/munge.key",
            f"--socket={f}/munge.socket", f"--pid-file={f}/munged.pid",
            f"--seed-file={f}/munged.seed", f"--log-file={f}/munged.log",
        ]  # fmt: skip
        self.spawn("munged", munged)
        self.wait_for(lambda: (f / "munge.socket").exists(), 30, "munged's socket")
        self.spawn("slurmctld", [tool("slurmctld"), "-D", "-i", "-f", conf])
        self.spawn("slurmd", [tool("slurmd"), "-D", "-f", conf])
        self.wait_for(self.node_idle, 60, "the node to come up idle")

    def spawn(self, name: str, argv: list) -> None:
        log = (self.folder / f"{name}.out").open("w")
        self.procs.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def node_idle(self) -> bool:
        out = subprocess.run(
            ["sinfo", "--noheader", "--format=%T"], env=self.env, capture_output=True, text=True
        )
        return out.stdout.strip() == "idle"

    def wait_for(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"waiting for {what}: died {dead or 'none'}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.folder.glob("*.out"))
        )

    def stop(self) -> None:
        """Cancel what is still queued, then end the daemons newest first, each by its PID."""
        controller_up = len(self.procs) > 1 and self.procs[1].poll() is None
        if controller_up and (self.folder / "slurm.conf").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                subprocess.run(
                    ["scancel", "--full", "--user=root"], env=self.env, check=False, timeout=30
                )
                self.wait_for(lambda: not squeue_ids(self.env), 30, "cancelled jobs to end")
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def squeue_ids(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        ["squeue", "--noheader", "--format=%i"], env=env, capture_output=True, text=True, timeout=30
    )
    return out.stdout.split()


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a CI timeout) raises, so the cluster's finally still stops the daemons."""

    def stop(signum, frame):
        raise SystemExit(f"signal {signum}: stopping the Slurm daemons this test started")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    if reason := why_not():
        pytest.skip(reason)
    if slurm_answers(dict(os.environ)):
        yield dict(os.environ)
        return
    cluster = LocalSlurm(Path(tmp_path_factory.mktemp("slurm")))
    with sigterm_unwinds():
        try:
            cluster.start()
            yield cluster.env
        finally:
            cluster.stop()
    left = [p.pid for p in cluster.procs if p.poll() is None]
    assert not left, f"daemons still running: {left}"


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Path:
    return Path(tmp_path_factory.mktemp("roots"))


def submit(env: dict[str, str], roots: Path, manifest: Path, run: str) -> tuple[str, str, str]:
    """`make slurm CONTAINER=none` as a user types it; returns the job ids and its output."""
    env = env | {
        "RESULTS_DIR": str(roots / "results"),
        "WORK_DIR": str(roots / "work"),
        "MODELS_DIR": str(roots / "models"),
        "REPORTS_DIR": str(roots / "reports"),
        "CACHE_DIR": str(roots / "work" / ".cache"),
    }
    argv = [
        "make", "--no-print-directory", "slurm", f"MANIFEST={manifest}", "SHARDS=2",
        f"RUN={run}", "CONTAINER=none", "GPUS_PER_TASK=0", "CPUS_PER_TASK=1", "TIME=30:00",
        "ENV_READY=",
    ]  # fmt: skip
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    ids = re.search(r"shards job (\d+) .*finish job (\d+)", out.stdout)
    assert ids, out.stdout
    return ids[1], ids[2], out.stdout


def job_state(env: dict[str, str], job: str) -> tuple[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job], env=env, capture_output=True, text=True
    ).stdout
    state, reason = re.search(r"JobState=(\S+)", out), re.search(r"Reason=(\S+)", out)
    return (state[1] if state else "UNKNOWN", reason[1] if reason else "")


def wait_final(env: dict[str, str], job: str, timeout_s: float, logs: Path) -> tuple[str, str]:
    deadline = time.monotonic() + timeout_s
    while (state := job_state(env, job))[0] not in FINAL_STATES:
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in logs.glob("*.out"))
            pytest.fail(f"job {job} still {state} after {timeout_s} s\n{tails}")
        time.sleep(2)
    return state


def test_demo_as_two_shards_merges_and_verifies_then_resumes(slurm_env, roots):
    logs = roots / "work" / ".slurm" / "slurm-demo"
    started = time.monotonic()
    array, finish, printed = submit(slurm_env, roots, DEMO_MANIFEST, "slurm-demo")
    assert f"squeue -j {array},{finish}" in printed and "resume:  make slurm" in printed
    state = wait_final(slurm_env, finish, CHAIN_TIMEOUT_S, logs)
    first = time.monotonic() - started
    finish_log = (logs / f"finish-job{finish}.out").read_text()
    assert state == ("COMPLETED", "None"), finish_log
    assert "**Result: PASSED**" in (roots / "reports" / "slurm-demo" / "verify.md").read_text()
    demo_runs = 18  # manifests/demo.toml: 6 points x 3 repeats
    assert len(list((roots / "results" / "slurm-demo" / "points").iterdir())) == demo_runs
    shard_logs = sorted(p.name for p in logs.glob("shard-*.out"))
    assert shard_logs == [f"shard-1-job{array}.out", f"shard-2-job{array}.out"]

    results = sorted((roots / "results").glob("slurm-demo-shard*/points/*/result.json"))
    assert len(results) == demo_runs
    measured = {p: p.stat().st_mtime_ns for p in results}
    started = time.monotonic()
    array, finish, _ = submit(slurm_env, roots, DEMO_MANIFEST, "slurm-demo")
    state = wait_final(slurm_env, finish, CHAIN_TIMEOUT_S, logs)
    assert state == ("COMPLETED", "None"), (logs / f"finish-job{finish}.out").read_text()
    assert {p: p.stat().st_mtime_ns for p in results} == measured  # no point measured again
    assert "merging them again" in (logs / f"finish-job{finish}.out").read_text()
    again = time.monotonic() - started
    print(f"\n[test-slurm] chain {first:.0f} s, resubmitted chain {again:.0f} s")


def test_a_failing_shard_cancels_the_chain_instead_of_hanging(slurm_env, roots, tmp_path):
    """A manifest whose lock does not match the model: valid to submit, fails at fetch."""
    bad = tmp_path / "bad-lock.toml"
    text = DEMO_MANIFEST.read_text()
    bad.write_text(re.sub(r'("config\.json" = ")[0-9a-f]{4}', r"\g<1>0000", text, count=1))
    assert bad.read_text() != text
    logs = roots / "work" / ".slurm" / "slurm-bad"
    started = time.monotonic()
    array, finish, _ = submit(slurm_env, roots, bad, "slurm-bad")
    state = wait_final(slurm_env, finish, FAILURE_TIMEOUT_S, logs)
    assert state == ("CANCELLED", "DependencyNeverSatisfied")
    assert job_state(slurm_env, f"{array}_1")[0] == "FAILED"
    assert "do not match the manifest's lock" in (logs / f"shard-1-job{array}.out").read_text()
    assert not (roots / "results" / "slurm-bad").exists()
    print(f"\n[test-slurm] failed chain cancelled after {time.monotonic() - started:.0f} s")

"""`make slurm` without a cluster: the generated sbatch argv and job scripts, validation,
submission against a scripted sbatch, the finish job's merge rule. test_slurm_e2e.py uses Slurm.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from bench.core.errors import KitError
from bench.stages import slurm
from scripts import lint_extra
from tests.conftest import DEMO_MANIFEST, ROOT

MOUNTS = (
    "{t}/results:/data/results,{t}/work:/data/work,{t}/models:/data/models,"
    "{t}/reports:/data/reports,{t}/cache:/data/cache,{root}/manifests:/workspace/trtllm-repro/manifests:ro"
)


def request(tmp_path: Path, **values: str) -> slurm.SlurmSweep:
    """A `make slurm` request as the Makefile passes it, roots under tmp_path."""
    env = {
        "RESULTS_DIR": str(tmp_path / "results"),
        "WORK_DIR": str(tmp_path / "work"),
        "MODELS_DIR": str(tmp_path / "models"),
        "REPORTS_DIR": str(tmp_path / "reports"),
        "CACHE_DIR": str(tmp_path / "cache"),
    }
    given = {"manifest": "manifests/demo.toml", "shards": "2", "run": "r"} | values
    return slurm.parse_request(given, env, ROOT)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "kit.sqsh"
    path.write_bytes(b"squashfs")
    return path


def test_none_mode_runs_the_kits_own_python_on_the_node(tmp_path):
    sweep = request(tmp_path, container="none", python=str(ROOT / ".venv/bin/python"))
    t = tmp_path
    assert slurm.shard_command(sweep) == [
        "srun", "--ntasks=1",
        "make", "--no-print-directory", "-C", str(ROOT), "sweep",
        f"PYTHON={ROOT}/.venv/bin/python", f"MANIFEST={DEMO_MANIFEST}",
        'SHARD="${i}/2"', 'RUN="r-shard${i}of2"',
        f"RESULTS_DIR={t}/results", f"WORK_DIR={t}/work", f"MODELS_DIR={t}/models",
        f"REPORTS_DIR={t}/reports", f"CACHE_DIR={t}/cache",
    ]  # fmt: skip
    assert slurm.finish_command(sweep)[:3] == ["srun", "--ntasks=1", "env"]
    assert slurm.finish_command(sweep)[-8:] == [
        f"{ROOT}/.venv/bin/python", "-m", "bench.stages.slurm",
        "finish", "--run", "r", "--shards", "2",
    ]  # fmt: skip


def test_pyxis_srun_line_mounts_the_roots_and_runs_the_images_python(tmp_path, image):
    sweep = request(tmp_path, container="pyxis", image=str(image))
    assert slurm.shard_command(sweep) == [
        "srun", "--ntasks=1",
        f"--container-image={image}",
        "--container-workdir=/workspace/trtllm-repro",
        "--container-mounts=" + MOUNTS.format(t=tmp_path, root=ROOT),
        "env", "HF_HOME=/data/hf",
        "make", "--no-print-directory", "-C", "/workspace/trtllm-repro", "sweep",
        "PYTHON=python3", "MANIFEST=manifests/demo.toml",
        'SHARD="${i}/2"', 'RUN="r-shard${i}of2"',
        "RESULTS_DIR=/data/results", "WORK_DIR=/data/work", "MODELS_DIR=/data/models",
        "REPORTS_DIR=/data/reports", "CACHE_DIR=/data/cache",
    ]  # fmt: skip


def test_apptainer_srun_line_asks_for_gpus_only_when_the_task_has_them(tmp_path):
    sif = tmp_path / "kit.sif"
    sif.write_bytes(b"sif")
    with_gpu = slurm.shard_command(request(tmp_path, container="apptainer", image=str(sif)))
    assert with_gpu[:10] == [
        "srun", "--ntasks=1", "apptainer", "exec", "--nv",
        "--pwd", "/workspace/trtllm-repro",
        "--bind", MOUNTS.format(t=tmp_path, root=ROOT), str(sif),
    ]  # fmt: skip
    without = request(tmp_path, container="apptainer", image=str(sif), gpus_per_task="0")
    assert "--nv" not in slurm.shard_command(without)


def test_cache_off_is_passed_on_as_empty(tmp_path):
    sweep = request(tmp_path, container="none")
    off = sweep.model_copy(update={"dirs": sweep.dirs.model_copy(update={"cache": None})})
    assert "CACHE_DIR=" in slurm.shard_command(off)


def test_array_argv_carries_every_resource_variable(tmp_path):
    sweep = request(
        tmp_path,
        container="none",
        partition="h100",
        time="2-00:00:00",
        gpus_per_task="1",
        cpus_per_task="24",
    )
    script = Path("/x/shards.sbatch")
    assert slurm.array_argv(sweep, script) == [
        "sbatch", "--parsable", "--job-name=trtllm-r", "--array=1-2", "--ntasks=1",
        "--cpus-per-task=24", "--gpus-per-task=1", "--time=2-00:00:00", "--partition=h100",
        f"--output={tmp_path}/work/.slurm/r/shard-%a-job%A.out", "/x/shards.sbatch",
    ]  # fmt: skip


def test_cpu_only_nodes_get_no_gres_request_and_the_cluster_default_partition(tmp_path):
    """--gpus-per-task on a node without GPUs is refused by sbatch ("Invalid generic resource")."""
    argv = slurm.array_argv(request(tmp_path, container="none", gpus_per_task="0"), Path("s"))
    assert not [a for a in argv if a.startswith(("--gpus", "--gres", "--partition"))]


def test_finish_job_depends_on_the_array_and_dies_with_a_failed_shard(tmp_path):
    argv = slurm.finish_argv(request(tmp_path, container="none"), "4242", Path("/x/f.sbatch"))
    assert "--dependency=afterok:4242" in argv
    assert "--kill-on-invalid-dep=yes" in argv
    assert f"--output={tmp_path}/work/.slurm/r/finish-job%j.out" in argv
    assert not [a for a in argv if a.startswith("--gpus")]


def test_defaults_suit_an_h100_cluster(tmp_path, image):
    sweep = request(tmp_path, image=str(image))
    assert (sweep.container, sweep.gpus_per_task, sweep.cpus_per_task, sweep.time) == (
        "pyxis",
        1,
        16,
        "24:00:00",
    )
    assert sweep.partition is None


def test_run_defaults_to_the_manifest_stem(tmp_path):
    assert request(tmp_path, container="none", run="").run == "demo-slurm"


@pytest.mark.parametrize("container", ["none", "pyxis"])
def test_job_scripts_have_no_sbatch_lines_and_parse(tmp_path, image, container):
    sweep = request(tmp_path, container=container, image=str(image))
    for text in (slurm.shard_script(sweep), slurm.finish_script(sweep)):
        assert not [line for line in text.splitlines() if line.startswith("#SBATCH")]
        script = tmp_path / "job.sh"
        script.write_text(text)
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        if shellcheck := lint_extra.find_tool("shellcheck"):
            out = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
            assert out.returncode == 0, out.stdout


def test_array_task_expands_its_own_shard(tmp_path):
    """The script as Slurm runs it, with a stand-in srun that prints the argv it gets."""
    sweep = request(tmp_path, container="none")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (bin_dir / "srun").chmod(0o755)
    script = tmp_path / "shards.sbatch"
    script.write_text(slurm.shard_script(sweep))
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "2"}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    argv = out.stdout.splitlines()
    assert "SHARD=2/2" in argv and "RUN=r-shard2of2" in argv
    env.pop("SLURM_ARRAY_TASK_ID")
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "sbatch --array=1-2" in out.stderr


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shards": "abc"}, "SHARDS='abc' is not a number of shards"),
        ({"shards": ""}, "SHARDS='' is not a number of shards"),
        ({"shards": "0"}, "SHARDS='0': Input should be greater than or equal to 1"),
        ({"time": "tomorrow"}, "TIME='tomorrow'"),
        ({"container": "docker"}, "CONTAINER='docker'"),
        ({"gpus_per_task": "-1"}, "GPUS_PER_TASK='-1'"),
        ({"cpus_per_task": "two"}, "CPUS_PER_TASK='two'"),
        ({"partition": "gpu;rm -rf"}, "PARTITION='gpu;rm -rf'"),
        ({"run": "../x"}, "RUN='../x'"),
        ({"manifest": "manifests/nope.toml"}, "nope.toml"),
        ({"shards": "19"}, "SHARDS=19 is more than the manifest's 18 point runs"),
    ],
)
def test_bad_variables_are_named(tmp_path, values, message):
    with pytest.raises(KitError, match=re.escape(message)):
        request(tmp_path, **({"container": "none"} | values))


def test_container_modes_need_the_manifest_under_manifests(tmp_path, image):
    outside = tmp_path / "m.toml"
    outside.write_text(DEMO_MANIFEST.read_text())
    with pytest.raises(KitError, match="outside manifests/, the only folder the container mounts"):
        request(tmp_path, container="pyxis", image=str(image), manifest=str(outside))
    assert request(tmp_path, container="none", manifest=str(outside)).manifest == outside


def test_a_missing_image_file_says_how_to_make_it(tmp_path):
    with pytest.raises(KitError, match=r"no such image file(.|\n)*enroot import"):
        request(tmp_path, container="pyxis", image=str(tmp_path / "absent.sqsh"))


def test_make_slurm_bad_input_is_one_message_and_exit_2(tmp_path):
    out = subprocess.run(
        ["make", "-s", "slurm", "SHARDS=three", "ENV_READY="],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("make slurm: error: SHARDS='three' is not a number of shards")
    assert "Traceback" not in out.stderr


def test_make_slurm_passes_every_variable():
    out = subprocess.run(
        [
            "make", "-n", "slurm", "SHARDS=4", "PARTITION=h100", "TIME=1:00:00",
            "GPUS_PER_TASK=8", "CPUS_PER_TASK=64", "CONTAINER=apptainer", "SLURM_IMAGE=k.sif",
            "RUN=x", "ENV_READY=",
        ],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for option in (
        '--shards "4"', "--run x", '--partition "h100"', '--time "1:00:00"',
        '--gpus-per-task "8"', '--cpus-per-task "64"', '--container "apptainer"', '--image "k.sif"',
    ):  # fmt: skip
        assert option in out


# ----------------------------------------------------------------------------- submission


class ScriptedSlurm:
    """Stands in for sbatch/squeue/scancel: records every argv, answers from a script."""

    def __init__(self, queued: str = "", fail_finish: bool = False, others: str = "") -> None:
        self.calls: list[list[str]] = []
        self.queued, self.fail_finish, self.others = queued, fail_finish, others

    def __call__(self, argv: list[str]) -> str:
        self.calls.append(argv)
        if argv[0] == "squeue":  # `others`: jobs of other users with the same name
            return self.queued + ("" if "--me" in argv else self.others)
        if argv[0] == "sbatch" and any(a.startswith("--dependency") for a in argv):
            if self.fail_finish:
                raise KitError("sbatch ... failed: Invalid partition name specified")
            return "102\n"
        return "101;cluster\n" if argv[0] == "sbatch" else ""


def test_submit_chains_the_finish_job_on_the_array(tmp_path):
    sweep = request(tmp_path, container="none")
    tool = ScriptedSlurm()
    assert slurm.submit(sweep, tool) == ("101", "102")
    sbatch = [c for c in tool.calls if c[0] == "sbatch"]
    assert sbatch[0][-1] == str(tmp_path / "work/.slurm/r/shards.sbatch")
    assert "--dependency=afterok:101" in sbatch[1]
    assert (tmp_path / "work/.slurm/r/finish.sbatch").read_text() == slurm.finish_script(sweep)
    text = slurm.announce(sweep, "101", "102")
    assert "squeue -j 101,102" in text
    assert "make slurm MANIFEST=manifests/demo.toml SHARDS=2 RUN=r CONTAINER=none" in text


def test_submit_refuses_while_the_runs_jobs_are_queued(tmp_path):
    tool = ScriptedSlurm(queued="77_[1-2]\n")
    with pytest.raises(
        KitError, match=r"run r still has jobs of yours in the queue \(squeue --me\): 77_"
    ):
        slurm.submit(request(tmp_path, container="none"), tool)
    assert not [c for c in tool.calls if c[0] == "sbatch"]


def test_another_users_chain_with_the_same_name_does_not_block(tmp_path):
    tool = ScriptedSlurm(others="88_[1-2]\n89\n")
    assert slurm.submit(request(tmp_path, container="none"), tool) == ("101", "102")
    assert all("--me" in c for c in tool.calls if c[0] == "squeue")


def test_a_refused_finish_job_cancels_the_shards(tmp_path):
    tool = ScriptedSlurm(fail_finish=True)
    with pytest.raises(KitError, match="Invalid partition"):
        slurm.submit(request(tmp_path, container="none"), tool)
    assert tool.calls[-1] == ["scancel", "101"]


def test_job_id_reads_sbatch_parsable():
    assert slurm.job_id("12345;cluster\n") == "12345"
    with pytest.raises(KitError, match="not a job id"):
        slurm.job_id("sbatch: error: Batch job submission failed")


# ----------------------------------------------------------------------------- finish job


def test_finish_refuses_a_run_that_is_not_this_chains_merge(run_roots):
    other = run_roots / "results" / "r"
    other.mkdir(parents=True)
    (other / "artifacts.json").write_text(json.dumps({"stages": {}}))
    with pytest.raises(KitError, match="exists and is not the merge of r-shard1of2, r-shard2of2"):
        slurm.finish("r", 2, None)
    assert (other / "artifacts.json").exists()


def test_finish_keeps_the_previous_merge_when_merging_again_fails(run_roots):
    merged = run_roots / "results" / "r"
    merged.mkdir(parents=True)
    record = {"stages": {"merge": {"details": {"shards": ["r-shard1of2", "r-shard2of2"]}}}}
    (merged / "artifacts.json").write_text(json.dumps(record))
    with pytest.raises(KitError, match="not a finished shard"):
        slurm.finish("r", 2, None)  # the shards are gone: nothing to merge again
    assert json.loads((merged / "artifacts.json").read_text()) == record
    assert not (run_roots / "results" / "r.previous-merge").exists()


def test_slurm_logs_are_ignored_by_git():
    """Ignored by git means left out of `git status`, so provenance's dirty flag stays false."""
    for path in ("slurm-123_4.out", "work/.slurm/r/shard-1-job7.out"):
        out = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path], check=False
        )
        assert out.returncode == 0, f"{path} is not ignored"


# ----------------------------------------------------------------------------- test-slurm's harness


def test_test_slurm_skips_with_the_reason(monkeypatch):
    from tests import test_slurm_e2e as e2e

    monkeypatch.delenv("SLURM_E2E", raising=False)
    assert "make test-slurm" in e2e.why_not()
    monkeypatch.setenv("SLURM_E2E", "1")
    monkeypatch.setattr(e2e, "tool", lambda name: None)
    assert "no Slurm here (munged, slurmctld" in e2e.why_not()
    monkeypatch.setattr(e2e, "tool", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(e2e, "slurm_answers", lambda env: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert e2e.why_not() == "not root: cannot start munged, slurmctld and slurmd"


def test_the_local_cluster_stops_every_daemon_it_started(tmp_path):
    from tests import test_slurm_e2e as e2e

    cluster = e2e.LocalSlurm(tmp_path)  # no slurm.conf: nothing to scancel, daemons to end
    for name in e2e.DAEMONS:
        cluster.spawn(name, ["sleep", "300"])
    with pytest.raises(RuntimeError, match="waiting for the node: died"):
        cluster.procs[0].terminate()
        cluster.wait_for(lambda: False, 5, "the node")
    cluster.stop()
    assert [p.poll() is not None for p in cluster.procs] == [True, True, True]

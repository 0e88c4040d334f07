"""The GitHub workflows keep their security rules; actionlint and shellcheck pass where installed.

benchmark.yml runs on self-hosted H100 runners holding weights and HF_TOKEN, so it must never be
started by a pull request, must hold one concurrency group, and must keep expressions out of shell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts import lint_extra

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI, BENCHMARK = WORKFLOWS / "ci.yml", WORKFLOWS / "benchmark.yml"
H100_LABELS = {"self-hosted", "linux", "x64", "h100"}
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+?)@([0-9a-f]{40})\s+#\s*v\d+(?:\.\d+)*\s*$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def triggers(workflow: dict) -> dict:
    """The `on:` table (PyYAML reads the bare key `on` as the boolean True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on


def steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def all_workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


@pytest.fixture(params=all_workflows(), ids=lambda p: p.name)
def workflow_path(request) -> Path:
    return request.param


def test_both_workflows_exist():
    assert {CI.name, BENCHMARK.name} <= {p.name for p in all_workflows()}


def test_benchmark_is_never_started_by_a_pull_request():
    on = triggers(load(BENCHMARK))
    assert "workflow_dispatch" in on
    assert not {"pull_request", "pull_request_target", "workflow_run"} & set(on), on
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["manifest"]["default"] == "manifests/llama-3.1-8b-fp8-h100.toml"
    assert inputs["shards"]["type"] == "number"
    assert inputs["reference"]["default"] == ""  # the manifest's own reference (issue 11)


def test_every_action_is_pinned_to_a_commit_sha_with_its_version(workflow_path):
    lines = [
        ln
        for ln in workflow_path.read_text(encoding="utf-8").splitlines()
        if re.match(r"^\s*(?:-\s+)?uses:", ln)
    ]
    assert lines, f"{workflow_path.name} uses no action"
    for line in lines:
        if "uses: ./" in line:
            continue  # a local action is pinned by the checkout itself
        assert PINNED_USES.match(line), (
            f"{workflow_path.name}: not pinned `@<40 hex> # vX.Y.Z`: {line}"
        )


def test_one_sha_per_action_across_workflows():
    shas: dict[str, set[str]] = {}
    for path in all_workflows():
        for line in path.read_text(encoding="utf-8").splitlines():
            if m := PINNED_USES.match(line):
                shas.setdefault(m.group(1), set()).add(m.group(2))
    assert {action for action, found in shas.items() if len(found) > 1} == set()


def test_permissions_are_least_privilege(workflow_path):
    workflow = load(workflow_path)
    top = workflow.get("permissions")
    assert isinstance(top, dict), f"{workflow_path.name}: top-level permissions must be a table"
    assert top.get("contents") == "read"
    scopes = [top] + [
        job["permissions"] for job in workflow["jobs"].values() if "permissions" in job
    ]
    for scope in scopes:
        assert scope not in ("write-all", "read-all")
        writes = {k for k, v in scope.items() if v == "write"}
        assert not writes, f"{workflow_path.name}: write permissions {writes}"


def test_benchmark_holds_one_gpu_concurrency_group():
    concurrency = load(BENCHMARK)["concurrency"]
    assert concurrency == {"group": "h100-benchmark", "cancel-in-progress": False}


def test_self_hosted_jobs_carry_the_h100_labels(workflow_path):
    for job_id, job in load(workflow_path)["jobs"].items():
        runs_on = job["runs-on"]
        labels = {runs_on} if isinstance(runs_on, str) else set(runs_on)
        if "self-hosted" in labels:
            assert workflow_path == BENCHMARK, f"{job_id}: CI stays on hosted runners"
            assert labels >= H100_LABELS, f"{job_id}: runs-on {sorted(labels)}"
        else:
            assert all(label.startswith("ubuntu-") for label in labels), f"{job_id}: {labels}"


def test_benchmark_shards_run_on_h100_and_merge_on_hosted():
    jobs = load(BENCHMARK)["jobs"]
    assert set(jobs["shard"]["runs-on"]) == H100_LABELS
    assert "fromJSON(needs.plan.outputs" in str(jobs["shard"]["strategy"]["matrix"]["shard"])
    assert set(jobs["merge"]["needs"]) == {"plan", "shard"}
    merge_runs = " ".join(step.get("run", "") for step in jobs["merge"]["steps"])
    for command in ("make merge", "make report", "make verify"):
        assert command in merge_runs


def test_no_expression_reaches_a_shell(workflow_path):
    """Secrets, inputs and every other `${{ }}` go through env:, never into a `run:` script."""
    for job_id, step in steps(load(workflow_path)):
        script = step.get("run", "")
        assert "${{" not in script, f"{workflow_path.name}:{job_id}: expression in run: {script!r}"


def test_secrets_only_in_step_env():
    text = BENCHMARK.read_text(encoding="utf-8")
    assert "secrets.HF_TOKEN" in text
    for job_id, step in steps(load(BENCHMARK)):
        for key, value in step.get("with", {}).items():
            assert "secrets." not in str(value), f"{job_id}: secret passed as `with: {key}`"
    for job_id, job in load(BENCHMARK)["jobs"].items():
        assert "secrets." not in str(job.get("env", {})), f"{job_id}: secret in job-level env"
    assert "secrets." not in str(load(BENCHMARK).get("env", {}))


def test_shard_uploads_results_only():
    shard = load(BENCHMARK)["jobs"]["shard"]
    uploads = [s for s in shard["steps"] if "upload-artifact" in s.get("uses", "")]
    assert len(uploads) == 1
    path = uploads[0]["with"]["path"]
    assert "RESULTS_DIR" in path and not re.search(r"\b(models|work)\b", path)
    # Datasets stay on the runner: recorded by digest, made from the seed (about 1 GB a shard).
    assert "!${{ env.RESULTS_DIR }}/${{ env.SHARD_RUN }}/datasets/" in path.splitlines()
    assert uploads[0]["with"]["include-hidden-files"] is True  # .stamps/sweep.ok


def test_ci_runs_the_checks():
    workflow = load(CI)
    on = triggers(workflow)
    assert {"push", "pull_request"} <= set(on)
    runs = {
        job_id: " ".join(s.get("run", "") for s in job["steps"])
        for job_id, job in workflow["jobs"].items()
    }
    assert "make test" in runs["test"]
    assert "make demo" in runs["demo"]
    assert "make lint" in runs["lint"]
    lint_recipe = re.search(r"(?ms)^lint:.*?\n\n", (ROOT / "Makefile").read_text()).group(0)
    for check in ("ruff check", "ruff format --check", "scripts.typecheck", "scripts.lint_extra"):
        assert check in lint_recipe


def _tool(name: str) -> str:
    exe = lint_extra.find_tool(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (pip install {lint_extra.PACKAGES[name]})")
    return exe


def test_actionlint_passes():
    exe = _tool("actionlint")
    shellcheck = lint_extra.find_tool("shellcheck") or ""
    check = next(c for c in lint_extra.checks(ROOT) if c.tool == "actionlint")
    out = subprocess.run(
        check.argv(exe, {"shellcheck": shellcheck}) + list(check.files),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script", [".ci/run", "scripts/slurm/install-debian.sh"])
def test_shellcheck_passes(script):
    exe = _tool("shellcheck")
    out = subprocess.run([exe, script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_lint_extra_lists_the_shell_files():
    check = next(c for c in lint_extra.checks(ROOT) if c.tool == "shellcheck")
    assert {".ci/run", "scripts/slurm/install-debian.sh"} <= set(check.files)


def test_no_pipe_into_an_early_reader_in_the_kit():
    assert lint_extra.early_close_pipes(ROOT) == []


def test_early_close_pipes_are_found_with_file_and_line(tmp_path):
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text(
        "set -euo pipefail\n# make --version | head -n 1 (a comment)\nmake --version | head -n 1\n"
        "ok || head\n"
        "make -n x |\n  grep -qE y ||\n  fail\n"
    )
    makefile = "x:\n\tpip freeze | grep -q torch\n\tpip freeze | sed -n 1p\n"
    (tmp_path / "Makefile").write_text(makefile)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    workflow = "steps:\n  - run: |\n      grep -q needle file\n  - run: >-\n      grep -q x y\n"
    (tmp_path / ".github" / "workflows" / "w.yml").write_text(workflow)  # block scalars, no pipe
    assert lint_extra.early_close_pipes(tmp_path) == [
        ".ci/run:3: make --version | head -n 1",
        ".ci/run:5: make -n x | grep -qE y || fail",
        "Makefile:2: pip freeze | grep -q torch",
    ]


# ----------------------------------------------------------------------------- regression gate


def merge_steps() -> dict[str, dict]:
    return {s.get("id", s.get("name")): s for s in load(BENCHMARK)["jobs"]["merge"]["steps"]}


def test_benchmark_runs_weekly_with_a_chosen_baseline():
    workflow = load(BENCHMARK)
    on = triggers(workflow)
    assert [c["cron"] for c in on["schedule"]] == ["17 3 * * 1"]
    baseline = on["workflow_dispatch"]["inputs"]["baseline"]
    assert baseline["type"] == "choice" and baseline["options"] == ["artifact", "branch", "none"]
    assert "inputs.baseline || 'artifact'" in workflow["env"]["BASELINE"]  # schedule: no inputs


def test_merged_run_is_compared_with_the_baseline_and_fails_the_job_last():
    steps = merge_steps()
    names = list(steps)
    assert names.index("verify") < names.index("baseline") < names.index("compare")
    compare = steps["compare"]
    assert compare["continue-on-error"] is True
    assert "steps.baseline.outputs.base != ''" in compare["if"]
    assert 'COMPARE_SUMMARY="$GITHUB_STEP_SUMMARY"' in compare["run"]
    assert "make compare" in compare["run"]
    fail = next(s for s in steps.values() if "regression" in s.get("name", ""))
    assert fail["if"] == "${{ steps.compare.outcome == 'failure' }}" and "exit 1" in fail["run"]
    assert names.index("compare") < names.index(fail["name"])
    # Baseline artifact from the last accepted run needs only read access to actions.
    perms = load(BENCHMARK)["jobs"]["merge"]["permissions"]
    assert perms == {"contents": "read", "actions": "read"}
    assert "--status success" in steps["baseline"]["run"]
    for mode in ("artifact)", "branch)", "none)"):
        assert mode in steps["baseline"]["run"]


def test_only_an_accepted_run_becomes_the_baseline_without_datasets():
    steps = merge_steps()
    keep = steps["keep"]
    assert "steps.verify.outcome == 'success'" in keep["if"]
    assert "steps.compare.outcome != 'failure'" in keep["if"]
    assert "datasets" not in keep["run"] and "points -name '*.json'" in keep["run"]
    upload = next(s for s in steps.values() if s.get("name") == "Upload the baseline")
    assert upload["with"]["name"] == "${{ steps.keep.outputs.artifact }}"
    assert upload["if"] == "${{ steps.keep.outcome == 'success' }}"


FAKE_GH = """#!/usr/bin/env bash
# gh stand-in: `run list` prints the successful runs' ids, newest first; `run download ID --name N
# --dir D` succeeds only where runs.txt holds "ID N RUN" and then writes D/RUN/summary.csv.
if [[ $1 == run && $2 == list ]]; then cut -d' ' -f1 "$FAKE_RUNS" | uniq; exit 0; fi
while read -r id name run; do
  [[ $3 == "$id" && $5 == "$name" ]] || continue
  mkdir -p "$7/$run" && : > "$7/$run/summary.csv" && exit 0
done < "$FAKE_RUNS"
echo "no artifact matches $5" >&2; exit 1
"""


def run_step(step: dict, cwd: Path, **env: str) -> dict[str, str]:
    """Run a step's bash as Actions would (bash -e -o pipefail); return its GITHUB_OUTPUT."""
    output = cwd / "github_output"
    output.write_text("")
    full = {"PATH": f"{cwd / 'bin'}:/usr/bin:/bin", "GITHUB_OUTPUT": str(output), **env}
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", step["run"]],
        cwd=cwd, env=full, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_baseline_is_the_newest_accepted_run_of_the_same_manifest(tmp_path):
    steps = merge_steps()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "gh").write_text(FAKE_GH)
    (tmp_path / "bin" / "gh").chmod(0o755)
    (tmp_path / "results").mkdir()
    # The run that kept a baseline names its artifact after its manifest ...
    (tmp_path / "results" / "demo-gh20" / "points" / "p").mkdir(parents=True)
    (tmp_path / "results" / "demo-gh20" / "summary.csv").write_text("isl\n")
    (tmp_path / "results" / "demo-gh20" / "points" / "p" / "result.json").write_text("{}")
    kept = run_step(steps["keep"], tmp_path, MANIFEST="manifests/demo.toml", RUN="demo-gh20")
    assert kept["artifact"] == "benchmark-baseline-demo"
    assert (tmp_path / "baseline" / "demo-gh20" / "points" / "p" / "result.json").is_file()
    shutil.rmtree(tmp_path / "results" / "demo-gh20")
    # ... and a later run of that manifest skips the newer accepted runs of other manifests.
    runs = tmp_path / "runs.txt"
    runs.write_text(
        "30 benchmark-baseline-llama-3.1-8b-fp8-h100 llama-3.1-8b-fp8-h100-gh30\n"
        "25 benchmark-baseline-demo-cuda demo-cuda-gh25\n"
        f"20 {kept['artifact']} demo-gh20\n"
        "10 benchmark-baseline-demo demo-gh10\n"
    )
    common = {"BASELINE": "artifact", "DEFAULT_BRANCH": "main", "FAKE_RUNS": str(runs)}
    found = run_step(
        steps["baseline"], tmp_path, MANIFEST="manifests/demo.toml", RUN="demo-gh40", **common
    )
    assert found == {"base": "demo-gh20"}
    assert (tmp_path / "results" / "demo-gh20" / "summary.csv").is_file()
    # No accepted run of this manifest: no baseline, rather than another manifest's.
    none = run_step(
        steps["baseline"],
        tmp_path,
        MANIFEST="manifests/nvidia-perf-overview-1.0.toml",
        RUN="n-gh41",
        **common,
    )
    assert none == {}


def test_job_summary_links_the_report_and_verify():
    summary = merge_steps()["Verification summary"]
    assert "GITHUB_STEP_SUMMARY" in summary["run"] and "#artifacts" in summary["env"]["ARTIFACTS"]

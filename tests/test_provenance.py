"""bench.stages.provenance and bench.gpu.gpu_info: nvidia-smi parsing on real captures, NVML
reading,
cross-check, no-GPU path, secret scrubbing and the stage CLI."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.core.errors import KitError
from bench.core.fileio import read_json
from bench.core.run import open_run
from bench.gpu.gpu_info import (
    cross_check,
    decode_clock_event_reasons,
    encode_clock_event_reasons,
    form_factor,
    parse_nvidia_smi_xml,
    parse_topology,
    read_nvml,
)
from bench.stages import provenance
from bench.stages.provenance import (
    capture,
    collect,
    parse_cpuinfo,
    parse_meminfo,
    parse_os_release,
    scrub,
    scrub_argv,
)
from tests.conftest import CPU_MANIFEST_TOML, SHARED

SXM = SHARED / "fixtures" / "nvidia-smi" / "h100-sxm"
PCIE_CONSTRUCTED = Path(__file__).parent / "data" / "nvidia-smi" / "h100-pcie-constructed"
SECRET = "hf_TESTSECRETabcdefghij0123456789"
REAL_RUN_TOOL = provenance._run_tool  # before any test replaces it


def sxm_file(name: str) -> str:
    path = SXM / name
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared fixtures)")
    return path.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- a fake NVML


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """pynvml-shaped: the captured H100 SXM (values from pynvml.txt and the XML)."""

    NVMLError = FakeNVMLError

    def __init__(self, init_error: str | None = None, **overrides: object) -> None:
        self.init_error = init_error
        self.values = {
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-00000000-1111-2222-3333-444444444444",
            "memory_total": 85520809984,  # pynvml.txt
            "enforced_mw": 700000,  # pynvml.txt "power limit 700000"
            "max_sm": 1980,  # pynvml.txt
            **overrides,
        }
        self.inits = self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise FakeNVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000  # pynvml.txt "cuda 13000"

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle{index}"

    def nvmlDeviceGetName(self, h: str) -> bytes:
        return self.values["name"].encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, h: str) -> str:
        return self.values["uuid"]

    def nvmlDeviceGetPciInfo(self, h: str) -> SimpleNamespace:
        return SimpleNamespace(busId=b"00000000:00:06.0")

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
        return SimpleNamespace(total=self.values["memory_total"], used=0)

    def nvmlDeviceGetVbiosVersion(self, h: str) -> str:
        return "96.00.DA.00.0C"

    def nvmlDeviceGetBoardPartNumber(self, h: str) -> str:
        return "695-2G520-0200-000"

    def nvmlDeviceGetBusType(self, h: str) -> int:
        return 2

    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int:
        return self.values["enforced_mw"]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: str) -> int:
        return 700000

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: str) -> list[int]:
        return [200000, 700000]

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return 126000

    def nvmlDeviceGetMaxClockInfo(self, h: str, clock: int) -> int:
        return {1: self.values["max_sm"], 2: 2619}[clock]

    def nvmlDeviceGetApplicationsClock(self, h: str, clock: int) -> int:
        return {0: 1980, 2: 2619}[clock]

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        return 43

    def nvmlDeviceGetPersistenceMode(self, h: str) -> int:
        return 1

    def nvmlDeviceGetEccMode(self, h: str) -> list[int]:
        return [1, 1]

    def nvmlDeviceGetMigMode(self, h: str) -> list[int]:
        raise FakeNVMLError("Not Supported")  # a field the driver refuses: None, not a crash

    def nvmlDeviceGetComputeMode(self, h: str) -> int:
        return 0

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        return 0x1

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=4242, usedGpuMemory=1010 * 2**20)]

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:
        return b"/usr/bin/python3"


def fake_tools(xml: str | None, topo: str | None = None):
    """A run_tool that answers nvidia-smi from fixtures and reports no git."""

    def run_tool(argv: list[str]) -> str | None:
        if argv[:2] == ["nvidia-smi", "-q"]:
            return xml
        if argv[:2] == ["nvidia-smi", "topo"]:
            return topo
        return None

    return run_tool


@pytest.fixture
def no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without GPU: `import pynvml` raises ImportError, nvidia-smi is missing."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(provenance, "_run_tool", fake_tools(None))


# ----------------------------------------------------------------------------- nvidia-smi parsing


def test_real_sxm_xml_matches_the_query_csv_capture() -> None:
    gpu = parse_nvidia_smi_xml(sxm_file("nvidia-smi-q.xml"))
    assert len(gpu) == 1
    gpu = gpu[0]
    rows = list(csv.reader(sxm_file("nvidia-smi-query.csv").splitlines(), skipinitialspace=True))
    q = dict(zip([h.split(" [")[0] for h in rows[0]], rows[1], strict=True))
    assert gpu["name"] == q["name"]
    assert gpu["uuid"] == q["uuid"]
    assert gpu["pci_bus_id"] == q["pci.bus_id"]
    assert gpu["driver_version"] == q["driver_version"]
    assert gpu["vbios_version"] == q["vbios_version"]
    assert gpu["memory_total_mib"] == int(q["memory.total"].split()[0])
    assert gpu["power_limit_enforced_w"] == float(q["power.limit"].split()[0])
    assert gpu["power_limit_default_w"] == float(q["power.default_limit"].split()[0])
    assert gpu["power_limit_max_w"] == float(q["power.max_limit"].split()[0])
    assert gpu["clock_max_sm_mhz"] == int(q["clocks.max.sm"].split()[0])
    assert gpu["clock_max_memory_mhz"] == int(q["clocks.max.memory"].split()[0])
    assert gpu["clock_app_graphics_mhz"] == int(q["clocks.applications.graphics"].split()[0])
    assert gpu["clock_app_memory_mhz"] == int(q["clocks.applications.memory"].split()[0])
    assert gpu["persistence_mode"] is (q["persistence_mode"] == "Enabled")
    assert gpu["ecc_enabled"] is (q["ecc.mode.current"] == "Enabled")
    assert gpu["mig_enabled"] is (q["mig.mode.current"] == "Enabled")
    assert gpu["compute_mode"] == q["compute_mode"]
    assert gpu["clock_event_reasons_mask"] == int(q["clocks_event_reasons.active"], 16)
    assert gpu["clock_event_reasons"] == ["gpu_idle"]
    assert gpu["temperature_c"] == int(q["temperature.gpu"])
    assert gpu["cuda_driver_version"] == "13.0"
    assert gpu["board_part_number"] == "695-2G520-0200-000"
    assert gpu["power_limit_min_w"] == 200.0
    assert gpu["processes"] == []
    assert (gpu["form_factor"], gpu["bus_type"]) == ("SXM", None)


def test_real_sxm_xml_agrees_with_the_pynvml_capture() -> None:
    gpu = parse_nvidia_smi_xml(sxm_file("nvidia-smi-q.xml"))[0]
    text = sxm_file("pynvml.txt")

    def fact(pattern: str) -> str:
        return re.search(pattern, text, re.MULTILINE).group(1)

    assert gpu["name"] == fact(r"^name (.+)$")
    assert gpu["driver_version"] == fact(r"^driver (\S+)")
    assert gpu["power_limit_enforced_w"] * 1000 == int(fact(r"^power limit (\d+)"))
    assert gpu["clock_max_sm_mhz"] == int(fact(r"^max sm clock (\d+)"))
    assert gpu["memory_total_mib"] * 2**20 == int(fact(r"total: (\d+) B"))


def test_old_driver_element_names_are_read() -> None:
    xml = """<nvidia_smi_log>
      <driver_version>535.104.05</driver_version><cuda_version>12.2</cuda_version>
      <gpu id="0"><product_name>NVIDIA A100-SXM4-80GB</product_name>
        <clocks_throttle_reasons>
          <clocks_throttle_reason_gpu_idle>Not Active</clocks_throttle_reason_gpu_idle>
          <clocks_throttle_reason_sw_power_cap>Active</clocks_throttle_reason_sw_power_cap>
        </clocks_throttle_reasons>
        <power_readings><power_draw>250.5 W</power_draw>
          <enforced_power_limit>400.00 W</enforced_power_limit>
          <default_power_limit>400.00 W</default_power_limit><max_power_limit>N/A</max_power_limit>
        </power_readings>
        <ecc_mode><current_ecc>N/A</current_ecc></ecc_mode>
      </gpu></nvidia_smi_log>"""
    gpu = parse_nvidia_smi_xml(xml)[0]
    assert gpu["clock_event_reasons"] == ["sw_power_cap"]
    assert (gpu["power_limit_enforced_w"], gpu["power_draw_w"]) == (400.0, 250.5)
    assert gpu["power_limit_max_w"] is None
    assert gpu["ecc_enabled"] is None
    assert gpu["pci_bus_id"] == "0"  # falls back to the gpu element's id
    assert gpu["form_factor"] == "SXM"


def test_constructed_pcie_sample_is_pcie() -> None:
    gpu = parse_nvidia_smi_xml((PCIE_CONSTRUCTED / "nvidia-smi-q.xml").read_text())[0]
    assert (gpu["name"], gpu["form_factor"]) == ("NVIDIA H100 PCIe", "PCIe")
    assert gpu["power_limit_max_w"] == 350.0
    assert gpu["processes"] == [{"pid": 4242, "used_memory_mib": 1010, "name": "/usr/bin/python3"}]


@pytest.mark.parametrize("text", ["", "not xml", "<html><body/></html>"])
def test_parse_rejects_what_is_not_nvidia_smi_xml(text: str) -> None:
    with pytest.raises(ValueError, match="not nvidia-smi -q -x output"):
        parse_nvidia_smi_xml(text)


def test_real_topology_loses_its_colour_codes() -> None:
    topo = parse_topology(sxm_file("nvidia-smi-topo.txt"))
    assert "\x1b" not in topo["text"]
    assert topo["devices"] == {
        "GPU0": {"GPU0": "X", "CPU Affinity": "0-15", "NUMA Affinity": "0", "GPU NUMA ID": "N/A"}
    }


def test_multi_gpu_topology() -> None:
    text = (
        "\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n"
        "GPU0\t X \tNV18\t0-55\t0\t\tN/A\n"
        "GPU1\tNV18\t X \t0-55\t0\t\tN/A\n"
        "\nLegend:\n  X    = Self\n"
    )
    devices = parse_topology(text)["devices"]
    assert devices["GPU0"]["GPU1"] == devices["GPU1"]["GPU0"] == "NV18"
    assert devices["GPU1"]["CPU Affinity"] == "0-55"


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("name", "part", "max_w", "form"),
    [
        ("NVIDIA H100 80GB HBM3", None, None, "SXM"),
        ("NVIDIA H100 PCIe", None, 350.0, "PCIe"),
        ("NVIDIA H100 NVL", None, 400.0, "NVL"),
        ("NVIDIA H200", None, 700.0, "SXM"),
        ("NVIDIA H200 NVL", None, 600.0, "NVL"),
        ("NVIDIA A100-SXM4-80GB", None, 400.0, "SXM"),
        ("NVIDIA A100-PCIE-40GB", None, 250.0, "PCIe"),
        ("NVIDIA A100 80GB PCIe", None, 300.0, "PCIe"),
        ("NVIDIA H800", None, 700.0, "SXM"),
        ("NVIDIA H100", "695-2G520-0200-000", None, "SXM"),
        ("NVIDIA H100", None, 350.0, "PCIe"),
        ("NVIDIA L40S", None, 350.0, None),
        (None, None, None, None),
    ],
)
def test_form_factor_rules(
    name: str | None, part: str | None, max_w: float | None, form: str | None
) -> None:
    decided, basis = form_factor(name, part, max_w)
    assert decided == form
    assert basis


def test_clock_event_reasons_decode_and_encode() -> None:
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x44) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_clock_event_reasons(0x1001) == ["gpu_idle", "unknown_0x1000"]
    names = decode_clock_event_reasons(0x1FF)
    assert len(names) == 9
    assert encode_clock_event_reasons(names) == 0x1FF


def test_host_parsers() -> None:
    cpuinfo = "".join(
        f"processor\t: {i}\nmodel name\t: Intel(R) Xeon(R)\n"
        f"physical id\t: {i // 4}\ncore id\t: {i % 2}\n\n"
        for i in range(8)
    )
    assert parse_cpuinfo(cpuinfo) == {
        "cpu_model": "Intel(R) Xeon(R)",
        "cpu_sockets": 2,
        "cpu_physical_cores": 4,
    }
    assert parse_cpuinfo("") == {"cpu_model": None, "cpu_sockets": None, "cpu_physical_cores": None}
    assert parse_meminfo("MemTotal:       131979068 kB\nMemFree: 1 kB\n") == 131979068 * 1024
    assert parse_os_release(sxm_file("host.txt")) == "Ubuntu 24.04.3 LTS"


# ----------------------------------------------------------------------------- NVML and cross-check


def test_nvml_reader_matches_nvidia_smi_on_the_same_gpu() -> None:
    smi = parse_nvidia_smi_xml(sxm_file("nvidia-smi-q.xml"))
    nvml = read_nvml(FakeNVML())
    assert set(nvml[0]) == set(smi[0])  # one shape from both readers
    assert nvml[0]["name"] == "NVIDIA H100 80GB HBM3"
    assert nvml[0]["memory_total_mib"] == 81559
    assert nvml[0]["mig_enabled"] is None  # not supported -> unknown
    assert nvml[0]["bus_type"] == "PCIe"
    assert nvml[0]["processes"] == [
        {"pid": 4242, "used_memory_mib": 1010, "name": "/usr/bin/python3"}
    ]
    assert cross_check(nvml, smi) == []


def test_cross_check_lists_disagreements() -> None:
    smi = parse_nvidia_smi_xml(sxm_file("nvidia-smi-q.xml"))
    nvml = read_nvml(FakeNVML(enforced_mw=500000, max_sm=1755))
    found = {d["field"]: (d["nvml"], d["nvidia_smi"]) for d in cross_check(nvml, smi)}
    assert found == {"power_limit_enforced_w": (500.0, 700.0), "clock_max_sm_mhz": (1755, 1980)}
    assert cross_check(nvml, []) == [{"index": None, "field": "count", "nvml": 1, "nvidia_smi": 0}]


def test_collect_with_a_gpu() -> None:
    fake = FakeNVML()
    run_tool = fake_tools(sxm_file("nvidia-smi-q.xml"), sxm_file("nvidia-smi-topo.txt"))
    prov = collect(["python", "-m", "bench.stages.provenance"], nvml=fake, run_tool=run_tool)
    assert (prov["gpu_source"], prov["gpu_note"]) == ("nvml", None)
    assert prov["gpus"][0]["form_factor"] == "SXM"
    assert prov["gpu_cross_check"] == {"compared": True, "note": None, "disagreements": []}
    assert prov["gpu_topology"]["devices"]["GPU0"]["CPU Affinity"] == "0-15"
    assert (fake.inits, fake.shutdowns) == (1, 1)
    json.dumps(prov, allow_nan=False)  # JSON-ready


def test_collect_without_any_gpu(no_pynvml: None) -> None:
    prov = collect(["python"], run_tool=fake_tools(None))
    assert prov["gpus"] == []
    assert prov["gpu_note"].startswith("no NVIDIA GPU found (NVML: pynvml not importable")
    assert prov["gpu_cross_check"]["compared"] is False
    assert prov["gpu_topology"] is None
    assert prov["host"]["cpu_logical"] >= 1
    assert prov["host"]["kernel"]
    assert prov["software"]["kit_git"]["commit"] is None
    assert prov["software"]["pip_freeze"] == sorted(prov["software"]["pip_freeze"], key=str.lower)
    assert prov["software"]["packages"]["pydantic"]
    assert prov["software"]["packages"]["tensorrt_llm"] is None
    assert "aiperf" not in prov["software"]["packages"]  # an offline run has no load generator


def test_pip_freeze_reads_what_the_metadata_parser_reads(tmp_path: Path) -> None:
    """The header scan agrees with importlib's e-mail parser over this venv, and with one
    distribution whose long description holds header-like lines and whose keys are lower case."""
    import importlib.metadata as md

    parsed = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in md.distributions() if d.metadata["Name"]},
        key=str.lower,
    )
    assert provenance.pip_freeze() == parsed and len(parsed) > 10
    info = tmp_path / "odd_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nname: odd-pkg\nSummary: x\n  Version: 9 (folded, not a key)\n"
        "version: 1.0\n\nName: not-this\nVersion: 2.0\n"
    )
    (dist,) = md.distributions(path=[str(tmp_path)])
    assert provenance._name_and_version(dist) == (dist.metadata["Name"], dist.version)
    assert provenance._name_and_version(dist) == ("odd-pkg", "1.0")
    old_style = tmp_path / "eggs"
    old_style.mkdir()  # `setup.py install`: the egg-info is a file, not a folder
    egg_info = old_style / "legacy-2.0-py3.11.egg-info"
    egg_info.write_text("Metadata-Version: 1.0\nName: legacy\nVersion: 2.0\n")
    (egg,) = md.distributions(path=[str(old_style)])
    assert provenance._name_and_version(egg) == (egg.metadata["Name"], egg.version)
    assert provenance._name_and_version(egg) == ("legacy", "2.0")


def test_collect_records_the_aiperf_that_will_measure(tmp_path: Path, no_pynvml: None) -> None:
    """AIPerf has its own venv: its version is asked of its command, not of the kit's packages."""
    tool = tmp_path / "aiperf"
    tool.write_text("#!/bin/sh\necho 0.13.0\n")
    tool.chmod(0o755)
    prov = collect(["python"], run_tool=fake_tools(None), aiperf_bin=str(tool))
    assert prov["software"]["packages"]["aiperf"] == "0.13.0"


def test_collect_when_the_driver_is_missing() -> None:
    fake = FakeNVML(init_error="Driver Not Loaded")
    prov = collect(["python"], nvml=fake, run_tool=fake_tools(None))
    assert prov["gpu_note"] == "no NVIDIA GPU found (NVML: Driver Not Loaded)"


def test_a_gpu_lost_during_reading_is_recorded_not_fatal() -> None:
    class LostNVML(FakeNVML):
        def nvmlDeviceGetCount(self) -> int:
            raise FakeNVMLError("GPU is lost")

    fake = LostNVML()
    prov = collect(["python"], nvml=fake, run_tool=fake_tools(None))
    assert prov["gpus"] == []
    assert prov["gpu_note"] == (
        "no NVIDIA GPU found (NVML: NVML failed reading devices: GPU is lost)"
    )
    assert fake.shutdowns == 1


def test_nvidia_smi_alone_when_nvml_is_missing(no_pynvml: None) -> None:
    prov = collect(["python"], run_tool=fake_tools(sxm_file("nvidia-smi-q.xml")))
    assert prov["gpu_source"] == "nvidia-smi"
    assert prov["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert "NVML unavailable" in prov["gpu_note"]


def test_container_image_and_git(tmp_path: Path, no_pynvml: None) -> None:
    image = tmp_path / "image.json"
    recorded = {
        "image": "trtllm-repro:1.0.0",
        "digest": "sha256:" + "a" * 64,
        "kit_commit": "c" * 40,
    }
    image.write_text(json.dumps(recorded))
    prov = collect(["python"], run_tool=fake_tools(None), image_json=image)
    assert prov["software"]["container"] == recorded | {"note": None}
    missing = collect(["python"], run_tool=fake_tools(None), image_json=tmp_path / "nope.json")
    assert missing["software"]["container"]["image"] is None
    assert "nope.json" in missing["software"]["container"]["note"]
    real_git = collect(["python"], run_tool=REAL_RUN_TOOL, image_json=image)["software"]
    assert real_git["kit_git"]["commit"] is None or len(real_git["kit_git"]["commit"]) == 40


# ----------------------------------------------------------------------------- secrets


def test_scrub_patterns() -> None:
    assert scrub(f"HF_TOKEN={SECRET}") == "HF_TOKEN=<redacted>"
    assert scrub("Authorization: Bearer abc.def") == "Authorization: Bearer <redacted>"
    assert scrub("ghp_" + "x" * 36) == "<redacted>"
    assert scrub("https://user:pa55@example.com/x") == "https://<redacted>@example.com/x"
    assert scrub("--max_num_tokens=8192") == "--max_num_tokens=8192"
    assert scrub_argv(["--hf-token", "plainvalue", "--max_num_tokens", "8192"]) == [
        "--hf-token",
        "<redacted>",
        "--max_num_tokens",
        "8192",
    ]


def test_no_secret_reaches_provenance(monkeypatch: pytest.MonkeyPatch, no_pynvml: None) -> None:
    for var in provenance.ENV_ALLOWLIST:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("MY_SERVICE_API_KEY", "opaque-value-1234")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SOME_UNLISTED_VAR", "not-recorded")
    argv = [
        "python",
        "-m",
        "bench.stages.provenance",
        f"HF_TOKEN={SECRET}",
        "--token",
        SECRET,
        f"--header=Bearer {SECRET}",
        SECRET,
        "--note",
        "opaque-value-1234",
    ]
    prov = collect(argv, run_tool=fake_tools(None))
    text = json.dumps(prov)
    assert "TESTSECRET" not in text
    assert "opaque-value-1234" not in text
    assert "not-recorded" not in text
    assert prov["environment"] == {"CUDA_VISIBLE_DEVICES": "0"}
    assert prov["credentials_present"] == ["HF_TOKEN"]
    assert prov["command"][:3] == ["python", "-m", "bench.stages.provenance"]


# ----------------------------------------------------------------------------- stage CLI


@pytest.fixture
def kit_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("RESULTS_DIR", "WORK_DIR", "MODELS_DIR", "REPORTS_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.split("_")[0].lower()))
    manifest = tmp_path / "cpu-test.toml"
    manifest.write_text(CPU_MANIFEST_TOML)
    return manifest


def test_cli_writes_and_records_provenance(
    kit_dirs: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_pynvml: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert provenance.main(["--manifest", str(kit_dirs), "--run", "r1"]) == 0
    run = open_run(kit_dirs, "r1", create=False)
    data = read_json(run.paths.provenance)
    assert data["schema"] == "trtllm-repro/provenance/1"
    assert data["command"] == [
        "python",
        "-m",
        "bench.stages.provenance",
        "--manifest",
        str(kit_dirs),
        "--run",
        "r1",
    ]
    assert "TESTSECRET" not in run.paths.provenance.read_text()
    arts = read_json(run.paths.artifacts)
    assert arts["stages"]["env"]["outputs"] == ["run:provenance.json"]
    assert arts["stages"]["env"]["details"]["gpus"] == 0
    assert run.paths.stamp("env").is_file()
    assert "no NVIDIA GPU found" in capsys.readouterr().err
    assert provenance.main(["--manifest", str(kit_dirs), "--run", "r1"]) == 0  # same machine: ok


def test_capture_refuses_another_environment(kit_dirs: Path, no_pynvml: None) -> None:
    run = open_run(kit_dirs, "r2")
    capture(run, ["python"], run_tool=fake_tools(None))
    old = read_json(run.paths.provenance)
    old["software"]["packages"]["torch"] = "0.0.1"
    run.paths.provenance.write_text(json.dumps(old))
    with pytest.raises(KitError, match=r"torch: '0.0.1' -> "):
        capture(run, ["python"], run_tool=fake_tools(None))


def test_cli_reports_a_bad_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert provenance.main(["--manifest", str(tmp_path / "missing.toml")]) == 2
    assert "manifest file not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- our own capture

LENT = Path(__file__).parent / "data" / "nvidia-smi" / "h100-sxm-lent"


def test_own_h100_capture_parses_and_matches_its_query_csv() -> None:
    """Captured by this project on a lent H100 (tests/data/nvidia-smi/h100-sxm-lent/README.md)."""
    [gpu] = parse_nvidia_smi_xml((LENT / "nvidia-smi-q.xml").read_text(encoding="utf-8"))
    rows = list(
        csv.reader((LENT / "nvidia-smi-query.csv").read_text().splitlines(), skipinitialspace=True)
    )
    q = dict(zip([h.split(" [")[0] for h in rows[0]], rows[1], strict=True))
    assert gpu["name"] == q["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["form_factor"] == "SXM"
    assert gpu["driver_version"] == q["driver_version"]
    assert gpu["memory_total_mib"] == int(q["memory.total"].split()[0])
    assert gpu["power_limit_default_w"] == float(q["power.default_limit"].split()[0])
    assert gpu["clock_max_sm_mhz"] == int(q["clocks.max.sm"].split()[0])
    assert gpu["mig_enabled"] is False and gpu["persistence_mode"] is True
    assert gpu["uuid"] == "GPU-00000000-0000-0000-0000-000000000000"
    topology = parse_topology((LENT / "nvidia-smi-topo.txt").read_text(encoding="utf-8"))
    assert list(topology["devices"]) == ["GPU0"]


def test_a_two_gpu_capture_names_the_gpu_cuda_used():
    """Captured on a lent 2x H200 host by shard 2 of scripts/gpu_shards_demo.sh (UUIDs zeroed)."""
    from bench.core.stage_cache import environment_of
    from bench.gpu.gpu_info import visible_gpus

    capture = Path(__file__).parent / "data" / "provenance" / "h200x2-shard2-cuda-visible-1.json"
    prov = json.loads(capture.read_text())
    assert [g["name"] for g in prov["gpus"]] == ["NVIDIA H200", "NVIDIA H200"]
    assert prov["environment"]["CUDA_VISIBLE_DEVICES"] == "1"
    (used,) = visible_gpus(prov)
    assert used["index"] == 1 and used["form_factor"] == "SXM"
    assert list(prov["gpu_topology"]["devices"]) == ["GPU0", "GPU1"]
    assert prov["gpu_topology"]["devices"]["GPU0"]["GPU1"] == "NV18"
    # the stage cache keys on the model of GPU that ran, not on which one or how many the host has
    env = environment_of(prov)
    assert env["gpus"] == ["NVIDIA H200"] and env["packages"]["modelopt"] == "0.37.0"

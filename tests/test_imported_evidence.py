"""Imported evidence under attack: each row is one folder of trtllm-bench outputs and what the
import must make of it. A mislabeled, duplicated, truncated or impossible number never becomes
a valid point; every refusal names the files. A property test feeds the parsers arbitrary logs
and JSON: nothing but KitError may escape."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.analysis import secondary
from bench.backends.trtllm.parse import decode_log, parse_console, parse_report_json
from bench.core.errors import EXIT_BAD_INPUT, KitError
from bench.schema.record import read_record
from bench.stages.import_logs import main

DATA = Path(__file__).parent / "data" / "trtllm"
LOG_016 = (DATA / "console_0.16.txt").read_text(encoding="utf-8")  # 8B TP2, 128/128, 100 requests
LOG_10 = (
    (DATA / "console_1.0.txt")
    .read_text(encoding="utf-8")
    .replace("= PYTORCH BACKEND", "= ENGINE DETAILS")
)  # the console side of report_1.0.json: 8B TP1, 128/128, 200 requests
REPORT_10 = json.loads((DATA / "report_1.0.json").read_text(encoding="utf-8"))
OUTPUT_016 = "Token Throughput (tokens/sec):\t1280.5000"
CSV_HEADER = "ISL,OSL,Requests,Token_Throughput,Request_Throughput\n"


def report(section: str, key: str, value: object) -> str:
    data = json.loads(json.dumps(REPORT_10))
    data[section][key] = value
    return json.dumps(data)  # NaN and Infinity as Python writes them


def log_016(old: str, new: str) -> str:
    assert old in LOG_016
    return LOG_016.replace(old, new)


def cut_after(text: str, marker: str) -> str:
    return text[: text.index(marker) + len(marker)]


SEVENTY_B_TP8 = LOG_10.replace("Llama-3.1-8B-Instruct", "Llama-3.1-70B-Instruct").replace(
    "TP Size:                1", "TP Size:                8"
)

# (id, {file name: text or bytes}, point, status, failure, words the detail must hold)
POINTS = [
    (
        "JSON and log disagree on identity",
        {"result_128_128_200.json": json.dumps(REPORT_10), "result_128_128_200.txt": SEVENTY_B_TP8},
        "isl128_osl128",
        "invalid",
        "disagreement",
        [
            "result_128_128_200.json vs result_128_128_200.txt",
            "model 'meta-llama/Llama-3.1-8B-Instruct' vs 'meta-llama/Llama-3.1-70B-Instruct'",
            "tp_size 1 vs 8",
        ],
    ),
    (
        "JSON and a log cut before its numbers disagree on identity",
        {
            "result_128_128_200.json": json.dumps(REPORT_10),
            "result_128_128_200.txt": cut_after(SEVENTY_B_TP8, "TP Size:                8"),
        },
        "isl128_osl128",
        "invalid",
        "disagreement",
        ["model 'meta-llama/Llama-3.1-8B-Instruct' vs 'meta-llama/Llama-3.1-70B-Instruct'"],
    ),
    (
        "JSON and a log cut before its numbers agree",
        {
            "result_128_128_200.json": json.dumps(REPORT_10),
            "result_128_128_200.txt": cut_after(LOG_10, "TP Size:                1") + "\n",
        },
        "isl128_osl128",
        "ok",
        None,
        [],
    ),
    (
        "JSON and log disagree on a number",
        {
            "result_128_128_200.json": json.dumps(REPORT_10),
            "result_128_128_200.txt": LOG_10.replace("12800.0000", "25600.0001", 1),
        },
        "isl128_osl128",
        "invalid",
        "disagreement",
        ["output_tok_s 12800.0 vs 25600.0001"],
    ),
    (
        "JSON and log agree",
        {"result_128_128_200.json": json.dumps(REPORT_10), "result_128_128_200.txt": LOG_10},
        "isl128_osl128",
        "ok",
        None,
        [],
    ),
    (
        "log cut mid-number",
        {"result_128_128_100.txt": cut_after(LOG_016, "Token Throughput (tokens/sec):\t12")},
        "isl128_osl128",
        "invalid",
        "incomplete",
        ["ends mid-line at line 45", "Token Throughput (tokens/sec):\\t12"],
    ),
    (
        "request throughput missing",
        {"result_128_128_100.txt": log_016("Request Throughput (req/sec):\t10.0039\n", "")},
        "isl128_osl128",
        "invalid",
        "incomplete",
        ["not reported: request throughput"],
    ),
    (
        "request count and lengths missing",
        {
            "result_128_128_100.txt": log_016("Number of requests:\t\t100\n", "").replace(
                "Average Input Length (tokens):\t128.0000\n", ""
            )
        },
        "isl128_osl128",
        "invalid",
        "incomplete",
        ["not reported: request count, average input length"],
    ),
    (
        "NaN output throughput",
        {"result_128_128_100.txt": log_016(OUTPUT_016, "Token Throughput (tokens/sec):\tnan")},
        "isl128_osl128",
        "invalid",
        "implausible",
        ["Token Throughput (tokens/sec) (line 45) = nan is not a finite number"],
    ),
    (
        "negative request throughput",
        {"result_128_128_100.txt": log_016("10.0039", "-10.0039")},
        "isl128_osl128",
        "invalid",
        "implausible",
        ["Request Throughput (req/sec) (line 46) = -10.0039 is impossible"],
    ),
    (
        "zero output throughput",
        {"result_128_128_100.txt": log_016(OUTPUT_016, "Token Throughput (tokens/sec):\t0")},
        "isl128_osl128",
        "invalid",
        "implausible",
        ["= 0.0 is impossible (must be > 0)"],
    ),
    (
        "above the GPU ceiling",
        {"result_128_128_100.txt": log_016(OUTPUT_016, "Token Throughput (tokens/sec):\t1.28e30")},
        "isl128_osl128",
        "invalid",
        "implausible",
        ["1.28e+30 output tok/s", "ceiling of 2 H200 GPU(s)", "impossible"],
    ),
    (
        "above the ceiling, unknown model",
        {
            "result_128_128_100.txt": log_016(
                OUTPUT_016, "Token Throughput (tokens/sec):\t1.28e30"
            ).replace("meta-llama/Llama-3.1-8B-Instruct", "acme/secret-model")
        },
        "isl128_osl128",
        "invalid",
        "implausible",
        ["100M-parameter model"],
    ),
    (
        "JSON NaN output throughput",
        {
            "result_128_128_200.json": report(
                "performance", "system_output_throughput_tok_s", math.nan
            )
        },
        "isl128_osl128",
        "invalid",
        "implausible",
        ["performance.system_output_throughput_tok_s = nan is not a finite number"],
    ),
    (
        "JSON negative request count",
        {"result_128_128_200.json": report("request_info", "num_requests", -200)},
        "isl128_osl128",
        "invalid",
        "implausible",
        ["request_info.num_requests = -200 is impossible"],
    ),
    (
        "JSON without request throughput",
        {"result_128_128_200.json": report("performance", "request_throughput_req_s", None)},
        "isl128_osl128",
        "invalid",
        "incomplete",
        ["not reported: request throughput"],
    ),
    (
        "UTF-16 log with BOM",
        {"result_128_128_100.txt": LOG_016.encode("utf-16")},
        "isl128_osl128",
        "ok",
        None,
        [],
    ),
    (
        "UTF-16 log without BOM",
        {"result_128_128_100.txt": LOG_016.encode("utf-16-le")},
        "isl128_osl128",
        "ok",
        None,
        [],
    ),
    (
        "UTF-16 JSON",
        {"result_128_128_200.json": json.dumps(REPORT_10).encode("utf-16")},
        "isl128_osl128",
        "ok",
        None,
        [],
    ),
]


def folder_of(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (logs / name).write_bytes(data)
    return logs


def import_folder(logs: Path, capsys) -> tuple[int, str]:
    code = main(["--logs", str(logs), "--run", "imported"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    ("case", "files", "point", "status", "failure", "words"), POINTS, ids=[p[0] for p in POINTS]
)
def test_imported_point(run_roots, tmp_path, capsys, case, files, point, status, failure, words):
    code, err = import_folder(folder_of(tmp_path, files), capsys)
    assert code == 0, err
    name = "failure.json" if status == "failed" else "result.json"
    record = read_record(run_roots / "results" / "imported" / "points" / point / name)
    assert (record.status, record.failure) == (status, failure), record.failure_detail
    for word in words:
        assert word in record.failure_detail
    if status == "ok":
        assert record.metrics.output_tok_s in (1280.5, 12800.0)


# (id, files, the words of the one-line refusal)
REFUSED = [
    (
        "two files for one point",
        {"result_128_128_100.txt": LOG_016, "result_0128_128_100.txt": LOG_016},
        "two files for point ISL 128 / OSL 128: result_0128_128_100.txt and result_128_128_100.txt",
    ),
    (
        "two JSON files for one point",
        {"result_128_128_200.json": "{}", "result_128_0128_200.json": "{}"},
        "result_128_0128_200.json and result_128_128_200.json",
    ),
    *(
        (
            f"summary states {why}",
            {"result_128_128_100.txt": LOG_016, name: text},
            words,
        )
        for name, text, why, words in [
            (
                "throughput_summary.csv",
                f"{CSV_HEADER}128,128,100,nan,1.0\n",
                "NaN",
                "throughput_summary.csv:2: Token_Throughput = nan is not a finite number",
            ),
            (
                "throughput_summary.csv",
                f"{CSV_HEADER}128,128,100,1280.5,-1\n",
                "a negative rate",
                "Request_Throughput = -1 is impossible (must be > 0)",
            ),
            (
                "summary_results.log",
                "ISL,OSL,Requests,Throughput,x,Status\n128,128,100,1.28e30,0,SUCCESS\n",
                "an impossible rate",
                "summary_results.log:2: Throughput = 1.28e+30 tok/s is above",
            ),
        ]
    ),
]


@pytest.mark.parametrize(("case", "files", "words"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_folder(run_roots, tmp_path, capsys, case, files, words):
    code, err = import_folder(folder_of(tmp_path, files), capsys)
    assert code == EXIT_BAD_INPUT
    assert words in err
    assert not (run_roots / "results" / "imported").exists()


def test_ignored_entries_are_listed_with_why(run_roots, tmp_path, capsys):
    logs = folder_of(
        tmp_path,
        {
            "result_128_128_100.txt": LOG_016,
            "result_0_128_100.txt": LOG_016,
            "result_128_128_0.txt": LOG_016,
        },
    )
    outside = tmp_path / "elsewhere.txt"
    outside.write_text(LOG_016)
    (logs / "result_256_256_100.txt").symlink_to(outside)
    (logs / "result_512_512_100.txt").symlink_to(tmp_path / "gone.txt")
    code, err = import_folder(logs, capsys)
    assert code == 0, err
    info = json.loads((run_roots / "results" / "imported" / "import.json").read_text())
    assert {i["name"]: i["reason"] for i in info["ignored"]} == {
        "result_0_128_100.txt": "ISL 0 is not a point (1 to 131,072)",
        "result_128_128_0.txt": "requests 0 is not a point (1 to 1,000,000)",
        "result_256_256_100.txt": "a symbolic link (not followed: copy the file itself into "
        "the folder)",
        "result_512_512_100.txt": "a symbolic link (not followed: copy the file itself into "
        "the folder)",
    }
    assert "import: ignored result_256_256_100.txt: a symbolic link" in err
    assert sorted(p.name for p in (run_roots / "results/imported/points").iterdir()) == [
        "isl128_osl128"
    ]


# ----------------------------------------------------------------------------- properties

POINT = dict(isl=128, osl=128, requests=100)
LOG_LINES = st.lists(
    st.one_of(
        st.sampled_from(LOG_016.splitlines()),
        st.sampled_from(["= PERFORMANCE OVERVIEW", "= ENGINE DETAILS", "=====", ""]),
        st.builds(
            "{}:\t{}".format,
            st.sampled_from(["Token Throughput (tokens/sec)", "TP Size", "KV Memory Percentage"]),
            st.one_of(st.text(max_size=12), st.floats().map(str), st.integers().map(str)),
        ),
        st.text(max_size=40),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(LOG_LINES, st.booleans())
def test_any_console_log_parses_or_raises_only_kit_error(lines, newline):
    text = "\n".join(lines) + ("\n" if newline else "")
    with contextlib.suppress(KitError):
        parse_console(text, **POINT).to_json()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([(s, k) for s in REPORT_10 for k in REPORT_10[s]]), JSON_VALUES)
def test_any_report_json_value_parses_or_raises_only_kit_error(where, value):
    section, key = where
    data = json.loads(json.dumps(REPORT_10))
    data[section][key] = value
    with contextlib.suppress(KitError):
        parse_report_json(data, source_file="r.json", **POINT).to_json()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_as_a_log(data):
    assert isinstance(decode_log(data), str)


def test_a_summary_changed_after_it_was_parsed_is_not_copied(tmp_path):
    """The copy kept as evidence must be the bytes whose rows and digest were recorded."""
    logs = folder_of(tmp_path, {"throughput_summary.csv": f"{CSV_HEADER}128,128,100,1280.5,1\n"})
    parsed = secondary.collect(logs)
    (logs / "throughput_summary.csv").write_text(f"{CSV_HEADER}128,128,100,9999.0,1\n")
    with pytest.raises(KitError, match=r"throughput_summary\.csv: changed while it was being"):
        secondary.write(tmp_path / "run", logs, parsed)
    assert not (tmp_path / "run" / "secondary").exists()

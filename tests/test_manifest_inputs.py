"""Hostile manifests and reference files: each row is one case, refused with one KitError that
names the file and the key (no traceback, nothing written outside models/). A property test
feeds the loader arbitrary bytes and TOML: nothing but KitError may escape."""

from __future__ import annotations

import contextlib
import tomllib

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.analysis.reference import load_reference
from bench.core.errors import EXIT_BAD_INPUT, KitError
from bench.core.manifest import load_manifest, main
from bench.core.tomlconfig import parse_toml_bytes
from tests.conftest import DEMO_MANIFEST, ROOT

DEMO = tomllib.loads(DEMO_MANIFEST.read_text(encoding="utf-8"))


def demo_with(table: str, key: str, value: object) -> bytes:
    data = tomllib.loads(DEMO_MANIFEST.read_text(encoding="utf-8"))
    target = data
    for part in table.split("."):
        target = target[int(part)] if part.isdigit() else target[part]
    target[key] = value
    return tomli_w.dumps(data).encode("utf-8")


# (id, manifest bytes, the words the error must hold)
REFUSED = [
    ("revision climbs", demo_with("model", "revision", "../../x"), "model.revision = '../../x'"),
    ("revision with slash", demo_with("model", "revision", "refs/pr/1"), "without '/'"),
    ("revision dash", demo_with("model", "revision", "-rf"), "model.revision"),
    ("repo without org", demo_with("model", "repo", "tiny"), "org/name"),
    ("repo climbs", demo_with("model", "repo", "../models"), "model.repo"),
    ("repo three parts", demo_with("model", "repo", "a/b/c"), "org/name"),
    ("repo with space", demo_with("model", "repo", "a/b c"), "org/name"),
    ("lock file climbs", demo_with("model", "files", {"../x": "0" * 64}), "a file path"),
    ("lock file absolute", demo_with("model", "files", {"/etc/passwd": "0" * 64}), "a file path"),
    ("lock file backtick", demo_with("model", "files", {"`id`": "0" * 64}), "a file path"),
    ("repeats 1e9", demo_with("sweep", "repeats", 1_000_000_000), "less than or equal to 100"),
    (
        "requests 1e9",
        demo_with("sweep.points.0", "requests", 10**9),
        "requests = 1000000000: Input should be less than or equal to 1000000",
    ),
    ("isl past 128K", demo_with("sweep.points.0", "isl", 10**7), "sweep.points[0].isl"),
    ("seed past 32 bits", demo_with("sweep", "seed", 2**40), "sweep.seed"),
    ("timeout of a year", demo_with("runtime", "point_timeout_s", 31_536_000), "point_timeout_s"),
    ("300-char name", tomli_w.dumps({**DEMO, "name": "a" * 300}).encode(), "name = 'aaaa"),
    ("Latin-1", DEMO_MANIFEST.read_bytes().replace(b'"demo', b'"d\xe9mo'), "not UTF-8 text"),
    ("UTF-16", DEMO_MANIFEST.read_text(encoding="utf-8").encode("utf-16"), "not UTF-8 text"),
    ("binary", bytes(range(256)) * 4, "not UTF-8 text"),
    ("NUL inside", b'name = "a\x00b"\n', "not valid TOML"),
    ("deep nesting", b"x = " + b"[" * 100_000 + b"]" * 100_000, "not valid TOML"),
]


@pytest.mark.parametrize(("case", "data", "words"), REFUSED, ids=[r[0] for r in REFUSED])
def test_hostile_manifests_are_refused_naming_file_and_key(tmp_path, capsys, case, data, words):
    path = tmp_path / "m.toml"
    path.write_bytes(data)
    with pytest.raises(KitError) as err:
        load_manifest(path)
    assert words in err.value.render()
    assert str(path) in err.value.render()
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    assert "Traceback" not in capsys.readouterr().err


def test_a_bom_is_not_an_error(tmp_path):
    path = tmp_path / "m.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEMO_MANIFEST.read_bytes())
    assert load_manifest(path) == load_manifest(DEMO_MANIFEST)


def test_the_flagship_fits_its_own_bounds():
    assert load_manifest(ROOT / "manifests" / "llama-3.1-8b-fp8-h100.toml").sweep.points


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + bytes(64), "x = 1".encode("utf-16")])
def test_a_binary_reference_is_refused(tmp_path, data):
    path = tmp_path / "ref.toml"
    path.write_bytes(data)
    with pytest.raises(KitError, match="not UTF-8 text"):
        load_reference(path)


# ----------------------------------------------------------------------------- properties

TOML_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.booleans(),
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
KEYS = st.sampled_from(["name", "model", "engine", "sweep", "quantization", "runtime", "x"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_bytes_load_or_raise_only_kit_error(data):
    with contextlib.suppress(KitError):
        parse_toml_bytes(data, "<m>", "manifest")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(KEYS, TOML_VALUES, max_size=6), st.sampled_from(list(DEMO)))
def test_any_toml_document_validates_or_raises_only_kit_error(tmp_path_factory, changes, drop):
    data = {k: v for k, v in DEMO.items() if k != drop} | changes
    path = tmp_path_factory.mktemp("m") / "m.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    with contextlib.suppress(KitError):
        load_manifest(path)

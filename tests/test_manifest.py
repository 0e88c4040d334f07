"""bench.core.manifest: a valid manifest loads; every kind of problem names the file and the key."""

from __future__ import annotations

import tomllib

import pytest
import tomli_w

from bench.core.errors import EXIT_BAD_INPUT, KitError
from bench.core.manifest import load_manifest, main, parse_manifest, resolved_toml
from tests.conftest import DEMO_MANIFEST


@pytest.fixture
def demo() -> dict:
    return tomllib.loads(DEMO_MANIFEST.read_text(encoding="utf-8"))


def write(tmp_path, data: dict):
    path = tmp_path / "m.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def test_demo_manifest_is_valid():
    m = load_manifest(DEMO_MANIFEST)
    assert m.engine.backend == "hf-transformers"
    assert len(m.sweep.points) >= 4
    assert len({p.isl for p in m.sweep.points}) >= 2 and len({p.osl for p in m.sweep.points}) >= 2


def test_resolved_form_is_stable_and_reloads(demo):
    m = parse_manifest(demo)
    text = resolved_toml(m)
    assert parse_manifest(tomllib.loads(text)) == m
    assert resolved_toml(parse_manifest(tomllib.loads(text))) == text


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda d: d["engine"].update(backnd="x"),
            r"engine\.backnd: unknown key; allowed here: .*backend",
        ),
        (lambda d: d.update(colour="red"), r"colour: unknown key"),
        (lambda d: d["sweep"]["points"][1].update(isl="128"), r"sweep\.points\[1\]\.isl = '128'"),
        (
            lambda d: d["sweep"]["points"][0].update(osl=0),
            r"sweep\.points\[0\]\.osl = 0: .*greater than 0",
        ),
        (
            lambda d: d["sweep"]["points"][2].update(requests=-5),
            r"sweep\.points\[2\]\.requests = -5",
        ),
        (lambda d: d["sweep"]["points"][3].update(isl=1.5), r"sweep\.points\[3\]\.isl = 1\.5"),
        (
            lambda d: d["sweep"]["points"].append(dict(d["sweep"]["points"][0])),
            r"sweep\.points\[6\]: duplicate of sweep\.points\[0\]",
        ),
        (
            lambda d: d["sweep"]["points"][2].update(isl=250),
            r"sweep\.points\[2\]: isl \+ osl = 266 exceeds engine\.max_seq_len = 256",
        ),
        (lambda d: d["engine"].update(backend="vllm"), r"engine\.backend = 'vllm'"),
        (
            lambda d: d["engine"].update(backend="hf-reference"),
            r"engine\.backend = 'hf-reference': backend 'hf-reference' was renamed: "
            r"write 'hf-transformers'",
        ),
        (lambda d: d["model"].update(source="hf"), r"revision 'v1' must be a 40-hex commit"),
        (
            lambda d: d["model"]["files"].update({"config.json": "abc"}),
            r"model\.files\.config\.json = 'abc'",
        ),
        (lambda d: d["runtime"].update(kv_cache_fallbacks=[0.97]), r"must strictly decrease"),
        (lambda d: d["sweep"].update(points=[]), r"sweep\.points: .*at least 1"),
        (lambda d: d["engine"].update(max_seq_len="256"), r"engine\.max_seq_len = '256'"),
        (
            lambda d: d["quantization"].pop("calibration"),
            r"needs a \[quantization\.calibration\] table",
        ),
    ],
)
def test_each_problem_names_file_and_key(tmp_path, demo, change, match):
    change(demo)
    path = write(tmp_path, demo)
    with pytest.raises(KitError, match=match) as err:
        load_manifest(path)
    assert str(path) in err.value.render()


def test_tensorrt_backend_needs_engine_limits(tmp_path, demo):
    demo["engine"]["backend"] = "trtllm-tensorrt"
    with pytest.raises(KitError, match=r"needs max_batch_size and max_num_tokens"):
        load_manifest(write(tmp_path, demo))


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n", encoding="utf-8")
    with pytest.raises(KitError, match=r"bad\.toml: not valid TOML"):
        load_manifest(bad)
    with pytest.raises(KitError, match=r"nope\.toml: manifest file not found"):
        load_manifest(tmp_path / "nope.toml")


def test_validate_cli_exit_codes(tmp_path, demo, capsys):
    assert main(["validate", str(DEMO_MANIFEST)]) == 0
    assert "ok (6 points" in capsys.readouterr().out
    demo["sweep"]["points"][0]["isl"] = 0
    assert main(["validate", str(write(tmp_path, demo))]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "m.toml" in err and "sweep.points[0].isl = 0" in err

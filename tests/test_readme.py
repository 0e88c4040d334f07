"""README: the first lines are the setup commands, and the target table matches the Makefile."""

from __future__ import annotations

from scripts import readme_targets as readme
from tests.conftest import ROOT


def test_first_lines_are_make_demo_and_make_test():
    head = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:8]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_target_table_matches_the_makefile_help_lines():
    assert readme.main(["--check"]) == 0


def test_every_public_target_is_documented():
    names = {t for t, _ in readme.targets([ROOT / "Makefile", ROOT / "docker.mk"])}
    expected = (
        "all demo test fetch quantize build datasets sweep report verify validate plan import "
        "audit merge env preflight docker-build docker-all pin-image help info bench"
    )
    assert set(expected.split()) <= names

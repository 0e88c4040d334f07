from __future__ import annotations

import pytest

from bench.core.errors import KitError
from bench.core.narrow import present


def test_present_returns_the_value_and_keeps_falsy_ones():
    assert present(0, "a.b") == 0 and present("", "a.b") == ""


def test_present_names_the_key_when_missing():
    with pytest.raises(KitError) as caught:
        present(None, "accuracy.dataset")
    assert caught.value.key == "accuracy.dataset" and "accuracy.dataset" in caught.value.render()

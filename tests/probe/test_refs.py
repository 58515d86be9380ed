"""Probe references (threadprobe.probe.refs): how a child finds the probe class a trial names."""

from __future__ import annotations

import pytest

from tests.conftest import TRIVIAL
from threadprobe.probe import refs
from threadprobe.records.errors import UsageError
from threadprobe.probe import Probe


def square(x: int) -> int:
    return x * x


def test_a_plugin_file_ref_and_a_module_ref_load_the_class():
    cls = refs.load(f"{TRIVIAL}:Trivial")
    assert issubclass(cls, Probe) and cls.name == "trivial.square"
    assert refs.load_plugin(TRIVIAL) is refs.load_plugin(TRIVIAL)  # one module per file, whoever asks


def test_a_call_ref_carries_an_importable_function_and_its_inputs(tmp_path):
    ref = refs.call_ref(square, [3, 4], tmp_path / "inputs.pickle")
    probe = refs.load(ref)()
    assert [probe.task(None, i) for i in range(2)] == [9, 16]


def test_an_inline_ref_is_this_process_own():
    class Inline(Probe):
        name = "inline.x"

    refs.INLINE["k"] = Inline
    try:
        assert refs.load("inline:k") is Inline
    finally:
        refs.INLINE.pop("k")


@pytest.mark.parametrize("ref, message", [
    ("/no/such/plugin.py:X", "plugin file not found"),
    ("tests.probe.test_refs:square", "is not a probe class"),
])
def test_a_bad_ref_is_a_usage_error(ref, message):
    with pytest.raises(UsageError, match=message):
        refs.load(ref)

"""Which tests cannot run in threads (threadprobe.pytest.unsafe): decided from the test's fixtures
and from what its source, and its own helpers', calls. Per-thread fixture instances are tested
through real sessions in tests/pytest/test_plugin.py."""

from __future__ import annotations

import ast
from unittest import mock

import pytest

from threadprobe.pytest import unsafe


def patched():
    with mock.patch("os.getcwd"):
        pass


def via_helper():
    patched()


def harmless():
    return sorted([3, 1, 2])


class Item:
    """The few attributes of a pytest.Function these rules read."""

    def __init__(self, obj, fixturenames=(), cls=None):
        self.obj, self.fixturenames, self.cls = obj, list(fixturenames), cls


@pytest.mark.parametrize("source, dotted", [
    ("mock.patch('x')", "mock.patch"),
    ("a.b.c()", "a.b.c"),
    ("f()()", None),
])
def test_dotted_names_of_calls(source, dotted):
    assert unsafe._dotted(ast.parse(source).body[0].value.func) == dotted


def test_a_process_wide_tool_is_found_in_the_test_or_its_helpers():
    assert unsafe.calls_unsafe_function(Item(patched), ()) == "mock.patch"
    assert unsafe.calls_unsafe_function(Item(via_helper), ()) == "mock.patch"
    assert unsafe.calls_unsafe_function(Item(harmless), ()) is None
    assert unsafe.calls_unsafe_function(Item(harmless), ("builtins.sorted",)) == "builtins.sorted"


def test_unsafe_fixtures_are_the_builtin_list_and_the_ini_s():
    item = Item(harmless, ("tmp_path", "monkeypatch", "my_global"))
    assert unsafe.unsafe_fixtures(item, ()) == ["monkeypatch"]
    assert unsafe.unsafe_fixtures(item, ("my_global",)) == ["monkeypatch", "my_global"]

"""Which tests must not run in threads at all, decided as pytest-run-parallel decides it.

The ``thread_unsafe`` marker, ``parallel_threads(1)``, a fixture in the unsafe list
(``monkeypatch``, ``mocker``... and the ini option ``thread_unsafe_fixtures``), or a call to a
process-wide test tool (``pytest.warns``, ``mock.patch``...) or to a function in the ini option
``thread_unsafe_functions``, in the test's source or in its own file's helpers. Those run serially
in the pytest process and are listed. Reads the test's source with ``ast``: no pytest internals.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterable
from typing import Any

import pytest

#: Fixtures whose one value cannot serve several threads, even duplicated: they patch module
#: globals or capture the process's own output streams.
THREAD_UNSAFE_FIXTURES = frozenset({"monkeypatch", "mocker", "class_mocker", "module_mocker", "package_mocker",
                                    "session_mocker", "capsys", "capsysbinary", "capfd", "capfdbinary", "caplog",
                                    "recwarn"})
#: Test tools that change process-wide state, so that two threads running them at once break
#: each other's test, whatever the library under test does: the warnings filters and registry
#: (``pytest.warns`` in two threads: "DID NOT WARN"), and ``unittest.mock.patch``, which swaps a
#: module attribute for every thread (Iris's PP save tests, under threads: a MagicMock where an
#: int was expected). Matched as the end of a call's dotted name; pytest-run-parallel keeps such
#: a list too. The ini option ``thread_unsafe_functions`` adds to it.
THREAD_UNSAFE_CALLS = ("pytest.warns", "pytest.deprecated_call", "warnings.catch_warnings", "mock.patch",
                       "mock.patch.object", "mock.patch.dict", "mock.patch.multiple", "assertWarns",
                       "assertWarnsRegex", "assertLogs")



def unsafe_fixtures(item: pytest.Item, extra: Iterable[str]) -> list[str]:
    return sorted((THREAD_UNSAFE_FIXTURES | set(extra)) & set(getattr(item, "fixturenames", ())))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a call's function, or None when it is not a plain (dotted) name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif parts and isinstance(node, ast.Call):
        pass  # mock.patch(...).start(): the inner call is walked on its own
    else:
        return None
    return ".".join(reversed(parts))


#: How deep ``calls_unsafe_function`` follows the test's own helpers (a test calls a method of its
#: class that calls a module-level helper that patches: Iris's PP save tests).
HELPER_DEPTH = 3


def _helper(node: ast.Call, func: Any, cls: type | None, home: str | None) -> Any:
    """The helper a call reaches when it is a function or a method of the test's class defined in
    the test's own file (``helper(...)``, ``self.helper(...)``); None otherwise."""
    target = None
    if isinstance(node.func, ast.Name):
        target = getattr(func, "__globals__", {}).get(node.func.id)
    elif (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
          and node.func.value.id in ("self", "cls") and cls is not None):
        target = inspect.getattr_static(cls, node.func.attr, None)
        target = getattr(target, "__func__", target)  # staticmethod / classmethod
    target = inspect.unwrap(target) if inspect.isfunction(target) else None
    try:
        return target if target is not None and inspect.getsourcefile(target) == home else None
    except TypeError:
        return None


def calls_unsafe_function(item: pytest.Item, names: Iterable[str]) -> str | None:
    """The first listed function (``module.function`` or ``function``) or built-in process-wide
    test tool (``THREAD_UNSAFE_CALLS``) that the test's source calls, its decorators included,
    or that a helper of the test's own file calls on its behalf (to ``HELPER_DEPTH``)."""
    listed = {n.rsplit(".", 1)[-1]: n for n in names}
    obj = getattr(item, "obj", None)
    cls = getattr(item, "cls", None)
    if obj is None:
        return None
    try:
        home = inspect.getsourcefile(inspect.unwrap(obj))
    except TypeError:
        return None
    seen: set[Any] = set()

    def visit(func: Any, depth: int) -> str | None:
        if func in seen:
            return None
        seen.add(func)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        except (OSError, TypeError, SyntaxError):
            return None
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            dotted = _dotted(node.func)
            if dotted is not None:
                if dotted.rsplit(".", 1)[-1] in listed:
                    return listed[dotted.rsplit(".", 1)[-1]]
                for tool in THREAD_UNSAFE_CALLS:
                    if dotted == tool or dotted.endswith("." + tool) or (
                            "." in tool and dotted == tool.split(".", 1)[1]):  # "from unittest import mock"
                        return tool
            helper = _helper(node, func, cls, home) if depth < HELPER_DEPTH else None
            found = visit(helper, depth + 1) if helper is not None else None
            if found:
                return found
        return None

    return visit(obj, 0)


def serial_reason(item: pytest.Item, unsafe: Iterable[str], functions: Iterable[str]) -> str | None:
    """Why this test must run serially, or None."""
    marker = item.get_closest_marker("thread_unsafe")
    if marker is not None:
        return "marked thread_unsafe" + (f": {marker.kwargs['reason']}" if marker.kwargs.get("reason") else "")
    if not isinstance(item, pytest.Function):
        return "not a plain test function (unittest)"
    found = unsafe_fixtures(item, unsafe)
    if found:
        return f"uses thread-unsafe fixture(s): {', '.join(found)}"
    function = calls_unsafe_function(item, functions)
    if function:
        return f"calls thread-unsafe function {function}"
    return None

"""Per-thread fixtures, and which tests cannot run in threads at all: the plugin's pytest internals.

**Fresh fixtures.** A test body run by several threads must not share its function-scoped
fixtures (one ``tmp_path`` written twice is test state, not a thread-safety bug). ``fresh``
makes a new instance of every function-scoped fixture an item uses, its autouse ones included,
by running pytest's own fixture machinery again on a new request, with those fixtures' cached
values set aside and put back afterwards. Wider scopes (class, module, package, session) are
shared, as pytest shares them between tests: that is their contract, and a module-scoped Iris
cube loaded once is what the suite means. A test class gets a new instance per thread, so
``setup_method`` state is per thread too. It runs in the forked child, before the threads start.

This leans on pytest's private fixture API (``FixtureDef.cached_result``, ``_finalizers``,
``TopRequest``); ``supported`` says whether this pytest has it, and the plugin falls back to
running such tests serially when it does not, or when a fixture cannot be set up twice.

**Thread-unsafe tests** (as pytest-run-parallel decides them): the ``thread_unsafe`` marker,
``parallel_threads(1)``, a fixture in the unsafe list (``monkeypatch``, ``mocker``... and the ini
option ``thread_unsafe_fixtures``), or a call to a process-wide test tool (``pytest.warns``,
``mock.patch``...) or to a function in the ini option ``thread_unsafe_functions``. Those run
serially in the pytest process and are listed.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
#: Which thread's fixtures are being made: the thread_index fixture reads it.
CURRENT = {"thread": 0, "threads": 1, "iterations": 1}


def supported() -> bool:
    try:
        from _pytest.fixtures import FixtureDef, TopRequest  # noqa: F401
    except ImportError:
        return False
    return hasattr(FixtureDef, "execute") and hasattr(FixtureDef, "finish")


def function_defs(item: pytest.Item) -> list[Any]:
    """Every function-scoped fixture definition the item's closure can reach."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    out = []
    for defs in info.name2fixturedefs.values():
        for fd in defs:
            if getattr(fd, "scope", None) == "function" and fd.argname != "request":
                out.append(fd)
    return out


@dataclass
class Instance:
    """One thread's fixtures: the test function to call, its arguments, and how to tear them down."""

    call: Callable[[], Any]
    state: dict[Any, tuple[Any, list[Any]]] = field(default_factory=dict)  # fixturedef -> (cached, finalizers)
    finalizers: list[Callable[[], Any]] = field(default_factory=list)

    def teardown(self) -> list[BaseException]:
        """Run this instance's finalizers, last set up first; returns what they raised."""
        problems: list[BaseException] = []
        for fd, (cached, fins) in self.state.items():
            fd.cached_result, fd._finalizers[:] = cached, list(fins)
        for fin in reversed(self.finalizers):
            try:
                fin()
            except BaseException as exc:  # noqa: BLE001 - a teardown failure is reported, not raised here
                problems.append(exc)
        for fd in self.state:
            fd.cached_result = None
            fd._finalizers.clear()
        return problems


def call_of(item: pytest.Function, obj: Any, kwargs: dict[str, Any]) -> Callable[[], Any]:
    def call() -> Any:
        return obj(**kwargs)

    return call


def shared(item: pytest.Function) -> Instance:
    """The instance pytest already set up in its own process (one thread may use it)."""
    kwargs = {name: item.funcargs[name] for name in item._fixtureinfo.argnames}
    return Instance(call_of(item, item.obj, kwargs))


def fresh(item: pytest.Function, thread: int) -> Instance:
    """A new instance of every function-scoped fixture of ``item``, and a new test-class instance."""
    from _pytest.fixtures import TopRequest

    defs = function_defs(item)
    saved = {fd: (fd.cached_result, list(fd._finalizers)) for fd in defs}
    saved_obj = getattr(item, "_obj", None)
    saved_instance = getattr(item, "_instance", None)
    collected: list[Callable[[], Any]] = []
    original_addfinalizer = item.addfinalizer
    CURRENT["thread"] = thread
    try:
        for fd in defs:
            fd.cached_result = None
            fd._finalizers.clear()
        if getattr(item, "cls", None) is not None:
            # A new instance of the test class, for setup_method and self (pytest caches both).
            item._instance = item._getinstance()
            item._obj = item._getobj()
        item.addfinalizer = collected.append  # type: ignore[method-assign,assignment]
        request = TopRequest(item, _ispytest=True)
        values = {name: request.getfixturevalue(name) for name in item.fixturenames}
        kwargs = {name: values[name] for name in item._fixtureinfo.argnames}
        instance = Instance(call_of(item, item.obj, kwargs),
                            {fd: (fd.cached_result, list(fd._finalizers)) for fd in defs}, collected)
    finally:
        item.addfinalizer = original_addfinalizer  # type: ignore[method-assign]
        for fd, (cached, fins) in saved.items():
            fd.cached_result, fd._finalizers[:] = cached, fins
        if saved_obj is not None:
            item._obj = saved_obj
        if saved_instance is not None:
            item._instance = saved_instance
        CURRENT["thread"] = 0
    return instance


# --------------------------------------------------------------------------------------------
# Which tests must not run in threads


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
    fixtures = unsafe_fixtures(item, unsafe)
    if fixtures:
        return f"uses thread-unsafe fixture(s): {', '.join(fixtures)}"
    function = calls_unsafe_function(item, functions)
    if function:
        return f"calls thread-unsafe function {function}"
    return None


@pytest.fixture
def thread_index() -> int:
    """Which thread this instance of the test's fixtures belongs to (0 outside threads)."""
    return CURRENT["thread"]


def _settings(request: Any) -> tuple[int, int]:
    plugin = request.config.pluginmanager.get_plugin("threadprobe-session")
    found = plugin.threads_for(request.node) if plugin is not None else None
    if found is None or plugin.serial_reason(request.node) is not None:
        return 1, 1
    return found[0], found[1]


@pytest.fixture
def num_parallel_threads(request: Any) -> int:
    """How many threads run this test at once (1 outside threads)."""
    return _settings(request)[0]


@pytest.fixture
def num_iterations(request: Any) -> int:
    """How many times each thread runs the test body."""
    return _settings(request)[1]

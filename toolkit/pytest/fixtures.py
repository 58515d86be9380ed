"""Per-thread fixtures: the one module of the plugin that touches pytest's private internals.

A test body run by several threads must not share its function-scoped fixtures (one ``tmp_path``
written twice is test state, not a thread-safety bug). ``fresh`` makes a new instance of every
function-scoped fixture an item uses, its autouse ones included, by running pytest's own fixture
machinery again on a new request, with those fixtures' cached values set aside and put back
afterwards. Wider scopes (class, module, package, session) are shared, as pytest shares them
between tests: a module-scoped Iris cube loaded once is what the suite means. ``fresh(...,
own_state=True)`` makes the class-, module- and package-scoped ones anew too (session ones stay
shared): the triage's control of whether a failure needs the threads to share the test's state.
A test class gets a new instance per thread, so ``setup_method`` state is per thread too. All of
it runs in the forked child, before the threads start, so pytest's own process never sees it.

pytest has no public way to make a second instance of a fixture (pytest-run-parallel's open
request for per-thread fixtures, its issue 14, is this). The private names used, all here:

- ``_pytest.fixtures.TopRequest``: a new request on the same item, which runs fixture functions.
- ``Item._fixtureinfo`` (``name2fixturedefs``, ``argnames``): which fixture definitions the
  item's closure reaches, and which of them the test function takes as arguments.
- ``FixtureDef.cached_result`` and ``FixtureDef._finalizers``: set aside so that a definition runs
  again, and put back so that pytest tears down its own instance; each thread's finalizers are
  collected by overriding ``addfinalizer`` on the item and its parents while its instance is made.
- ``Function._instance``, ``_obj``, ``_getinstance()``, ``_getobj()``: a new test-class instance.
- ``Class._obj`` (with ``own_state``): the test class, swapped for a subclass of its own per thread
  while its fixtures are made, so that what a class-scoped fixture sets on ``request.cls`` (Iris's
  ``request.cls.temp_dir``) is that thread's.

``supported`` says whether this pytest has them; the plugin runs such tests serially when it does
not, or when a fixture cannot be set up twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pytest

#: Which thread's fixtures are being made: the thread_index fixture reads it.
CURRENT = {"thread": 0, "threads": 1, "iterations": 1}
#: Scopes a thread gets its own instance of: always, and with ``own_state`` (session: never).
PER_THREAD = ("function",)
OWN_STATE = ("function", "class", "module", "package")


def supported() -> bool:
    try:
        from _pytest.fixtures import FixtureDef, TopRequest  # noqa: F401
    except ImportError:
        return False
    return hasattr(FixtureDef, "execute") and hasattr(FixtureDef, "finish")


def definitions(item: pytest.Item, scopes: tuple[str, ...] = PER_THREAD) -> list[Any]:
    """Every fixture definition of those scopes that the item's closure can reach."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [fd for defs in info.name2fixturedefs.values() for fd in defs
            if getattr(fd, "scope", None) in scopes and fd.argname != "request"]


def wider_fixtures(item: pytest.Item) -> list[str]:
    """The class-, module- and package-scoped fixtures the item uses: what its threads share that
    the test itself owns (session-scoped ones are the whole run's)."""
    return sorted({fd.argname for fd in definitions(item, OWN_STATE) if fd.scope != "function"})


def argnames(item: pytest.Function) -> tuple[str, ...]:
    """The fixtures (and parameters) the test function itself takes."""
    return tuple(item._fixtureinfo.argnames)


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


def call_of(obj: Any, kwargs: dict[str, Any]) -> Callable[[], Any]:
    def call() -> Any:
        return obj(**kwargs)

    return call


def shared(item: pytest.Function) -> Instance:
    """The instance pytest already set up in its own process (one thread may use it)."""
    return Instance(call_of(item.obj, {name: item.funcargs[name] for name in argnames(item)}))


@contextmanager
def _own_class(item: pytest.Function) -> Iterator[None]:
    """Inside: the item's test class is a subclass of its own (class attributes set now are its)."""
    node = item.getparent(pytest.Class)
    if node is None:
        yield
        return
    cls = node.obj
    node._obj = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    try:
        yield
    finally:
        node._obj = cls


@contextmanager
def _set_aside(item: pytest.Function, defs: list[Any], collected: list[Callable[[], Any]],
               own_state: bool = False) -> Iterator[None]:
    """Inside: the definitions have no cached value, the item has a new class instance (of a class
    of its own, with ``own_state``), and every finalizer registered on the item or its parents
    lands in ``collected``. Put back after."""
    saved = {fd: (fd.cached_result, list(fd._finalizers)) for fd in defs}
    saved_obj, saved_instance = getattr(item, "_obj", None), getattr(item, "_instance", None)
    nodes = item.listchain()
    originals = [node.addfinalizer for node in nodes]
    with _own_class(item) if own_state else nullcontext():
        try:
            for fd in defs:
                fd.cached_result = None
                fd._finalizers.clear()
            if getattr(item, "cls", None) is not None:
                item._instance = item._getinstance()
                item._obj = item._getobj()
            for node in nodes:
                node.addfinalizer = collected.append  # type: ignore[method-assign,assignment]
            yield
        finally:
            for node, original in zip(nodes, originals):
                node.addfinalizer = original  # type: ignore[method-assign]
            for fd, (cached, fins) in saved.items():
                fd.cached_result, fd._finalizers[:] = cached, fins
            if saved_obj is not None:
                item._obj = saved_obj
            if saved_instance is not None:
                item._instance = saved_instance


def fresh(item: pytest.Function, thread: int, own_state: bool = False) -> Instance:
    """A new instance of every function-scoped fixture of ``item`` (``own_state``: of every
    fixture below the session's), and a new test-class instance."""
    from _pytest.fixtures import TopRequest

    defs = definitions(item, OWN_STATE if own_state else PER_THREAD)
    collected: list[Callable[[], Any]] = []
    CURRENT["thread"] = thread
    try:
        with _set_aside(item, defs, collected, own_state):
            request = TopRequest(item, _ispytest=True)
            values = {name: request.getfixturevalue(name) for name in item.fixturenames}
            kwargs = {name: values[name] for name in argnames(item)}
            return Instance(call_of(item.obj, kwargs),
                            {fd: (fd.cached_result, list(fd._finalizers)) for fd in defs}, collected)
    finally:
        CURRENT["thread"] = 0

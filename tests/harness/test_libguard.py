"""A lock around one library, put there from outside: functions, classes changed in place,
unchangeable classes behind proxies, importers rebound, the calls counted, and all of it undone."""

from __future__ import annotations

import collections
import sys
import threading
import time
import types

import pytest

from threadprobe.harness import libguard


_COUNT = threading.Lock()


def occupy(where: dict[str, int], seconds: float) -> None:
    """Stay ``seconds`` in a place, counting how many threads are there at once (``most``)."""
    with _COUNT:
        where["now"] += 1
        where["most"] = max(where["most"], where["now"])
    time.sleep(seconds)
    with _COUNT:
        where["now"] -= 1


@pytest.fixture
def fake_library(monkeypatch):
    """A two-module library (``fakelib`` and ``fakelib.core``) and a user module that imported its
    function by name before the guard existed, as Iris imports cf_units' names."""
    core = types.ModuleType("fakelib.core")
    inside = {"now": 0, "most": 0}

    def enter():
        occupy(inside, 0.005)

    def work(x):
        enter()
        return helper(x) + 1

    def helper(x):  # the library calling itself: no second lock, no second count
        return x * 2

    def numbers(n):
        for k in range(n):
            enter()
            yield k

    class Unit:
        def __init__(self, name):
            enter()
            self.name = name

        def __eq__(self, other):
            return isinstance(other, Unit) and other.name == self.name

        __hash__ = None

        @property
        def upper(self):
            enter()
            return self.name.upper()

    for fn in (work, helper, numbers, Unit):
        fn.__module__ = "fakelib.core"
        setattr(core, fn.__name__, fn)
    top = types.ModuleType("fakelib")
    top.core, top.work, top.Unit = core, work, Unit
    user = types.ModuleType("fakeuser")
    user.work = work  # from fakelib.core import work
    for name, module in (("fakelib", top), ("fakelib.core", core), ("fakeuser", user)):
        monkeypatch.setitem(sys.modules, name, module)
    yield types.SimpleNamespace(top=top, core=core, user=user, inside=inside, originals=(work, Unit.__init__))
    libguard.remove("fakelib")


def hammer(fn, threads=4, calls=5):
    pool = [threading.Thread(target=lambda: [fn(k) for k in range(calls)]) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_every_entry_point_holds_the_lock_and_is_counted_once_per_outer_call(fake_library):
    lib = fake_library
    hammer(lib.user.work)
    assert lib.inside["most"] > 1  # unguarded, the threads overlap inside the library
    lib.inside["most"] = 0
    guard = libguard.guard("fakelib")
    assert lib.user.work is not lib.originals[0]  # the importer was rebound
    hammer(lib.user.work)
    hammer(lambda k: lib.top.Unit(str(k)).upper)
    hammer(lambda k: list(lib.core.numbers(2)))
    assert lib.inside["most"] == 1
    assert lib.user.work(3) == 7 and lib.top.Unit("a") == lib.top.Unit("a")
    assert guard.counts["work"] == 21 and "helper" not in guard.counts  # inner calls ride on the outer one
    assert {"Unit.__init__", "Unit.upper", "numbers"} <= set(guard.counts)


def test_released_calls_go_through_and_removed_the_library_is_its_own_again(fake_library):
    lib = fake_library
    guard = libguard.guard("fakelib")
    libguard.guard("fakelib")  # a second user
    libguard.release("fakelib")
    assert guard.on  # still one user
    libguard.release("fakelib")
    assert not guard.on and lib.user.work is not lib.originals[0]  # off, wrappers kept (proxies made may live on)
    hammer(lib.user.work)
    assert lib.inside["most"] > 1
    libguard.remove("fakelib")
    assert lib.user.work is lib.originals[0] and lib.top.work is lib.originals[0]
    assert lib.top.Unit.__init__ is lib.originals[1]


def test_switched_off_the_guard_lets_calls_through(fake_library):
    lib = fake_library
    guard = libguard.guard("fakelib")
    libguard.only(())
    hammer(lib.user.work)
    assert lib.inside["most"] > 1 and "work" not in guard.counts
    libguard.only(("fakelib",))
    lib.inside["most"] = 0
    hammer(lib.user.work)
    assert lib.inside["most"] == 1


def test_an_unchangeable_class_is_used_through_a_proxy_that_holds_the_lock():
    """deque stands for a Cython type of 3.13t, which cannot be changed in place."""
    guard = libguard.Guard("nolib")
    standin = guard._standins[collections.deque] = libguard.Standin(collections.deque, guard)
    made = standin([1, 2])
    assert type(made) is libguard.Proxy and isinstance(made, collections.deque) and isinstance(made, standin)
    made.append(3)
    assert list(made) == [1, 2, 3] and len(made) == 3 and made[0] == 1 and 2 in made
    assert guard.counts["deque"] == 1 and guard.counts["deque.append"] == 1
    assert guard.out({"a": collections.deque()})["a"].__class__ is collections.deque  # containers too
    assert guard.call("len", len, (made,), {}) == 3  # passed back in: the object itself


def test_the_lock_covers_a_real_compiled_library_and_keeps_its_answers():
    cf_units = pytest.importorskip("cf_units")
    before = str(cf_units.Unit("m s-1") * cf_units.Unit("s"))
    guard = libguard.guard("cf_units")
    try:
        assert str(cf_units.Unit("m s-1") * cf_units.Unit("s")) == before
        assert isinstance(cf_units.Unit("K"), cf_units.Unit)
        assert guard.counts
    finally:
        libguard.remove("cf_units")


def test_one_function_alone_can_be_the_target(fake_library):
    lib = fake_library
    guard = libguard.guard("fakelib.core:work")
    try:
        hammer(lib.user.work)
        assert lib.inside["most"] == 1 and guard.counts["work"] == 20
        assert lib.top.Unit.__init__ is lib.originals[1]  # the rest of the library is left alone
        with pytest.raises(LookupError):
            libguard.Guard("fakelib.core:nothing").install()
    finally:
        libguard.remove("fakelib.core:work")


def test_the_guard_sums_the_time_its_lock_was_held_once_per_outer_call(fake_library):
    lib = fake_library
    guard = libguard.guard("fakelib")
    began = time.perf_counter()
    for k in range(10):
        lib.user.work(k)  # 5 ms inside each; the inner helper adds no second count of it
    whole = time.perf_counter() - began
    assert 10 * 0.005 <= guard.held <= whole
    libguard.release("fakelib")
    before = guard.held
    lib.user.work(1)  # switched off: not held, not summed
    assert guard.held == before

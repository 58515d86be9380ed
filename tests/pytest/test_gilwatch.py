"""The session's GIL (threadprobe.pytest.gilwatch): its state and the module that turned it back on,
read from Python's warning, from the state itself, or named by a child. The planted GIL-free crash
on the free-threaded build is in tests/pytest/test_freethreaded.py."""

from collections import Counter

import pytest

from threadprobe.pytest import gilwatch
from threadprobe.pytest.gilwatch import GilWatch
from threadprobe.records import GilState

WARNING = ("The global interpreter lock (GIL) has been enabled to load module 'netCDF4._netCDF4', which has not "
           "declared that it can run safely without the GIL.")


@pytest.fixture
def gil_on(monkeypatch):
    """The GIL as this test says it is now."""
    state = {"on": False}
    monkeypatch.setattr(gilwatch.gil, "enabled", lambda: state["on"])
    return state


def test_the_module_is_read_from_pythons_warning_once():
    watch = GilWatch(free_threaded=True, forced_off=False, on_at_start=False)
    for message in (WARNING, "something else", WARNING):
        watch.warning(message)
    assert watch.turned_on_by == ["netCDF4._netCDF4"]


def test_the_summary_says_which_module_and_while_what(gil_on):
    watch = GilWatch(free_threaded=True, forced_off=False, on_at_start=False, runs=Counter({True: 3}))
    watch.check("collecting a.py")
    assert watch.turned_on_while is None  # still off
    gil_on["on"] = True
    watch.check("collecting b.py")
    watch.check("running b.py::test_x")
    watch.warning(WARNING)
    assert watch.state == GilState.AS_IMPORTED
    assert watch.describe() == ("free-threaded build, GIL as imported: turned back on by netCDF4._netCDF4 while "
                                "collecting b.py; threaded runs with the GIL on: 3 of 3")


def test_without_the_warning_a_child_names_the_module(gil_on, monkeypatch):
    gil_on["on"] = True
    asked = []
    monkeypatch.setattr(gilwatch, "name_in_child", lambda modules: asked.append(modules) or ["planted._ext"])
    watch = GilWatch(free_threaded=True, forced_off=False, on_at_start=False)
    assert "turned back on by planted._ext" in watch.describe()
    assert asked and all(isinstance(m, str) for m in asked[0])


def test_forced_off_and_the_gil_build_are_said_as_such(gil_on, monkeypatch):
    off = GilWatch(free_threaded=True, forced_off=True, on_at_start=False, runs=Counter({False: 2}))
    assert off.state == GilState.OFF
    assert off.describe() == ("free-threaded build, GIL forced off (PYTHON_GIL=0) all session; "
                              "threaded runs with the GIL on: 0 of 2")
    assert GilWatch(free_threaded=False, forced_off=True, on_at_start=True).state == GilState.AS_IMPORTED
    assert GilWatch(free_threaded=False).describe() == "GIL build: the GIL is always on"
    monkeypatch.setenv("PYTHON_GIL", "0")
    assert gilwatch.forced_off()


def test_extension_modules_are_those_loaded_from_shared_objects():
    import ctypes  # noqa: F401 - loads _ctypes, an extension module of the standard library

    found = gilwatch.extension_modules()
    assert "_ctypes" in found
    assert "threadprobe.pytest.gilwatch" not in found and "json" not in found

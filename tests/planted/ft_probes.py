"""Planted probes for what threads wait on without the GIL (loaded with --plugin in tests).

The free-threaded build has waits of its own that are neither the GIL nor a library's lock:
every object's mutex and critical section park in the interpreter's parking lot. These probes
plant each case with known behaviour, on top of the planted C library of ``probes.py``:

- ``ft.free``: C work with the GIL released, nothing shared: waits on nothing (``none``).
- ``ft.mutex``: the same work under the C library's private mutex (``library_lock``).
- ``ft.pylock``: the same work under one ``threading.Lock`` that the Python code holds, as Iris
  holds its netCDF lock (``library_lock``: on the free-threaded build it parks in the parking lot,
  under ``lock_PyThread_acquire_lock``).
- ``ft.objects``: the free case, plus a shared list every task pushes to and pops from: the
  interpreter's per-object locks contend, which is not a library lock (``none``).
- ``ft.gil``: imports a planted extension module that does not declare itself GIL-free (so an
  import turns the GIL back on, by that module's name) and does its work holding the GIL
  (``gil``). With the GIL forced off, the same calls run in parallel.
"""

from __future__ import annotations

import ctypes
import importlib
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from threadprobe.probe.refs import load_plugin

# The planted C library and its loader, by path: a worker of another interpreter has no ``tests``.
_base = load_plugin(Path(__file__).with_name("probes.py"))
SAFE_WORK, _Planted = _base.SAFE_WORK, _base._Planted

EXTENSION = r"""
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "planted_gil_user", NULL, 0, methods};
PyMODINIT_FUNC PyInit_planted_gil_user(void) { return PyModuleDef_Init(&def); }
"""
#: The module a GIL-holding probe imports: it declares nothing, so it turns the GIL back on.
GIL_USER = "planted_gil_user"


def build_extension(workdir: Path) -> None:
    """The planted extension, compiled against the headers of the interpreter that runs this."""
    target = workdir / f"{GIL_USER}{sysconfig.get_config_var('EXT_SUFFIX')}"
    if target.exists():
        return
    source = workdir / f"{GIL_USER}.c"
    source.write_text(EXTENSION)
    tmp = workdir / f".{GIL_USER}.tmp.so"
    subprocess.run(["gcc", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", "-o", str(tmp), str(source)],
                   check=True)
    tmp.replace(target)


class _Work(_Planted):
    dependency = "planted-ft"

    def task(self, lib, i):
        lib.safe_sum.restype = ctypes.c_long
        return lib.safe_sum(i, ctypes.c_long(SAFE_WORK))


class Free(_Work):
    """GIL-free C work, nothing shared: none."""

    name = "ft.free"


class Mutex(_Work):
    """The work under the C library's own mutex: library_lock."""

    name = "ft.mutex"

    def task(self, lib, i):
        lib.locked_sum.restype = ctypes.c_long
        return lib.locked_sum(i, ctypes.c_long(SAFE_WORK))


class PyLock(_Work):
    """The work under one threading.Lock held by Python code: library_lock."""

    name = "ft.pylock"
    lock = threading.Lock()

    def task(self, lib, i):
        with self.lock:
            return super().task(lib, i)


class Objects(_Work):
    """The free work, and a shared list that every task pushes to and pops from: the free-threaded
    interpreter's per-object locks contend. Not a library lock: none."""

    name = "ft.objects"
    shared: list[int] = []

    def task(self, lib, i):
        for k in range(3000):
            self.shared.append(k)
            self.shared.pop()
        return super().task(lib, i)


class GilUser(_Work):
    """Imports a module that turns the GIL back on, and works holding the GIL: gil."""

    name = "ft.gil"
    loader = ctypes.PyDLL

    def prepare(self, workdir):
        super().prepare(workdir)
        build_extension(Path(workdir))

    def open(self, workdir):
        sys.path.insert(0, str(workdir))
        importlib.import_module(GIL_USER)
        return super().open(workdir)

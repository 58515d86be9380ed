"""The plugin on the free-threaded build (.venv-ft, built by .ci/freethreaded-up): a planted crash that
only two threads inside one C function at once can cause, with no GIL between them.

``touch`` counts the threads inside it, waits there up to 1 s for another (holding the GIL, where
there is one), and dereferences NULL when it found company. Compiled twice against the free-threaded
headers: ``planted_free`` declares itself GIL-free (the GIL stays off as imported: two threads meet
inside, a crash); ``planted_held`` does not (its import turns the GIL back on, which keeps the
threads apart: no crash, unless ``PYTHON_GIL=0`` forces the GIL off). Each session must finish,
name the crash to its test with its signal and frames, and say the GIL it ran in."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HERE

FT = HERE.parent / ".venv-ft" / "bin" / "python"
pytestmark = pytest.mark.skipif(not FT.exists(), reason=".venv-ft is missing (.ci/freethreaded-up builds it)")

PLANTED = r"""
#include <Python.h>
#include <stdatomic.h>
#include <unistd.h>
static atomic_int inside = 0;
static PyObject *touch(PyObject *self, PyObject *args) {
    atomic_fetch_add(&inside, 1);
    int crowded = 0;
    for (int k = 0; k < 50 && !crowded; k++) {  /* up to 1 s for company: a busy machine's start skew */
        usleep(20000);
        crowded = atomic_load(&inside) > 1;
    }
    atomic_fetch_sub(&inside, 1);
    if (crowded) { volatile int *nowhere = NULL; *nowhere = 1; }
    Py_RETURN_NONE;
}
static PyMethodDef methods[] = {{"touch", touch, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static PyModuleDef_Slot slots[] = {
#ifdef DECLARE_GIL_FREE
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "NAME", NULL, 0, methods, slots};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModuleDef_Init(&def); }
"""


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("planted-ft")
    include, suffix = json.loads(subprocess.run(
        [str(FT), "-c", "import json, sysconfig; print(json.dumps([sysconfig.get_path('include'), "
                        "sysconfig.get_config_var('EXT_SUFFIX')]))"], capture_output=True, text=True, check=True).stdout)
    for name, declare in (("planted_free", True), ("planted_held", False)):
        source = folder / f"{name}.c"
        source.write_text(PLANTED.replace("NAME", name))
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", f"-I{include}", *(["-DDECLARE_GIL_FREE"] if declare else []),
                        "-o", str(folder / f"{name}{suffix}"), str(source)], check=True)
    return folder


def session(folder: Path, module: str, forced_off: bool, *extra: str) -> subprocess.CompletedProcess[str]:
    test = folder / f"test_{module}.py"
    test.write_text(f"import {module}\n\n\ndef test_touch():\n    {module}.touch()\n\n\ndef test_plain():\n"
                    "    assert sum(range(4)) == 6\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(folder), **({"PYTHON_GIL": "0"} if forced_off else {}))
    return subprocess.run([str(FT), "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:run-parallel", "-p", "no:xdist",
                           "--rootdir", str(folder), "--threadprobe-threads=2", *extra, str(test)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module, forced_off, gil_line", [
    ("planted_free", False, "free-threaded build, GIL as imported: it stayed off (no import turned it on)"),
    ("planted_held", True, "free-threaded build, GIL forced off (PYTHON_GIL=0) all session"),
])
def test_a_gil_free_crash_is_named_to_its_test_and_the_session_finishes(planted, module, forced_off, gil_line,
                                                                      busy_neighbour):
    done = session(planted, module, forced_off)
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    assert "1 failed, 1 passed" in out, out[-3000:]
    assert "thread-unsafe: killed by SIGSEGV under 2 threads" in out
    listed = out.split("threadprobe: 1 thread-unsafe", 1)[1].splitlines()
    assert listed[1].startswith(f"test_{module}.py::test_touch: killed by SIGSEGV under 2 threads"), out[-3000:]
    assert listed[2].strip().startswith('File "') and f"test_{module}.py\", line 5 in test_touch" in listed[2]
    assert f"threadprobe: {gil_line}; threaded runs with the GIL on: 0 of 2" in out


@pytest.mark.parametrize("extra", [(), ("-W", "ignore::RuntimeWarning"), ("-p", "no:warnings")],
                         ids=["warning seen", "warning filtered", "no warnings plugin"])
def test_an_import_that_turns_the_gil_back_on_is_named_and_keeps_the_threads_apart(planted, extra):
    """Python's warning names the module; where a filter drops it, a fresh interpreter names it."""
    done = session(planted, "planted_held", False, *extra)
    out = done.stdout
    assert done.returncode == 0 and "2 passed" in out, out[-3000:]
    assert ("threadprobe: free-threaded build, GIL as imported: turned back on by planted_held while collecting "
            "test_planted_held.py; threaded runs with the GIL on: 2 of 2") in out, out[-3000:]

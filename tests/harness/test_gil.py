"""The GIL on a free-threaded build (threadprobe.harness.gil): which imports turned it back on, and
whether it is on, read in the process that runs the probe; --gil off refused on a GIL build.

The detector is shown on a planted extension module compiled here without the declaration that it
runs safely without the GIL; the installed stack (.venv-ft, built by .ci/freethreaded-up) is an
``environment`` check."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest

from tests.conftest import HERE
from threadprobe.harness import gil

ROOT = HERE.parent
FT = ROOT / ".venv-ft" / "bin" / "python"
needs_ft = pytest.mark.skipif(not FT.exists(), reason=".venv-ft is missing (.ci/freethreaded-up builds it)")

PLANTED = r"""
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static PyModuleDef_Slot slots[] = {
#ifdef DECLARE_GIL_FREE
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "NAME", NULL, 0, methods, slots};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModuleDef_Init(&def); }
"""


def test_watching_names_the_module_in_pythons_warning():
    message = ("The global interpreter lock (GIL) has been enabled to load module 'planted._ext', which has not "
               "declared that it can run safely without the GIL.")
    with gil.watching() as found:
        warnings.warn(message, RuntimeWarning)
    assert found == ["planted._ext"]


def test_watching_passes_other_warnings_on():
    with pytest.warns(UserWarning, match="unrelated"):
        with gil.watching() as found:
            warnings.warn("unrelated", UserWarning)
    assert found == []


def test_this_build_is_described():
    assert gil.free_threaded_build() == bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if not gil.free_threaded_build():
        assert gil.enabled()


@pytest.mark.parametrize("asked", ["off", "both"])
def test_forcing_the_gil_off_on_a_gil_build_is_one_line_and_exit_2(tmp_path, asked):
    if gil.free_threaded_build():
        pytest.skip("this interpreter is free-threaded")
    done = subprocess.run([sys.executable, "-m", "threadprobe.cli", "diagnose", "--gil", asked, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"--gil {asked} needs a free-threaded interpreter" in done.stderr
    assert not (tmp_path / "diagnosis.json").exists()


def build_planted(folder: Path, name: str, declare: bool) -> None:
    paths = json.loads(subprocess.run([str(FT), "-c", "import json, sysconfig; print(json.dumps("
                                       "[sysconfig.get_path('include'), sysconfig.get_config_var('EXT_SUFFIX')]))"],
                                      capture_output=True, text=True, check=True).stdout)
    source = folder / f"{name}.c"
    source.write_text(PLANTED.replace("NAME", name))
    subprocess.run(["gcc", "-shared", "-fPIC", f"-I{paths[0]}", *(["-DDECLARE_GIL_FREE"] if declare else []),
                    "-o", str(folder / f"{name}{paths[1]}"), str(source)], check=True)


WATCH = """
import json, sys
from threadprobe.harness import gil
with gil.watching() as found:
    import {name}
print(json.dumps({{"found": found, "enabled": gil.enabled(), "ft": gil.free_threaded_build()}}))
"""


@needs_ft
@pytest.mark.parametrize("declare", [False, True], ids=["undeclared", "declared GIL-free"])
def test_a_planted_extension_that_does_not_declare_itself_gil_free_is_named(tmp_path, declare):
    name = "planted_gil_" + ("free" if declare else "user")
    build_planted(tmp_path, name, declare)
    done = subprocess.run([str(FT), "-c", WATCH.format(name=name)], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    seen = json.loads(done.stdout)
    assert seen["ft"] is True
    assert seen == {"found": [] if declare else [name], "enabled": not declare, "ft": True}


@needs_ft
@pytest.mark.environment
def test_the_free_threaded_stack_names_netcdf4_as_the_module_that_turns_the_gil_on():
    """Describes .venv-ft as .ci/freethreaded-up builds it (netCDF4 1.6.5 declares nothing)."""
    done = subprocess.run([sys.executable, "-m", "threadprobe.cli", "fingerprint", "--python", str(FT)],
                          capture_output=True, text=True, timeout=300, check=True)
    python = json.loads(done.stdout)["python"]
    assert python["free_threaded_build"] is True
    assert "netCDF4._netCDF4" in python["gil_reenabled_by"] and python["gil_enabled"] is True


def test_watching_still_names_the_module_when_the_import_then_fails():
    message = "The global interpreter lock (GIL) has been enabled to load module 'planted._half'"
    with pytest.raises(ImportError):
        with gil.watching() as found:
            warnings.warn(message, RuntimeWarning)
            raise ImportError("planted")
    assert found == ["planted._half"]


@needs_ft
def test_each_module_imported_alone_names_every_module_that_turns_the_gil_on(tmp_path):
    """In one process only the first import that turns the GIL on says so; alone, each does."""
    build_planted(tmp_path, "planted_gil_first", declare=False)
    build_planted(tmp_path, "planted_gil_second", declare=False)
    build_planted(tmp_path, "planted_gil_free", declare=True)
    from threadprobe.harness.proc import child_env

    code = ("import json; from threadprobe.harness import gil\n"
            "with gil.watching() as together:\n    import planted_gil_first, planted_gil_second\n"
            "print(json.dumps([together, gil.each_alone(['planted_gil_first', 'planted_gil_second', 'planted_gil_free'])]))")
    env = child_env(foreign=True)
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    together, alone = json.loads(subprocess.run([str(FT), "-c", code], capture_output=True, text=True, check=True,
                                                env=env).stdout)
    assert together == ["planted_gil_first"]
    assert alone == {"planted_gil_first": ["planted_gil_first"], "planted_gil_second": ["planted_gil_second"],
                     "planted_gil_free": []}

"""Planted-defect probes: ground truth for every detector (loaded with --plugin in tests).

The C library is compiled with gcc in ``prepare``, at test time, into the probe's workdir.
``WORK`` scales the busy work per call (environment ``PLANTED_WORK``): it sizes the race
windows, so it sets how often each defect fires. At the default, a threads-2 trial of 100 tasks
fails in well over 90% of trials for the race, the crash and the deadlock (measured in
tests/diagnosis/test_diagnose.py); set it low to make a defect rare on purpose.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import subprocess

from threadprobe import Probe

SOURCE = pathlib.Path(__file__).with_name("defects.c")
WORK = int(os.environ.get("PLANTED_WORK", "20000"))
RARE_WORK = int(os.environ.get("PLANTED_RARE_WORK", "0"))
RARE_BYTES = int(os.environ.get("PLANTED_RARE_BYTES", "40"))
REBUILD_WORK = int(os.environ.get("PLANTED_REBUILD_WORK", "2000"))
#: The GIL-free case's work per call: long enough (about 0.3 ms) that the Python around each call,
#: and each hand-back of the GIL on a virtual machine, stay about 1% of a thread's time. At a tenth
#: of it, four threads waited for the GIL in up to a quarter of their samples beside a busy
#: neighbour: a workload partly bound by the GIL, not the free case it stands for.
SAFE_WORK = WORK * 40


def build(workdir: pathlib.Path) -> pathlib.Path:
    lib = workdir / "libdefects.so"
    if not lib.exists():
        tmp = workdir / f".libdefects.{os.getpid()}.so"
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-pthread", "-o", str(tmp), str(SOURCE)], check=True)
        os.replace(tmp, lib)
    return lib


class _Planted(Probe):
    dependency = "planted"
    iterations = 100
    loader = ctypes.CDLL  # releases the GIL around every call

    def prepare(self, workdir):
        build(workdir)

    def open(self, workdir):
        return self.loader(str(workdir / "libdefects.so"))


REPRO_LIBRARY = f'''
import ctypes
import subprocess


def setup(work):  # the planted C library, built here as the probe builds it
    lib = os.path.join(work, "libdefects.so")
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-pthread", "-o", lib, {str(SOURCE)!r}], check=True)
    return ctypes.CDLL(lib)
'''


class Race(_Planted):
    """A race on a static buffer: corrupt under threads, safe in serial and in processes."""

    name = "planted.race"
    reproducer = REPRO_LIBRARY + f'''

def task(lib, i):
    buf = ctypes.create_string_buffer(1024)
    lib.racy_fill(i, buf, 1024, ctypes.c_long({WORK * 20}))
    return buf.raw
'''

    def task(self, lib, i):
        buf = ctypes.create_string_buffer(1024)
        lib.racy_fill(i, buf, 1024, ctypes.c_long(WORK * 20))
        return buf.raw


class RareRace(_Planted):
    """The same race with a window so narrow that it spoils only a few per cent of trials: what a
    diagnosis must still find (``RARE_WORK`` sets the window; see tests/bench/test_detection_power.py)."""

    name = "planted.rare_race"

    def task(self, lib, i):
        buf = ctypes.create_string_buffer(RARE_BYTES)
        lib.racy_fill(i, buf, RARE_BYTES, ctypes.c_long(RARE_WORK))
        return buf.raw


class RareRebuild(_Planted):
    """A race on one call in 48: that call rebuilds a table every call reads, without a lock
    (netcdf-c's ``add_to_NCList`` pattern). ``PLANTED_REBUILD_WORK`` sets the rebuild's window;
    the default spoils a few per cent of 2-thread stress trials (tests/bench/races.py)."""

    name = "planted.rare_rebuild"

    def task(self, lib, i):
        return lib.rare_rebuild(i, ctypes.c_long(REBUILD_WORK))


class Crash(_Planted):
    """A double free of a shared scratch block: crashes under threads."""

    name = "planted.crash"
    reproducer = REPRO_LIBRARY + f'''

def task(lib, i):
    return lib.crashy(i, ctypes.c_long({WORK * 10}))
'''

    def task(self, lib, i):
        return lib.crashy(i, ctypes.c_long(WORK * 10))


class Deadlock(_Planted):
    """A lock-order inversion: hangs under threads."""

    name = "planted.deadlock"

    def task(self, lib, i):
        return lib.inverted(i, ctypes.c_long(WORK * 10))


class Safe(_Planted):
    """All state on the stack, GIL released: safe, and it scales."""

    name = "planted.safe"
    reproducer = REPRO_LIBRARY + f'''

def task(lib, i):
    lib.safe_sum.restype = ctypes.c_long
    return lib.safe_sum(i, ctypes.c_long({SAFE_WORK}))
'''

    def task(self, lib, i):
        lib.safe_sum.restype = ctypes.c_long
        return lib.safe_sum(i, ctypes.c_long(SAFE_WORK))


class GilHolder(Safe):
    """The same work, but called through PyDLL, which keeps the GIL held: GIL-bound."""

    name = "planted.gil"
    loader = ctypes.PyDLL


class PrivateMutex(_Planted):
    """The same work behind a private C mutex, GIL released: serialised by a library lock."""

    name = "planted.mutex"

    def task(self, lib, i):
        lib.locked_sum.restype = ctypes.c_long
        return lib.locked_sum(i, ctypes.c_long(WORK * 10))

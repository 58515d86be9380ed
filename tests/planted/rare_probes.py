"""Planted races on rare paths (tests/planted/rare.c), for the race pass's power: what share of
passes finds a race taken by one call in N, and that correct work beside it is never a race pair.

Loaded with ``--plugin``. The library is compiled with gcc in ``prepare``, into the probe's workdir.
``RARE_WORK`` (environment ``PLANTED_RARE_PATH_WORK``) is the busy work per call, the width of a
call; a period of 1 puts the race on every call, which a test can expect exactly.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import subprocess

from threadprobe import Probe

SOURCE = pathlib.Path(__file__).with_name("rare.c")
WORK = int(os.environ.get("PLANTED_RARE_PATH_WORK", "200"))
PERIODS = (14, 24, 48, 96)


def build(workdir: pathlib.Path) -> pathlib.Path:
    lib = workdir / "librare.so"
    if not lib.exists():
        tmp = workdir / f".librare.{os.getpid()}.so"
        subprocess.run(["gcc", "-O1", "-g", "-shared", "-fPIC", "-pthread", "-o", str(tmp), str(SOURCE)], check=True)
        os.replace(tmp, lib)
    return lib


def share(period: int, calls: int) -> int:
    """How many of ``calls`` indices take the rare path (the C library's own test)."""
    lib = ctypes.CDLL(str(build(pathlib.Path(os.environ.get("TMPDIR", "/tmp")))))
    return sum(lib.rare(i, period) for i in range(calls))


class _Rare(Probe):
    dependency = "planted"
    iterations = 200
    function = "rare_writer"
    period = 48

    def prepare(self, workdir):
        build(workdir)

    def open(self, workdir):
        lib = ctypes.CDLL(str(workdir / "librare.so"))  # releases the GIL around every call
        fn = getattr(lib, self.function)
        fn.restype = ctypes.c_long
        return fn

    def task(self, fn, i):
        return fn(i, self.period, ctypes.c_long(WORK))


def _probe(kind: str, function: str, period: int, doc: str) -> type[_Rare]:
    name = f"planted.rare.{kind}_{period}"
    return type(f"{kind.title()}{period}", (_Rare,), {"name": name, "function": function, "period": period,
                                                       "__doc__": doc.format(period=period)})


WRITERS = [_probe("writer", "rare_writer", n, "A table rebuilt without a lock on about 1 call in {period}, read by every call.")
           for n in (1, *PERIODS)]
PAIRS = [_probe("pair", "rare_pair", n, "A static written and read back on about 1 call in {period} only: rare against rare.")
         for n in (1, *PERIODS)]
GUARDED = _probe("guarded", "guarded_writer", 48, "The rare writer's work under a mutex: never a race.")
PRIVATE = _probe("private", "private_writer", 48, "A rare path on the caller's own memory: never a race.")
globals().update({cls.__name__: cls for cls in (*WRITERS, *PAIRS, GUARDED, PRIVATE)})

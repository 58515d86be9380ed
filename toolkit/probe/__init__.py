"""The probe API, and the digest that lets results from different processes be compared.

A probe stresses one operation of one library. The harness calls ``prepare`` once per
diagnosis, ``open`` once per worker process, ``task`` for every index ``i`` (from many
threads at once when the mode asks for it), then, when the probe defines it, ``readback``
serially for every index, and ``close``. A task's result must depend on ``i`` alone: the
harness compares its digest with the serial oracle's digest for the same ``i``.

A probe is *unavailable* when ``prepare`` or ``open`` cannot import what it needs
(``ModuleNotFoundError``): so probe modules import their library inside those methods, never at
module level, and ``dependency`` is only a label (a distribution, or a C library's name).

This module runs inside worker processes, possibly under another interpreter than threadprobe's
own (``diagnose --python``): it uses the standard library only.
"""

from __future__ import annotations

import hashlib
import os
import zlib
import pathlib
import struct
from typing import Any, ClassVar  # Any: a probe's own context and results, whatever its library gives

from threadprobe.records import Purpose


class Probe:
    """Base class of every probe. Subclasses set ``name`` and ``dependency`` and define ``task``."""

    name: ClassVar[str] = ""
    #: A label for reports and gates: a distribution name ("netCDF4") or a C library ("netcdf-c").
    dependency: ClassVar[str] = ""
    #: Modules the fork server imports before forking workers, so each trial does not pay for them.
    preload: ClassVar[tuple[str, ...]] = ()
    #: Modules ``threadprobe list`` imports to say beforehand whether the probe can run (default:
    #: ``preload``). ``diagnose`` does not ask: a probe is unavailable when its own ``prepare``
    #: or ``open`` raises ``ModuleNotFoundError``.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Tasks per trial when the user does not choose; None means the harness default.
    iterations: ClassVar[int | None] = None
    #: Said after "No module named X" when the probe is unavailable.
    unavailable_hint: ClassVar[str] = ""
    #: True when timing trials read an input of realistic size (``prepare`` writes it beside the
    #: stress input; ``in_timing_trial`` tells ``open`` and ``task``). Stress trials need many short
    #: calls, a timing trial calls of the size the workload makes: at a tenth of that size Python's
    #: per-call overhead hides how well threads scale. The diagnosis then times serial work on that
    #: input too (the oracle stays on the stress input), and a timing task's result must still equal
    #: the oracle's for the same ``i``: the timing input is made so that it can be.
    timing_input: ClassVar[bool] = False
    #: A plain reproducer: the source of ``setup(workdir)`` and ``task(ctx, i)`` using only the
    #: library, which ``threadprobe report-bug`` wraps in a short driver (see threadprobe.evidence.repro).
    reproducer: ClassVar[str | None] = None

    def prepare(self, workdir: pathlib.Path) -> None:
        """Write the input files. Called once per diagnosis, in a child process."""

    def open(self, workdir: pathlib.Path) -> Any:
        """Return the context every thread of this worker process shares."""
        return None

    def task(self, ctx: Any, i: int) -> Any:
        raise NotImplementedError

    def close(self, ctx: Any) -> None:
        """Release the context. Optional."""

    # A probe that writes defines ``readback(self, ctx, i, value)``: it is called serially,
    # after every thread has finished, and its return value is what gets digested.


#: Set in a trial's worker processes to the trial's purpose (a ``Purpose`` value), for the probes
#: that read another input in some trials: a timing input (``Probe.timing_input``), or, in the race
#: pass, a smaller one. A happens-before detector needs concurrent calls into the same native code,
#: not big data, and a call runs some hundreds of times slower under it: a probe whose calls take
#: tens of seconds there reads a smaller input of the same layout (written by its ``prepare`` beside
#: the full one). Its calls then differ from the serial oracle's, which the pass does not compare:
#: it reports races only.
PURPOSE_ENV = "THREADPROBE_PURPOSE"


def trial_purpose() -> Purpose | None:
    """The purpose of the trial this worker runs (None outside a trial's worker)."""
    value = os.environ.get(PURPOSE_ENV)
    try:
        return Purpose(value) if value else None
    except ValueError:
        return None


def in_timing_trial() -> bool:
    """True in the workers of a timing trial (what a probe with ``timing_input`` reads it by)."""
    return trial_purpose() == Purpose.TIMING


def in_race_pass() -> bool:
    """True in the workers of a race pass (what a probe with a smaller race input reads it by)."""
    return trial_purpose() == Purpose.RACES


def function_probe(fn: Any, inputs: list[Any]) -> type[Probe]:
    """A probe whose task is ``fn(inputs[i % len(inputs)])`` (pytest plugin, ``call:`` refs)."""

    class FunctionProbe(Probe):
        name = f"check.{getattr(fn, '__qualname__', 'fn')}"
        dependency = getattr(fn, "__module__", "?") or "?"

        def task(self, ctx: Any, i: int) -> Any:
            return fn(inputs[i % len(inputs)])

    return FunctionProbe


def digest(value: Any, messages: bool = True) -> str:
    """A stable hex digest of a task result, equal across processes for equal results.

    Accepts numpy arrays (masked ones included), bytes, str, numbers, bools, None, exceptions
    (their type and message), and tuples, lists or dicts of these. Anything else is a probe bug
    and raises TypeError. ``messages=False`` leaves exceptions' messages out: two results that
    differ only there are corrupt in their message, not in their data.
    """
    pieces = _Pieces()
    _feed(pieces, value, messages)
    data = b"".join(pieces)
    if len(data) < SMALL:
        # zlib's checksums keep the GIL for small inputs; a free-threaded build's hashlib drops it
        # on every update, and a worker that dropped the GIL after each task would make a
        # GIL-bound probe look free (every waiter gets a turn between two tasks).
        return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):06x}"
    return hashlib.blake2b(data, digest_size=12).hexdigest()


#: Results smaller than this are digested with zlib's checksums (which keep the GIL), larger ones
#: with BLAKE2b (which releases it there on any build: the work is worth it).
SMALL = 2048


class _Pieces(list[bytes]):
    """What ``_feed`` writes, joined and digested once."""

    def update(self, data: bytes) -> None:
        self.append(data)


def _feed(h: Any, value: Any, messages: bool) -> None:
    if value is None:
        h.update(b"N")
    elif isinstance(value, bool):
        h.update(b"B1" if value else b"B0")
    elif isinstance(value, int):
        h.update(b"I" + str(value).encode() + b";")
    elif isinstance(value, float):
        h.update(b"F" + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"S" + str(len(data)).encode() + b":" + data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        h.update(b"Y" + str(len(data)).encode() + b":" + data)
    elif isinstance(value, BaseException):
        h.update(b"E" + f"{type(value).__module__}.{type(value).__qualname__}".encode() + b";")
        if messages:
            _feed(h, str(value), messages)
    elif isinstance(value, (tuple, list)):
        h.update(b"L" + str(len(value)).encode() + b"[")
        for item in value:
            _feed(h, item, messages)
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(b"D" + str(len(value)).encode() + b"{")
        for key in sorted(value, key=repr):
            _feed(h, key, messages)
            _feed(h, value[key], messages)
        h.update(b"}")
    elif hasattr(value, "__array_interface__") or type(value).__module__.startswith("numpy"):
        _feed_array(h, value, messages)
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}; return arrays, bytes, str or numbers")


def _feed_array(h: Any, value: Any, messages: bool) -> None:
    import numpy as np

    if isinstance(value, np.generic):
        value = np.asarray(value)
    if np.ma.isMaskedArray(value):
        mask = np.ma.getmaskarray(value)
        # Values under the mask are undefined, so only the mask and the visible values count.
        data = np.where(mask, np.zeros((), value.dtype), np.ma.getdata(value))
        h.update(b"M")
        _feed_array(h, mask, messages)
        value = data
    arr = np.ascontiguousarray(value)
    if arr.dtype.hasobject:
        _feed(h, arr.tolist(), messages)
        return
    h.update(f"A{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())

"""The probe API, and the digest that lets results from different processes be compared.

A probe stresses one operation of one library. The harness calls ``prepare`` once per
diagnosis, ``open`` once per worker process, ``task`` for every index ``i`` (from many
threads at once when the mode asks for it), then, when the probe defines it, ``readback``
serially for every index, and ``close``. A task's result must depend on ``i`` alone: the
harness compares its digest with the serial oracle's digest for the same ``i``.

Probe modules must not import the library they test at module level, so that a missing
library makes the probe *unavailable* instead of breaking discovery.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import struct
from typing import Any, ClassVar


class Probe:
    """Base class of every probe. Subclasses set ``name`` and ``dependency`` and define ``task``."""

    name: ClassVar[str] = ""
    dependency: ClassVar[str] = ""
    #: Importable modules the probe needs; default: the dependency's name.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Modules the fork server imports before forking workers, so each trial does not pay for them.
    preload: ClassVar[tuple[str, ...]] = ()
    #: Tasks per trial when the user does not choose; None means the harness default.
    iterations: ClassVar[int | None] = None
    #: Said after "module X is not installed" when the probe is unavailable.
    unavailable_hint: ClassVar[str] = ""

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

    @classmethod
    def missing(cls) -> str | None:
        """The first required module that cannot be found, or None when all are present."""
        for module in cls.requires or (cls.dependency,):
            try:
                if importlib.util.find_spec(module) is None:
                    return module
            except (ImportError, ValueError):
                return module
        return None


def function_probe(fn: Any, inputs: list[Any]) -> type[Probe]:
    """A probe whose task is ``fn(inputs[i % len(inputs)])`` (pytest plugin, ``call:`` refs)."""

    class FunctionProbe(Probe):
        name = f"check.{getattr(fn, '__qualname__', 'fn')}"
        dependency = getattr(fn, "__module__", "?") or "?"

        def task(self, ctx: Any, i: int) -> Any:
            return fn(inputs[i % len(inputs)])

    return FunctionProbe


def digest(value: Any) -> str:
    """A stable hex digest of a task result, equal across processes for equal results.

    Accepts numpy arrays (masked ones included), bytes, str, numbers, bools, None, and
    tuples, lists or dicts of these. Anything else is a probe bug and raises TypeError.
    """
    h = hashlib.blake2b(digest_size=12)
    _feed(h, value)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
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
    elif isinstance(value, (tuple, list)):
        h.update(b"L" + str(len(value)).encode() + b"[")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(b"D" + str(len(value)).encode() + b"{")
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
        h.update(b"}")
    elif hasattr(value, "__array_interface__") or type(value).__module__.startswith("numpy"):
        _feed_array(h, value)
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}; return arrays, bytes, str or numbers")


def _feed_array(h: Any, value: Any) -> None:
    import numpy as np

    if isinstance(value, np.generic):
        value = np.asarray(value)
    if np.ma.isMaskedArray(value):
        mask = np.ma.getmaskarray(value)
        # Values under the mask are undefined, so only the mask and the visible values count.
        data = np.where(mask, np.zeros((), value.dtype), np.ma.getdata(value))
        h.update(b"M")
        _feed_array(h, mask)
        value = data
    arr = np.ascontiguousarray(value)
    if arr.dtype.hasobject:
        _feed(h, arr.tolist())
        return
    h.update(f"A{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())

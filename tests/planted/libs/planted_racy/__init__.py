"""A planted library that is unsafe without its own lock: a Python wrapper over the planted C
library's racy fill (ctypes releases the GIL, so threads overlap inside it, on either build).
Put ``tests/planted/libs`` on the path to import it as a library of its own."""

from __future__ import annotations

import ctypes

_lib: ctypes.CDLL | None = None


def load(path: str) -> None:
    global _lib
    _lib = ctypes.CDLL(path)


def fill(i: int, work: int, size: int = 256) -> bytes:
    """Bytes that depend on ``i`` only, unless another thread fills the shared buffer meanwhile."""
    assert _lib is not None, "planted_racy.load() first"
    buf = ctypes.create_string_buffer(size)
    _lib.racy_fill(i, buf, size, ctypes.c_long(work))
    return buf.raw

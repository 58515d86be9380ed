"""A planted library that is safe under threads (all its state on the stack, GIL released): the
suspect a remedy search must rule out before it finds the racy one."""

from __future__ import annotations

import ctypes

_lib: ctypes.CDLL | None = None


def load(path: str) -> None:
    global _lib
    _lib = ctypes.CDLL(path)
    _lib.safe_sum.restype = ctypes.c_long


def checksum(i: int, work: int) -> int:
    assert _lib is not None, "planted_innocent.load() first"
    return int(_lib.safe_sum(i, ctypes.c_long(work)))

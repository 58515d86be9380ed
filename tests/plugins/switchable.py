"""A probe whose "library build" is switched by THREADPROBE_TEST_BUILD: a planted regression.

good: safe in every mode. bad: crashes whenever two threads are in it at once, as a new build of
a native library might.
"""

import ctypes
import os
import threading
import time

from threadprobe import Probe


class Switchable(Probe):
    """Safe with the good build, crashes under threads with the bad one."""

    name = "switch.native_build"
    dependency = "libswitch"
    iterations = 40

    def open(self, workdir):
        return {"inside": 0, "lock": threading.Lock()}

    def task(self, ctx, i):
        with ctx["lock"]:
            ctx["inside"] += 1
        try:
            time.sleep(0.001)
            if os.environ.get("THREADPROBE_TEST_BUILD") == "bad" and ctx["inside"] > 1:
                ctypes.string_at(0)  # the bad build dereferences NULL under concurrent use
            return i * 7
        finally:
            with ctx["lock"]:
                ctx["inside"] -= 1

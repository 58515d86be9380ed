"""Faults on demand, in pure Python and ctypes: ground truth for the isolation layer."""

import ctypes
import os
import subprocess
import time

from threadprobe import Probe

COUNTER = {"opens": 0}


class _Fault(Probe):
    dependency = "python"
    iterations = 8

    def open(self, workdir):
        COUNTER["opens"] += 1
        return workdir


class Segv(_Fault):
    """Dereferences NULL at i=5."""

    name = "faults.segv"

    def task(self, ctx, i):
        if i == 5:
            ctypes.string_at(0)
        return i


class Abort(_Fault):
    """Calls abort() at i=2."""

    name = "faults.abort"

    def task(self, ctx, i):
        if i == 2:
            os.abort()
        return i


class SleepForever(_Fault):
    """Never returns from i=3."""

    name = "faults.sleep_forever"

    def task(self, ctx, i):
        if i == 3:
            time.sleep(10_000)
        return i


class Exit(_Fault):
    """Leaves the process with exit code 3 at i=1, without a report."""

    name = "faults.exit"

    def task(self, ctx, i):
        if i == 1:
            os._exit(3)
        return i


class Grandchild(_Fault):
    """Starts a long-lived grandchild in its own session, then hangs: it must not survive."""

    name = "faults.grandchild"

    def task(self, ctx, i):
        if i == 0:
            subprocess.Popen(["sleep", os.environ.get("THREADPROBE_TEST_SLEEP", "987.654")], start_new_session=True)
            time.sleep(10_000)
        return i


class Fresh(_Fault):
    """Returns how many times open ran in this process: 1 in a fresh process, always."""

    name = "faults.fresh"

    def task(self, ctx, i):
        return COUNTER["opens"]

"""A probe whose prepare raises, next to one that works: the run must go on."""

from threadprobe import Probe


class BadPrepare(Probe):
    """prepare raises."""

    name = "bad.prepare"
    dependency = "python"

    def prepare(self, workdir):
        raise RuntimeError("cannot write inputs: disk on fire")

    def task(self, ctx, i):
        return i


class Fine(Probe):
    """A probe that works, diagnosed after the broken one."""

    name = "bad.zz_fine"
    dependency = "python"

    def task(self, ctx, i):
        return str(i)

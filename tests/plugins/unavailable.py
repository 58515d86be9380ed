"""Probes whose library is not installed, whatever their ``dependency`` label says: unavailable."""

from threadprobe import Probe


class Missing(Probe):
    """Needs a module nobody has; its dependency is a label, not a module name."""

    name = "missing.library"
    dependency = "no-such-library"

    def open(self, workdir):
        import no_such_library_for_threadprobe  # noqa: F401

    def task(self, ctx, i):
        return i


class MissingInPrepare(Probe):
    """Needs it to write its inputs already."""

    name = "missing.in_prepare"
    dependency = "netcdf-c"
    requires = ("no_such_library_for_threadprobe",)  # what `threadprobe list` checks beforehand

    def prepare(self, workdir):
        import no_such_library_for_threadprobe  # noqa: F401

    def task(self, ctx, i):
        return i


class LabelOnly(Probe):
    """A C library called through ctypes: its dependency label is no module, and it is available."""

    name = "missing.label_only"
    dependency = "canary"

    def task(self, ctx, i):
        import ctypes

        return int(ctypes.c_int(i).value)

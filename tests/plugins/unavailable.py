"""A probe of a library that is not installed: discovery must list it as unavailable."""

from toolkit import Probe


class Missing(Probe):
    """Needs a module nobody has."""

    name = "missing.library"
    dependency = "no-such-library"
    requires = ("no_such_library_for_threadprobe",)

    def task(self, ctx, i):
        import no_such_library_for_threadprobe  # noqa: F401

        return i

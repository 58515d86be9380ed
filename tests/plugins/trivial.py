"""A probe with nothing to find: pure Python arithmetic. The harness's overhead baseline."""

from threadprobe import Probe


class Trivial(Probe):
    """Squares i: safe under any concurrency."""

    name = "trivial.square"
    dependency = "python"

    def task(self, ctx, i):
        return i * i

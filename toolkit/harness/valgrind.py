"""The command prefix that runs a worker (or a fork server) under a happens-before race detector.

valgrind's helgrind and DRD see every pthread lock, condition variable and semaphore, the GIL
included, and report two accesses to the same memory that nothing orders, whether or not the
timing of that run made them collide. The harness needs only a prefix for its usual command
line: a fork server started under valgrind keeps its forked workers under it, and ``%p`` in the
XML file's name gives every forked worker a report of its own.

Shipped suppressions (``threadprobe.supp``, beside this file) hide lock implementations' fast
paths that these tools misread; the interpreter's own reports are left out later, by attribution
(``threadprobe.diagnosis.races.parse``), since they share no symbol a suppression could name on every build.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("helgrind", "drd")
SHIPPED = Path(__file__).with_name("threadprobe.supp")
#: CPython's small-object allocator and OpenBLAS's thread pool fill a report with noise (and
#: OpenBLAS's threads would stop the fork server from forking): both off under the detector.
ENV = {"PYTHONMALLOC": "malloc", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
#: How long a fork server under the detector may take to import its libraries: Iris takes about
#: 2 minutes under helgrind on this machine (2 s natively).
READY_TIMEOUT = 900.0
#: valgrind runs one thread at a time. Under the GIL, two calls into a library are unordered (and
#: so can be reported) only when a thread switch lands inside one of them, after the GIL was
#: released for it. By default a thread that gives up valgrind's lock may take it straight back,
#: so a waiting thread can starve for a whole call: ``--fair-sched=yes`` hands it over in turn.
#: Shorter superblocks make valgrind's scheduling quantum (counted in blocks) fewer instructions,
#: so switches land inside short calls too. Measured on a planted race on one call in 48
#: (tests/bench/races.py): with neither, 0 reports in 2,000 calls; with both, found.
#: Frames kept per stack: enough to climb from HDF5 (often 30 frames deep) through netcdf-c to the
#: Cython wrapper that names the netCDF4 operation.
CALLERS = 64
SCHEDULING = ("--fair-sched=yes", "--vex-guest-max-insns=4")


def valgrind() -> str | None:
    """The valgrind executable, or None when it is not installed."""
    return shutil.which("valgrind")


@dataclass(frozen=True)
class Detector:
    """Which detector, where its XML reports go, and which suppressions it applies."""

    tool: str
    xml_dir: Path
    suppressions: tuple[str, ...] = ()  # the user's own, after the shipped ones

    def prefix(self) -> list[str]:
        exe = valgrind()
        if exe is None:
            raise FileNotFoundError("valgrind is not installed")
        command = [exe, f"--tool={self.tool}", "--xml=yes", f"--xml-file={self.xml_dir}/vg.%p.xml",
                   "--error-limit=no", f"--num-callers={CALLERS}", *SCHEDULING, f"--suppressions={SHIPPED}"]
        command += [f"--suppressions={path}" for path in self.suppressions]
        if self.tool == "helgrind":
            command.append("--history-level=full")  # both stacks of a race, not only the second
        return command

    def xml_of(self, pid: int) -> Path:
        return self.xml_dir / f"vg.{pid}.xml"

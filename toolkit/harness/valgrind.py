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

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from threadprobe.records import RaceSchedule, RaceTool

TOOLS = tuple(RaceTool)
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


#: The scheduling shim (``overlap.c``): valgrind wraps the interpreter's GIL release and re-take
#: with it, to count the probe threads' unordered sections and, in ``meet`` mode, to make them
#: overlap. Built with gcc on first use, against valgrind's own headers.
SHIM_SOURCE = Path(__file__).with_name("overlap.c")
SCHEDULES = ("meet", "natural")


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "threadprobe"


def shim() -> tuple[Path | None, str]:
    """The built shim, or None and why it could not be built (no gcc, no valgrind headers)."""
    source = SHIM_SOURCE.read_bytes()
    built = _cache() / f"overlap-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if built.exists():
        return built, ""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None, "no C compiler to build the scheduling shim"
    built.parent.mkdir(parents=True, exist_ok=True)
    tmp = built.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-pthread", "-o", str(tmp), str(SHIM_SOURCE)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        return None, "the scheduling shim did not build: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    os.replace(tmp, built)
    return built, ""


def valgrind() -> str | None:
    """The valgrind executable, or None when it is not installed."""
    return shutil.which("valgrind")


@dataclass(frozen=True)
class Detector:
    """Which detector, where its XML reports go, and which suppressions it applies."""

    tool: RaceTool
    xml_dir: Path
    suppressions: tuple[str, ...] = ()  # the user's own, after the shipped ones
    schedule: RaceSchedule = RaceSchedule.MEET  # what the shim does besides counting (see overlap.c)

    def prefix(self) -> list[str]:
        exe = valgrind()
        if exe is None:
            raise FileNotFoundError("valgrind is not installed")
        command = [exe, f"--tool={self.tool}", "--xml=yes", f"--xml-file={self.xml_dir}/vg.%p.xml",
                   "--error-limit=no", f"--num-callers={CALLERS}", *SCHEDULING, f"--suppressions={SHIPPED}"]
        command += [f"--suppressions={path}" for path in self.suppressions]
        if self.tool == RaceTool.HELGRIND:
            command.append("--history-level=full")  # both stacks of a race, not only the second
        return command

    def env(self, built: Path | None) -> dict[str, str]:
        """The worker's environment for the shim (nothing when it could not be built)."""
        if built is None:
            return {}
        preload = " ".join(p for p in (str(built), os.environ.get("LD_PRELOAD", "")) if p)
        return {"LD_PRELOAD": preload, "THREADPROBE_OVERLAP_DIR": str(self.xml_dir),
                "THREADPROBE_OVERLAP": "meet" if self.schedule == RaceSchedule.MEET else "count"}

    def xml_of(self, pid: int) -> Path:
        return self.xml_dir / f"vg.{pid}.xml"

    def overlap_of(self, pid: int) -> tuple[int, int, int, int] | None:
        """The shim's count for one worker: its probe threads' task calls, their GIL-released
        sections, the calls with a section that overlapped another thread's, and the overlapping
        section pairs (None: not counted)."""
        path = self.xml_dir / f"overlap.{pid}"
        try:
            rows = [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            return None
        if not rows or any(len(r) != 4 for r in rows):
            return None
        return sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows) // 2

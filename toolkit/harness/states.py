"""What the probe's threads are doing, sampled from /proc while they run, without stopping them.

Every couple of milliseconds, for each thread named ``probe-N`` in the worker processes, read
``/proc/PID/task/TID/syscall``: ``running`` (on a CPU, or runnable and queued for one), or the
system call it is blocked in, with its arguments. A thread blocked in ``futex`` waits for a
lock, and the lock's address says which: inside CPython's ``_PyRuntime`` it is the GIL (its
mutex and condition variables live there), anywhere else it is a lock of a library or of Python
code (``threading.Lock``, h5py's global lock, a C mutex). I/O and sleeps are counted apart.

Why not a GIL monitor thread or CPU accounting: both read waiting for a CPU as waiting for a
lock, so a busy neighbour process turns "library lock" into "GIL" and "scales" into "lock".
A blocked thread's state does not depend on how busy the machine is.

Samples are kept raw (system call, address) and classified when sampling stops, because
finding ``_PyRuntime`` means reading the interpreter's ELF symbols, which takes longer than a
short trial; the worker's memory map is read at the first sample, while it is alive.

Samples are also kept per window of ``WINDOW`` sweeps: one trial's threads can fall into a
convoy for part of it (a GIL holder preempted by a busy neighbour, and every waiter behind it),
and a median over windows keeps one such spell from deciding the class (GIL-free work read as
GIL-bound in 1 of 4 trials beside three busy processes).
"""

from __future__ import annotations

import os
import platform
import threading
from collections import Counter
from functools import lru_cache

PREFIX = "probe-"
#: System call numbers by machine: futex waits, and the I/O and sleeping calls worth naming.
SYSCALLS = {
    "x86_64": {"futex": {202, 449}, "io": {0, 1, 17, 18, 19, 20, 295, 296, 327, 328},
               "sleep": {7, 23, 35, 230, 232, 270, 271, 281}},
    "aarch64": {"futex": {98, 449}, "io": {63, 64, 65, 66, 67, 68, 69, 70, 286, 287},
                "sleep": {72, 73, 101, 115, 22}},
}
STATES = ("running", "queued", "gil", "lock", "io", "sleep", "other")
QUEUED = (-2, 0)  # a runnable thread that got less CPU than it waited for, since the last sample
WINDOW = 10  # sweeps per window: 10-40 ms, about forty samples of four threads


@lru_cache(maxsize=16)
def _runtime_symbol(path: str, mtime: int) -> tuple[int, int, bool] | None:
    """(st_value, st_size, position-independent) of ``_PyRuntime`` in an ELF file, or None."""
    try:
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            for name in (".dynsym", ".symtab"):
                section = elf.get_section_by_name(name)
                symbols = section.get_symbol_by_name("_PyRuntime") if isinstance(section, SymbolTableSection) else None
                if symbols:
                    return int(symbols[0]["st_value"]), int(symbols[0]["st_size"]), elf.header.e_type == "ET_DYN"
    except Exception:
        return None
    return None


def memory_map(pid: int) -> tuple[str, dict[str, int]] | None:
    """The executable of ``pid`` and the lowest address each mapped file starts at."""
    try:
        with open(f"/proc/{pid}/maps") as fh:
            lines = fh.read().splitlines()
        exe = os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return None
    bases: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[5].startswith("/"):
            start = int(parts[0].split("-")[0], 16)
            if parts[5] not in bases or start < bases[parts[5]]:
                bases[parts[5]] = start
    return exe, bases


def runtime_range(mapped: tuple[str, dict[str, int]] | None) -> tuple[int, int] | None:
    """Where CPython's ``_PyRuntime`` (and so the GIL) lies, from a process's memory map."""
    if mapped is None:
        return None
    exe, bases = mapped
    for path in [exe] + sorted(p for p in bases if "libpython" in os.path.basename(p)):
        try:
            found = _runtime_symbol(path, os.stat(path).st_mtime_ns)
        except OSError:
            continue
        if found is None:
            continue
        value, size, pie = found
        start = (bases.get(path, 0) + value) if pie else value
        return start, start + max(size, 1)
    return None


def parse(text: str) -> tuple[int, int] | None:
    """(system call number, first argument) of a /proc/.../syscall line; None when running."""
    parts = text.split()
    if not parts or parts[0] == "running":
        return None
    try:
        return int(parts[0]), (int(parts[1], 16) if len(parts) > 1 else 0)
    except ValueError:
        return -1, 0


def classify(sample: tuple[int, int] | None, runtime: tuple[int, int] | None, calls: dict[str, set[int]]) -> str:
    """One sample as a state."""
    if sample is None:
        return "running"
    if sample == QUEUED:
        return "queued"
    number, argument = sample
    if number in calls["futex"]:
        if runtime is not None and runtime[0] <= argument < runtime[1]:
            return "gil"
        return "lock"
    if number in calls["io"]:
        return "io"
    if number in calls["sleep"]:
        return "sleep"
    return "other"


class ThreadStates:
    """Samples the probe threads of some processes until stopped. ``available`` says whether
    this machine lets us (Linux, /proc readable for our own descendants)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self._raw: Counter[tuple[int, int, tuple[int, int] | None]] = Counter()
        self._windows: list[dict[str, int]] = []
        self._sweeps = 0
        self._maps: dict[int, tuple[str, dict[str, int]] | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._calls = SYSCALLS.get(platform.machine())

    @property
    def available(self) -> bool:
        return self._calls is not None and os.path.exists("/proc/self/task")

    def start(self, pids: list[int]) -> None:
        if not self.available or not pids:
            return
        self._thread = threading.Thread(target=self._loop, args=(list(pids),), name="threadprobe-states", daemon=True)
        self._thread.start()

    def _loop(self, pids: list[int]) -> None:
        for pid in pids:
            self._maps[pid] = memory_map(pid)
        probe_threads: set[tuple[int, str]] = set()
        clocks: dict[tuple[int, str], tuple[int, int]] = {}
        while not self._stop.wait(self.interval):
            window = self._sweeps // WINDOW
            self._sweeps += 1
            for pid in pids:
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                for tid in tids:
                    key = (pid, tid)
                    if key not in probe_threads:
                        # A thread names itself once it starts: until then, ask again each time.
                        try:
                            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                                if not fh.read().startswith(PREFIX):
                                    continue
                        except OSError:
                            continue
                        probe_threads.add(key)
                    try:
                        with open(f"/proc/{pid}/task/{tid}/syscall") as fh:
                            text = fh.read()
                        with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                            on_cpu, delay = (int(x) for x in fh.read().split()[:2])
                    except (OSError, ValueError):
                        continue
                    sample = parse(text)
                    before = clocks.get(key)
                    clocks[key] = (on_cpu, delay)
                    # "running" covers a thread queued for a CPU too: a busy neighbour, or a slow
                    # wake-up on a virtual machine. Counted apart, they do not dilute the waits.
                    if sample is None and before is not None and delay - before[1] > on_cpu - before[0]:
                        sample = QUEUED
                    self._raw[(pid, window, sample)] += 1

    def stop(self) -> dict[str, int]:
        """Counts of samples per state (see STATES); per window in ``windows`` after this."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._calls is None:
            return {}
        counts: Counter[str] = Counter()
        windows: dict[int, Counter[str]] = {}
        runtimes = {pid: runtime_range(mapped) for pid, mapped in self._maps.items()}
        for (pid, window, sample), n in self._raw.items():
            state = classify(sample, runtimes.get(pid), self._calls)
            counts[state] += n
            windows.setdefault(window, Counter())[state] += n
        # Only windows with two probe threads alive on average: at the end of a trial the last
        # thread works alone, and its waitless tail (a third of a mutex-bound trial's windows
        # beside a busy neighbour) says nothing about contention.
        self._windows = [dict(windows[k]) for k in sorted(windows)
                         if sum(windows[k].values()) >= 2 * min(WINDOW, self._sweeps - k * WINDOW)]
        return dict(counts)

    @property
    def windows(self) -> list[dict[str, int]]:
        return list(self._windows)

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

On a free-threaded build the interpreter has locks of its own: every object's mutex and
critical section, ``threading.Lock`` (a ``PyMutex``), stop-the-world pauses. They all wait in
CPython's parking lot, on a semaphore in the *waiting thread's own stack frame*, and none is a
library lock, except a ``threading.Lock`` that a library's Python code holds (Iris's netCDF lock,
dask's). So a futex word on the waiter's own stack is looked at once more: the return addresses in
the top of that stack are read (``/proc/PID/mem``) and named from the interpreter's ELF symbols.
Parked under ``lock_PyThread_acquire_lock`` it is a Python lock (``lock``); parked anywhere else,
it is the interpreter's own (``interp``: per-object locks, critical sections), which is neither
the GIL nor a library's lock. A futex on the stack with no parking lot above it (a GIL build) stays
``lock``.

Samples are kept raw (system call, address, the interpreter's return addresses when parked) and
classified when sampling stops, because finding ``_PyRuntime`` and naming frames means reading the
interpreter's ELF symbols, which takes longer than a short trial; the worker's memory map is read
at the first sample, while it is alive.

Samples are also kept per window of ``WINDOW`` sweeps: one trial's threads can fall into a
convoy for part of it (a GIL holder preempted by a busy neighbour, and every waiter behind it),
and a median over windows keeps one such spell from deciding the class (GIL-free work read as
GIL-bound in 1 of 4 trials beside three busy processes).

How long each thread waited is measured too, not only sampled (``times``). A thread woken from a
contended mutex goes back to the run queue and, on a busy machine, waits there for a CPU before it
finds the mutex taken again: a C mutex's waiters spent 75% of their time queued and 15% blocked,
beside 10% on a CPU (a planted mutex, four threads, 2 cores beside a busy neighbour). A sample
there reads "running" (the kernel's run-delay counter is only brought up to date when the thread
next gets a CPU, so ``QUEUED`` catches little of it), and the lock's share of the samples fell
to 21-25%, and below 5% in 2 of 20 diagnoses. So each thread's ``schedstat`` at its first and last
sample gives its time on a CPU and queued for one, exactly; the rest of its wall time it was
blocked, and that blocked time is shared out over what its blocked samples were waiting on.
"""

from __future__ import annotations

import bisect
import os
import platform
import struct
import threading
import time
from collections import Counter
from functools import lru_cache

from threadprobe.records import ThreadState

PREFIX = "probe-"
#: System call numbers by machine: futex waits, and the I/O and sleeping calls worth naming.
SYSCALLS = {
    "x86_64": {"futex": {202, 449}, "io": {0, 1, 17, 18, 19, 20, 295, 296, 327, 328},
               "sleep": {7, 23, 35, 230, 232, 270, 271, 281}},
    "aarch64": {"futex": {98, 449}, "io": {63, 64, 65, 66, 67, 68, 69, 70, 286, 287},
                "sleep": {72, 73, 101, 115, 22}},
}
STATES = tuple(ThreadState)
QUEUED = (-2, 0)  # a runnable thread that got less CPU than it waited for, since the last sample
WINDOW = 10  # sweeps per window: 10-40 ms, about forty samples of four threads
#: A futex word this close above the waiting thread's stack pointer lies in its own stack frames.
STACK_REACH = 1 << 16
#: Bytes of the waiter's stack read for return addresses, and how many interpreter addresses kept.
STACK_READ = 4096
FRAMES_KEPT = 24
#: The parking lot: a wait whose stack holds one of these is the free-threaded interpreter's.
PARKING = frozenset({"_PyParkingLot_Park", "_PySemaphore_Wait"})
#: Where a Python ``threading.Lock`` parks: a lock of the Python code above (a library's or the
#: probe's), not of the interpreter.
PYTHON_LOCKS = frozenset({"lock_PyThread_acquire_lock"})

Sample = tuple[int, int] | None  # (system call, first argument); None: running
Frames = tuple[int, ...]  # interpreter return addresses above a parked wait, innermost first
Clock = tuple[int, int, int]  # (monotonic ns, ns on a CPU, ns queued for one) from schedstat
#: States in which a thread is off the CPU and out of the run queue: what its blocked time is spent in.
BLOCKED = frozenset(STATES) - {ThreadState.RUNNING, ThreadState.QUEUED}


def split_time(first: Clock, last: Clock, blocked: Counter[ThreadState]) -> dict[ThreadState, float]:
    """One thread's seconds per state between two schedstat readings: on a CPU (``running``) and
    queued for one are read off the kernel's counters; the rest of the wall time it was blocked,
    shared out over its blocked samples' states (``other`` when no sample caught it blocked)."""
    wall, on, queued = (b - a for a, b in zip(first, last))
    off = max(0, wall - on - queued)
    times = {ThreadState.RUNNING: on / 1e9, ThreadState.QUEUED: queued / 1e9}
    seen = sum(blocked.values())
    for state, n in (blocked.items() if seen else [(ThreadState.OTHER, 1)]):
        times[state] = times.get(state, 0.0) + off / 1e9 * n / max(seen, 1)
    return {state: t for state, t in times.items() if t > 0}


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


def stack_pointer(text: str) -> int | None:
    """The stack pointer of a blocked thread's /proc/.../syscall line (its next-to-last field)."""
    parts = text.split()
    try:
        return int(parts[-2], 16) if len(parts) >= 9 else None
    except ValueError:
        return None


def on_own_stack(argument: int, sp: int | None) -> bool:
    return sp is not None and sp <= argument < sp + STACK_REACH


def text_ranges(pid: int) -> tuple[tuple[int, int, str], ...]:
    """The executable mappings of the interpreter (its executable, or a shared libpython)."""
    try:
        exe = os.path.realpath(f"/proc/{pid}/exe")
        with open(f"/proc/{pid}/maps") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ()
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and "x" in parts[1] and (parts[5] == exe or "libpython" in os.path.basename(parts[5])):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            found.append((start, end, parts[5]))
    return tuple(found)


def return_addresses(memory: bytes, ranges: tuple[tuple[int, int, str], ...]) -> Frames:
    """Words of a stack that point into the interpreter's code, innermost first: the return
    addresses of the interpreter's frames (and, rarely, a stale one)."""
    words = struct.unpack(f"<{len(memory) // 8}Q", memory[: len(memory) // 8 * 8])
    return tuple(w for w in words if any(lo <= w < hi for lo, hi, _ in ranges))[:FRAMES_KEPT]


@lru_cache(maxsize=8)
def _functions(path: str, mtime: int) -> tuple[list[int], list[tuple[int, str]], bool]:
    """Function symbols of an ELF file, sorted: (starts, (end, name) per start, position-independent)."""
    try:
        from elftools.elf.elffile import ELFFile

        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            found: dict[int, tuple[int, str]] = {}
            for name in (".symtab", ".dynsym"):
                section = elf.get_section_by_name(name)
                for sym in (section.iter_symbols() if section is not None and hasattr(section, "iter_symbols") else ()):
                    if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"]:
                        found.setdefault(int(sym["st_value"]), (int(sym["st_value"] + sym["st_size"]), sym.name))
            pie = elf.header.e_type == "ET_DYN"
    except Exception:
        return [], [], False
    starts = sorted(found)
    return starts, [found[k] for k in starts], pie


def symbol(address: int, ranges: tuple[tuple[int, int, str], ...], bases: dict[str, int]) -> str | None:
    """The interpreter function an address lies in, from its ELF symbols."""
    for lo, hi, path in ranges:
        if lo <= address < hi:
            try:
                starts, ends, pie = _functions(path, os.stat(path).st_mtime_ns)
            except OSError:
                return None
            where = address - bases.get(path, 0) if pie else address
            k = bisect.bisect_right(starts, where) - 1
            return ends[k][1] if k >= 0 and where < max(ends[k][0], starts[k] + 1) else None
    return None


def parked(names: list[str | None]) -> ThreadState:
    """A futex on the waiter's stack, from the names above it: ``interp`` for the free-threaded
    interpreter's own locks, ``lock`` for a Python lock or anything not parked."""
    if not PARKING & set(names):
        return ThreadState.LOCK
    return ThreadState.LOCK if PYTHON_LOCKS & set(names) else ThreadState.INTERP


def classify(sample: Sample, runtime: tuple[int, int] | None, calls: dict[str, set[int]],
             kind: ThreadState | None = None) -> ThreadState:
    """One sample as a state. ``kind``: what a futex on the waiter's own stack was (``parked``)."""
    if sample is None:
        return ThreadState.RUNNING
    if sample == QUEUED:
        return ThreadState.QUEUED
    number, argument = sample
    if number in calls["futex"]:
        if runtime is not None and runtime[0] <= argument < runtime[1]:
            return ThreadState.GIL
        return kind or ThreadState.LOCK
    if number in calls["io"]:
        return ThreadState.IO
    if number in calls["sleep"]:
        return ThreadState.SLEEP
    return ThreadState.OTHER


class ThreadStates:
    """Samples the probe threads of some processes until stopped. ``available`` says whether
    this machine lets us (Linux, /proc readable for our own descendants)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self._raw: Counter[tuple[int, str, int, Sample, Frames]] = Counter()
        self._clocks: dict[tuple[int, str], tuple[Clock, Clock]] = {}
        self._times: dict[ThreadState, float] = {}
        self._text: dict[int, tuple[tuple[int, int, str], ...]] = {}
        self._mem: dict[int, int] = {}
        self._windows: list[dict[ThreadState, int]] = []
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

    def _frames(self, pid: int, sample: Sample, text: str) -> Frames:
        """The interpreter's return addresses above a futex wait on the thread's own stack."""
        if sample is None or self._calls is None or sample[0] not in self._calls["futex"]:
            return ()
        sp = stack_pointer(text)
        if sp is None or not on_own_stack(sample[1], sp) or not self._text.get(pid):
            return ()
        if pid not in self._mem:
            try:
                self._mem[pid] = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
            except OSError:
                self._mem[pid] = -1
        if self._mem[pid] < 0:
            return ()
        try:
            return return_addresses(os.pread(self._mem[pid], STACK_READ, sp), self._text[pid])
        except OSError:
            return ()

    def _loop(self, pids: list[int]) -> None:
        for pid in pids:
            self._maps[pid] = memory_map(pid)
            self._text[pid] = text_ranges(pid)
        try:
            self._sweep(pids)
        finally:
            for fd in self._mem.values():
                if fd >= 0:
                    os.close(fd)

    def _sweep(self, pids: list[int]) -> None:
        probe_threads: set[tuple[int, str]] = set()
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
                    now = (time.monotonic_ns(), on_cpu, delay)
                    seen = self._clocks.get(key)
                    before = seen[1] if seen else None
                    self._clocks[key] = (seen[0] if seen else now, now)
                    sample = parse(text)
                    # "running" covers a thread queued for a CPU too: a busy neighbour, or a slow
                    # wake-up on a virtual machine. Counted apart, they do not dilute the waits.
                    if sample is None and before is not None and delay - before[2] > on_cpu - before[1]:
                        sample = QUEUED
                    self._raw[(pid, tid, window, sample, self._frames(pid, sample, text))] += 1

    def stop(self) -> dict[ThreadState, int]:
        """Counts of samples per state (see STATES); per window in ``windows`` after this."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._calls is None:
            return {}
        counts: Counter[ThreadState] = Counter()
        windows: dict[int, Counter[ThreadState]] = {}
        runtimes = {pid: runtime_range(mapped) for pid, mapped in self._maps.items()}
        kinds: dict[tuple[int, Frames], ThreadState] = {}
        blocked: dict[tuple[int, str], Counter[ThreadState]] = {}
        for (pid, tid, window, sample, frames), n in self._raw.items():
            if frames and (pid, frames) not in kinds:
                bases = (self._maps.get(pid) or ("", {}))[1]
                kinds[(pid, frames)] = parked([symbol(a, self._text[pid], bases) for a in frames])
            state = classify(sample, runtimes.get(pid), self._calls, kinds.get((pid, frames)))
            counts[state] += n
            windows.setdefault(window, Counter())[state] += n
            if state in BLOCKED:
                blocked.setdefault((pid, tid), Counter())[state] += n
        times: Counter[ThreadState] = Counter()
        for key, (first, last) in self._clocks.items():
            times.update(split_time(first, last, blocked.get(key, Counter())))
        self._times = {state: round(t, 6) for state, t in times.items()}
        # Only windows with two probe threads alive on average: at the end of a trial the last
        # thread works alone, and its waitless tail (a third of a mutex-bound trial's windows
        # beside a busy neighbour) says nothing about contention.
        self._windows = [dict(windows[k]) for k in sorted(windows)
                         if sum(windows[k].values()) >= 2 * min(WINDOW, self._sweeps - k * WINDOW)]
        return dict(counts)

    @property
    def windows(self) -> list[dict[ThreadState, int]]:
        return list(self._windows)

    @property
    def times(self) -> dict[ThreadState, float]:
        """Seconds per state, summed over the probe threads (see ``split_time``), after ``stop``."""
        return dict(self._times)

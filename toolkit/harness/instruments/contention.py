"""Where lock-bound threads wait: py-spy samples of a live worker, taken from the parent.

The contention class comes from thread states (``threadprobe.harness.states``); this names the
frames. While an attribution trial runs, ``StackSampler`` calls ``py-spy dump --native --json`` on the
worker again and again. Each sample says which probe threads are idle and whether any thread
holds the GIL. Idle while the GIL is free means a lock below Python (h5py's global lock, Iris's
netCDF lock, a C mutex); the idle threads' top frames say which. The native dump has to pause
the process (about 80 ms here): py-spy's non-blocking dump reports a thread blocked in
``pthread_mutex_lock`` as active, and so does the kernel's thread state, because such waiters
keep being woken. That is why sampling only ever runs in a trial of its own.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from typing import Any

from threadprobe.harness.proc import find_py_spy

WORKER_THREAD_PREFIX = "probe-"  # threadprobe.harness.worker names the probe threads so

#: One thread (or frame) of py-spy's JSON dump: py-spy's own format, read key by key.
SpyRecord = dict[str, Any]


def wait_label(frames: list[SpyRecord]) -> str:
    """The first named native frame and the first Python frame of a waiting thread."""
    native = next(
        (f["name"] for f in frames if f.get("name") and not str(f["name"]).startswith("0x")
         and not str(f.get("filename") or "").endswith(".py")),
        None,
    )
    python = next(
        (f"{f['name']} ({f.get('short_filename') or f.get('filename')}:{f.get('line')})"
         for f in frames if str(f.get("filename") or "").endswith(".py")),
        None,
    )
    return " <- ".join(x for x in (native, python) if x) or "unknown"


BLOCKING = ("lock", "wait", "futex", "take_gil", "sem_", "cond_", "poll", "select", "sleep")


def waiting(thread: SpyRecord) -> bool:
    """Is this thread blocked? py-spy's own "active" flag misses threads stuck in a mutex, so
    look at the native frames: a blocking primitive, or unnamed libc internals (futex waits),
    above the first frame of real work."""
    for frame in (thread.get("frames") or [])[:4]:
        name = str(frame.get("name") or "")
        if name.startswith("0x") and "libc" in str(frame.get("filename") or frame.get("module") or "libc"):
            continue
        return any(word in name.lower() for word in BLOCKING)
    return not thread.get("active", True)


def tally(dumps: list[list[SpyRecord]]) -> tuple[float | None, dict[str, int]]:
    """From py-spy JSON dumps: share of probe-thread samples blocked with the GIL free, and where."""
    seen = 0
    idle_free = 0
    waits: Counter[str] = Counter()
    for threads in dumps:
        workers = [t for t in threads if str(t.get("thread_name") or "").startswith(WORKER_THREAD_PREFIX)]
        if not workers:
            continue
        gil_held = any(t.get("owns_gil") for t in threads)
        seen += len(workers)
        for t in workers:
            if waiting(t) and not gil_held:
                idle_free += 1
                waits[wait_label(t.get("frames") or [])] += 1
    if not seen:
        return None, {}
    return idle_free / seen, dict(waits)


class StackSampler:
    """Samples a process's threads with py-spy until stopped (a no-op without py-spy)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.dumps: list[list[SpyRecord]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._spy = find_py_spy()

    @property
    def available(self) -> bool:
        return self._spy is not None

    def start(self, pids: list[int]) -> None:
        if not self._spy or not pids:
            return
        self._thread = threading.Thread(target=self._loop, args=(pids[0],), daemon=True)
        self._thread.start()

    def _loop(self, pid: int) -> None:
        assert self._spy is not None
        while not self._stop.wait(self.interval):
            try:
                done = subprocess.run(
                    [self._spy, "dump", "--native", "--json", "--pid", str(pid)],
                    capture_output=True, text=True, timeout=10,
                )
            except (subprocess.TimeoutExpired, OSError):
                continue
            if done.returncode != 0:
                if "No such process" in done.stderr or "Failed to find" in done.stderr:
                    return
                continue
            try:
                self.dumps.append(json.loads(done.stdout))
            except ValueError:
                continue

    def stop(self) -> tuple[float | None, dict[str, int]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        return tally(self.dumps)

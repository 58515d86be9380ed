"""What a run shows while it works, and what it used: its tasks, counted for the one progress
display (threadprobe.diagnosis.progress), and its peak memory. ``PeakMemory`` samples the resident
memory of this process and all its descendants (dask's worker processes included) in a background
thread.
"""

from __future__ import annotations

import os
import threading

from threadprobe.diagnosis.progress import Count, Progress, Update


class Tasks:
    """A dask compute's tasks, counted for the progress display: ``done`` is dask's per-task
    callback (from the scheduler's threads), and only the run's own tasks (``threadprobe-*``) count."""

    def __init__(self, progress: Progress, subject: str, total: int) -> None:
        self.progress = progress
        self.subject = subject
        self.total = total
        self.count = 0
        self._lock = threading.Lock()
        progress.update(Update(subject, run=Count(0, "tasks", total)))  # how many there will be

    def done(self, key: str) -> None:
        if not key.startswith("threadprobe-"):
            return  # dask's own helper tasks
        with self._lock:
            self.count += 1
            count = Count(self.count, "tasks", self.total)
        self.progress.update(Update(self.subject, run=count))


class PeakMemory:
    """The highest resident memory of this process plus its descendants, sampled every 0.2 s."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        me = psutil.Process(os.getpid())
        while True:
            total = 0
            try:
                procs = [me] + me.children(recursive=True)
            except psutil.Error:
                procs = [me]
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak or 0, total)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, name="threadprobe-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

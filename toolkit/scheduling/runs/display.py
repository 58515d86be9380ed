"""What a run shows while it works, and what it used: progress and peak memory.

On a terminal, rich's progress bar (as ``diagnose`` has); in a log, a plain line every
``every`` seconds, never carriage-return redraws. ``PeakMemory`` samples the resident memory of
this process and all its descendants (dask's worker processes included) in a background thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any


class RunProgress:
    """Tasks done out of a total, for one phase of a run."""

    def __init__(self, stream: IO[str] | None = None, every: float = 10.0, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._bar: Any = None
        self._lock = threading.Lock()
        self.total = self.count = 0
        self.label = ""
        self._last = self._began = 0.0

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"[threadprobe] {text}", file=self.stream, flush=True)

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.count = label, total, 0
        self._began = self._last = time.monotonic()
        if self.quiet:
            return
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)
        else:
            self.note(f"{label}: {total} tasks")

    def done(self, key: str) -> None:
        if not key.startswith("threadprobe-"):
            return  # dask's own helper tasks
        with self._lock:
            self.count += 1
            if self.quiet:
                return
            if self._bar is not None:
                self._bar.update(self._task, completed=self.count)
            elif time.monotonic() - self._last >= self.every:
                self._last = time.monotonic()
                self.note(f"{self.label}: {self.count}/{self.total} tasks, {self._last - self._began:.0f}s")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


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

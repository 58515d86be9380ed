"""Live progress of a long diagnosis: rich on a terminal, plain periodic lines in CI logs.

Shows the probe, the mode, trials done, failures so far, and the time left in the budget
(the adaptive planner decides how many trials there will be, so progress is time, not a count).
``--quiet`` turns it off.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol


class Progress(Protocol):
    def begin(self, budget: float | None) -> None: ...

    def update(self, probe: str, mode: str, done: int, failures: int) -> None: ...

    def note(self, text: str) -> None: ...

    def end(self) -> None: ...


class NullProgress:
    def begin(self, budget: float | None) -> None:
        pass

    def update(self, probe: str, mode: str, done: int, failures: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


class _Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.budget: float | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> str:
        if self.budget is None:
            return f"{self.elapsed:.0f}s"
        return f"{max(0.0, self.budget - self.elapsed):.0f}s of the budget left"


class LineProgress(_Clock):
    """One plain line at most every ``every`` seconds, and whenever the probe changes."""

    def __init__(self, stream: IO[str], every: float = 5.0) -> None:
        super().__init__()
        self.stream = stream
        self.every = every
        self._last = 0.0
        self._probe = ""

    def begin(self, budget: float | None) -> None:
        self.budget = budget
        self.started = time.monotonic()

    def update(self, probe: str, mode: str, done: int, failures: int) -> None:
        now = time.monotonic()
        if probe != self._probe or now - self._last >= self.every:
            self._probe, self._last = probe, now
            print(f"[threadprobe] {probe} {mode}: {done} trials, {failures} failed, {self.left()}",
                  file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"[threadprobe] {text}", file=self.stream, flush=True)

    def end(self) -> None:
        print(f"[threadprobe] trials done in {self.elapsed:.0f}s", file=self.stream, flush=True)


class RichProgress(_Clock):
    """rich's live progress bar, for a terminal: the bar is the budget's time."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

        self._console = Console(file=stream)
        self._bar = Progress(
            TextColumn("{task.fields[probe]} [dim]{task.fields[mode]}"),
            BarColumn(),
            TextColumn("{task.fields[done]} trials"),
            TextColumn("[red]{task.fields[failures]} failed"),
            TextColumn("{task.fields[left]}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=False,
        )
        self._task: TaskID | None = None

    def begin(self, budget: float | None) -> None:
        self.budget = budget
        self.started = time.monotonic()
        self._bar.start()
        self._task = self._bar.add_task("diagnose", total=budget or None, probe="", mode="", done=0, failures=0,
                                        left=self.left())

    def update(self, probe: str, mode: str, done: int, failures: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=min(self.elapsed, self.budget or self.elapsed), probe=probe,
                             mode=mode, done=done, failures=failures, left=self.left())

    def note(self, text: str) -> None:
        self._console.print(text)

    def end(self) -> None:
        self._bar.stop()


def make_progress(quiet: bool = False, stream: IO[str] | None = None) -> Progress:
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if stream.isatty():
        return RichProgress(stream)
    return LineProgress(stream)

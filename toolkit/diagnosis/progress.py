"""The one progress protocol: what every long command shows while it works.

Diagnose, the race pass, the runner (``run wind``, ``run load``), the benches and ``make-data``
each announce a phase (``begin``), send ``Update`` records as the work moves, and ``end`` the
phase when the work ends, also when it fails. An update says what its counts refer to: ``own``
is the subject's own count (one cell's trials), ``run`` the whole phase's (every trial so far).

On a terminal this is rich's live bar; in a log or CI, plain ``[threadprobe]`` lines, at most one
every few seconds and whenever the subject changes (never carriage-return redraws). ``--quiet``
(``NullProgress``) shows nothing: results are printed by the commands, never through here.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress as RichBar, TaskID


@dataclass(frozen=True)
class Count:
    """Units done so far, of how many (None: as many as a time budget allows), and how many of
    them failed (None: failures are not counted for this unit)."""

    done: int
    unit: str = "trials"
    total: int | None = None
    failed: int | None = None

    def text(self) -> str:
        done = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        return f"{done} {self.unit}" + (f", {self.failed} failed" if self.failed is not None else "")


@dataclass(frozen=True)
class Update:
    """Where the work stands: its subject (a probe, a file, a repetition), what is done to it now
    (a cell such as "threads 4", or a stage such as "prepare"), the count of ``own_of`` (a cell's
    own trials; None when there is none, as in a prepare) and the whole phase's."""

    subject: str
    doing: str = ""
    own: Count | None = None
    run: Count | None = None
    own_of: str = "this cell"

    def text(self) -> str:
        parts = [f"{self.subject} {self.doing}".strip()]
        if self.own is not None:
            parts.append(f"{self.own.text()} in {self.own_of}")
        if self.run is not None:
            parts.append(f"{self.run.text()} in the run")
        return "; ".join(parts)


class Progress(Protocol):
    def begin(self, title: str, budget: float | None = None) -> None:
        """A phase starts; ``budget``: the seconds it may take (its bar is time when its total is open)."""

    def update(self, update: Update) -> None: ...

    def note(self, text: str) -> None:
        """One line about the work (a stage that starts, what a pass found), shown whole."""

    def end(self) -> None:
        """The phase ended (done, or failed): its display is taken down."""


@contextlib.contextmanager
def phase(progress: Progress, title: str, budget: float | None = None) -> Iterator[Progress]:
    """``begin`` and ``end`` around a block, ``end`` also when it raises."""
    progress.begin(title, budget)
    try:
        yield progress
    finally:
        progress.end()


class NullProgress:
    """``--quiet``: nothing."""

    def begin(self, title: str, budget: float | None = None) -> None:
        pass

    def update(self, update: Update) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


class _Clock:
    def __init__(self) -> None:
        self.title = ""
        self.started = time.monotonic()
        self.budget: float | None = None

    def start(self, title: str, budget: float | None) -> None:
        self.title, self.budget, self.started = title, budget, time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> str:
        if self.budget is None:
            return f"{self.elapsed:.0f}s"
        return f"{max(0.0, self.budget - self.elapsed):.0f}s of the budget left"


class LineProgress(_Clock):
    """Plain lines: one at most every ``every`` seconds, and whenever the subject changes."""

    def __init__(self, stream: IO[str], every: float = 5.0) -> None:
        super().__init__()
        self.stream = stream
        self.every = every
        self._last = 0.0
        self._subject = ""

    def _print(self, text: str) -> None:
        print(f"[threadprobe] {text}", file=self.stream, flush=True)

    def begin(self, title: str, budget: float | None = None) -> None:
        self.start(title, budget)
        self._subject = ""

    def update(self, update: Update) -> None:
        now = time.monotonic()
        if update.subject != self._subject or now - self._last >= self.every:
            self._subject, self._last = update.subject, now
            self._print(f"{self.title}: {update.text()}; {self.left()}")

    def note(self, text: str) -> None:
        self._print(text)

    def end(self) -> None:
        self._print(f"{self.title} done in {self.elapsed:.0f}s")


class RichProgress(_Clock):
    """rich's live bar, for a terminal: the phase's count when it has a total, else its budget's time."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        from rich.console import Console

        self._console = Console(file=stream)
        self._bar: RichBar | None = None
        self._task: TaskID | None = None

    def begin(self, title: str, budget: float | None = None) -> None:
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        self.end()
        self.start(title, budget)
        self._bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[text]}"),
                        TimeElapsedColumn(), console=self._console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(title, total=budget, text=self.left())

    def update(self, update: Update) -> None:
        if self._bar is None or self._task is None:
            return
        run = update.run
        if run is not None and run.total:
            self._bar.update(self._task, total=run.total, completed=run.done, text=update.text())
        else:
            self._bar.update(self._task, completed=min(self.elapsed, self.budget or self.elapsed),
                             text=f"{update.text()}; {self.left()}")

    def note(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar = self._task = None


def make_progress(quiet: bool = False, stream: IO[str] | None = None, every: float = 5.0) -> Progress:
    """rich on a terminal, plain lines elsewhere, nothing with ``quiet``."""
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if stream.isatty():
        return RichProgress(stream)
    return LineProgress(stream, every)

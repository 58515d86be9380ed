"""A test body as a probe: run in threads (or a control) in a forked child, its outcome as text.

The body runs through the harness that ``diagnose`` uses (``diagnose.run_one``: a direct fork of
the pytest process, so the test's fixtures and closures come along), with the same
classification; a segfault kills the child, never the session. ``run_body`` gives back a
``BodyRun``: the outcome's kind (``records.Kind``), a headline, the text to show (faulthandler's
frames for a crash, the stacks of a hang, the test's own traceback for an error), and the
crashing thread's innermost frames for the summary.
"""

from __future__ import annotations

import enum
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from threadprobe.diagnosis import detect, plan
from threadprobe.diagnosis import diagnose as diagnosing
from threadprobe.harness import launch
from threadprobe.probe import Probe, refs
from threadprobe.pytest import fixtures
from threadprobe.records import Evidence, EvidenceKind, Kind, Mode, Outcome, Purpose, Stage, Trial

#: Innermost frames of a crashing thread that the summary shows.
FRAMES = 3


class Run(enum.Enum):
    """Which run of the body: the threads, or one of the triage's controls (see ``triage``)."""

    THREADS = "threads"
    ONE_THREAD = "one thread"
    OWN_STATE = "own state"


class _Skip(Exception):
    """pytest.skip() inside a thread: carried out as an error, turned back into a skip."""


class _Outcome(Exception):
    """pytest.fail() and friends inside a thread: an ordinary failure for the harness."""


@dataclass(frozen=True)
class Layout:
    """Which fixture instance each run of the body uses. The threaded runs: ``threads``
    instances, thread t's ``iterations`` runs all on instance t (the worker gives thread t the
    runs i with i % threads == t). The one-thread control mirrors that sharing, one run after
    another: the first two threads' instances, each used for its ``iterations`` runs in a row. So a
    body that fails when re-run on the same fixture fails in the control too (not re-entrant),
    and, with one iteration, two runs on instances of their own show process-wide test state."""

    instances: int
    runs: int
    iterations: int
    serial: bool

    @staticmethod
    def of(threads: int, iterations: int, run: Run) -> Layout:
        serial = run == Run.ONE_THREAD
        instances = min(threads, 2) if serial else threads
        return Layout(instances, instances * iterations, iterations, serial)

    def instance(self, i: int) -> int:
        return i // self.iterations if self.serial else i % self.instances


def body_probe(item: pytest.Function, threads: int, layout: Layout, run: Run) -> type:
    class TestBody(Probe):
        name = f"pytest.{item.name}"
        dependency = "pytest"

        def open(self, workdir: Any) -> list[fixtures.Instance]:
            fixtures.CURRENT.update(threads=threads, iterations=layout.iterations)
            if run == Run.THREADS:  # thread 0 uses what pytest set up in its own process
                return [fixtures.shared(item)] + [fixtures.fresh(item, t) for t in range(1, threads)]
            own = run == Run.OWN_STATE  # pytest's own instance is not used: it tears that down itself
            return [fixtures.fresh(item, t, own_state=own) for t in range(layout.instances)]

        def task(self, ctx: list[fixtures.Instance], i: int) -> Any:
            try:
                ctx[layout.instance(i)].call()
            except pytest.skip.Exception as exc:
                raise _Skip(str(exc.msg if hasattr(exc, "msg") else exc)) from None
            except BaseException as exc:  # noqa: BLE001 - every failure of the body is reported
                if isinstance(exc, Exception):
                    raise
                raise _Outcome(str(exc)) from None
            return None

        def close(self, ctx: list[fixtures.Instance]) -> None:
            for instance in reversed(ctx if run != Run.THREADS else ctx[1:]):  # pytest tears its own down
                instance.teardown()

    return TestBody


@dataclass(frozen=True)
class BodyRun:
    """What one run of the body showed, ready to print."""

    kind: Kind
    run: Run
    headline: str = ""
    text: str = ""
    failed_index: int | None = None
    skipped: str | None = None
    open_error: str | None = None
    signal: str | None = None
    frames: tuple[str, ...] = ()
    gil_enabled: bool | None = None
    threads_at_fork: tuple[str, ...] = ()


def run_body(item: pytest.Function, threads: int, iterations: int, timeout: float, run: Run = Run.THREADS) -> BodyRun:
    """The test body in ``threads`` threads, ``iterations`` times each, in a forked child; or one
    of the triage's controls (``Run``)."""
    key = f"{os.getpid()}-{threading.get_ident()}-{id(item)}-{run.name}"
    layout = Layout.of(threads, iterations, run)
    refs.INLINE[key] = body_probe(item, threads, layout, run)
    folder = Path(tempfile.mkdtemp(prefix="threadprobe-pytest-"))
    launcher = launch.DirectFork()
    # 100 us, not 1 us: a test body is mostly Python, and at 1 us every GIL hand-off costs more than
    # the work (a 30 ms Iris test took 0.6 s); 100 us finds races as often (README's amplification table).
    trial = Trial(f"pytest.{item.name}", f"inline:{key}", Mode.SERIAL if layout.serial else Mode.THREADS, 1,
                  1 if layout.serial else threads, layout.runs, timeout=timeout, purpose=Purpose.STRESS,
                  switch_interval=plan.DEFAULT_SWITCH_INTERVAL if layout.serial else plan.STRESS_SWITCH_INTERVALS[1])
    try:
        got, outcome = diagnosing.run_one(trial, launcher, folder, folder / "trial", None)
    finally:
        launcher.close()
        refs.INLINE.pop(key, None)
        shutil.rmtree(folder, ignore_errors=True)
    return describe(outcome, run, layout, threads, timeout, got.threads_at_fork)


def describe(outcome: Outcome, run: Run, layout: Layout, threads: int, timeout: float,
             threads_at_fork: tuple[str, ...] = ()) -> BodyRun:
    """A classified outcome as the plugin shows it."""
    base = BodyRun(outcome.kind, run, gil_enabled=outcome.gil_enabled, threads_at_fork=threads_at_fork)
    errors = [e for e in outcome.evidence if e.kind == EvidenceKind.ERROR]
    if outcome.kind == Kind.OK:
        return base
    if errors and all((e.error_type or "").endswith("_Skip") for e in errors):
        return replace(base, skipped=errors[0].message or "skipped in threads")
    opened = [e for e in errors if e.stage == Stage.OPEN]
    if opened and run != Run.ONE_THREAD:  # the fixtures, not the body: the run says nothing of threads
        return replace(base, open_error=f"{opened[0].error_type}: {detect.first_line(opened[0].message)}")
    first = outcome.evidence[0]
    context = (f"in one thread, {layout.runs} runs in a row" if layout.serial else
               f"under {threads} threads" + (", each with its own fixtures" if run == Run.OWN_STATE else ""))
    if outcome.kind == Kind.CRASH:
        return replace(base, headline=f"killed by {first.signal} {context}", text=first.traceback or "",
                        signal=first.signal, frames=crash_frames(first.traceback or ""))
    if outcome.kind == Kind.HANG:
        return replace(base, headline=f"hung {context}: no progress for {timeout:g}s",
                        text=f"stacks ({first.stack_source}):\n{first.stacks or ''}")
    return _error(base, errors, first, context, layout, threads)


def _error(base: BodyRun, errors: list[Evidence], first: Evidence, context: str, layout: Layout,
           threads: int) -> BodyRun:
    tasks = [e for e in errors if e.stage == Stage.TASK]
    shown = tasks[0] if tasks else first
    where = shown.stage or ""
    if shown.index is not None:
        where = (f"run {shown.index + 1}, on fixtures {layout.instance(shown.index)}" if layout.serial else
                 f"thread {shown.index % threads}, run {shown.index // threads}")
    return replace(base, failed_index=min((e.index for e in tasks if e.index is not None), default=None),
                    headline=f"{shown.error_type} {context} ({len(tasks)} failing runs; first: {where}): "
                             f"{detect.first_line(shown.message)}",
                    text=user_frames(shown.traceback or shown.message or ""))


def user_frames(traceback: str) -> str:
    """A traceback without the frames of threadprobe's own machinery (the worker, this plugin)."""
    package = str(Path(__file__).resolve().parents[1])
    out, skipping = [], False
    for line in traceback.splitlines():
        if line.startswith('  File "'):
            skipping = line.split('"')[1].startswith(package)
        if not skipping:
            out.append(line)
    return "\n".join(out)


def crash_frames(fault: str, limit: int = FRAMES) -> tuple[str, ...]:
    """The crashing thread's innermost frames from faulthandler's output ("Current thread", or
    "Stack" when only that thread was dumped; most recent call first), threadprobe's own left out.
    None when faulthandler marked no thread as the crashing one (a thread with no Python state
    crashed): another thread's frames would name the wrong code."""
    lines = fault.splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith(("Current thread", "Stack"))), None)
    if start is None:
        return ()
    package = str(Path(__file__).resolve().parents[1])
    frames = []
    for line in lines[start + 1:]:
        if not line.startswith("  File "):
            break
        if '"' + package not in line:
            frames.append(line.strip())
    return tuple(frames[:limit])

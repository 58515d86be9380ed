"""What one worker process does in a trial, inside that process.

It opens the probe's context, starts T threads behind a barrier with the trial's switch
interval (as pytest-run-parallel does, so that races get a chance), deals the task indices
out among them, digests every result, reads writes back serially, and returns its
``WorkerReport`` (``threadprobe.worker/1``). Process plumbing (forking, signals, files) is not here.

The trial arrives as its record (``Trial``, parsed from the spec by threadprobe.harness.child), whose
fields carry the only defaults; like every module the worker imports, this one is standard
library only, so it runs under any interpreter.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any  # Any: the probe's own context and task results (threadprobe.probe.Probe)

from threadprobe.harness import gil, libguard
from threadprobe.harness.proc import name_thread
from threadprobe.probe import PURPOSE_ENV, Probe, digest
from threadprobe.records import Pin, Purpose, RemedyKind, Stage, Trial, WorkerError, WorkerReport

MAX_ERRORS = 5  # per worker: enough to see a pattern, small enough to keep reports readable
MAX_TEXT = 8000
SPIN_LIMIT = 0.05  # seconds a started thread waits, spinning, for its peers to be running too
THREAD_PREFIX = "probe-"  # how the parent's /proc sampler and py-spy find the probe's threads


def thread_clock() -> tuple[float, float | None]:
    """This thread's CPU seconds, and its seconds runnable but waiting for a CPU (None if unknown).

    Linux's schedstat separates the two: a thread starved by other processes' load waits on the
    run queue, while a thread waiting for a lock or the GIL is blocked and appears in neither.
    """
    try:
        with open("/proc/thread-self/schedstat") as fh:
            on_cpu, on_queue, _ = fh.read().split()
        return int(on_cpu) / 1e9, int(on_queue) / 1e9
    except (OSError, ValueError):
        return time.thread_time(), None


def run_together(threads: int, body: Callable[[int], None], switch_interval: float, jitter: float = 0.0,
                 pin: Pin | None = None) -> None:
    """Run ``body(t)`` on ``threads`` threads started together, with ``switch_interval`` set.

    A blocking barrier is not enough: waking a sleeping thread on an idle (virtual) CPU takes
    milliseconds, so one thread could finish its share before the other started. After the
    barrier, each thread spins until every thread is running, so they start within
    microseconds; ``jitter`` then delays each by a random part of that many seconds. ``pin``
    ("one": every thread on CPU 0; "spread": thread t on CPU t mod cores) is for measuring
    amplification. Threads are named ``probe-N`` (OS names too), which is how the parent's samplers
    tell them from the interpreter's own.
    """
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    cores = sorted(os.sched_getaffinity(0)) if pin and hasattr(os, "sched_getaffinity") else []

    def prologue(t: int) -> None:
        if cores:
            os.sched_setaffinity(0, {cores[0] if pin == Pin.ONE else cores[t % len(cores)]})
        if jitter > 0:
            time.sleep(random.uniform(0.0, jitter))

    try:
        if threads == 1:
            prologue(0)
            name_thread(f"{THREAD_PREFIX}0")
            body(0)
            return
        barrier = threading.Barrier(threads)
        arrived = [0]
        lock = threading.Lock()

        def start(t: int) -> None:
            barrier.wait()
            with lock:
                arrived[0] += 1
            give_up = time.monotonic() + SPIN_LIMIT
            while arrived[0] < threads and time.monotonic() < give_up:
                pass
            prologue(t)
            # Named only now: the parent samples threads by name, and a wait at the barrier (for a
            # peer that a busy machine starts late) or in the start delay is the harness's, not
            # the probe's (it read as a library lock on GIL-bound cf-units).
            name_thread(f"{THREAD_PREFIX}{t}")
            body(t)

        pool = [threading.Thread(target=start, args=(t,), name=f"{THREAD_PREFIX}{t}", daemon=True)
                for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    finally:
        sys.setswitchinterval(old_interval)


def task_marker() -> Callable[[int], None] | None:
    """The race pass's scheduling shim (harness/overlap.c), when it is preloaded: told where each
    task call starts and ends, so that it counts the library's GIL-released sections and not the
    harness's own. Called through PyDLL, so marking releases no GIL."""
    try:
        marker: Callable[[int], None] = ctypes.PyDLL(None).threadprobe_task
        return marker
    except (OSError, AttributeError):
        return None


def indices_for(trial: Trial, worker: int, thread: int) -> range:
    """Task indices of one thread: ``i`` dealt round-robin over all P x T threads of the trial."""
    g = worker * trial.threads + thread
    return range(g, trial.iterations, trial.processes * trial.threads)


def error_record(stage: Stage, exc: BaseException, index: int | None = None) -> WorkerError:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return WorkerError(
        stage=stage,
        index=index,
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        message=str(exc)[:MAX_TEXT],
        traceback=tb[-MAX_TEXT:],
        # A module that is not there: the probe is unavailable here, not failing.
        missing=getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None,
    )


#: A thread tells the parent of its progress at most this often: a tick writes shared memory, and
#: one per task would be an object every thread touches between two calls.
TICK_EVERY = 0.01


class _Gathered:
    """What one thread gathers: digests of its own indices, kept apart from every other thread's
    so that nothing the harness writes between two calls is shared between threads (on a
    free-threaded build a shared dict is a lock they would all wait on; under a race detector, an
    order between their calls). Merged once the threads are done."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self.data_digests: dict[str, str] = {}  # only where they differ from the full digest (exceptions in a result)
        self.values: dict[int, Any] = {}  # results kept for a serial read-back (probes with readback)
        self.deviated: set[str] = set()

    def record(self, i: int, value: Any) -> None:
        key, d = str(i), digest(value)
        held = self.digests.get(key)
        # Keep the first digest, or the first that differs from earlier rounds: any deviation
        # must reach the parent's comparison with the serial oracle.
        if held is None or (held != d and key not in self.deviated):
            if held is not None:
                self.deviated.add(key)
            self.digests[key] = d
            plain = digest(value, messages=False)
            if plain != d:
                self.data_digests[key] = plain
            else:
                self.data_digests.pop(key, None)


class _Share:
    """One worker's share of a trial as it runs: each thread's ``_Gathered`` (each index belongs
    to one thread), made one ``WorkerReport`` at the end."""

    def __init__(self, probe: Probe, trial: Trial, worker: int, tick: Callable[[int], None]) -> None:
        self.probe, self.trial, self.worker, self.tick = probe, trial, worker, tick
        self.gathered = [_Gathered() for _ in range(trial.threads)]
        self.merged = _Gathered()  # after the threads: their digests, then the read-back's
        self.errors: list[WorkerError] = []
        self.error_count = 0
        self.gil_enabled: bool | None = None
        self.reenabled_by: tuple[str, ...] = ()
        self.ctx: Any = None  # the probe's own context: whatever its open() returns
        self.keep_values = hasattr(probe, "readback")
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.cpu: list[float] = []
        self.queued: list[float] = []
        self.cpu_only = False
        self.done = [0] * trial.threads
        remedy = trial.remedy
        self.guard = threading.Lock() if remedy is not None and remedy.kind == RemedyKind.GLOBAL_LOCK else None
        # library_lock: every call into those libraries, here and in open(), holds their locks
        self.libraries = ([libguard.guard(name) for name in remedy.libraries]
                          if remedy is not None and remedy.kind == RemedyKind.LIBRARY_LOCK else [])
        self.opened: dict[str, int] = {}  # the libraries' calls made by open()
        self.deadline = trial.deadline
        self.marker = task_marker()

    def note(self, stage: Stage, exc: BaseException, index: int | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error_record(stage, exc, index))
        self.error_count += 1

    def report(self, **done: Any) -> WorkerReport:
        """What the worker writes back: what it gathered, with ``done``'s counts and clocks."""
        return WorkerReport(worker=self.worker, pid=os.getpid(), digests=self.merged.digests,
                            data_digests=self.merged.data_digests,
                            errors=tuple(self.errors), error_count=self.error_count, gil_enabled=self.gil_enabled,
                            gil_reenabled_by=self.reenabled_by, **done)

    def call(self, i: int) -> Any:
        if self.marker is not None:
            self.marker(1)
            try:
                return self.locked(i)
            finally:
                self.marker(0)
        return self.locked(i)

    def locked(self, i: int) -> Any:
        if self.guard is None:
            return self.probe.task(self.ctx, i)
        with self.guard:
            return self.probe.task(self.ctx, i)

    def body(self, thread: int) -> None:
        if self.trial.purpose == Purpose.TIMING:
            self.warm(thread)
        cpu0, queue0 = thread_clock()
        began = time.monotonic()
        mine, done, ticked, last = self.gathered[thread], 0, 0, began
        stop = began + self.deadline if self.deadline > 0 else float("inf")
        for _ in range(self.trial.rounds):
            for i in indices_for(self.trial, self.worker, thread):
                now = time.monotonic()
                if now > stop:  # a time-boxed trial (the race pass): calls made so far count
                    break
                if now - last >= TICK_EVERY:
                    self.tick(done - ticked)
                    ticked, last = done, now
                self.one(i, mine)
                done += 1
        self.tick(done - ticked)
        self.done[thread] = done
        self.starts.append(began)
        self.ends.append(time.monotonic())
        # Time this thread could run (on a CPU, or queued for one): threads that wait for a lock
        # or the GIL sleep instead, so the sum tells serialized threads from busy ones without
        # any sampling, and without mistaking a machine loaded by others for a lock.
        cpu1, queue1 = thread_clock()
        waited = queue1 - queue0 if queue0 is not None and queue1 is not None else 0.0
        self.cpu.append(cpu1 - cpu0 + waited)
        self.queued.append(waited)
        self.cpu_only = self.cpu_only or queue0 is None

    def warm(self, thread: int) -> None:
        """One task of this thread's share, untimed and not counted (its result is checked like the
        others'): a timing trial measures what a long run does, and a fresh worker's first calls pay
        what a long run pays once (the heap grown by page faults, which threads of one process take
        in turn; first-call imports). On 2 cores the PP wind probe's timing trials, cold, ran 11%
        (serial) and 14% (2 threads) slower than the same tasks in a warm process."""
        first = next(iter(indices_for(self.trial, self.worker, thread)), None)
        if first is not None:
            self.one(first, self.gathered[thread])

    def one(self, i: int, mine: _Gathered) -> None:
        try:
            value = self.call(i)
        except Exception as exc:
            self.note(Stage.TASK, exc, i)
            return
        if self.keep_values:
            mine.values[i] = value
        else:
            mine.record(i, value)

    def finish(self) -> WorkerReport:
        """The serial read-back, then close, then the report with the threads' timings and counts."""
        guarded: dict[str, int] = {}
        if self.libraries:  # the calls the tasks made under them (open's are not concurrent)
            counts = libguard.counts(self.libraries)
            guarded = {k: n - self.opened.get(k, 0) for k, n in counts.items() if n > self.opened.get(k, 0)}
        values: dict[int, Any] = {}
        for mine in self.gathered:  # each index belongs to one thread: the merge never overwrites
            self.merged.digests.update(mine.digests)
            self.merged.data_digests.update(mine.data_digests)
            values.update(mine.values)
        for i in sorted(values):
            try:
                self.merged.record(i, self.probe.readback(self.ctx, i, values[i]))  # type: ignore[attr-defined]
            except Exception as exc:
                self.note(Stage.READBACK, exc, i)
        try:
            self.probe.close(self.ctx)
        except Exception as exc:
            self.note(Stage.CLOSE, exc)
        return self.report(t_start=min(self.starts) if self.starts else None,
                           t_end=max(self.ends) if self.ends else None, tasks=sum(self.done), cpu=sum(self.cpu),
                           queued=sum(self.queued),  # runnable but waiting for a CPU: other load on the machine
                           cpu_only=self.cpu_only,  # no schedstat: run-queue waits could not be told apart
                           guarded=guarded)


def run_worker(
    probe: Probe,
    trial: Trial,
    worker: int,
    workdir: Path,
    ready: Callable[[], None] = lambda: None,
    wait_go: Callable[[], None] = lambda: None,
    tick: Callable[[int], None] = lambda n: None,
) -> WorkerReport:
    """Run this worker's share of ``trial`` and return its report (never raises for probe faults).
    The probe sees the trial's purpose in ``PURPOSE_ENV`` meanwhile (see ``Probe.timing_input``)."""
    before = os.environ.get(PURPOSE_ENV)
    os.environ[PURPOSE_ENV] = trial.purpose.value
    try:
        return _run_share(probe, trial, worker, workdir, ready, wait_go, tick)
    finally:
        if before is None:
            os.environ.pop(PURPOSE_ENV, None)
        else:
            os.environ[PURPOSE_ENV] = before


def _run_share(probe: Probe, trial: Trial, worker: int, workdir: Path, ready: Callable[[], None],
               wait_go: Callable[[], None], tick: Callable[[int], None]) -> WorkerReport:
    share = _Share(probe, trial, worker, tick)
    try:
        with gil.watching():  # open may import the library: a module that turns the GIL on is named
            share.ctx = probe.open(workdir)
    except Exception as exc:
        share.note(Stage.OPEN, exc)
        ready()
        return share.report()
    share.gil_enabled = gil.enabled()  # what the probe's imports left, before its tasks
    share.reenabled_by = tuple(gil.REENABLED_BY)
    share.opened = libguard.counts(share.libraries)
    ready()
    wait_go()
    run_together(trial.threads, share.body, trial.switch_interval, trial.jitter, trial.pin)
    return share.finish()

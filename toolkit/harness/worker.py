"""What one worker process does in a trial, inside that process.

It opens the probe's context, starts T threads behind a barrier with the trial's switch
interval (as pytest-run-parallel does, so that races get a chance), deals the task indices
out among them, digests every result, reads writes back serially, and returns a plain
``threadprobe.worker/1`` report. Process plumbing (forking, signals, files) is not here.

The trial arrives as a plain mapping (the JSON spec), so this runs under any interpreter.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from toolkit.harness.proc import name_thread
from toolkit.probe import Probe, digest

WORKER_SCHEMA = "threadprobe.worker/1"
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
                 pin: str | None = None) -> None:
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
            os.sched_setaffinity(0, {cores[0] if pin == "one" else cores[t % len(cores)]})
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


def indices_for(trial: Mapping[str, Any], worker: int, thread: int) -> range:
    """Task indices of one thread: ``i`` dealt round-robin over all P x T threads of the trial."""
    g = worker * trial["threads"] + thread
    return range(g, trial["iterations"], trial["processes"] * trial["threads"])


def error_record(stage: str, exc: BaseException, index: int | None = None) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "stage": stage,
        "index": index,
        "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        "message": str(exc)[:MAX_TEXT],
        "traceback": tb[-MAX_TEXT:],
        # A module that is not there: the probe is unavailable here, not failing.
        "missing": getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None,
    }


def run_worker(
    probe: Probe,
    trial: Mapping[str, Any],
    worker: int,
    workdir: Any,
    ready: Callable[[], None] = lambda: None,
    wait_go: Callable[[], None] = lambda: None,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Run this worker's share of ``trial`` and return its report (never raises for probe faults)."""
    report: dict[str, Any] = {
        "schema": WORKER_SCHEMA,
        "worker": worker,
        "pid": os.getpid(),
        "digests": {},
        "data_digests": {},  # only where they differ from the full digest (exceptions in a result)
        "errors": [],
        "tasks": 0,
        "t_start": None,
        "t_end": None,
        "cpu": None,
    }
    errors: list[dict[str, Any]] = report["errors"]

    def note(stage: str, exc: BaseException, index: int | None = None) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append(error_record(stage, exc, index))
        report["error_count"] = report.get("error_count", 0) + 1

    try:
        ctx = probe.open(workdir)
    except Exception as exc:
        note("open", exc)
        ready()
        return report
    ready()
    wait_go()

    keep_values = hasattr(probe, "readback")
    values: dict[int, Any] = {}
    digests: dict[str, str] = report["digests"]
    data: dict[str, str] = report["data_digests"]
    deviated: set[str] = set()
    starts: list[float] = []
    ends: list[float] = []
    cpu: list[float] = []
    queued: list[float] = []
    cpu_only = [False]
    done = [0] * trial["threads"]
    guard = threading.Lock() if trial.get("remedy") == "global_lock" else None

    def call(i: int) -> Any:
        if guard is None:
            return probe.task(ctx, i)
        with guard:
            return probe.task(ctx, i)

    def record(i: int, value: Any) -> None:
        # Each index belongs to one thread, so this check-then-set is not a race.
        key = str(i)
        d = digest(value)
        held = digests.get(key)
        # Keep the first digest, or the first that differs from earlier rounds: any deviation
        # must reach the parent's comparison with the serial oracle.
        if held is None or (held != d and key not in deviated):
            if held is not None:
                deviated.add(key)
            digests[key] = d
            plain = digest(value, messages=False)
            if plain != d:
                data[key] = plain
            else:
                data.pop(key, None)

    deadline = trial.get("deadline") or 0.0

    def body(thread: int) -> None:
        cpu0, queue0 = thread_clock()
        starts.append(time.monotonic())
        stop = starts[-1] + deadline if deadline > 0 else float("inf")
        for _ in range(trial.get("rounds", 1)):
            for i in indices_for(trial, worker, thread):
                if time.monotonic() > stop:  # a time-boxed trial (the race pass): calls made so far count
                    break
                try:
                    value = call(i)
                    if keep_values:
                        values[i] = value
                    else:
                        record(i, value)
                except Exception as exc:
                    note("task", exc, i)
                done[thread] += 1
                tick()
        ends.append(time.monotonic())
        # Time this thread could run (on a CPU, or queued for one): threads that wait for a lock
        # or the GIL sleep instead, so the sum tells serialized threads from busy ones without
        # any sampling, and without mistaking a machine loaded by others for a lock.
        cpu1, queue1 = thread_clock()
        waited = queue1 - queue0 if queue0 is not None and queue1 is not None else 0.0
        cpu.append(cpu1 - cpu0 + waited)
        queued.append(waited)
        if queue0 is None:
            cpu_only[0] = True

    run_together(trial["threads"], body, trial.get("switch_interval", 1e-6), trial.get("jitter", 0.0),
                 trial.get("pin"))
    report["t_start"] = min(starts) if starts else None
    report["t_end"] = max(ends) if ends else None
    report["tasks"] = sum(done)
    report["cpu"] = sum(cpu)
    report["queued"] = sum(queued)  # runnable but waiting for a CPU: other load on the machine
    report["cpu_only"] = cpu_only[0]  # no schedstat: run-queue waits could not be told apart

    if keep_values:
        for i in sorted(values):
            try:
                record(i, probe.readback(ctx, i, values[i]))  # type: ignore[attr-defined]
            except Exception as exc:
                note("readback", exc, i)
    try:
        probe.close(ctx)
    except Exception as exc:
        note("close", exc)
    return report

"""Run one trial (or a probe's ``prepare``) in fresh worker processes and gather a ``TrialRun``.

The parent turns whatever happens into data: a signal becomes a crash, silence past the
timeout becomes a hang (stacks taken with py-spy, else faulthandler, then the whole process
tree is killed). It never raises because a child died: a dead worker is a report, as in
pytest-xdist. Contention trials also sample the probe threads' states from /proc.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadprobe.harness.child import READY, SLOT
from threadprobe.harness.launch import HarnessError, Launcher
from threadprobe.harness.proc import capture_stacks, kill_tree, signal_name, tail, write_json_atomic
from threadprobe.harness.states import ThreadStates
from threadprobe.records import (Instrument, Job, Purpose, StackSource, Stage, Trial, TrialRun, WorkerError, WorkerReport, WorkerRun,
                                 WorkerSpec)


def _new_trial_dir(trial_dir: Path, processes: int) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "progress").write_bytes(b"\0" * SLOT.size * processes)
    go = trial_dir / "go"
    if not go.exists():
        os.mkfifo(go)


@dataclass(frozen=True)
class Launched:
    """What became of a launch's workers: pid and (exit code, CPU seconds) per worker, whether
    it hung (and then each silent worker's stacks), when the barrier let them go, and what went
    wrong in the harness itself."""

    pids: dict[int, int]
    codes: dict[int, tuple[int | None, float | None]]
    hung: bool = False
    stacks: dict[int, tuple[str, StackSource]] = field(default_factory=dict)
    released: float | None = None
    harness_error: str | None = None


class _Watch:
    """The parent's side of a running launch: exits collected, progress slots read, the barrier
    released once every worker is ready, and a hang declared after ``timeout`` of no change."""

    def __init__(self, launcher: Launcher, trial_dir: Path, processes: int, timeout: float, barrier: bool) -> None:
        self.launcher, self.trial_dir, self.processes, self.timeout = launcher, trial_dir, processes, timeout
        # Holding the FIFO open read-write means workers can open it without blocking, then block
        # in read() until the parent writes one byte per worker: a barrier across processes.
        self.go_fd = os.open(trial_dir / "go", os.O_RDWR | os.O_NONBLOCK) if barrier else -1
        progress_fd = os.open(trial_dir / "progress", os.O_RDONLY)
        self.progress = mmap.mmap(progress_fd, 0, prot=mmap.PROT_READ)
        os.close(progress_fd)
        self.pids: dict[int, int] = {}
        self.codes: dict[int, tuple[int | None, float | None]] = {}
        self.stacks: dict[int, tuple[str, StackSource]] = {}
        self.hung = False
        self.released: float | None = None
        self.pgid = 0

    def start(self, spec_path: Path) -> None:
        for worker in range(self.processes):
            pid = self.launcher.start(spec_path, worker, self.pgid)
            self.pgid = self.pgid or pid
            self.pids[worker] = pid

    def collect(self, wait: float) -> None:
        for pid, code in self.launcher.exits(wait).items():
            for worker, wpid in self.pids.items():
                if wpid == pid:
                    self.codes[worker] = code

    def wait(self, on_progress: Callable[[int], None] | None, on_start: Callable[[list[int]], None] | None) -> None:
        last_change, last_state = time.monotonic(), ()
        while len(self.codes) < len(self.pids):
            self.collect(0.005)
            slots = [SLOT.unpack_from(self.progress, w * SLOT.size) for w in range(self.processes)]
            state = tuple(x for slot in slots for x in slot) + (len(self.codes),)
            now = time.monotonic()
            if state != last_state:
                last_state, last_change = state, now
                if on_progress is not None:
                    on_progress(sum(slot[1] for slot in slots))
            if self.go_fd >= 0 and self.released is None and all(
                    slots[w][0] >= READY or w in self.codes for w in range(self.processes)):
                last_change = self.release(on_start)
            if now - last_change > self.timeout and len(self.codes) < len(self.pids):
                self.declare_hang()
                return

    def release(self, on_start: Callable[[list[int]], None] | None) -> float:
        os.write(self.go_fd, b"g" * self.processes)
        self.released = time.monotonic()
        if on_start is not None:
            on_start([self.pids[w] for w in range(self.processes) if w not in self.codes])
        return self.released

    def declare_hang(self) -> None:
        self.hung = True
        for worker, pid in self.pids.items():
            if worker not in self.codes:
                self.stacks[worker] = capture_stacks(pid, self.trial_dir / f"fault.{worker}")

    def reap(self) -> None:
        """Kill what is left (the whole process group), collect every exit, close the files."""
        kill_tree(list(self.pids.values()), self.pgid)
        deadline = time.monotonic() + 10.0
        while len(self.codes) < len(self.pids) and time.monotonic() < deadline:
            try:
                self.collect(0.05)
            except HarnessError:
                break
        for worker in self.pids:
            self.codes.setdefault(worker, (None, None))
        self.progress.close()
        if self.go_fd >= 0:
            os.close(self.go_fd)


def _launch_and_wait(
    launcher: Launcher,
    spec: WorkerSpec,
    trial_dir: Path,
    processes: int,
    timeout: float,
    barrier: bool,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[list[int]], None] | None = None,
) -> Launched:
    """Start ``processes`` workers, release them together, wait for them or declare a hang."""
    spec_path = trial_dir / "spec.json"
    write_json_atomic(spec_path, spec.to_json())
    watch = _Watch(launcher, trial_dir, processes, timeout, barrier)
    harness_error = None
    try:
        watch.start(spec_path)
        watch.wait(on_progress, on_start)
    except HarnessError as exc:
        harness_error = str(exc)
    finally:
        watch.reap()
    return Launched(watch.pids, watch.codes, watch.hung, watch.stacks, watch.released, harness_error)


def _worker_runs(launched: Launched, trial_dir: Path) -> tuple[list[WorkerRun], list[float], list[float]]:
    """Each worker's report (its result file, if it wrote one) and what became of it; the
    reported start and end times of the work."""
    workers, starts, ends = [], [], []
    for worker, pid in launched.pids.items():
        path = trial_dir / f"result.{worker}.json"
        report = WorkerReport.parse(path.read_text()) if path.exists() else None
        if report is not None and report.t_end is not None and report.t_start is not None:
            starts.append(report.t_start)
            ends.append(report.t_end)
        stack_text, source = launched.stacks.get(worker, (None, None))
        code, cpu = launched.codes.get(worker, (None, None))
        workers.append(WorkerRun(
            worker=worker, pid=pid, returncode=code, report=report, fault=tail(trial_dir / f"fault.{worker}"),
            output=tail(trial_dir / f"out.{worker}", 4000), stacks=stack_text, stack_source=source, cpu=cpu,
        ))
    return workers, starts, ends


def run_trial(
    trial: Trial,
    launcher: Launcher,
    workdir: Path,
    trial_dir: Path,
    plugins: Sequence[str] = (),
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[list[int]], None] | None = None,
    instruments: tuple[Instrument, ...] = (),
) -> TrialRun:
    """Run one trial in fresh worker processes, under ``instruments``, and gather what happened.
    Never raises for a child."""
    began = time.monotonic()
    _new_trial_dir(trial_dir, trial.processes)
    spec = WorkerSpec(Job.TRIAL, str(trial_dir), str(workdir), tuple(plugins), trial=trial, instruments=instruments)
    sampler = ThreadStates() if trial.purpose == Purpose.CONTENTION or trial.states else None

    def started(pids: list[int]) -> None:
        if sampler is not None:
            sampler.start(pids)
        if on_start is not None:
            on_start(pids)

    try:
        launched = _launch_and_wait(launcher, spec, trial_dir, trial.processes, trial.timeout, barrier=True,
                                    on_progress=on_progress, on_start=started)
    finally:
        states = sampler.stop() if sampler is not None else {}
        windows = tuple(sampler.windows) if sampler is not None else ()
        times = sampler.times if sampler is not None else {}
    workers, starts, ends = _worker_runs(launched, trial_dir)
    # Work time runs from the first worker's start to the last one's end (CLOCK_MONOTONIC is
    # system-wide), so the parent's polling latency does not count.
    seconds = (max(ends) - min(starts)) if (ends and not launched.hung) else None
    return TrialRun(trial, tuple(workers), launched.hung, seconds, launched.harness_error,
                    wall=time.monotonic() - began,
                    states=states, state_windows=windows, state_times=times, threads_at_fork=tuple(getattr(launcher, "threads_at_fork", ())),
                    folder=str(trial_dir))


def run_prepare(ref: str, launcher: Launcher, workdir: Path, job_dir: Path, plugins: Sequence[str] = (),
                timeout: float = 300.0) -> tuple[WorkerError, ...]:
    """Call a probe's ``prepare`` in a child. Returns its errors (none: prepared); a crash is one too."""
    _new_trial_dir(job_dir, 1)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = WorkerSpec(Job.PREPARE, str(job_dir), str(workdir), tuple(plugins), ref=ref)
    # prepare reports no progress, so the "no progress" timeout is simply its time limit.
    launched = _launch_and_wait(launcher, spec, job_dir, 1, timeout, barrier=False)
    path = job_dir / "result.0.json"
    report = WorkerReport.parse(path.read_text()) if path.exists() else None
    if report is not None:
        return report.errors
    code = launched.codes.get(0, (None, None))[0]
    why = (
        f"prepare did not finish within {timeout:.0f}s" if launched.hung
        else launched.harness_error or f"prepare died ({signal_name(code) or f'exit code {code}'})"
    )
    return (WorkerError(stage=Stage.PREPARE, error_type="PrepareFailed", message=why, traceback=tail(job_dir / "fault.0")),)

"""Run one trial (or a probe's ``prepare``) in fresh worker processes and gather a ``TrialRun``.

The parent turns whatever happens into data: a signal becomes a crash, silence past the
timeout becomes a hang (stacks taken with py-spy, else faulthandler, then the whole process
tree is killed). It never raises because a child died: a dead worker is a report, as in
pytest-xdist. Contention trials also sample the probe threads' states from /proc.
"""

from __future__ import annotations

import json
import mmap
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolkit.harness.child import READY, SLOT
from toolkit.harness.launch import HarnessError, Launcher
from toolkit.harness.proc import capture_stacks, kill_tree, signal_name, tail, write_json_atomic
from toolkit.harness.states import ThreadStates
from toolkit.records import TRIAL_SCHEMA, Purpose, Trial, TrialRun, WorkerRun


def _new_trial_dir(trial_dir: Path, processes: int) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "progress").write_bytes(b"\0" * SLOT.size * processes)
    go = trial_dir / "go"
    if not go.exists():
        os.mkfifo(go)


def _launch_and_wait(
    launcher: Launcher,
    spec: dict[str, Any],
    trial_dir: Path,
    processes: int,
    timeout: float,
    barrier: bool,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[list[int]], None] | None = None,
) -> tuple[dict[int, int], dict[int, tuple[int | None, float | None]], bool, dict[int, tuple[str, str]],
           float | None, str | None]:
    """Start ``processes`` workers, release them together, wait for them or declare a hang."""
    spec_path = trial_dir / "spec.json"
    write_json_atomic(spec_path, spec)
    # Holding the FIFO open read-write means workers can open it without blocking, then block
    # in read() until the parent writes one byte per worker: a barrier across processes.
    go_fd = os.open(trial_dir / "go", os.O_RDWR | os.O_NONBLOCK) if barrier else -1
    progress_fd = os.open(trial_dir / "progress", os.O_RDONLY)
    progress = mmap.mmap(progress_fd, 0, prot=mmap.PROT_READ)
    os.close(progress_fd)
    pids: dict[int, int] = {}
    codes: dict[int, tuple[int | None, float | None]] = {}
    stacks: dict[int, tuple[str, str]] = {}
    hung = False
    released: float | None = None
    harness_error = None
    pgid = 0

    def collect(got: dict[int, tuple[int, float | None]]) -> None:
        for pid, code in got.items():
            for worker, wpid in pids.items():
                if wpid == pid:
                    codes[worker] = code

    try:
        for worker in range(processes):
            pid = launcher.start(spec_path, worker, pgid)
            pgid = pgid or pid
            pids[worker] = pid
        last_change = time.monotonic()
        last_state: tuple[int, ...] = ()
        while len(codes) < len(pids):
            collect(launcher.exits(0.005))
            slots = [SLOT.unpack_from(progress, w * SLOT.size) for w in range(processes)]
            state = tuple(x for slot in slots for x in slot) + (len(codes),)
            now = time.monotonic()
            if state != last_state:
                last_state, last_change = state, now
                if on_progress is not None:
                    on_progress(sum(slot[1] for slot in slots))
            if barrier and released is None:
                if all(slots[w][0] >= READY or w in codes for w in range(processes)):
                    os.write(go_fd, b"g" * processes)
                    released = time.monotonic()
                    last_change = released
                    if on_start is not None:
                        on_start([pids[w] for w in range(processes) if w not in codes])
            if now - last_change > timeout and len(codes) < len(pids):
                hung = True
                for worker, pid in pids.items():
                    if worker not in codes:
                        stacks[worker] = capture_stacks(pid, trial_dir / f"fault.{worker}")
                break
    except HarnessError as exc:
        harness_error = str(exc)
    finally:
        kill_tree(list(pids.values()), pgid)
        deadline = time.monotonic() + 10.0
        while len(codes) < len(pids) and time.monotonic() < deadline:
            try:
                collect(launcher.exits(0.05))
            except HarnessError:
                break
        for worker in pids:
            codes.setdefault(worker, (None, None))
        progress.close()
        if go_fd >= 0:
            os.close(go_fd)
    return pids, codes, hung, stacks, released, harness_error


def run_trial(
    trial: Trial,
    launcher: Launcher,
    workdir: Path,
    trial_dir: Path,
    plugins: Sequence[str] = (),
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[list[int]], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> TrialRun:
    """Run one trial in fresh worker processes and gather what happened. Never raises for a child.

    ``extra`` adds to the worker's spec: ``core`` (allow core dumps, for gdb) or ``instrument``
    (``iris_lock_audit``: run under toolkit.lockaudit).
    """
    began = time.monotonic()
    _new_trial_dir(trial_dir, trial.processes)
    spec = {
        "schema": TRIAL_SCHEMA,
        "stage": "trial",
        "trial": trial.to_json(),
        "trial_dir": str(trial_dir),
        "workdir": str(workdir),
        "plugins": list(plugins),
        **(extra or {}),
    }
    sampler = ThreadStates() if trial.purpose == Purpose.CONTENTION or trial.states else None

    def started(pids: list[int]) -> None:
        if sampler is not None:
            sampler.start(pids)
        if on_start is not None:
            on_start(pids)

    try:
        pids, codes, hung, stacks, _, harness_error = _launch_and_wait(
            launcher, spec, trial_dir, trial.processes, trial.timeout, barrier=True,
            on_progress=on_progress, on_start=started,
        )
    finally:
        states = sampler.stop() if sampler is not None else {}
        windows = tuple(sampler.windows) if sampler is not None else ()
    workers = []
    starts, ends = [], []
    for worker, pid in pids.items():
        report = None
        path = trial_dir / f"result.{worker}.json"
        if path.exists():
            try:
                report = json.loads(path.read_text())
            except ValueError:
                report = None
        if report and report.get("t_end") is not None and report.get("t_start") is not None:
            starts.append(report["t_start"])
            ends.append(report["t_end"])
        stack_text, source = stacks.get(worker, (None, None))
        code, cpu = codes.get(worker, (None, None))
        workers.append(WorkerRun(
            worker=worker, pid=pid, returncode=code, report=report, fault=tail(trial_dir / f"fault.{worker}"),
            output=tail(trial_dir / f"out.{worker}", 4000), stacks=stack_text, stack_source=source, cpu=cpu,
        ))
    # Work time runs from the first worker's start to the last one's end (CLOCK_MONOTONIC is
    # system-wide), so the parent's polling latency does not count.
    seconds = (max(ends) - min(starts)) if (ends and not hung) else None
    return TrialRun(trial, tuple(workers), hung, seconds, harness_error, wall=time.monotonic() - began,
                    states=states, state_windows=windows, threads_at_fork=tuple(getattr(launcher, "threads_at_fork", ())),
                    folder=str(trial_dir))


def run_prepare(ref: str, launcher: Launcher, workdir: Path, job_dir: Path, plugins: Sequence[str] = (),
                timeout: float = 300.0) -> dict[str, Any]:
    """Call a probe's ``prepare`` in a child. Returns ``{"errors": [...]}``; a crash is an error too."""
    _new_trial_dir(job_dir, 1)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {"stage": "prepare", "ref": ref, "trial_dir": str(job_dir), "workdir": str(workdir),
            "plugins": list(plugins)}
    # prepare reports no progress, so the "no progress" timeout is simply its time limit.
    _, codes, hung, _, _, harness_error = _launch_and_wait(launcher, spec, job_dir, 1, timeout, barrier=False)
    path = job_dir / "result.0.json"
    if path.exists():
        return json.loads(path.read_text())
    code = codes.get(0, (None, None))[0]
    why = (
        f"prepare did not finish within {timeout:.0f}s" if hung
        else harness_error or f"prepare died ({signal_name(code) or f'exit code {code}'})"
    )
    fault = tail(job_dir / "fault.0")
    return {"errors": [{"stage": "prepare", "error_type": "PrepareFailed", "message": why, "traceback": fault}]}

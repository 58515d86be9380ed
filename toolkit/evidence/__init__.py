"""Evidence a user can act on, gathered after the trials, with the same probes and fork servers.

- **Reproducers**: a plain script per unsafe probe that has a reproducer (``reports/repro/``).
- **Native frames** of a crash: one more trial with core dumps allowed; gdb reads the crashing
  thread's backtrace from the core (first crashing probe of each dependency).
- **Where lock-bound threads wait**: a trial sampled with py-spy's native stacks (first
  lock-bound probe of each dependency), named in the contention evidence.
- **Lock coverage audit** of Iris's netCDF lock: the Iris netCDF probes run once, serially,
  under ``threadprobe.harness.instruments.lockaudit``, counting netCDF4 calls made without the lock, by caller.
- **Remedies** (``threadprobe.evidence.remedies``): the narrowest lock that makes the widest
  failing threads mode safe, a lock around one library before one global lock, verified by
  stress trials (first failing probe of each dependency, or all with ``remedies="all"``); its
  verdict and speedup stand next to the processes mode, the other remedy.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from threadprobe.diagnosis import plan
from threadprobe.evidence import remedies, repro
from threadprobe.diagnosis.diagnose import Diagnoser, ProbeRun
from threadprobe.diagnosis.options import EvidenceOptions
from threadprobe.records import (AuditTally, Contention, Evidence, GilState, Instrument, Kind, LockAudit, Mode, Purpose, RemedySearch,
                             Result, Verdict, unsafe_results)
from threadprobe.harness.instruments.contention import StackSampler

NATIVE_ATTEMPTS = 3
AUDITED_MODULES = ("threadprobe.probes.iris_netcdf",)


def to_reproduce(results: Sequence[Result]) -> dict[str, Result]:
    """Per probe, the failing result to reproduce: threads before processes, most failures first."""
    picked: dict[str, Result] = {}
    for r in unsafe_results(results):
        key = (r.mode == Mode.THREADS, r.failed_trials, r.workers)
        best = picked.get(r.probe)
        if best is None or key > (best.mode == Mode.THREADS, best.failed_trials, best.workers):
            picked[r.probe] = r
    return picked


def first_per_dependency(results: dict[str, Result]) -> list[Result]:
    seen: set[str] = set()
    out = []
    for name in sorted(results):
        r = results[name]
        if r.dependency not in seen:
            seen.add(r.dependency)
            out.append(r)
    return out


def gdb_backtrace(core: Path, executable: str) -> str | None:
    gdb = shutil.which("gdb")
    if gdb is None:
        return None
    try:
        done = subprocess.run([gdb, "-q", "-batch", "-ex", "bt 40", os.path.realpath(executable), str(core)],
                              capture_output=True, text=True, timeout=120)
    except (subprocess.TimeoutExpired, OSError):
        return None
    frames = [line for line in done.stdout.splitlines() if line.startswith("#")]
    # faulthandler re-raises the signal from its handler: the frames above "<signal handler
    # called>" are that re-raise, and the crash itself starts below it.
    for k, line in enumerate(frames):
        if "<signal handler called>" in line:
            frames = frames[k + 1:]
            break
    return "\n".join(frames) or None


def native_frames(session: Diagnoser, run: ProbeRun, result: Result) -> str | None:
    """Crash the probe once more with core dumps on, and let gdb read the crashing thread."""
    cell = plan.Cell(result.mode, result.processes, result.threads, result.gil)
    executable = session.options.launch.python or sys.executable
    request = plan.Request(run.name, cell, Purpose.NATIVE, plan.calibrate(run.state().oracle, 0.2),
                           plan.STRESS_SWITCH_INTERVAL)
    for _ in range(NATIVE_ATTEMPTS):
        got, _ = session.trial(run, request, instruments=(Instrument.CORE_DUMPS,), record=False)
        cores = sorted(Path(got.folder).glob("core*"))
        try:
            if cores and any(w.signal for w in got.workers):
                return gdb_backtrace(cores[-1], executable)
        finally:
            for core in cores:
                core.unlink(missing_ok=True)
    return None


def attach_native(results: list[Result], crashed: Result, text: str) -> list[Result]:
    out = []
    for r in results:
        if (r.probe, r.mode, r.workers, r.gil) == (crashed.probe, crashed.mode, crashed.workers, crashed.gil) \
                and r.remedy is None:
            evidence = list(r.safety.evidence)
            for k, ev in enumerate(evidence):
                if ev.kind == Kind.CRASH.value:
                    evidence[k] = dataclasses.replace(ev, native=text)
                    break
            r = r.replace(safety=r.safety.replace(evidence=tuple(evidence)))
        out.append(r)
    return out


def where_waiting(session: Diagnoser, run: ProbeRun, state: GilState) -> dict[str, int]:
    """py-spy's view of where the probe's threads wait with the GIL free (a longer trial: each
    native sample pauses the worker)."""
    sampler = StackSampler()
    if not sampler.available:
        return {}
    where = plan.contention_cell(run.state(), session.policy, state) or plan.Cell(Mode.THREADS, 1, 4, state)
    request = plan.Request(run.name, where, Purpose.ATTRIBUTION, 4 * plan.calibrate(run.state().oracle, 0.15))
    session.trial(run, request, on_start=sampler.start, record=False)
    return sampler.stop()[1]


def lock_audit(session: Diagnoser, run: ProbeRun) -> LockAudit | None:
    """One serial trial of an Iris netCDF probe under the lock audit."""
    got, _ = session.trial(run, plan.Request(run.name, run.serial, Purpose.AUDIT), record=False,
                           instruments=(Instrument.IRIS_LOCK_AUDIT,))
    report = got.workers[0].report
    stages = report.audit if report is not None else None
    if report is None or stages is None:
        return None
    tasks, opened = stages.get("tasks", AuditTally()), stages.get("open", AuditTally())
    return LockAudit(
        probe=run.name,
        lock="iris.fileformats.netcdf._thread_safe_nc._GLOBAL_NETCDF4_LOCK",
        tasks=report.tasks,
        # What the probe's tasks do concurrently: the figure that decides thread safety.
        calls=tasks.calls,
        unlocked=tasks.unlocked,
        unlocked_by_caller=tasks.unlocked_by_caller[:25],
        # What open() does once per worker (e.g. the metadata load before lazy realisation).
        open_calls=opened.calls,
        open_unlocked=opened.unlocked,
    )


@dataclass(frozen=True)
class Bundle:
    """What the evidence adds to the verdicts: the results again (with native frames and py-spy's
    waits attached), reproducer paths by probe, remedies verified, and the lock audit."""

    results: tuple[Result, ...]
    repro: dict[str, str] = field(default_factory=dict)
    remedies: tuple[Result, ...] = ()
    lock_audit: tuple[LockAudit, ...] = ()


def gather(session: Diagnoser, results: list[Result], asked: EvidenceOptions = EvidenceOptions(),
           out: str | None = None) -> Bundle:
    """Everything beyond the verdicts that ``asked`` wants, as one bundle (see ``Bundle``); reproducer
    scripts go to ``out``/repro."""
    progress = session.progress
    by_name = {run.name: run for run in session.probes}
    unsafe = to_reproduce(results)
    scripts: dict[str, str] = {}
    verified: list[Result] = []
    audits: list[LockAudit] = []

    if out:
        folder = Path(out) / "repro"
        for name, r in sorted(unsafe.items()):
            path = repro.write(r, by_name[name].info.ref, by_name[name].iterations, folder)
            if path is not None:
                scripts[name] = str(path.relative_to(out))
    if session.options.grid.quick:
        return Bundle(tuple(results), scripts)

    for r in first_per_dependency({n: r for n, r in unsafe.items() if r.verdict == Verdict.CRASH}):
        progress.note(f"native frames of the {r.probe} crash (core dump + gdb)")
        text = native_frames(session, by_name[r.probe], r)
        if text:
            results = attach_native(results, r, text)

    if asked.attribute:
        lock_bound = {f"{r.probe} {r.gil}": r for r in results
                      if r.contention.kind == Contention.LIBRARY_LOCK and r.remedy is None}
        for r in first_per_dependency(lock_bound):
            progress.note(f"where {r.probe}'s threads wait (py-spy)")
            waits = where_waiting(session, by_name[r.probe], r.gil)
            if waits:
                by_name[r.probe].waits[r.gil] = waits
                lines = tuple(f"py-spy: idle with the GIL free in {frame} ({n} samples)"
                              for frame, n in sorted(waits.items(), key=lambda kv: -kv[1])[:3])
                results = [x.replace(contention=x.contention.replace(evidence=x.contention.evidence + lines))
                           if x.probe == r.probe and x.mode == Mode.THREADS and x.gil == r.gil and x.remedy is None
                           else x for x in results]

    for run in session.probes:
        if run.failed is None and run.oracle is not None and run.info.ref.rpartition(":")[0] in AUDITED_MODULES:
            progress.note(f"lock coverage audit: {run.name}")
            audit = lock_audit(session, run)
            if audit is not None:
                audits.append(audit)

    if asked.remedies != RemedySearch.NONE:
        every = asked.remedies == RemedySearch.ALL
        chosen = remedies.to_remedy(results, every=every)
        for r in chosen:
            verified.extend(remedies.search(session, by_name[r.probe], r, every, progress.note))
        for probe in dict.fromkeys(r.probe for r in chosen):
            verified.extend(remedies.processes(results, probe))
    return Bundle(tuple(results), scripts, tuple(verified), tuple(audits))


__all__ = ["Bundle", "gather", "to_reproduce", "first_per_dependency", "Evidence"]

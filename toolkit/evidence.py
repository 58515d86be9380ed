"""Evidence a user can act on, gathered after the trials.

- **Reproducers**: a standalone script per unsafe probe (``reports/repro/<probe>.py``).
- **Native frames** of a crash: one more trial with core dumps allowed; gdb reads the crashing
  thread's backtrace from the core (first crashing probe of each dependency).
- **Lock coverage audit** of Iris's netCDF lock: the Iris netCDF probes run once, serially,
  under ``toolkit.lockaudit``, counting netCDF4 calls made without the lock, by caller.
- **Remedies**: the widest failing threads mode re-run with one global lock around every task
  (first failing probe of each dependency, or all with ``remedies="all"``); its verdict and
  throughput stand next to the processes mode, the other remedy.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import detect, isolation, registry, repro
from toolkit.records import UNSAFE, Result, Trial

if TYPE_CHECKING:
    from toolkit.diagnose import Launchers, Options, ProbeRun
    from toolkit.progress import Progress

NATIVE_ATTEMPTS = 3
AUDITED_MODULES = ("probes.iris_netcdf",)


def unsafe_results(results: Sequence[Result]) -> dict[str, Result]:
    """Per probe, the failing result to reproduce: threads before processes, most failures first."""
    serial_error = {r.probe for r in results if r.mode == "serial" and r.verdict == "error" and r.remedy is None}
    picked: dict[str, Result] = {}
    for r in results:
        if r.remedy is not None or r.mode == "serial":
            continue
        failing = r.verdict in UNSAFE or (r.verdict == "error" and r.probe not in serial_error)
        if not failing:
            continue
        key = (r.mode == "threads", r.trials - r.outcomes.get("ok", 0), r.workers)
        best = picked.get(r.probe)
        if best is None or key > (best.mode == "threads", best.trials - best.outcomes.get("ok", 0), best.workers):
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


def gdb_backtrace(core: Path) -> str | None:
    gdb = shutil.which("gdb")
    if gdb is None:
        return None
    try:
        done = subprocess.run(
            [gdb, "-q", "-batch", "-ex", "bt 40", os.path.realpath(sys.executable), str(core)],
            capture_output=True, text=True, timeout=120,
        )
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


def native_frames(run: ProbeRun, result: Result, options: Options, root: Path,
                  launchers: Launchers) -> str | None:
    """Crash the probe once more with core dumps on, and let gdb read the crashing thread."""
    launcher = launchers.get(run.info, registry.load(run.info.ref).preload)
    try:
        for attempt in range(NATIVE_ATTEMPTS):
            trial = Trial(result.probe, run.info.ref, result.mode, result.processes, result.threads, run.iterations,
                          index=attempt, timeout=options.timeout, purpose="stress")
            tdir = root / "jobs" / f"{repro.safe(result.probe)}-native-{attempt}"
            got = isolation.run_trial(trial, launcher, root / "work" / repro.safe(result.probe), tdir,
                                      options.plugins, extra={"core": True})
            cores = sorted(tdir.glob("core*"))
            try:
                if cores and any(w.signal for w in got.workers):
                    return gdb_backtrace(cores[0])
            finally:
                for core in cores:
                    core.unlink(missing_ok=True)
    finally:
        launcher.close()
    return None


def attach_native(results: list[Result], probe: str, mode: str, workers: int, text: str) -> list[Result]:
    out = []
    for r in results:
        if r.probe == probe and r.mode == mode and r.workers == workers and r.remedy is None:
            evidence = list(r.evidence)
            for k, ev in enumerate(evidence):
                if ev.kind == "crash":
                    evidence[k] = dataclasses.replace(ev, native=text)
                    break
            r = r.replace(evidence=tuple(evidence))
        out.append(r)
    return out


def lock_audit(run: ProbeRun, options: Options, root: Path, launchers: Launchers) -> dict[str, Any] | None:
    """One serial trial of an Iris netCDF probe under the lock audit."""
    launcher = launchers.get(run.info, registry.load(run.info.ref).preload)
    try:
        trial = Trial(run.info.name, run.info.ref, "serial", 1, 1, run.iterations, timeout=options.timeout,
                      purpose="audit")
        got = isolation.run_trial(trial, launcher, root / "work" / repro.safe(run.info.name),
                                  root / "jobs" / f"{repro.safe(run.info.name)}-audit", options.plugins,
                                  extra={"instrument": "iris_lock_audit"})
    finally:
        launcher.close()
    report = got.workers[0].report or {}
    stages = report.get("audit")
    if stages is None:
        return None
    tasks = stages.get("tasks", {"calls": 0, "unlocked": 0, "unlocked_by_caller": []})
    opened = stages.get("open", {"calls": 0, "unlocked": 0, "unlocked_by_caller": []})
    return {
        "probe": run.info.name,
        "lock": "iris.fileformats.netcdf._thread_safe_nc._GLOBAL_NETCDF4_LOCK",
        "tasks": report.get("tasks", 0),
        # What the probe's tasks do concurrently: the figure that decides thread safety.
        "calls": tasks["calls"],
        "unlocked": tasks["unlocked"],
        "unlocked_by_caller": tasks["unlocked_by_caller"][:25],
        # What open() does once per worker (e.g. the metadata load before lazy realisation).
        "open_calls": opened["calls"],
        "open_unlocked": opened["unlocked"],
    }


def remedy(run: ProbeRun, result: Result, options: Options, root: Path, progress: Progress,
           launchers: Launchers) -> list[Result]:
    """Re-run the failing threads mode with one process-wide lock around every task."""
    from toolkit.diagnose import diagnose_probe

    modes = [("serial", 1, 1), ("threads", 1, result.threads)]
    redo = diagnose_probe(run.info, options, root, None, progress, [0], launchers, remedy="global_lock",
                          modes=modes)
    return detect.add_scaling(redo.results, os.cpu_count() or 1)


def gather(runs: Sequence[ProbeRun], results: list[Result], options: Options, root: Path,
           progress: Progress, launchers: Launchers) -> dict[str, Any]:
    """Everything beyond the verdicts. Returns results (with native frames attached) and extras."""
    by_name = {run.info.name: run for run in runs}
    unsafe = unsafe_results(results)
    extras: dict[str, Any] = {"repro": {}, "remedies": [], "lock_audit": []}

    if options.out:
        folder = Path(options.out) / "repro"
        for name, r in sorted(unsafe.items()):
            path = repro.write(r, by_name[name].info.ref, by_name[name].iterations, folder, timeout=options.timeout * 3)
            extras["repro"][name] = str(path.relative_to(options.out))

    if not options.quick:
        for r in first_per_dependency({n: r for n, r in unsafe.items() if r.verdict == "crash"}):
            progress.note(f"native frames of the {r.probe} crash (core dump + gdb)")
            text = native_frames(by_name[r.probe], r, options, root, launchers)
            if text:
                results = attach_native(results, r.probe, r.mode, r.workers, text)

        for run in runs:
            if run.info.available and run.info.ref.rpartition(":")[0] in AUDITED_MODULES and run.oracle is not None:
                progress.note(f"lock coverage audit: {run.info.name}")
                audit = lock_audit(run, options, root, launchers)
                if audit is not None:
                    extras["lock_audit"].append(audit)

        threads_unsafe = {n: r for n, r in unsafe.items() if r.mode == "threads"}
        chosen = list(threads_unsafe.values()) if options.remedies == "all" else first_per_dependency(threads_unsafe)
        if options.remedies != "none":
            for r in chosen:
                progress.note(f"verifying a remedy for {r.probe}: one global lock around every task")
                fixed = remedy(by_name[r.probe], r, options, root, progress, launchers)
                extras["remedies"].extend(x for x in fixed if x.mode == "threads")
                extras["remedies"].extend(
                    x.replace(remedy="processes") for x in results
                    if x.probe == r.probe and x.mode == "processes" and x.remedy is None
                )
    extras["results"] = results
    return extras


def remedy_summary(remedies: Sequence[Result]) -> list[str]:
    """One line per probe: which remedy made it safe, and at what speed."""
    lines = []
    by_probe: dict[str, dict[str, Result]] = {}
    for r in remedies:
        by_probe.setdefault(r.probe, {})[r.remedy or ""] = r
    for probe, got in sorted(by_probe.items()):
        parts = []
        for name in ("global_lock", "processes"):
            r = got.get(name)
            if r is None:
                continue
            speed = f", speedup x{r.speedup:.2f}" if r.speedup is not None else ""
            label = "one global lock" if name == "global_lock" else f"{r.workers} processes"
            parts.append(f"{label}: {r.verdict} (bound {r.failure_rate_upper95:.0%}{speed})")
        lines.append(f"{probe}: " + "; ".join(parts))
    return lines


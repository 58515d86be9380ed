"""Which dask scheduler a workload should run on: safe first, then fast.

``choose`` is a pure function of the diagnosis results, the workload and the machine:

- **Safety**: a mode is a candidate only if every probe the workload declares (the operations it
  runs concurrently) is safe in it; a probe with no result is no evidence, so only the serial
  scheduler survives without one. A threads mode made safe by a verified remedy (one global lock)
  is a candidate too, and the run must then hold that lock.
- **Speed**: among the safe candidates, the best measured speedup of the slowest declared
  operation wins, with workers capped by the machine's cores and memory; if nothing beats
  serial by 10%, the answer is the synchronous scheduler.

``recommend`` adds the I/O: it reuses ``reports/diagnosis.json`` when its fingerprint still
matches the installed libraries (well under a second), and otherwise diagnoses only the
workload's probes, quickly, and says so. ``scheduler`` applies a recommendation to dask.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.records import UNSAFE, Diagnosis, Recommendation, Result
from toolkit.workloads import WORKLOADS, Workload

MIN_GAIN = 1.1  # a concurrent scheduler must beat serial by this much to be worth its overhead
#: Probes in processes mode move no data between processes, but a process-based dask scheduler
#: must (the wind workload needs each u chunk beside its v chunk): measured on this machine with
#: 1 GB of wind data, distributed ran 1.5x (netCDF) to 3.4x (PP) slower than threads although the
#: probes gave processes up to 1.3x the threads speedup. So threads that are safe win unless
#: processes measure more than 1/0.75 = 1.33 times faster.
SHARED_MEMORY_MARGIN = 0.75
DEFAULT_DIAGNOSIS = Path("reports/diagnosis.json")


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_gb: float

    @classmethod
    def here(cls) -> Machine:
        try:
            import psutil

            memory = psutil.virtual_memory().total / 2**30
        except Exception:
            memory = 4.0
        return cls(os.cpu_count() or 1, memory)


@dataclass(frozen=True)
class Candidate:
    scheduler: str
    mode: str
    n_workers: int
    threads_per_worker: int
    speedup: float
    locks: tuple[str, ...] = ()


def _safe(r: Result, serial_errors: set[str]) -> bool:
    if r.verdict == "safe":
        return True
    return r.verdict == "error" and r.probe in serial_errors  # broken everywhere: not a concurrency issue


def _line(r: Result) -> str:
    mode = "serial" if r.mode == "serial" else f"{r.mode} {r.workers}"
    speed = f", speedup x{r.speedup:.2f}" if r.speedup is not None else ""
    bound = f" (failure bound {r.failure_rate_upper95:.0%})" if r.verdict == "safe" else ""
    lock = " with one global lock" if r.remedy == "global_lock" else ""
    contention = f", contention {r.contention}" if r.contention and r.contention != "none" else ""
    return f"{r.probe}: {mode}{lock} {r.verdict}{bound}{speed}{contention}"


def choose(results: Sequence[Result], workload: Workload, machine: Machine, fmt: str | None = None,
           remedies: Sequence[Result] = (), serial_seconds: float | None = None,
           startup: dict[str, float] | None = None) -> Recommendation:
    """The recommendation for ``workload`` from diagnosis results. Pure: no I/O.

    With ``serial_seconds`` (the run's expected serial duration) and ``startup`` (each
    scheduler's measured start-up cost), a short run weighs start-up against speedup.
    """
    declared = workload.probes_for(fmt)
    mine = [r for r in results if r.probe in declared and r.remedy is None]
    present = {r.probe for r in mine}
    missing = [p for p in declared if p not in present or all(r.verdict == "unavailable" for r in mine if r.probe == p)]
    rationale: list[str] = [f"workload {workload.name}: {workload.description}"]
    rationale += [f"  {_line(r)}" for r in mine if r.verdict != "unavailable"]
    if missing:
        rationale.append(f"  no evidence for {', '.join(missing)}: only the synchronous scheduler is known safe")

    serial_errors = {r.probe for r in mine if r.mode == "serial" and r.verdict == "error"}
    memory_cap = max(1, int(machine.memory_gb // workload.memory_per_worker_gb))
    candidates: list[Candidate] = [Candidate("synchronous", "serial", 1, 1, 1.0)]
    if not missing and declared:
        by_mode: dict[tuple[str, int], list[Result]] = {}
        for r in mine:
            if r.mode != "serial":
                by_mode.setdefault((r.mode, r.workers), []).append(r)
        for (mode, workers), rs in sorted(by_mode.items()):
            if {r.probe for r in rs} != set(declared) or not all(_safe(r, serial_errors) for r in rs):
                continue
            speed = min((r.speedup for r in rs if r.speedup is not None), default=None)
            if speed is None:
                continue
            if mode == "threads":
                candidates.append(Candidate("threads", mode, 1, min(workers, 4 * machine.cores), speed))
            else:
                n = min(workers, machine.cores, memory_cap)
                candidates.append(Candidate(workload.process_scheduler, mode, n, 1, speed))
        for r in remedies:  # threads made safe by one global lock: a candidate that must hold it
            if r.probe in declared and r.remedy == "global_lock" and r.verdict == "safe" and r.speedup is not None \
                    and len(declared) == 1:
                candidates.append(Candidate("threads", "threads", 1, r.workers, r.speedup,
                                            locks=(f"one process-wide lock around every {r.dependency} call",)))
                rationale.append(f"  {_line(r)}")

    best = max(candidates, key=lambda c: (c.speedup, -c.n_workers * c.threads_per_worker))
    threads = [c for c in candidates if c.scheduler == "threads" and not c.locks]
    if threads and best.mode == "processes":
        fastest_threads = max(threads, key=lambda c: (c.speedup, -c.threads_per_worker))
        if fastest_threads.speedup >= MIN_GAIN and fastest_threads.speedup >= SHARED_MEMORY_MARGIN * best.speedup:
            rationale.append(f"threads (x{fastest_threads.speedup:.2f}) are within {1 / SHARED_MEMORY_MARGIN:.2f}x of "
                             f"processes (x{best.speedup:.2f}): shared memory wins, since process schedulers also "
                             "move chunks between processes, which the probes do not measure")
            best = fastest_threads
    if serial_seconds is not None and startup and best.scheduler != "synchronous":
        def expected(c: Candidate) -> float:
            return startup.get(c.scheduler, 0.0) + serial_seconds / c.speedup

        quickest = min((c for c in candidates if c.scheduler == "synchronous" or c is best), key=expected)
        if quickest is not best:
            rationale.append(f"the run is short (~{serial_seconds:.1f} s of serial work): {best.scheduler} would take "
                             f"~{expected(best):.1f} s with its start-up ({startup.get(best.scheduler, 0):.1f} s "
                             f"measured), synchronous ~{serial_seconds:.1f} s")
            best = quickest
    if best.scheduler != "synchronous" and best.speedup < MIN_GAIN:
        rationale.append(f"best safe concurrent mode ({best.mode} x{best.n_workers * best.threads_per_worker}) "
                         f"gains only x{best.speedup:.2f} over serial (< x{MIN_GAIN}): synchronous")
        best = candidates[0]
    elif best.scheduler == "synchronous":
        rationale.append("no concurrent mode is both safe and faster than serial: synchronous")
    else:
        rationale.append(f"chose {best.scheduler} with {best.n_workers} worker(s) x {best.threads_per_worker} "
                         f"thread(s): the fastest safe mode ({best.mode}, speedup x{best.speedup:.2f} vs serial) "
                         f"on {machine.cores} cores, {machine.memory_gb:.0f} GiB")
    unsafe_modes = sorted({f"{r.mode} {r.workers}" for r in mine if r.verdict in UNSAFE})
    if unsafe_modes:
        rationale.append(f"excluded as unsafe: {', '.join(unsafe_modes)}")
    return Recommendation(
        workload=workload.name,
        scheduler=best.scheduler,
        n_workers=best.n_workers,
        threads_per_worker=best.threads_per_worker,
        locks=best.locks,
        rationale=tuple(rationale),
    )


def for_diagnosis(diagnosis: Diagnosis, machine: Machine | None = None) -> dict[str, Recommendation]:
    """A recommendation per workload, for embedding in the diagnosis report."""
    machine = machine or Machine.here()
    return {name: choose(diagnosis.results, wl, machine, remedies=diagnosis.remedies) for name, wl in WORKLOADS.items()}


def startup_of(diagnosis: Diagnosis) -> dict[str, float] | None:
    value = diagnosis.config.get("startup_seconds") if isinstance(diagnosis.config, dict) else None
    return value if isinstance(value, dict) else None


def workload(name: str) -> Workload:
    from toolkit.errors import UsageError

    if name not in WORKLOADS:
        raise UsageError(f"unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    return WORKLOADS[name]


def recommend(workload_name: str = "wind", diagnosis: str | Path | Diagnosis | None = None, fmt: str | None = None,
              machine: Machine | None = None, probe_budget: float = 45.0, progress: Any = None,
              serial_seconds: float | None = None) -> Recommendation:
    """The recommendation for a workload, from a matching diagnosis or from a quick one."""
    from toolkit import fingerprint, report

    wl = workload(workload_name)
    machine = machine or Machine.here()
    why_not = ""
    diag: Diagnosis | None = None
    if isinstance(diagnosis, Diagnosis):
        diag, source = diagnosis, "diagnosis"
    else:
        path = Path(diagnosis) if diagnosis else DEFAULT_DIAGNOSIS
        source = f"diagnosis {path}"
        if path.exists():
            diag = report.read(path)
            ok, why = fingerprint.matches(diag.fingerprint)
            if not ok:
                why_not = f"{path} was made with other libraries ({'; '.join(why[:3])})"
                diag = None
        elif diagnosis:
            from toolkit.errors import UsageError

            raise UsageError(f"no such diagnosis: {path}")
        else:
            why_not = f"no {path}"
    if diag is not None:
        covered = {r.probe for r in diag.results}
        if not set(wl.probes_for(fmt)) <= covered:
            why_not = f"{source} does not cover {', '.join(sorted(set(wl.probes_for(fmt)) - covered))}"
            diag = None
    if diag is None:
        diag = quick_diagnosis(wl, fmt, probe_budget, progress)
        source = f"quick diagnosis of {', '.join(wl.probes_for(fmt))} ({why_not})"
    startup = startup_of(diag)
    if startup is None and serial_seconds is not None:
        from toolkit.runner.schedulers import measure_startup

        startup = measure_startup()
    rec = choose(diag.results, wl, machine, fmt, diag.remedies, serial_seconds, startup)
    return rec.replace(source=source)


def quick_diagnosis(wl: Workload, fmt: str | None, budget: float, progress: Any = None) -> Diagnosis:
    """Only the workload's probes: a timing pass for speed and a few stress trials for safety."""
    from toolkit import fingerprint
    from toolkit.diagnose import Options, diagnose

    cores = os.cpu_count() or 1
    options = Options(probes=wl.probes_for(fmt), threads=tuple(sorted({2, cores})), processes=(cores,), trials=2,
                      timing_trials=2, evidence=False, budget=budget)
    return diagnose(options, progress=progress, fingerprint=fingerprint.light)


# --------------------------------------------------------------------------------------------
# Output formats and application to dask


def as_dask_config(rec: Recommendation) -> dict[str, Any]:
    """Dask configuration: ``scheduler``/``num_workers`` for the local schedulers, and the whole
    recommendation under ``threadprobe`` (the runner reads it to size a distributed cluster)."""
    config: dict[str, Any] = {"threadprobe": {
        "workload": rec.workload, "scheduler": rec.scheduler, "n_workers": rec.n_workers,
        "threads_per_worker": rec.threads_per_worker, "locks": list(rec.locks), "source": rec.source,
    }}
    if rec.scheduler in ("synchronous", "threads", "processes"):
        config["scheduler"] = rec.scheduler
        if rec.scheduler != "synchronous":
            config["num_workers"] = rec.threads_per_worker if rec.scheduler == "threads" else rec.n_workers
    return config


def as_yaml(rec: Recommendation) -> str:
    import yaml

    head = "".join(f"# {line}\n" for line in (f"threadprobe recommendation ({rec.source})", *rec.rationale))
    return head + yaml.safe_dump(as_dask_config(rec), sort_keys=False)


def as_env(rec: Recommendation) -> str:
    """Shell exports in dask's own environment convention (DASK_ prefix, __ for nesting)."""
    lines = [f"# threadprobe recommendation ({rec.source})"]
    config = as_dask_config(rec)
    for key, value in config.items():
        if key == "threadprobe":
            for sub, v in value.items():
                text = ",".join(v) if isinstance(v, list) else str(v)
                lines.append(f"export DASK_THREADPROBE__{sub.upper()}={_quote(text)}")
        else:
            lines.append(f"export DASK_{key.upper()}={_quote(str(value))}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@contextlib.contextmanager
def scheduler(rec: Recommendation, address: str | None = None) -> Iterator[Any]:
    """Apply a recommendation to dask for the duration of a ``with`` block.

    Local schedulers go through ``dask.config.set``; ``distributed`` starts a LocalCluster of the
    recommended size (or connects to ``address``) and yields its Client.
    """
    import dataclasses

    from toolkit.runner.schedulers import activated, from_recommendation

    choice = from_recommendation(rec)
    if address is not None:
        choice = dataclasses.replace(choice, scheduler="distributed", address=address)
    with activated(choice) as client:
        yield client

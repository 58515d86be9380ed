"""The one place that composes the steps: diagnose -> evidence -> choose -> run.

Nothing below this module imports anything above it: the diagnosis never imports the runner, the
runner never imports the diagnosis, and the choice stays a pure function of records. The CLI,
the Python API (``threadprobe.recommend`` / ``threadprobe.scheduler``) and the pytest plugin's gate call
these functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadprobe.scheduling import choose
from threadprobe.diagnosis import diagnose as diagnosing
from threadprobe import evidence
from threadprobe.harness import fingerprint
from threadprobe.diagnosis.races import run as racepass
from threadprobe import report
from threadprobe.report import racesource
from threadprobe.diagnosis.diagnose import Diagnoser, assemble, run_session
from threadprobe.diagnosis.options import EvidenceOptions, Grid, Options, Planner, Selection
from threadprobe.records.errors import UsageError
from threadprobe.diagnosis.progress import Count, Progress, Update, phase
from threadprobe.records import (Auto, Choice, Diagnosis, Fingerprint, GilState, Mode, Placement, RacePass, RaceStatus,
                                 RunRequest, Scheduler, StartMethod)
from threadprobe.scheduling import cache, here, pilot as piloting, schedulers
from threadprobe.scheduling.pilot import Decider, Decision, Job, Pilot
from threadprobe.scheduling.runs import load, wind
from threadprobe.scheduling.schedulers import Active, activated, explicit, on_cluster
from threadprobe.scheduling.workloads import WORKLOADS, Workload

if TYPE_CHECKING:
    from distributed import Client

DEFAULT_DIAGNOSIS = Path("reports/diagnosis.json")


# --------------------------------------------------------------------------------------------
# diagnose -> evidence


def diagnose(options: Options, progress: Progress | None = None,
             fingerprint: Callable[[], Fingerprint] | None = None) -> Diagnosis:
    """A whole diagnosis: trials, then evidence, then the safe candidates of every workload."""
    with Diagnoser(options, progress) as session:
        shown = session.progress
        shown.note(f"diagnosing {options.launch.python or sys.executable}: {len(session.probes)} probes")
        if options.planner.stress:
            run_session(session)
        passes: dict[str, RacePass] = {}
        if options.races is not None:
            shown.note(f"race pass under {options.races.tool}: {len(session.probes)} probes; its fork servers first "
                       "import the probes' libraries under the detector, once for every lane (minutes for Iris), "
                       "then each lane forks a worker per probe")
            with phase(shown, "race pass", options.races.budget):
                passes = racepass.run_races(session, options.races, session.results(),
                                            _race_updates(shown, len(session.probes)))
        results = racepass.attach(session.results(), passes, {run.name: run.info.dependency for run in session.probes},
                                  options.race_state)
        out = options.output.out
        bundle = (evidence.gather(session, results, options.evidence, out) if options.evidence is not None
                  else evidence.Bundle(tuple(results)))
        diagnosis = assemble(session, fingerprint, results=list(bundle.results), remedies=bundle.remedies,
                             lock_audit=bundle.lock_audit, repro=bundle.repro)
    if options.races is None and out:  # the latest `make races` of this same build, said either way
        diagnosis = racesource.reuse(diagnosis, Path(out))
    choices = safe_choices(diagnosis)
    return diagnosis.replace(recommendations=choices)


def _race_updates(progress: Progress, probes: int) -> Callable[[str, RacePass], None]:
    """What the race pass shows as each probe's pass ends (called from its lanes' threads)."""
    guard = threading.Lock()
    done: list[RacePass] = []

    def on_done(probe: str, found: RacePass) -> None:
        with guard:
            done.append(found)
            count = Count(len(done), "probes", probes, sum(p.status != RaceStatus.CLEAN for p in done))
        progress.note(f"races: {probe}: {found.summary()}")
        progress.update(Update(probe, f"under {found.tool}", run=count))
    return on_done


def safe_choices(diagnosis: Diagnosis, machine: choose.Machine | None = None) -> dict[str, Choice]:
    """Per workload and GIL state diagnosed: the choice without a pilot, its rationale listing
    every safe candidate ("wind", and "wind, GIL off" on a free-threaded build)."""
    machine = machine or here.machine()
    out = {}
    states = dict.fromkeys(r.gil for r in diagnosis.results if r.mode == Mode.THREADS) or [GilState.AS_IMPORTED]
    for state in states:
        out.update(_safe_choices(diagnosis, dataclasses.replace(machine, gil=state),
                                 "" if state == GilState.AS_IMPORTED else ", GIL off"))
    return out


def _safe_choices(diagnosis: Diagnosis, machine: choose.Machine, suffix: str) -> dict[str, Choice]:
    out = {}
    for name, wl in WORKLOADS.items():
        found, why = choose.candidates(diagnosis.results, wl.probes_for(), machine, name, diagnosis.remedies,
                                       wl.memory_per_worker_gb)
        pick, because = _unpiloted(found, diagnosis, wl.probes_for(), machine)
        out[name + suffix] = pick.replace(source="diagnosis (no pilot: a run pilots its own input)", rationale=(
            f"workload {name}: {wl.description}", *why,
            "safe candidates: " + ", ".join(choose.label(c) for c in found), *because,
            "`threadprobe run` times the candidates on its own input"))
    return out


# --------------------------------------------------------------------------------------------
# safety for a run: a matching diagnosis, else a quick one


def workload(name: str) -> Workload:
    if name not in WORKLOADS:
        raise UsageError(f"unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    return WORKLOADS[name]


def safety(probes: Sequence[str], diagnosis: str | Path | Diagnosis | None = None, progress: Progress | None = None,
           budget: float = 30.0) -> tuple[Diagnosis, str]:
    """The verdicts a choice rests on: a stored diagnosis that still matches the installed
    libraries and covers ``probes``, else a quick diagnosis of ``probes`` alone (and why)."""
    if isinstance(diagnosis, Diagnosis):
        return diagnosis, "diagnosis"
    path = Path(diagnosis) if diagnosis else DEFAULT_DIAGNOSIS
    why = f"no {path}"
    if path.exists():
        diag = report.read(path)
        ok, changed = fingerprint.matches(diag.fingerprint)
        covered = {r.probe for r in diag.results}
        other = here.mismatch(diag, [p for p in probes if p not in choose.FORK_PROBES])
        if other and diagnosis:
            raise UsageError(f"{path} cannot choose for this run: {other} (diagnose in this state, or run in its)")
        if other:
            why = f"{path} cannot choose for this run: {other}"
        elif not ok:
            why = f"{path} was made with other libraries ({'; '.join(changed[:3])})"
        elif not set(probes) <= covered:
            why = f"{path} does not cover {', '.join(sorted(set(probes) - covered))}"
        else:
            return diag, f"diagnosis {path}"
    elif diagnosis:
        raise UsageError(f"no such diagnosis: {path}")
    cores = os.cpu_count() or 1
    # With the GIL forced off, threads are only ever safe under a verified remedy: search for them.
    off = here.run_gil() == GilState.OFF
    options = Options(Selection(tuple(probes)),
                      Grid(threads=tuple(sorted({2, 2 * cores})), processes=(cores,),
                           gil=(here.run_gil() or GilState.AS_IMPORTED,)),
                      Planner(budget=budget, timing_trials=0, rely=frozenset(probes)),
                      evidence=EvidenceOptions(attribute=False) if off else None)
    quick = (diagnose if off else diagnosing.diagnose)(options, progress=progress, fingerprint=fingerprint.light)
    return quick, f"quick diagnosis of {', '.join(probes)} ({why})"


# --------------------------------------------------------------------------------------------
# choose -> run


def decider(name: str, probes: Sequence[str], diag: Diagnosis, source: str, explicit: Choice | None = None,
            cluster: Placement | None = None, fmt: str | None = None, memory_per_worker_gb: float = 2.0,
            use_cache: bool = True, note: Callable[[str], None] | None = None) -> Decider:
    """How a run gets its scheduler: the explicit choice, else a cached answer for this input,
    else a pilot among the safe candidates (on ``cluster``'s workers when one is asked for)."""
    say = note or (lambda text: None)

    def decide(job: Job, stack: ExitStack) -> Decision:
        if explicit is not None:
            warmed = warm(job, explicit)
            return explicit, stack.enter_context(activated(explicit)), warmed
        machine = here.machine()
        found, why = choose.candidates(diag.results, probes, machine, name, diag.remedies, memory_per_worker_gb)
        why = (here.describe(), *why)
        if cluster:
            found = tuple(dict.fromkeys(on_cluster(c, cluster.address, cluster.cluster, cluster.adapt)
                                        for c in found if c.row.client))
            if not found:
                raise UsageError("a cluster was asked for, but no process-based scheduler is safe for this workload")
        k = cache.key(name, job.signature(fmt), cache.builds(diag.fingerprint), tuple(probes), here.cache_state())
        if use_cache and not cluster:
            hit = cache.lookup(k)
            if hit is not None and any(choose.label(c) == choose.label(hit) for c in found):
                chosen = hit.replace(source=f"cached pilot ({cache.path()})")
                say(f"cached choice for this input, builds and machine: {choose.label(chosen)}")
                return chosen, stack.enter_context(activated(chosen)), warm(job, chosen)
        if len(found) == 1:
            only = found[0].replace(source=source, rationale=why)
            return only, stack.enter_context(activated(only)), None
        result, active = piloting.run_pilot(job, found, stack, note=say, measured=choose.estimates(
            found, diag.results, diag.remedies, probes, machine.gil))
        chosen = result.choice.replace(source=f"pilot on this input; safety from {source}",
                                       rationale=tuple(why) + tuple(result.why), pilot=tuple(result.rows))
        if result.rows:  # stored even when this run was told not to read the cache: the next one may
            cache.store(k, chosen, note=f"{name} {fmt}")
        return chosen, active, result

    return decide


def warm(job: Job, choice: Choice) -> Pilot | None:
    """A pool that forks its workers at the first task: one unit computed here first, so that the
    workers inherit what it imported and opened (Iris, its file formats, the units database), as a
    piloted run's workers inherit its pilot's. Forked from a cold parent, each worker paid that
    itself: the netCDF load experiment's explicit processes took 2.8 s from a cold parent, 1.7 s
    warmed (6 pairs side by side, GIL build). Explicit and cached picks are warmed; an auto run that
    pilots, or decides not to, has already run its first units here. The unit is kept; the rest
    runs on the pool."""
    if choice.scheduler != Scheduler.PROCESSES or choice.context != StartMethod.FORK or job.units < 2:
        return None
    began = time.perf_counter()
    with activated(Choice(choice.workload, Scheduler.SYNCHRONOUS)) as serial:
        job.run(serial, [0], 1)
    return Pilot(choice, done=[0], seconds=time.perf_counter() - began, why=(
        "warmed: the first unit ran in this process before the pool forked, so its workers start with what it "
        "imported",))


def _formats(pattern: str) -> str | None:
    low = pattern.lower()
    return "pp" if low.endswith(".pp") else "nc" if low.endswith(".nc") else None


def _decide(name: str, fmt: str | None, request: RunRequest, progress: Progress | None) -> Decider:
    """How a run of workload ``name`` gets its scheduler: the one asked for, else (auto) safety
    looked up once the inputs have loaded (a bad file fails first), then ``decider``'s choice."""
    if isinstance(request.scheduler, Scheduler):
        explicit = schedulers.explicit(name, request.scheduler, request.workers, request.threads_per_worker,
                                       request.address, request.cluster, request.adapt).replace(locks=request.locks)
        return decider(name, (), Diagnosis("", "", {}, {}, ()), "command line", explicit=explicit)
    wl = workload(name)

    def decide(job: Job, stack: ExitStack) -> Decision:
        probes = wl.probes_for(fmt)
        diag, source = safety(probes + choose.FORK_PROBES, request.diagnosis)
        return decider(name, probes, diag, source, fmt=fmt, use_cache=request.cache, cluster=request.on_cluster(),
                       memory_per_worker_gb=wl.memory_per_worker_gb,
                       note=progress.note if progress is not None else None)(job, stack)

    return decide


def run_wind(x_glob: str, y_glob: str, out: Path, request: RunRequest = RunRequest(), progress: Progress | None = None,
             unit_bytes: int | None = None, on_client: Callable[[Client], None] | None = None) -> wind.RunResult:
    """The wind study on the scheduler ``request`` asks for (or chooses). Inputs are loaded and
    checked before any choice. ``on_client`` is handed dask.distributed's Client when the run
    has one."""
    schedulers.check_options(request.scheduler, request.address, request.cluster, request.adapt, request.locks)
    wind.expand(x_glob, "--x-wind")
    wind.expand(y_glob, "--y-wind")
    return wind.run(x_glob, y_glob, out, _decide("wind", _formats(x_glob), request, progress), progress=progress,
                    on_client=on_client, **({"unit_bytes": unit_bytes} if unit_bytes else {}))


def run_load(pattern: str, request: RunRequest = RunRequest(), progress: Progress | None = None) -> load.LoadResult:
    """The load study on the scheduler ``request`` asks for (or chooses)."""
    schedulers.check_options(request.scheduler, request.address, request.cluster, request.adapt, request.locks)
    load.check(wind.expand(pattern, "--files"))
    return load.run(pattern, _decide("load", _formats(pattern), request, progress), progress=progress)


def pilot_only(name: str, x_glob: str | None, y_glob: str | None, files: str | None,
               diagnosis: str | None = None, progress: Progress | None = None) -> Choice:
    """``recommend`` with an input: the choice a run would make (a cached one, or a pilot whose
    work is then discarded), without running the rest."""
    wl = workload(name)
    if name == "wind":
        if not (x_glob and y_glob):
            raise UsageError("recommend --workload wind pilots with both --x-wind and --y-wind")
        fmt = _formats(x_glob)
        u, v, _ = wind.load_pair(x_glob, y_glob)
        job: Job = wind.WindJob(u, v)
    else:
        if not files:
            raise UsageError("recommend --workload load pilots with --files")
        fmt = _formats(files)
        paths = wind.expand(files, "--files")
        load.check(paths)
        job = load.LoadJob(paths)
    probes = wl.probes_for(fmt)
    diag, source = safety(probes + choose.FORK_PROBES, diagnosis, progress)
    with ExitStack() as stack:
        chosen, _, _ = decider(name, probes, diag, source, fmt=fmt, memory_per_worker_gb=wl.memory_per_worker_gb,
                               note=progress.note if progress is not None else None)(job, stack)
    return chosen


# --------------------------------------------------------------------------------------------
# The Python API


def recommend(workload_name: str = "wind", diagnosis: str | Path | Diagnosis | None = None, fmt: str | None = None,
              progress: Progress | None = None) -> Choice:
    """The choice without a pilot (safe candidates, ranked by the diagnosis's measured speedups);
    ``run`` and ``scheduler`` refine it with a pilot of the real input."""
    wl = workload(workload_name)
    diag, source = safety(wl.probes_for(fmt), diagnosis, progress)
    machine = here.machine()
    found, why = choose.candidates(diag.results, wl.probes_for(fmt), machine, workload_name,
                                   diag.remedies, wl.memory_per_worker_gb)
    pick, because = _unpiloted(found, diag, wl.probes_for(fmt), machine)
    return pick.replace(source=source, rationale=(
        *why, "safe candidates: " + ", ".join(choose.label(c) for c in found), *because,
        "a run times the candidates on its own input"))


def _unpiloted(found: Sequence[Choice], diag: Diagnosis, probes: Sequence[str],
               machine: choose.Machine) -> tuple[Choice, tuple[str, ...]]:
    """The choice where nothing is piloted, by the same rule as a run too short to pilot: the
    diagnosis's measured speedups of the candidates, in the machine's GIL state."""
    return choose.without_pilot(found, choose.estimates(found, diag.results, diag.remedies, probes, machine.gil))


class CollectionJob:
    """A dask collection's output blocks as units, for a pilot of an arbitrary computation. The
    pilot's work is discarded (the caller computes the collection itself), so it samples little."""

    def __init__(self, array: Any) -> None:  # a dask array (dask ships no types)
        import itertools

        self.array = array
        self.indices = list(itertools.product(*(range(n) for n in array.numblocks)))
        self.units = len(self.indices)

    def run(self, active: Active, units: Sequence[int], tasks: int) -> None:
        active.compute(*[self.array.blocks[self.indices[k]] for k in units])

    def signature(self, fmt: str | None) -> dict[str, Any]:
        return cache.signature(fmt, [self.array], self.units)


@contextlib.contextmanager
def scheduler(choice: Choice | str = Auto.AUTO, collection: Any = None, probes: Sequence[str] = (),
              diagnosis: str | Path | Diagnosis | None = None, address: str | None = None) -> Iterator[Choice]:
    """Apply a choice to dask for a ``with`` block, holding its locks; ``"auto"`` chooses it for
    ``collection`` (a dask collection or a lazy cube: dask's own, untyped) from the safety of
    ``probes`` (the operations it runs concurrently) and, when it has enough blocks to sample, a
    pilot. A scheduler's name (``"threads"``) runs on that scheduler."""
    if isinstance(choice, Choice):
        chosen = choice.replace(scheduler=Scheduler.DISTRIBUTED, address=address) if address else choice
        with activated(chosen):
            yield chosen
        return
    asked = schedulers.parse_scheduler(choice)
    if isinstance(asked, Scheduler):
        with activated(explicit("custom", asked, address=address)) as active:
            yield active.choice
        return
    diag, source = safety(tuple(probes), diagnosis)
    machine = here.machine()
    found, why = choose.candidates(diag.results, tuple(probes), machine, "custom", diag.remedies)
    array = collection.core_data() if hasattr(collection, "core_data") else collection
    with ExitStack() as stack:
        if array is not None and hasattr(array, "numblocks") and len(found) > 1 and \
                math.prod(array.numblocks) >= 8 * (os.cpu_count() or 1):
            job = CollectionJob(array)
            result, _ = piloting.run_pilot(job, found, stack, share=0.1, measured=choose.estimates(
                found, diag.results, diag.remedies, tuple(probes), machine.gil))  # too short: as unpiloted
            chosen = result.choice.replace(source=f"pilot on a sample of the collection; safety from {source}",
                                           rationale=tuple(why) + tuple(result.why), pilot=tuple(result.rows))
            stack.close()
        else:
            pick, because = _unpiloted(found, diag, tuple(probes), machine)
            chosen = pick.replace(source=source, rationale=tuple(why) + (
                "no pilot: the collection has too few blocks to sample", *because))
    with activated(chosen):
        yield chosen


__all__ = ["diagnose", "safe_choices", "safety", "decider", "run_wind", "run_load", "recommend", "scheduler"]

"""Remedies: the narrowest lock that makes a probe that is unsafe under threads safe, found by trials.

For a probe unsafe under threads (in one GIL state), the search tries, narrowest first:

1. **a lock around one library**: every call into that library's code holds one lock per process
   (``threadprobe.harness.libguard``, as Iris wraps netCDF4 in ``_thread_safe_nc``), one library
   at a time. The suspects come in the order of the evidence: the packages in the failing
   trials' tracebacks (innermost frame first: where a crash happened), then the modules the
   probe loads (its ``preload`` and ``requires``), at most ``MAX_SUSPECTS``;
2. **one global lock around every task**, when no library lock holds.

A try runs stress trials at the failing cell, and stops at its first failure. It runs as many as the
failure rate seen there needs to fail again with 95% probability, and never fewer than bound what
the lock leaves at ``RELY_BOUND`` (``trials_needed``). The rate alone is not enough: a lock that
stops the common failure can leave a rarer one, which the few trials a common failure needs do not
see (on 3.13t with the GIL off, Iris's netCDF loading under a cf-units lock passed 12 trials, and 6
of 10 real loads of 640 files failed under it). The cap (``MAX_TRIALS``) covers a failure seen once
in 20 trials. A remedy whose trials all pass is verified: its result carries the verdict, the bound
over those trials, and a speedup measured beside serial trials under the same remedy; its record
names the calls the lock covered, most called first. The search stops at the first verified library
lock (``every=True``: every suspect and the global lock, to compare them). The processes cells are
the other remedy: they need no trials of their own.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence

from threadprobe.diagnosis import detect, plan
from threadprobe.diagnosis.diagnose import Diagnoser, ProbeRun
from threadprobe.records import (RELY_BOUND, GilState, Kind, Mode, Outcome, Purpose, Remedy, RemedyKind, Result,
                                 Stage, TrialRun, is_clean, unsafe_results)

#: A verified remedy's trials bound the failure rate it leaves at ``RELY_BOUND`` (95%), the bound a
#: scheduler relies on a clean cell at: 29 clean trials.
MIN_TRIALS = math.ceil(math.log(0.05) / math.log(1.0 - RELY_BOUND))
MAX_TRIALS = 60  # a failure seen once in 20 trials needs 59
MAX_TRIES = 5  # library locks tried per probe and GIL state, before the global lock
TIMING_PAIRS = 3  # serial and threads timing trials under the remedy, alternated, for its speedup
CALLS_NAMED = 8  # entry points a remedy names, most called first
_FRAME = re.compile(r'File "([^"]+)", line \d+,? in (\S+)')
_SITE = re.compile(r"/(?:site|dist)-packages/([A-Za-z_][\w/]*\.py)")
NOT_SUSPECTS = frozenset({"threadprobe", "tests", "_pytest", "pytest"})


def to_remedy(results: Sequence[Result], every: bool = False) -> list[Result]:
    """The threads cells to find a remedy for: per probe and GIL state, the failing one with the
    most failures (the widest on a tie); only the first probe of each dependency unless ``every``."""
    picked: dict[tuple[str, GilState], Result] = {}
    for r in unsafe_results(results):
        key = (r.probe, r.gil)
        best = picked.get(key)
        if r.mode == Mode.THREADS and (best is None or (r.failed_trials, r.workers) > (best.failed_trials, best.workers)):
            picked[key] = r
    out, seen = [], set()
    for (probe, state), r in sorted(picked.items()):
        if every or (r.dependency, state) not in seen:
            seen.add((r.dependency, state))
            out.append(r)
    return out


def trials_needed(result: Result) -> int:
    """Stress trials that would show the failure again with 95% probability, at the rate the
    unremedied cell showed it (a rate of 1 in 15 trials needs 44; capped at ``MAX_TRIALS``), and at
    least ``MIN_TRIALS``: enough to bound what a lock leaves at ``RELY_BOUND``."""
    rate = result.failed_trials / max(1, result.trials)
    if rate >= 1.0:
        return MIN_TRIALS
    if rate <= 0.0:
        return MAX_TRIALS
    return max(MIN_TRIALS, min(MAX_TRIALS, math.ceil(math.log(0.05) / math.log(1.0 - rate))))


def frames(text: str) -> list[tuple[str, str]]:
    """(module, function) of each frame in an installed package, innermost first (faulthandler
    prints the crashing thread, most recent call first, after 'Current thread'; Python prints most
    recent call last)."""
    if "Current thread" in text:
        text = text[text.index("Current thread"):].split("\n\n", 1)[0]
    found = []
    for path, function in _FRAME.findall(text):
        site = _SITE.search(path)
        if site:
            module = site.group(1).removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            if module.split(".")[0] not in NOT_SUSPECTS:
                found.append((module, function))
    return found[::-1] if "most recent call last" in text else found


def targets(text: str) -> list[str]:
    """Locks to try for one failure, narrowest first: the innermost library frame's function (when
    it is a module's own, not a method), its module, its package; then the outer frames' packages."""
    found = frames(text)
    out: list[str] = []
    if found:
        module, function = found[0]
        if function.isidentifier() and not function.startswith("__"):
            out.append(f"{module}:{function}")
        out.append(module)
    out += [module.split(".")[0] for module, _ in found]
    return list(dict.fromkeys(out))


def traceback_packages(text: str) -> list[str]:
    """Installed packages in a traceback, innermost frame first."""
    return list(dict.fromkeys(module.split(".")[0] for module, _ in frames(text)))


def suspects(run: ProbeRun, result: Result) -> list[str]:
    """The locks to try, most suspect first: what the failures' frames name, then the packages the
    probe declares (``preload``, ``requires``)."""
    from_evidence = [t for ev in result.safety.evidence for t in targets(ev.traceback or "")]
    declared = [m.split(".")[0] for m in (*run.info.preload, *run.info.requires)]
    return [p for p in dict.fromkeys(from_evidence + declared) if p.split(".")[0] not in NOT_SUSPECTS]


def moved(target: str, failed: Result) -> list[str]:
    """When a lock around ``target`` left a failure whose frames point elsewhere (another package),
    the lock fixed one fault and the next is there: the targets for it. Else (the same place, or no
    frames) the lock did not help: []."""
    found = [t for ev in failed.safety.evidence for t in targets(ev.traceback or "")]
    package = target.split(".")[0].split(":")[0]
    return found if found and found[0].split(".")[0].split(":")[0] != package else []


def _calls(runs: Sequence[TrialRun]) -> tuple[str, ...]:
    counts: Counter[str] = Counter()
    for got in runs:
        for worker in got.workers:
            if worker.report is not None:
                counts.update(worker.report.guarded)
    return tuple(name for name, _ in counts.most_common(CALLS_NAMED))


def verify(session: Diagnoser, run: ProbeRun, result: Result, remedy: Remedy) -> list[Result]:
    """Stress trials at the failing cell under ``remedy`` (stopping at a failure); if they pass,
    timing trials beside serial ones under it for its speed. The threads result, remedy named."""
    state = run.state()  # the trials below are not recorded: it holds throughout
    oracle = state.oracle
    cell = plan.Cell(Mode.THREADS, 1, result.threads, result.gil)
    serial = plan.Cell(Mode.SERIAL, 1, 1, result.gil)  # the same GIL state, for the speedup
    stress: list[Outcome] = []
    runs: list[TrialRun] = []
    for _ in range(trials_needed(result)):
        request = plan.Request(run.name, cell, Purpose.STRESS, plan.calibrate(oracle, session.policy.stress_target),
                               plan.STRESS_SWITCH_INTERVAL)
        got, outcome = session.trial(run, request, remedy=remedy, record=False)
        runs.append(got)
        stress.append(outcome)
        if outcome.kind != Kind.OK:
            break
    timed: dict[plan.Cell, list[Outcome]] = {serial: [], cell: []}
    if all(o.kind == Kind.OK for o in stress):
        timing = plan.calibrate(state.timing_base, session.policy.timing_target)  # the timing input's
        for where in [serial, cell] * TIMING_PAIRS:  # side by side: a noisy spell hits both
            got, outcome = session.trial(run, plan.Request(run.name, where, Purpose.TIMING, timing), remedy=remedy,
                                         record=False)
            runs.append(got)
            timed[where].append(outcome)
    cores = os.cpu_count() or 1
    found = remedy.replace(calls=_calls(runs), trials=len(stress)) if remedy.kind == RemedyKind.LIBRARY_LOCK else \
        remedy.replace(trials=len(stress))
    summarised = [detect.summarise(run.name, run.info.dependency, outs, remedy=remedy, cores=cores)
                  for outs in (timed[serial], timed[cell] + stress) if outs]
    return [r.replace(remedy=found) for r in detect.add_scaling(summarised, cores) if r.mode == Mode.THREADS]


def search(session: Diagnoser, run: ProbeRun, result: Result, every: bool = False,
           note: Callable[[str], None] | None = None) -> list[Result]:
    """Narrowest first (see above): a lock around each suspect in turn; a lock that moved the
    failure elsewhere is kept and the next suspect added to it; then, unless a library lock held
    (or ``every``), one global lock."""
    queue = suspects(run, result)
    held: tuple[str, ...] = ()
    out: list[Result] = []
    for _ in range(MAX_TRIES):
        if not queue:
            break
        target = queue.pop(0)
        remedy = Remedy(RemedyKind.LIBRARY_LOCK, (*held, target))
        if note is not None:
            note(f"verifying a remedy for {run.name}: {remedy.describe()}")
        got = verify(session, run, result, remedy)
        if not_installed(got):  # a frame's function that its module does not define (a method): no lock
            continue
        out += got
        if any(is_clean(r.verdict) for r in got):
            break
        elsewhere = [t for t in moved(target, got[-1]) if t not in held and t != target] if got else []
        if elsewhere:
            held = (*held, target)
            queue = elsewhere + [t for t in queue if t not in elsewhere]
    if every or not any(is_clean(r.verdict) for r in out):
        if note is not None:
            note(f"verifying a remedy for {run.name}: one global lock around every task")
        out += verify(session, run, result, Remedy(RemedyKind.GLOBAL_LOCK))
    return out


def not_installed(results: Sequence[Result]) -> bool:
    """The workers could not put the lock in place (``libguard`` found no such function: a frame
    named a method, ``dask._expr:simplify_once`` on 3.13t), so the try says nothing of the remedy."""
    evidence = [ev for r in results for ev in r.safety.evidence]
    return bool(evidence) and all(ev.stage == Stage.HARNESS and ev.error_type == "LookupError" for ev in evidence)


def processes(results: Sequence[Result], probe: str) -> list[Result]:
    """The other remedy: the probe's processes cells, named as such."""
    return [r.replace(remedy=Remedy(RemedyKind.PROCESSES)) for r in results
            if r.probe == probe and r.mode == Mode.PROCESSES and r.remedy is None]

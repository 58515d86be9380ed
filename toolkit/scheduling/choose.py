"""Which dask scheduler a computation should run on: safety from the probes, speed from the run.

Pure functions, no I/O (the machine and the run's GIL state are passed in: scheduling/here.py):

- ``candidates``: the schedulers the diagnosis allows for the operations a computation runs
  concurrently (probe names). A scheduler is a candidate only if every declared probe is safe
  in every mode of its kind that was diagnosed (a race needs no particular thread count, so a
  crash at 4 threads rules out 2): threads need the threads modes, process schedulers the
  processes modes, and forking a process that already opened files needs the fork-safety probes.
  A probe with no result is no evidence: only the synchronous scheduler survives without one.
  Only the cells of the run's GIL state count (``Machine.gil``): on a free-threaded build, what
  is safe with the GIL as imported says nothing of a run with it off. Threads made safe by a
  verified remedy are a candidate that holds the narrowest one: a lock around one library (the
  fastest, where several were verified), else one global lock around every task.
- ``decide``: the fastest candidate on the pilot (the run's own graph, timed side by side), but
  the simplest one unless another is faster beyond the noise: a one-sided 95% Welch interval on
  the ratio of their projected times (logs) lies wholly beyond ``MARGIN``. The noise is what the
  repetitions show, never less than ``NOISE_FLOOR``: two repetitions that happen to agree do not
  make a quiet machine. The ranking is settled when every other candidate is slower beyond the
  noise, or (a more complex one) cannot be faster by the margin.
- ``break_tie``: when the pilot could not settle it (after sampling a tie longer, see pilot.py),
  the candidate whose repetitions promise the least time once their spread is counted.
- ``without_pilot``: a run too short for a pilot to pay (``pilot.SHORT_RUN``): the candidate
  with the least projected run by the speedups the diagnosis measured in the run's GIL state
  (``estimates``: its probes' timed cells, as they are or under the lock it holds, without the
  time a busy machine queued them), plus a process pool's start-up (``POOL_START``), under the
  same tie rule as ``decide`` with the model's wider margin (``ESTIMATE_MARGIN``).

The speed of a probe is not always the speed of a run: a probe's task is a model of the run's. The
wind probes time the study's own arithmetic on a task of its size, and still read threads and
processes up to 14% apart from the study. So wherever a run is long enough to time, the pilot ranks
the candidates; the probes' speedups rank them only where a pilot would cost more than it can win,
and only beyond that error.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from threadprobe.records import (RELY_BOUND, SCHEDULERS, Choice, GilState, Mode, PilotRow, Remedy, RemedyKind, Result,
                                 Scheduler, StartMethod, is_clean, is_safe, is_unavailable, serial_failures)

#: A more complex scheduler must be this much faster (median projected time) to be worth it.
MARGIN = 0.03
#: The same without a pilot: there the diagnosis's speedups stand for the run's, and a probe's task is
#: a model of the run's, not the run. With the study's arithmetic on a task of the study's size, the
#: wind probes read processes ahead of threads by 2% (PP) and 11% (netCDF) where the study ran threads
#: ahead by 0.4% and 2.7% (reports/bench-wind-probe-scale.json, 480 x 640, against 30 repetitions of
#: the study, bench-builds-wind-gil-build-pooled): up to 14% apart. So a candidate the model puts
#: less than that ahead is not known to be faster, and the simpler one stands.
ESTIMATE_MARGIN = 0.15
#: The least relative spread assumed of one timed repetition on a shared machine.
NOISE_FLOOR = 0.05
CONFIDENCE = 0.95
#: Probes that say whether a process forked after files were opened can use them (dask's
#: processes scheduler with the fork start method does exactly that).
FORK_PROBES = ("fork_safety.netcdf4_fresh_open_in_child", "fork_safety.netcdf4_inherited_dataset",
               "fork_safety.h5py_fresh_open_in_child")


@dataclass(frozen=True)
class Machine:
    """What the choice needs to know of where the run happens (read by the caller, not here):
    cores, memory, and the GIL state the run's workers will have (None: a GIL build)."""

    cores: int
    memory_gb: float
    gil: GilState | None = None


def label(c: Choice) -> str:
    """A candidate's short name in pilot tables: 'threads 2', 'processes 2 (fork)'..."""
    return c.row.label(c)


def in_state(results: Sequence[Result], gil: GilState | None) -> list[Result]:
    """The cells a run in one GIL state relies on (a GIL build has only ``as_imported``): its
    threads cells and remedies, and the serial and processes cells (one thread per process: every
    state shares them)."""
    state = gil or GilState.AS_IMPORTED
    return [r for r in results if r.gil == state or (r.mode != Mode.THREADS and r.remedy is None)]


def _diagnosed(results: Sequence[Result], probe: str, mode: Mode) -> list[Result]:
    """``probe``'s cells of this kind as it is (no remedy), where it could run."""
    return [r for r in results if r.probe == probe and r.mode == mode and r.remedy is None
            and not is_unavailable(r.verdict)]


def _kind_safe(results: Sequence[Result], probe: str, mode: Mode, broken: set[str]) -> bool | None:
    """Is ``probe`` safe in every diagnosed mode of this kind? None when there is no evidence."""
    mine = _diagnosed(results, probe, mode)
    if not mine:
        return None
    return all(is_safe(r, probe in broken) for r in mine)


def _word(results: Sequence[Result], probe: str, mode: Mode, ok: bool | None) -> str:
    """What a probe's cells of one kind are to the choice: safe, UNSAFE, not diagnosed, or clean
    on too few trials to rely on (``is_safe``)."""
    if ok or ok is None:
        return "safe" if ok else "not diagnosed"
    mine = _diagnosed(results, probe, mode)
    if all(is_clean(r.verdict) for r in mine):
        thin = min(mine, key=lambda r: r.trials)
        return (f"clean in {thin.trials} trials only (95% bound {thin.safety.failure_rate_upper95:.0%}): too few "
                f"to rely on (at most {RELY_BOUND:.0%}, as a remedy needs; a diagnosis tops these cells up "
                "first, and a longer --budget reaches it)")
    return "UNSAFE"


def narrowest(remedies: Sequence[Result], probe: str) -> Remedy | None:
    """The narrowest remedy verified for ``probe`` under threads: a library lock before the
    global lock; among library locks, the fastest."""
    verified = [r for r in remedies if r.probe == probe and r.mode == Mode.THREADS and r.remedy is not None
                and r.remedy.kind != RemedyKind.PROCESSES and is_clean(r.verdict)]
    rank = {RemedyKind.LIBRARY_LOCK: 0, RemedyKind.GLOBAL_LOCK: 1}
    best = min(verified, key=lambda r: (rank[r.remedy.kind], -(r.speed.speedup or 0.0)), default=None)  # type: ignore[union-attr]
    return best.remedy if best is not None else None


def _threads_locks(probes: Sequence[str], safe: Sequence[bool | None], remedies: Sequence[Result]
                   ) -> tuple[Remedy, ...] | None:
    """The locks under which threads are safe for every probe (() when none are needed), or None."""
    needed: list[Remedy] = []
    for p, ok in zip(probes, safe):
        if ok:
            continue
        fix = narrowest(remedies, p) if ok is False else None
        if fix is None:
            return None
        needed.append(fix)
    if any(r.kind == RemedyKind.GLOBAL_LOCK for r in needed):
        return tuple(r for r in needed if r.kind == RemedyKind.GLOBAL_LOCK)[:1]
    return tuple({r.libraries: r for r in needed}.values())


def candidates(results: Sequence[Result], probes: Sequence[str], machine: Machine, workload: str = "",
               remedies: Sequence[Result] = (), memory_per_worker_gb: float = 2.0
               ) -> tuple[tuple[Choice, ...], tuple[str, ...]]:
    """The safe schedulers for a computation that runs ``probes`` concurrently, and why: judged on
    the cells of the run's GIL state only (``machine.gil``)."""
    results, remedies = in_state(results, machine.gil), in_state(remedies, machine.gil)
    broken = serial_failures(results)
    rationale: list[str] = []
    found: list[Choice] = [Choice(workload, Scheduler.SYNCHRONOUS, 1, 1, source="safe candidates", gil=machine.gil)]
    workers = max(1, min(machine.cores, int(machine.memory_gb // memory_per_worker_gb) or 1))
    if not probes:
        rationale.append("no operations declared: only the synchronous scheduler is known safe")
        return tuple(found), tuple(rationale)
    safe = {mode: [_kind_safe(results, p, mode, broken) for p in probes] for mode in (Mode.THREADS, Mode.PROCESSES)}
    missing = [p for k, p in enumerate(probes) if all(v[k] is None for v in safe.values())]
    if missing:
        rationale.append(f"no evidence for {', '.join(missing)} (not diagnosed, or unavailable): "
                         "only the synchronous scheduler is known safe")
        return tuple(found), tuple(rationale)
    state = f" with the GIL {'off' if machine.gil == GilState.OFF else 'as imported'}" if machine.gil else ""
    for mode, oks in safe.items():
        rationale += [f"{p}: {mode}{state} {_word(results, p, mode, ok)}" for p, ok in zip(probes, oks)]
    for kind in SCHEDULERS:
        row = Choice(workload, kind).row
        if row.mode is None:
            continue
        locks = _threads_locks(probes, safe[row.mode], remedies) if row.shares_memory else (
            () if all(safe[row.mode]) else None)
        if locks is None:
            continue
        n = machine.cores if row.shares_memory else workers
        n_workers, threads = row.shape(n, None, n)
        context = _context(results, broken, rationale) if row.context else None
        found.append(Choice(workload, kind, n_workers, threads, locks=locks, source="safe candidates",
                            context=context, gil=machine.gil))
        if locks:
            rationale.append(f"{kind} are safe holding {'; '.join(r.describe() for r in locks)} "
                             "(remedy verified by stress trials): a candidate that holds it")
    return tuple(found), tuple(rationale)


def _context(results: Sequence[Result], broken: set[str], rationale: list[str]) -> StartMethod:
    """fork when forking after files were opened is known safe, else spawn (and why)."""
    fork = [_kind_safe(results, p, Mode.PROCESSES, broken) for p in FORK_PROBES]
    if any(f is not None for f in fork) and all(fork):
        return StartMethod.FORK
    rationale.append("forking after files were opened is not known safe: processes spawn fresh interpreters")
    return StartMethod.SPAWN


def _median(row: PilotRow) -> float:
    return statistics.median(row.projected or row.seconds)


def _logs(row: PilotRow) -> list[float]:
    return [math.log(x) for x in (row.projected or row.seconds) if x > 0]


def advantage(fast: PilotRow, slow: PilotRow) -> tuple[float, float, float] | None:
    """How much faster ``fast`` is than ``slow``, as a ratio of projected times (slow / fast): a
    one-sided ``CONFIDENCE`` lower bound, the estimate, an upper bound. None before both have two
    repetitions."""
    a, b = _logs(fast), _logs(slow)
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.special import stdtrit  # Student's t quantile, as stats.t.ppf, without scipy.stats's 1.7 s import

    floor = NOISE_FLOOR ** 2
    va, vb = max(statistics.variance(a), floor) / len(a), max(statistics.variance(b), floor) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    half = float(stdtrit(df, CONFIDENCE)) * math.sqrt(va + vb)
    diff = statistics.fmean(b) - statistics.fmean(a)
    return math.exp(diff - half), math.exp(diff), math.exp(diff + half)


def clearly_slower(a: PilotRow, b: PilotRow, margin: float = MARGIN) -> bool:
    """``a`` slower than ``b`` beyond the noise: the lower bound of b's advantage beats the margin."""
    adv = advantage(b, a)
    return adv is not None and adv[0] > 1 + margin


def cannot_win(a: PilotRow, b: PilotRow, margin: float = MARGIN) -> bool:
    """``a`` cannot be faster than ``b`` by the margin (the upper bound of its advantage is below it)."""
    adv = advantage(a, b)
    return adv is not None and adv[2] < 1 + margin


def decide(rows: Sequence[PilotRow], margin: float = MARGIN) -> tuple[PilotRow, bool, tuple[str, ...]]:
    """The pick (rows given simplest first), whether the pilot has settled it, and the rule applied."""
    timed = [r for r in rows if r.projected or r.seconds]
    if not timed:
        raise ValueError("no candidate was timed")
    fastest = min(timed, key=_median)
    pick = next(r for r in timed if r is fastest or not clearly_slower(r, fastest, margin))
    later = timed[timed.index(pick) + 1:]
    settled = all(r is pick or clearly_slower(r, pick, margin) or (r in later and cannot_win(r, pick, margin))
                  for r in timed)
    why = [f"fastest on the pilot: {fastest.candidate} (median {_median(fastest):.2f} s projected)"]
    if pick is not fastest:
        adv = advantage(fastest, pick)
        bound = f" (x{adv[1]:.2f}, 95% bound x{adv[0]:.2f})" if adv else " (too few repetitions)"
        why.append(f"chose the simpler {pick.candidate}: {fastest.candidate} is not faster beyond the noise"
                   f"{bound}, need more than x{1 + margin:.2f}")
    beaten = [f"{r.candidate} x{adv[1]:.2f} (95% bound x{adv[0]:.2f})" for r in timed
              if r is not pick and clearly_slower(r, pick, margin) and (adv := advantage(pick, r))]
    if beaten:
        why.append(f"{pick.candidate} beat, beyond the noise: {', '.join(beaten)}")
    return pick, settled, tuple(why)


def pessimistic(row: PilotRow) -> float:
    """A candidate's projected time once its spread is counted: the median times e^(standard
    deviation of the log repetitions), so that of two equal medians the steadier one wins."""
    logs = _logs(row)
    spread = statistics.stdev(logs) if len(logs) >= 2 else NOISE_FLOOR
    return _median(row) * math.exp(spread)


def break_tie(rows: Sequence[PilotRow], pick: PilotRow, margin: float = MARGIN
              ) -> tuple[PilotRow, tuple[str, ...]]:
    """When the pilot could not settle: of the pick and the candidates not slower than it beyond
    the noise, the one with the least ``pessimistic`` time (the simpler one on equal terms)."""
    tied = [r for r in rows if r is pick or (_logs(r) and not clearly_slower(r, pick, margin))]
    best = min(tied, key=pessimistic)
    if len(tied) < 2:
        return pick, ()
    scores = ", ".join(f"{r.candidate} {pessimistic(r):.1f}s" for r in tied)
    return best, (f"a tie within the noise, broken on the spread (median x e^spread: {scores}): {best.candidate}",)


#: What a pool of 2 worker processes costs before its first task, by start method: the pool started
#: and one task per worker importing Iris's PP loading, beyond the same task in a parent that has
#: imported it (as a run's parent has, once its files are checked). Measured on this 2-core machine
#: by tests/bench/pool_start.py (ProcessPoolExecutor with dask's worker initializer, as
#: schedulers.process_pool starts it; reports/bench-pool-start.json, 7 pools each, under the heavy
#: lock): fork 0.017 s (0.014-0.029), spawn 1.57 s (1.44-2.73), forkserver 2.23 s (1.41-2.70). Beside
#: busy neighbours spawn took 6.0-6.2 s (5 pools): the figures below sit between, erring towards
#: the scheduler that starts nothing, which costs little on the short runs that are not piloted.
POOL_START: dict[StartMethod, float] = {StartMethod.FORK: 0.03, StartMethod.SPAWN: 3.0, StartMethod.FORKSERVER: 3.0}
#: Seconds of serial work below which a run takes no process pool (synchronous or threads):
#: whatever the candidates' speedups, a run this short cannot pay a pool's fixed costs. The load
#: experiment on netCDF (128 files, about 1 s of serial work past its imports) ran x0.74 of
#: synchronous on 2 forked processes and x0.86 as auto's warm pick (10 repetitions,
#: reports/bench-builds-load-nc.json): the pool's costs beyond its start (0.4 to 0.5 s there) ate
#: the half of the work it could save. Twice that work, with margin.
MIN_PARALLEL = 2.0


@dataclass(frozen=True)
class Estimate:
    """A candidate's projected run without a pilot: the speedup over serial the diagnosis measured
    for it (None: not measured) and what starting it costs."""

    choice: Choice
    speedup: float | None
    startup: float

    def seconds(self, serial: float | None) -> float | None:
        """The projected run of ``serial`` seconds of serial work (None: unknown length, compared
        by speedup alone, as if the run were long enough for a start-up not to count)."""
        if self.speedup is None or self.speedup <= 0:
            return None
        return (serial if serial is not None else 1.0) / self.speedup + (self.startup if serial is not None else 0.0)


def _startup(c: Choice) -> float:
    if c.row.shares_memory:
        return 0.0  # synchronous, or a thread pool: microseconds
    return POOL_START.get(c.context or StartMethod.SPAWN, max(POOL_START.values()))


def _cells(results: Sequence[Result], probe: str, mode: Mode, locks: Sequence[Remedy]) -> list[Result]:
    """The cells of ``probe`` in ``mode``: under one of ``locks`` when there are any (the remedy
    the candidate holds for it), else as it is."""
    keys = {lock.key for lock in locks}
    return [r for r in results if r.probe == probe and r.mode == mode
            and (r.remedy.key in keys if r.remedy is not None else not keys)]


def _timed(cells: Sequence[Result]) -> list[Result]:
    return [r for r in cells if is_clean(r.verdict) and r.speed.speedup is not None]


def _unqueued(r: Result) -> float:
    """The share of a timing trial's wall time its workers did not spend queued for a CPU that
    another process held (``Speed.queued_fraction`` already leaves out what the workers' own
    number forces): 1 - busy x queued. One timing trial a cell, on a shared machine, can run while
    a neighbour is busy: the load experiment's processes cell read x1.01 with 43% of its runnable
    time queued (busy 0.98), where its runs gave x1.57; x1.76 once the queueing is taken out."""
    busy, queued = r.speed.busy_fraction, r.speed.queued_fraction
    return 1.0 - busy * queued if busy is not None and queued is not None and busy * queued < 0.9 else 1.0


def _speedup(r: Result, serial: Result | None) -> float:
    """A cell's speedup as it would be on a machine of its own: both its time and its serial
    baseline's without the time queued for a CPU, at most one per worker."""
    base = _unqueued(serial) if serial is not None else 1.0
    return min(float(r.workers), (r.speed.speedup or 0.0) * base / _unqueued(r))


def _probe_speedup(results: Sequence[Result], remedies: Sequence[Result], probe: str, c: Choice) -> float | None:
    """What the diagnosis measured of ``probe`` on candidate ``c``: the median speedup of its cells at
    the width nearest the candidate's (under the lock the candidate holds for it, if it needed one),
    without the time a busy machine queued them."""
    mode = c.row.mode
    if mode is None:
        return 1.0
    # A probe the candidate's lock was verified for counts under it alone; the others as they are.
    under = _cells(remedies, probe, mode, c.locks) if c.locks else []
    cells = _timed(under or _cells(results, probe, mode, ()))
    if not cells:
        return None
    serial = next((r for r in _cells(results, probe, Mode.SERIAL, ())), None)
    width = max(1, c.n_workers * c.threads_per_worker)
    nearest = min(abs(r.workers - width) for r in cells)
    return statistics.median(_speedup(r, serial) for r in cells if abs(r.workers - width) == nearest)


def estimates(found: Sequence[Choice], results: Sequence[Result], remedies: Sequence[Result],
              probes: Sequence[str], gil: GilState | None) -> tuple[Estimate, ...]:
    """Each local candidate's projected run from the diagnosis's cells of the run's GIL state: the
    slowest of its probes' measured speedups (the run waits for every operation), and its start-up.
    A cluster is never started on a probe's word: distributed candidates have no estimate."""
    results, remedies = in_state(results, gil), in_state(remedies, gil)
    out = []
    for c in found:
        if c.row.client:
            continue
        speeds = [_probe_speedup(results, remedies, p, c) for p in probes] or [None]
        known = None if any(s is None for s in speeds) else min(s for s in speeds if s is not None)
        out.append(Estimate(c, 1.0 if c.scheduler == Scheduler.SYNCHRONOUS else known, _startup(c)))
    return tuple(out)


def without_pilot(found: Sequence[Choice], measured: Sequence[Estimate] = (), serial: float | None = None,
                  margin: float = ESTIMATE_MARGIN) -> tuple[Choice, tuple[str, ...]]:
    """The choice without a pilot, and why. With the diagnosis's speedups (``estimates``): the
    candidate with the least projected run (``serial`` seconds of serial work over its speedup,
    plus its start-up), but the simplest one unless another is faster by more than ``margin`` (the
    pilot's tie rule, without repetitions to judge the noise by). Candidates never measured are left
    out. With no parallel candidate measured: threads when safe and lock-free (they start in
    microseconds and share memory), else synchronous. A run under ``MIN_PARALLEL`` seconds of
    serial work takes no process pool."""
    short: tuple[str, ...] = ()
    if serial is not None and serial < MIN_PARALLEL and any(c.row.shares_memory for c in found):
        found = [c for c in found if c.row.shares_memory]
        short = (f"about {serial:.2f} s of serial work, under {MIN_PARALLEL:.0f} s: too short for a process "
                 "pool's fixed costs to pay, so only synchronous and threads",)
    pick, why = _ranked(found, measured, serial, margin)
    return pick, short + why


def _ranked(found: Sequence[Choice], measured: Sequence[Estimate], serial: float | None,
            margin: float) -> tuple[Choice, tuple[str, ...]]:
    order = {_identity(c): k for k, c in enumerate(found)}
    given = {_identity(e.choice) for e in measured}
    serial_one = [Estimate(c, 1.0, 0.0) for c in found[:1] if c.scheduler == Scheduler.SYNCHRONOUS
                  and _identity(c) not in given]  # synchronous is x1.0 by definition
    timed = sorted(((e, t) for e in (*serial_one, *measured) if _identity(e.choice) in order
                    and (t := e.seconds(serial)) is not None),
                   key=lambda et: order[_identity(et[0].choice)])  # simplest first, as ``found`` lists them
    if not any(e.choice.scheduler != Scheduler.SYNCHRONOUS for e, _ in timed):
        plain = [c for c in found if c.scheduler == Scheduler.THREADS and not c.locks]
        pick = plain[0] if plain else found[0]
        return pick, (f"no speed measured for a concurrent candidate: {label(pick)} "
                      "(threads when safe with no lock, else synchronous)",)
    best = min(t for _, t in timed)
    pick_e = next(e for e, t in timed if t <= best * (1 + margin))
    run = f"{serial:.1f} s of serial work" if serial is not None else "a run of unknown length (speedups alone)"
    scores = ", ".join(f"{label(e.choice)} x{e.speedup:.2f}" + (f" + {e.startup:.2f} s start" if e.startup and serial
                                                                else "") for e, _ in timed)
    why = [f"without a pilot, from the diagnosis's measured speedups ({scores}) over {run}: {label(pick_e.choice)}"]
    fastest = min(timed, key=lambda et: et[1])[0]
    if fastest is not pick_e:
        why.append(f"chose the simpler {label(pick_e.choice)}: {label(fastest.choice)} is not faster by more than "
                   f"x{1 + margin:.2f}")
    return found[order[_identity(pick_e.choice)]], tuple(why)  # the candidate itself: safety's own record


def speedup_of(c: Choice, measured: Sequence[Estimate]) -> float | None:
    """The speedup the diagnosis measured for candidate ``c`` (None: not measured)."""
    return next((e.speedup for e in measured if _identity(e.choice) == _identity(c)), None)


def _identity(c: Choice) -> tuple[Scheduler, str, tuple[Remedy, ...]]:
    """A candidate's identity: its scheduler, its label and the locks it holds."""
    return c.scheduler, label(c), tuple(r.key for r in c.locks)

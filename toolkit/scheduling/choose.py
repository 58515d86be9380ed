"""Which dask scheduler a computation should run on: safety from the probes, speed from the run.

Two pure functions, no I/O:

- ``candidates``: the schedulers the diagnosis allows for the operations a computation runs
  concurrently (probe names). A scheduler is a candidate only if every declared probe is safe
  in every mode of its kind that was diagnosed (a race needs no particular thread count, so a
  crash at 4 threads rules out 2): threads need the threads modes, process schedulers the
  processes modes, and forking a process that already opened files needs the fork-safety probes.
  A probe with no result is no evidence: only the synchronous scheduler survives without one.
  Threads made safe by a verified remedy (one global lock) are a candidate that holds that lock.
- ``decide``: the fastest candidate on the pilot (the run's own graph, timed side by side), but
  the simplest one unless another is faster beyond the noise: a one-sided 95% Welch interval on
  the ratio of their projected times (logs) lies wholly beyond ``MARGIN``. The noise is what the
  repetitions show, never less than ``NOISE_FLOOR``: two repetitions that happen to agree do not
  make a quiet machine. The ranking is settled when every other candidate is slower beyond the
  noise, or (a more complex one) cannot be faster by the margin.

The speed of a probe is not the speed of a run: the wind probe measured threads x1.01-1.09 and
processes x1.52-1.75 while the real graph ran threads 1.4x faster than processes. So probes
only ever rule candidates out; the pilot ranks them.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from threadprobe.records import Choice, Mode, PilotRow, Result, is_clean, is_safe, is_unavailable, serial_failures

#: Simplicity, most simple first: the tie-break when a pilot cannot tell candidates apart.
ORDER = ("synchronous", "threads", "processes", "distributed")
#: A more complex scheduler must be this much faster (median projected time) to be worth it.
MARGIN = 0.03
#: The least relative spread assumed of one timed repetition on a shared machine.
NOISE_FLOOR = 0.05
CONFIDENCE = 0.95
#: Probes that say whether a process forked after files were opened can use them (dask's
#: processes scheduler with the fork start method does exactly that).
FORK_PROBES = ("fork_safety.netcdf4_fresh_open_in_child", "fork_safety.netcdf4_inherited_dataset",
               "fork_safety.h5py_fresh_open_in_child")


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


def label(c: Choice) -> str:
    """A candidate's short name in pilot tables: 'threads 2', 'processes 2 (fork)'..."""
    if c.scheduler == "synchronous":
        return "synchronous"
    if c.scheduler == "threads":
        return f"threads {c.threads_per_worker}" + (" + lock" if c.locks else "")
    if c.scheduler == "processes":
        return f"processes {c.n_workers}" + (f" ({c.context})" if c.context else "")
    return f"distributed {c.n_workers}x{c.threads_per_worker}" + (" + lock" if c.locks else "")


def _kind_safe(results: Sequence[Result], probe: str, mode: Mode, broken: set[str]) -> bool | None:
    """Is ``probe`` safe in every diagnosed mode of this kind? None when there is no evidence."""
    mine = [r for r in results if r.probe == probe and r.mode == mode and r.remedy is None
            and not is_unavailable(r.verdict)]
    if not mine:
        return None
    return all(is_safe(r, probe in broken) for r in mine)


def candidates(results: Sequence[Result], probes: Sequence[str], machine: Machine, workload: str = "",
               remedies: Sequence[Result] = (), memory_per_worker_gb: float = 2.0
               ) -> tuple[tuple[Choice, ...], tuple[str, ...]]:
    """The safe schedulers for a computation that runs ``probes`` concurrently, and why."""
    broken = serial_failures(results)
    rationale: list[str] = []
    found: list[Choice] = [Choice(workload, "synchronous", 1, 1, source="safe candidates")]
    workers = max(1, min(machine.cores, int(machine.memory_gb // memory_per_worker_gb) or 1))
    if not probes:
        rationale.append("no operations declared: only the synchronous scheduler is known safe")
        return tuple(found), tuple(rationale)
    threads = [_kind_safe(results, p, Mode.THREADS, broken) for p in probes]
    processes = [_kind_safe(results, p, Mode.PROCESSES, broken) for p in probes]
    missing = [p for p, t, q in zip(probes, threads, processes) if t is None and q is None]
    if missing:
        rationale.append(f"no evidence for {', '.join(missing)} (not diagnosed, or unavailable): "
                         "only the synchronous scheduler is known safe")
        return tuple(found), tuple(rationale)
    for p, ok in zip(probes, threads):
        rationale.append(f"{p}: threads {'safe' if ok else 'UNSAFE' if ok is False else 'not diagnosed'}")
    for p, ok in zip(probes, processes):
        rationale.append(f"{p}: processes {'safe' if ok else 'UNSAFE' if ok is False else 'not diagnosed'}")
    if all(threads):
        found.append(Choice(workload, "threads", 1, machine.cores, source="safe candidates"))
    else:
        fixed = {r.probe for r in remedies if r.remedy == "global_lock" and is_clean(r.verdict)}
        if all(ok or p in fixed for p, ok in zip(probes, threads)):
            deps = sorted({r.dependency for r in remedies if r.probe in probes and r.remedy == "global_lock"})
            locks = tuple(f"global:{d}" for d in deps) or ("global:threadprobe",)
            found.append(Choice(workload, "threads", 1, machine.cores, locks=locks, source="safe candidates"))
            rationale.append("threads are safe with one global lock around every task (remedy verified): "
                             "a candidate that holds it")
    if all(processes):
        fork = [_kind_safe(results, p, Mode.PROCESSES, broken) for p in FORK_PROBES]
        fork_ok = all(fork) if any(f is not None for f in fork) else False
        context = "fork" if fork_ok else "spawn"
        if not fork_ok:
            rationale.append("forking after files were opened is not known safe: processes spawn fresh interpreters")
        found.append(Choice(workload, "processes", workers, 1, context=context, source="safe candidates"))
        found.append(Choice(workload, "distributed", workers, 1, source="safe candidates"))
    return tuple(found), tuple(rationale)


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
    from scipy import stats

    floor = NOISE_FLOOR ** 2
    va, vb = max(statistics.variance(a), floor) / len(a), max(statistics.variance(b), floor) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf(CONFIDENCE, df)) * math.sqrt(va + vb)
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


def fallback(found: Sequence[Choice]) -> Choice:
    """Without a pilot (a run too short to time, no input to sample): threads when safe and
    lock-free (they start in microseconds and share memory), else synchronous."""
    plain = [c for c in found if c.scheduler == "threads" and not c.locks]
    return plain[0] if plain else found[0]

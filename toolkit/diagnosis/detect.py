"""Pure functions that turn what the parent saw into outcomes, verdicts and statistics.

- ``classify``: one trial's raw run -> ``Outcome`` (crash, hang, error, corrupt or ok), with
  corruption told apart: data that differ, or only an exception's message.
- ``summarise``: the outcomes of one probe x mode x workers -> ``Result`` with its verdict, a 95%
  upper bound on the per-trial failure rate, and one per concurrent call.
- ``add_scaling``: speedup, efficiency and scaling against the serial throughput of the same run.
- ``contention``: what the threads wait for, from their sampled states (see harness.states).

Imports records only: no processes, no files.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from threadprobe.records import (
    verdict_of,
    EvidenceKind,
    Stage,
    SEVERITY,
    Contention,
    Corruption,
    Evidence,
    GilState,
    Kind,
    Mode,
    Outcome,
    Purpose,
    Remedy,
    Result,
    Safety,
    Scaling,
    Speed,
    ThreadState,
    TrialRun,
    Verdict,
    Waits,
    WorkerRun,
    worst,
)

MAX_EVIDENCE = 8
MAX_MISMATCHES = 3
#: Of the samples of threads that were not waiting for a CPU, the share blocked on the GIL above
#: which threads are GIL-bound. Measured at 4 threads on 2 cores, 12 trials each, with and without
#: a busy neighbour: GIL-holding C calls and cf-units read 0.40-0.72, GIL-releasing C calls up to
#: 0.23 (Python between calls).
GIL_SHARE = 0.33
#: The share of the threads' time (on a CPU or blocked) blocked on any other lock above which a
#: lock serialises the work: a private C mutex's four threads read 0.13-0.55 (the free-threaded
#: build with the GIL off, 20 diagnoses beside a busy neighbour; by samples it had read 0.12-0.55,
#: and under 0.05 in 2 of 20) and h5py 0.07-0.52 by samples (with GIL waits of up to 0.2 beside,
#: since h5py holds the GIL for part of its calls); GIL-free work never blocks on another lock (0.00).
LOCK_SHARE = 0.05
#: Fewer samples than this (not counting threads queued for a CPU) say nothing.
MIN_SAMPLES = 50
#: A window of sweeps (harness.states.WINDOW) with fewer samples than this is left out of the
#: median; with fewer than MIN_WINDOWS windows left, the whole trial's shares decide.
WINDOW_SAMPLES = 15
MIN_WINDOWS = 3
#: Seconds of thread time off the run queue (on a CPU or blocked) below which the measured times
#: say too little, and the lock share is taken from the samples instead.
MIN_TIMED = 0.05


@dataclass(frozen=True)
class Oracle:
    """Digests of the serial run, per task index: of the whole result, and of its data alone
    (exception messages left out) where the two differ."""

    digests: dict[str, str]
    data: dict[str, str] = field(default_factory=dict)

    def data_of(self, i: str) -> str:
        return self.data.get(i, self.digests[i])

    @classmethod
    def of(cls, run: TrialRun) -> Oracle:
        digests: dict[str, str] = {}
        data: dict[str, str] = {}
        for w in run.workers:
            if w.report is not None:
                digests.update(w.report.digests)
                data.update(w.report.data_digests)
        return cls(digests, data)


def classify(run: TrialRun, oracle: Oracle | None) -> Outcome:
    """Classify one trial. ``oracle`` comes from the serial run (None for the oracle trial itself)."""
    trial = run.trial
    evidence: list[Evidence] = []
    if run.harness_error:
        evidence.append(Evidence(kind=EvidenceKind.ERROR, trial=trial.index, stage=Stage.HARNESS,
                                 summary=f"harness failure: {run.harness_error}", message=run.harness_error))
    for w in run.workers:
        evidence += _worker_evidence(w, run, oracle)
    kind = worst([Kind(e.kind) for e in evidence])
    reports = [w.report for w in run.workers if w.report is not None]
    cpu = [r.cpu for r in reports if r.cpu is not None]
    process_cpu = [w.cpu for w in run.workers if w.cpu is not None]
    return Outcome(
        trial=trial,
        kind=kind,
        evidence=tuple(evidence),
        tasks=sum(r.tasks for r in reports),
        seconds=run.seconds if kind == Kind.OK else None,
        cpu=sum(cpu) if len(cpu) == len(run.workers) else None,
        cpu_only=any(r.cpu_only for r in reports),
        queued=sum(r.queued or 0.0 for r in reports) if cpu else None,
        wall=run.wall,
        process_cpu=sum(process_cpu) if process_cpu else None,
        states=dict(run.states),
        unavailable=next((err.missing for w in run.workers if w.report is not None and _reported(w, run)
                          for err in w.report.errors if err.missing and err.stage in (Stage.OPEN, Stage.PREPARE)), None),
        gil_enabled=any_true(r.gil_enabled for r in reports),
        gil_reenabled_by=tuple(sorted({m for r in reports for m in r.gil_reenabled_by})),
    )


def any_true(flags: Iterable[bool | None]) -> bool | None:
    """True if any says so, False if all that spoke said not, None if none spoke."""
    said = [f for f in flags if f is not None]
    return any(said) if said else None


def _reported(w: WorkerRun, run: TrialRun) -> bool:
    """The worker lived to write its report (it did not hang, die by a signal or exit early)."""
    return not (run.hung and w.stacks is not None) and w.signal is None and w.report is not None


def _worker_evidence(w: WorkerRun, run: TrialRun, oracle: Oracle | None) -> list[Evidence]:
    """What one worker shows: a hang, a crash, an early exit, or its errors and wrong results."""
    trial = run.trial
    if run.hung and w.stacks is not None:
        return [Evidence(kind=EvidenceKind.HANG, trial=trial.index, worker=w.worker, stacks=w.stacks,
                         stack_source=w.stack_source,
                         summary=f"worker {w.worker} made no progress for {trial.timeout:g}s; stacks taken, tree killed")]
    if w.signal is not None:
        return [Evidence(kind=EvidenceKind.CRASH, trial=trial.index, worker=w.worker, signal=w.signal,
                         traceback=w.fault or w.output, summary=f"worker {w.worker} died by {w.signal}")]
    if w.report is None:
        return [Evidence(kind=EvidenceKind.ERROR, trial=trial.index, worker=w.worker, stage=Stage.EXIT,
                         error_type="WorkerExit", message=w.output[-2000:],
                         summary=f"worker {w.worker} exited with code {w.returncode} before reporting")]
    found = []
    for err in w.report.errors:
        where = f" at i={err.index}" if err.index is not None else ""
        found.append(Evidence(kind=EvidenceKind.ERROR, trial=trial.index, worker=w.worker, stage=err.stage,
                              index=err.index, error_type=err.error_type, message=err.message,
                              traceback=err.traceback,
                              summary=f"{err.error_type} in {err.stage}{where}: {first_line(err.message)}"))
    return found + (_corruption(w, trial.index, oracle) if oracle is not None else [])


def _corruption(w: WorkerRun, index: int, oracle: Oracle) -> list[Evidence]:
    """The worker's results that differ from the serial oracle's (the first few), with severity."""
    digests = w.report.digests if w.report else {}
    data = w.report.data_digests if w.report else {}
    bad = sorted(int(i) for i, d in digests.items() if i in oracle.digests and oracle.digests[i] != d)
    found = []
    for i in bad[:MAX_MISMATCHES]:
        key = str(i)
        only_message = data.get(key, digests[key]) == oracle.data_of(key)
        what = "an exception's message" if only_message else "the result"
        found.append(Evidence(kind=EvidenceKind.CORRUPT, trial=index, worker=w.worker, index=i,
                              expected=oracle.digests[key], actual=digests[key],
                              severity=Corruption.MESSAGE if only_message else Corruption.DATA,
                              summary=f"{what} of i={i} differs from the serial run ({len(bad)} of {len(digests)} differ)"))
    return found


def first_line(text: object) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def failure_upper95(failures: int, n: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound on a failure probability (1.0 with no trials).

    With no failures this is 1 - 0.05**(1/n), about 3/n: the "rule of three".
    """
    if n <= 0 or failures >= n:
        return 1.0
    # scipy.special, not scipy.stats: the same inverse (beta.ppf(q, a, b) is betaincinv(a, b, q))
    # for a third of the import (0.6 s against 1.7 s), which every diagnosis pays. Imported here so
    # that commands which only read a report (compare, validate, report-bug) pay nothing.
    from scipy.special import betaincinv

    return float(betaincinv(failures + 1, n - failures, 0.95))


def timed(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Clean trials to take timings from: the timing trials when there are any (the others carry
    instruments or a tiny switch interval that distort throughput)."""
    clean = [o for o in outcomes if o.kind == Kind.OK and o.seconds and o.tasks]
    return [o for o in clean if o.trial.purpose == Purpose.TIMING] or clean


def throughput(outcomes: Sequence[Outcome]) -> float | None:
    """Median tasks per second over the clean timing trials."""
    chosen = timed(outcomes)
    if not chosen:
        return None
    return statistics.median(o.tasks / o.seconds for o in chosen)  # type: ignore[operator]


def busy(outcomes: Sequence[Outcome], cores: int) -> float | None:
    """How much of the work time the probe's threads could run (on a CPU or queued for one)."""
    values = [
        o.cpu / (o.seconds * (max(1, min(o.trial.workers, cores)) if o.cpu_only else o.trial.workers))
        for o in timed(outcomes)
        if o.cpu is not None and o.seconds
    ]
    return round(min(1.0, statistics.median(values)), 3) if values else None


def queued(outcomes: Sequence[Outcome], cores: int) -> float | None:
    """Share of the threads' runnable time spent waiting for a CPU, beyond what the threads'
    own number forces (4 threads on 2 cores queue half the time by themselves)."""
    values = []
    for o in timed(outcomes):
        if o.queued is None or not o.cpu or o.cpu_only:
            continue
        own = max(0.0, 1 - max(1, min(o.trial.workers, cores)) / o.trial.workers)
        values.append(max(0.0, o.queued / o.cpu - own))
    return round(statistics.median(values), 3) if values else None


def pick_evidence(outcomes: Iterable[Outcome]) -> tuple[Evidence, ...]:
    """A few pieces of evidence of every kind, worst kinds first."""
    by_kind: dict[str, list[Evidence]] = {}
    for outcome in outcomes:
        for ev in outcome.evidence:
            by_kind.setdefault(ev.kind, []).append(ev)
    picked: list[Evidence] = []
    for kind in SEVERITY:
        picked.extend(by_kind.get(kind.value, [])[:3])
    return tuple(picked[:MAX_EVIDENCE])


def operations(outcomes: Sequence[Outcome]) -> int:
    """Task calls made while other threads or processes of the same trial ran, in clean trials."""
    return sum(o.tasks for o in outcomes if o.kind == Kind.OK and o.trial.workers > 1)


def summarise(probe: str, dependency: str, outcomes: Sequence[Outcome], remedy: Remedy | None = None,
              cores: int = 1) -> Result:
    """The verdict of one probe x mode x workers: the worst outcome seen wins."""
    trial = outcomes[0].trial
    counts = Counter(o.kind for o in outcomes)
    failures = sum(n for kind, n in counts.items() if kind != Kind.OK)
    kind = worst(counts)
    corruption = None
    if kind == Kind.CORRUPT:
        severities = {ev.severity for o in outcomes for ev in o.evidence if ev.kind == Kind.CORRUPT.value}
        corruption = Corruption.DATA if Corruption.DATA in severities else Corruption.MESSAGE
    ops = operations(outcomes)
    return Result(
        probe=probe,
        dependency=dependency,
        mode=trial.mode,
        workers=trial.workers,
        processes=trial.processes,
        threads=trial.threads,
        trials=len(outcomes),
        verdict=verdict_of(kind),
        safety=Safety(
            outcomes={k: counts.get(k, 0) for k in (Kind.OK, Kind.CRASH, Kind.CORRUPT, Kind.ERROR, Kind.HANG)},
            failure_rate_upper95=round(failure_upper95(failures, len(outcomes)), 4),
            evidence=pick_evidence(outcomes),
            corruption=corruption,
            operations=ops,
            operation_bound=round(failure_upper95(0, ops), 9) if ops and not failures else None,
        ),
        speed=Speed(throughput=throughput(outcomes), busy_fraction=busy(outcomes, cores),
                    queued_fraction=queued(outcomes, cores)),
        remedy=remedy,
        seconds=round(sum(o.wall for o in outcomes), 3),
        gil_enabled=any_true(o.gil_enabled for o in outcomes),
        gil=trial.gil,
        gil_reenabled_by=tuple(sorted({m for o in outcomes for m in o.gil_reenabled_by})),
    )


def not_run(probe: str, dependency: str, mode: Mode, processes: int, threads: int, verdict: Verdict,
            evidence: Evidence, gil: GilState = GilState.AS_IMPORTED) -> Result:
    """A result for a probe that could not run at all (unavailable, or its prepare failed)."""
    return Result(
        probe=probe, dependency=dependency, mode=mode, workers=processes * threads, processes=processes,
        threads=threads, trials=0, verdict=verdict, gil=gil,
        safety=Safety({k: 0 for k in (Kind.OK, Kind.CRASH, Kind.CORRUPT, Kind.ERROR, Kind.HANG)}, 1.0, (evidence,)),
    )


def scales(speedup: float, workers: int, cores: int) -> bool:
    """At least half of the attainable extra parallelism is realised."""
    attainable = max(1, min(workers, cores))
    return attainable == 1 or speedup >= 1 + 0.5 * (attainable - 1)


def counted(states: Mapping[ThreadState, int]) -> int:
    """Samples of threads that were not waiting for a CPU: what the shares are of."""
    return sum(n for state, n in states.items() if state != ThreadState.QUEUED)


def state_shares(states: Mapping[ThreadState, int]) -> dict[ThreadState, float]:
    """Each state's share of the samples of threads that were not waiting for a CPU."""
    total = counted(states)
    if not total:
        return {}
    return {state: round(n / total, 3) for state, n in sorted(states.items()) if state != ThreadState.QUEUED}


def unqueued_time(times: Mapping[ThreadState, float]) -> float:
    """The threads' seconds off the run queue (on a CPU, or blocked): what shares are taken of."""
    return sum(t for state, t in times.items() if state != ThreadState.QUEUED)


def time_shares(times: Mapping[ThreadState, float]) -> dict[ThreadState, float]:
    """Each state's share of the threads' time off the run queue (on a CPU, or blocked)."""
    total = unqueued_time(times)
    if total < MIN_TIMED:
        return {}
    return {state: round(t / total, 3) for state, t in sorted(times.items()) if state != ThreadState.QUEUED}


def wait_shares(states: Mapping[ThreadState, int], windows: Sequence[Mapping[ThreadState, int]] = (),
                times: Mapping[ThreadState, float] | None = None) -> tuple[float, float, str]:
    """(GIL share, other-lock share, how each was taken).

    The GIL share is the median over windows of sweeps when there are enough of them: every
    process has a GIL, and beside a busy neighbour a holder preempted for a few milliseconds
    queues every thread behind it, so a spell of such waits must not decide. The lock share is
    of the threads' whole time, measured (``harness.states.split_time``): a mutex's woken waiters
    queue for a CPU where a sample cannot see them, and GIL-free work without a lock never waits
    on one, however busy the machine. Without measured times it is of all samples.
    """
    whole = state_shares(states)
    timed = time_shares(times or {})
    lock = timed.get(ThreadState.LOCK, 0.0) if timed else whole.get(ThreadState.LOCK, 0.0)
    lock_how = f"lock: of {unqueued_time(times or {}):.2f} s of thread time" if timed else "lock: all samples"
    shares = [state_shares(w) for w in windows if counted(w) >= WINDOW_SAMPLES]
    if len(shares) >= MIN_WINDOWS:
        gil = statistics.median(s.get(ThreadState.GIL, 0.0) for s in shares)
        return gil, lock, f"GIL: median of {len(shares)} windows; {lock_how}"
    return whole.get(ThreadState.GIL, 0.0), lock, f"GIL: all samples; {lock_how}"


def contention(states: Mapping[ThreadState, int], windows: Sequence[Mapping[ThreadState, int]] = (),
               gil_enabled: bool | None = None, reenabled: bool = False,
               times: Mapping[ThreadState, float] | None = None) -> tuple[Contention | None, tuple[str, ...]]:
    """What threads wait for, from their sampled states: the GIL, a library lock, or nothing
    that matters. None when too few samples were taken (or /proc could not be read).

    Waits on a free-threaded interpreter's own locks (``interp``: per-object locks, critical
    sections) are neither: they are reported, and never make a class. With the GIL off in the
    workers (``gil_enabled`` False) the class is ``none`` or ``library_lock``: there is no GIL to
    wait on, whatever an address says. Where an import turned the GIL back on (``reenabled``, a
    free-threaded build) a GIL-bound cell is ``gil`` even beside a library lock's waits: that GIL
    is the first thing between the threads and the build's parallelism (the lock share stays in
    the evidence)."""
    samples = counted(states)
    if samples < MIN_SAMPLES:
        return None, (f"not measured: {samples} thread samples (at least {MIN_SAMPLES} needed)",)
    gil, lock, how = wait_shares(states, windows, times)
    queued_share = states.get(ThreadState.QUEUED, 0) / max(1, sum(states.values()))
    interp = state_shares(states).get(ThreadState.INTERP, 0.0)
    own = f", on the interpreter's own per-object locks in {interp:.0%} (never a class)" if interp else ""
    lines = (f"threads blocked on the GIL in {gil:.0%} and on another lock in {lock:.0%}{own} of {samples} samples "
             f"({how}; GIL-bound from {GIL_SHARE:.0%}, lock-bound from {LOCK_SHARE:.0%}); "
             f"{queued_share:.0%} of all samples waited for a CPU and are left out",)
    if reenabled and gil_enabled and gil >= GIL_SHARE:
        return Contention.GIL, lines
    if lock >= LOCK_SHARE:
        # A thread waiting on a library's lock while its holder keeps the GIL (h5py's calls hold
        # both) adds GIL waits too: any real lock wait means a lock serialises the work.
        return Contention.LIBRARY_LOCK, lines
    if gil >= GIL_SHARE and gil_enabled is not False:
        return Contention.GIL, lines
    return Contention.NONE, lines


#: Thread states are sampled per probe and GIL state: the threads modes of one state share them.
StateKey = tuple[str, GilState]


def gil_lines(r: Result) -> tuple[str, ...]:
    """What the workers said of the GIL, where it matters: a free-threaded build whose imports
    turned it back on (and which module did), or a cell that ran with it forced off."""
    if r.gil_reenabled_by and r.gil_enabled:
        return (f"the GIL was on in the workers: importing {', '.join(r.gil_reenabled_by)} turned it back on",)
    if r.gil == GilState.OFF:
        said = {None: "not reported", True: "ON (not forced off)", False: "off"}[r.gil_enabled]
        return (f"GIL forced off (PYTHON_GIL=0); in the workers it was {said}",)
    return ()


def add_scaling(results: Sequence[Result], cores: int,
                states: Mapping[StateKey, Mapping[ThreadState, int]] | None = None,
                waits: Mapping[StateKey, Mapping[str, int]] | None = None,
                windows: Mapping[StateKey, Sequence[Mapping[ThreadState, int]]] | None = None,
                times: Mapping[StateKey, Mapping[ThreadState, float]] | None = None) -> list[Result]:
    """Speedup, efficiency and scaling against each probe's serial throughput, and the probe's
    contention class (measured once per probe and GIL state, from ``states``) on its threads results."""
    serial = {(r.probe, r.remedy): r.speed.throughput for r in results if r.mode == Mode.SERIAL}
    out = []
    for r in results:
        base = serial.get((r.probe, r.remedy))
        key = (r.probe, r.gil)
        if r.mode != Mode.SERIAL and base and r.speed.throughput is not None:
            speedup = r.speed.throughput / base
            r = r.replace(speed=r.speed.replace(
                speedup=round(speedup, 3), efficiency=round(speedup / r.workers, 3),
                scaling=Scaling.SCALES if scales(speedup, r.workers, cores) else Scaling.SERIALIZED))
        if r.mode == Mode.THREADS and states and key in states and r.remedy is None:
            cls, lines = contention(states[key], (windows or {}).get(key, ()), gil_enabled=r.gil_enabled,
                                    reenabled=bool(r.gil_reenabled_by), times=(times or {}).get(key))
            lines = gil_lines(r) + lines
            for frame, n in sorted(((waits or {}).get(key) or {}).items(), key=lambda kv: -kv[1])[:3]:
                lines += (f"py-spy: idle with the GIL free in {frame} ({n} samples)",)
            r = r.replace(contention=Waits(cls, lines, state_shares(states[key])))
        elif r.mode == Mode.PROCESSES and r.speed.throughput is not None:
            # Separate processes share no GIL and no in-process lock: whatever holds them back
            # (disk, memory bandwidth, a busy machine) is not contention in this sense.
            r = r.replace(contention=Waits(Contention.NONE, ("separate processes share no GIL and no in-process lock",)))
        out.append(r)
    return out

"""Pure functions that turn what the parent saw into outcomes, verdicts and statistics.

- ``classify``: one trial's raw run -> ``Outcome`` (crash, hang, error, corrupt or ok).
- ``summarise``: the outcomes of one probe x mode x workers -> ``Result`` with its verdict and a
  95% upper bound on the per-trial failure rate (n clean trials bound it at about 3/n).
- ``add_scaling``: speedup, efficiency and scaling against the serial throughput of the same run,
  and the contention class (none, gil, library_lock) with its evidence.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from toolkit.isolation import TrialRun
from toolkit.records import SEVERITY, Evidence, Outcome, Result, worst

MAX_EVIDENCE = 8
MAX_MISMATCHES = 3
#: A gilknocker contention metric above this means threads queue for the GIL. Measured on the
#: planted defects: a GIL-holding C call reads 0.84-0.95, a C call behind a private mutex 0.01-0.06.
GIL_THRESHOLD = 0.2
#: Threads busier than this (runnable time over work time) are not waiting on anything: planted
#: defects read ~0.5 behind a lock or the GIL and ~0.95 when the work really runs in parallel.
BUSY_THRESHOLD = 0.75


def classify(run: TrialRun, oracle: Mapping[str, str] | None) -> Outcome:
    """Classify one trial. ``oracle`` maps index -> digest from the serial run (None for the oracle)."""
    trial = run.trial
    evidence: list[Evidence] = []
    kinds: list[str] = []

    def add(kind: str, **fields: object) -> None:
        kinds.append(kind)
        evidence.append(Evidence(kind=kind, trial=trial.index, **fields))  # type: ignore[arg-type]

    if run.harness_error:
        add("error", stage="harness", summary=f"harness failure: {run.harness_error}", message=run.harness_error)
    tasks = 0
    for w in run.workers:
        report = w.report or {}
        tasks += int(report.get("tasks") or 0)
        if run.hung and w.stacks is not None:
            add(
                "hang",
                worker=w.worker,
                summary=f"worker {w.worker} made no progress for {trial.timeout:g}s; stacks taken, tree killed",
                stacks=w.stacks,
                stack_source=w.stack_source,
            )
            continue
        if w.signal is not None:
            add(
                "crash",
                worker=w.worker,
                signal=w.signal,
                summary=f"worker {w.worker} died by {w.signal}",
                traceback=w.fault or w.output,
            )
            continue
        if w.report is None:
            code = w.returncode
            add(
                "error",
                worker=w.worker,
                stage="exit",
                error_type="WorkerExit",
                summary=f"worker {w.worker} exited with code {code} before reporting",
                message=w.output[-2000:],
            )
            continue
        for err in report.get("errors", []):
            where = f" at i={err['index']}" if err.get("index") is not None else ""
            add(
                "error",
                worker=w.worker,
                stage=err.get("stage"),
                index=err.get("index"),
                error_type=err.get("error_type"),
                message=err.get("message"),
                traceback=err.get("traceback"),
                summary=f"{err.get('error_type')} in {err.get('stage')}{where}: {first_line(err.get('message'))}",
            )
        if oracle is not None:
            digests = report.get("digests", {})
            bad = sorted((int(i) for i, d in digests.items() if i in oracle and oracle[i] != d))
            for i in bad[:MAX_MISMATCHES]:
                add(
                    "corrupt",
                    worker=w.worker,
                    index=i,
                    expected=oracle[str(i)],
                    actual=digests[str(i)],
                    summary=f"result of i={i} differs from the serial run ({len(bad)} of {len(digests)} differ)",
                )
    kind = worst(kinds)
    gil = [w.report["gil_wait"] for w in run.workers if w.report and w.report.get("gil_wait") is not None]
    cpu = [w.report["cpu"] for w in run.workers if w.report and w.report.get("cpu") is not None]
    cpu_only = any(w.report.get("cpu_only") for w in run.workers if w.report)
    return Outcome(
        trial=trial,
        kind=kind,
        evidence=tuple(evidence),
        tasks=tasks,
        seconds=run.seconds if kind == "ok" else None,
        gil_wait=statistics.fmean(gil) if gil else None,
        cpu=sum(cpu) if len(cpu) == len(run.workers) else None,
        cpu_only=cpu_only,
        queued=sum(w.report.get("queued") or 0.0 for w in run.workers if w.report) if cpu else None,
    )


def first_line(text: object) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def failure_upper95(failures: int, n: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound on a failure probability (1.0 with no trials).

    With no failures this is 1 - 0.05**(1/n), about 3/n: the "rule of three".
    """
    if n <= 0 or failures >= n:
        return 1.0
    if failures == 0:
        return 1.0 - 0.05 ** (1.0 / n)

    def cdf(p: float) -> float:
        return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(failures + 1))

    lo, hi = failures / n, 1.0
    for _ in range(60):  # P(X <= failures; p) falls with p: find where it crosses 0.05
        mid = (lo + hi) / 2
        if cdf(mid) > 0.05:
            lo = mid
        else:
            hi = mid
    return hi


def timed(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Clean trials to take timings from: the timing trials when there are any (the others carry
    instruments or a tiny switch interval that distort throughput)."""
    clean = [o for o in outcomes if o.kind == "ok" and o.seconds and o.tasks]
    return [o for o in clean if o.trial.purpose == "timing"] or clean


def throughput(outcomes: Sequence[Outcome]) -> float | None:
    """Median tasks per second over the clean timing trials."""
    chosen = timed(outcomes)
    if not chosen:
        return None
    return statistics.median(o.tasks / o.seconds for o in chosen)  # type: ignore[operator]


def busy(outcomes: Sequence[Outcome], cores: int) -> float | None:
    """How much of the work time the probe's threads could run (on a CPU or queued for one).

    With schedstat, runnable time over work time x threads: 1.0 means nothing waited for a lock
    or the GIL, however loaded the machine. With CPU time only, the threads can use at most
    min(threads, cores) CPUs, so that is the denominator (and other processes' load lowers it).
    """
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
        picked.extend(by_kind.get(kind, [])[:3])
    return tuple(picked[:MAX_EVIDENCE])


def summarise(probe: str, dependency: str, outcomes: Sequence[Outcome], remedy: str | None = None,
              cores: int = 1) -> Result:
    """The verdict of one probe x mode x workers: the worst outcome seen wins."""
    trial = outcomes[0].trial
    counts = Counter(o.kind for o in outcomes)
    failures = sum(n for kind, n in counts.items() if kind != "ok")
    kind = worst(counts)
    gil = [o.gil_wait for o in outcomes if o.gil_wait is not None and o.kind == "ok"]
    return Result(
        probe=probe,
        dependency=dependency,
        mode=trial.mode,
        workers=trial.workers,
        processes=trial.processes,
        threads=trial.threads,
        trials=len(outcomes),
        outcomes={k: counts.get(k, 0) for k in ("ok", "crash", "corrupt", "error", "hang")},
        verdict="safe" if kind == "ok" else kind,
        failure_rate_upper95=round(failure_upper95(failures, len(outcomes)), 4),
        evidence=pick_evidence(outcomes),
        throughput=throughput(outcomes),
        gil_wait_fraction=round(statistics.median(gil), 4) if gil else None,
        busy_fraction=busy(outcomes, cores),
        queued_fraction=queued(outcomes, cores),
        remedy=remedy,
    )


def not_run(probe: str, dependency: str, mode: str, processes: int, threads: int, verdict: str,
            evidence: Evidence) -> Result:
    """A result for a probe that could not run at all (unavailable, or its prepare failed)."""
    return Result(
        probe=probe,
        dependency=dependency,
        mode=mode,
        workers=processes * threads,
        processes=processes,
        threads=threads,
        trials=0,
        outcomes={k: 0 for k in ("ok", "crash", "corrupt", "error", "hang")},
        verdict=verdict,
        failure_rate_upper95=1.0,
        evidence=(evidence,),
    )


def scales(speedup: float, workers: int, cores: int) -> bool:
    """At least half of the attainable extra parallelism is realised."""
    attainable = max(1, min(workers, cores))
    return attainable == 1 or speedup >= 1 + 0.5 * (attainable - 1)


#: Threads that waited for a CPU more than this share of their runnable time were measured on a
#: machine busy with other work: their speedup and contention figures are flagged as unreliable.
BUSY_MACHINE = 0.2


def classify_contention(
    scaling: str, gil_wait: float | None, busy_fraction: float | None, waits: Mapping[str, int] | None = None,
    queued_fraction: float | None = None,
) -> tuple[str, tuple[str, ...]]:
    """Why threads do not scale: the GIL, a library lock, or nothing that waits (they do scale,
    or busy threads share some hardware).

    ``gil_wait`` is the monitor thread's GIL wait fraction; ``busy_fraction`` is the threads' CPU
    time over work time x usable cores; ``waits`` counts where py-spy saw idle threads wait.
    """
    lines: list[str] = []
    if gil_wait is not None:
        lines.append(f"GIL wait fraction {gil_wait:.2f} (gil above {GIL_THRESHOLD})")
    if busy_fraction is not None:
        lines.append(f"threads busy {busy_fraction:.0%} of the time (waiting below {BUSY_THRESHOLD:.0%})")
    for frame, n in sorted((waits or {}).items(), key=lambda kv: -kv[1])[:3]:
        lines.append(f"py-spy: idle with the GIL free in {frame} ({n} samples)")
    if queued_fraction is not None and queued_fraction > BUSY_MACHINE:
        lines.append(f"unreliable: the machine was busy (threads waited for a CPU {queued_fraction:.0%} of "
                     "their runnable time); re-run on an idle machine")
    if scaling == "scales":
        return "none", tuple(lines)
    if gil_wait is not None and gil_wait >= GIL_THRESHOLD:
        return "gil", tuple(lines)
    if busy_fraction is not None and busy_fraction >= BUSY_THRESHOLD:
        lines.append("threads were busy yet did not scale: shared hardware, not a lock")
        return "none", tuple(lines)
    if busy_fraction is None and gil_wait is None:
        return "none", tuple(lines) + ("not measured",)
    return "library_lock", tuple(lines)


def add_scaling(results: Sequence[Result], cores: int,
                samples: Mapping[tuple[str, str, int], tuple[float | None, dict[str, int]]] | None = None
                ) -> list[Result]:
    """Fill speedup, efficiency, scaling and contention against each probe's serial throughput."""
    serial = {(r.probe, r.remedy): r.throughput for r in results if r.mode == "serial"}
    # The GIL monitor's own thread queues for a CPU when the probe's threads outnumber the cores,
    # and it counts that as waiting for the GIL. Whether an operation serializes on the GIL or on
    # a lock is a property of the operation, so wider modes take the class measured where
    # threads <= cores.
    fitting: dict[tuple[str, str | None], Result] = {}
    for r in results:
        if r.mode == "threads" and r.workers <= cores and r.throughput is not None:
            key = (r.probe, r.remedy)
            if key not in fitting or r.workers > fitting[key].workers:
                fitting[key] = r
    out = []
    for r in results:
        base = serial.get((r.probe, r.remedy))
        if r.mode == "serial" or not base or r.throughput is None:
            out.append(r)
            continue
        speedup = r.throughput / base
        scaling = "scales" if scales(speedup, r.workers, cores) else "serialized"
        _, waits = (samples or {}).get((r.probe, r.mode, r.workers), (None, None))
        if r.mode == "threads":
            ref = fitting.get((r.probe, r.remedy)) if r.workers > cores else None
            gil = ref.gil_wait_fraction if ref is not None else r.gil_wait_fraction
            contention, lines = classify_contention(scaling, gil, r.busy_fraction, waits, r.queued_fraction)
            if ref is not None and scaling != "scales":
                lines = (f"GIL figure taken at {ref.workers} threads ({r.workers} threads exceed the "
                         f"{cores} cores, and the monitor's own thread would queue for a CPU)",) + lines
        else:
            # Separate processes share no GIL and no in-process lock: whatever holds them back
            # (disk, memory bandwidth, a busy machine) is not contention in this sense.
            contention = "none"
            lines = ("separate processes share no GIL and no in-process lock",)
        out.append(
            r.replace(
                speedup=round(speedup, 3),
                efficiency=round(speedup / r.workers, 3),
                scaling=scaling,
                contention=contention,
                contention_evidence=lines,
            )
        )
    return out

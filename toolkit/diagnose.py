"""Plans the trials of a diagnosis, runs them within the time budget, and assembles the report.

For every probe: prepare its inputs in a child, then run trials in this order, so that the
timing trials of all modes sit side by side:

1. a serial trial: the oracle;
2. a timing trial of every mode, serial included: bare, default switch interval, each repeating
   its indices for R rounds, R calibrated on the oracle so a trial lasts ~0.1 s; two of them per mode,
   interleaved across modes, and the median taken, because this machine is noisy;
3. a contention trial of every threads mode with the GIL monitor on; then, for the widest
   threads mode, a py-spy sampled trial when threads did not scale yet the GIL was free
   (instruments perturb throughput, so they never share a trial with the timing);
4. stress trials of every mode, round-robin, until each has n (switch interval 1 microsecond),
   each lasting at least ~50 ms of serial work: a trial of 30 ms can end before a loaded
   machine ever runs two of its threads at once. Modes with one thread per process (serial,
   processes) count their timing trials instead: no switch interval can stress one thread.

Stress trials after the first round stop when the probe's share of the budget is spent (the
share sets aside the minimum rounds of the probes still to come: see ``share_deadline``);
everything else always runs, so every mode has timing and at least one stress trial.
Quick mode runs the serial oracle and the widest threads and processes modes only, up to
``QUICK_TRIALS`` trials each, and stops a mode at its first failure: it answers "is there a
defect that fails in more than 10% of trials" at 95% confidence, not "how often".
"""

from __future__ import annotations

import datetime
import math
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit import detect, isolation, registry
from toolkit.contention import StackSampler
from toolkit.progress import NullProgress, Progress
from toolkit.records import Diagnosis, Evidence, Outcome, ProbeInfo, Result, Trial

DEFAULT_ITERATIONS = 100  # a race hitting 1 task in 20 escapes one trial with probability 0.95**100 < 0.6%
QUICK_TRIALS = 29  # 29 clean trials bound the failure rate below 10% at 95% confidence
STRESS_SWITCH_INTERVAL = 1e-6
DEFAULT_SWITCH_INTERVAL = 0.005  # CPython's own default: what a real dask run sees
STRESS_TARGET = 0.05  # seconds of serial work at least per stress trial: threads need time to meet
TIMING_TARGET = 0.1  # seconds of serial work per timing trial: long enough to time, short enough to afford
MAX_ROUNDS = 2000
SAMPLED_ROUNDS_FACTOR = 4


@dataclass(frozen=True)
class Options:
    probes: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    entry_points: bool = True
    threads: tuple[int, ...] = (2, 4)
    processes: tuple[int, ...] = (2,)
    trials: int = 3  # stress trials per probe x mode
    timing_trials: int = 2  # bare timing trials per mode, interleaved; 0 skips scaling (3 do not fit in 3 min)
    iterations: int | None = None
    budget: float | None = None
    timeout: float = 10.0
    prepare_timeout: float = 300.0
    quick: bool = False
    start: str = "fork"  # fork (a warm fork server per probe) or spawn (a new interpreter per worker)
    attribute: bool = True  # run the py-spy attribution trial when threads look lock-bound
    evidence: bool = True  # reproducers, remedies, native frames and the lock audit
    remedies: str = "first"  # verify remedies for the first failing probe per dependency, "all" or "none"
    workdir: str | None = None
    keep: bool = False
    out: str | None = None  # where reproducer scripts go (reports/repro)
    extra: dict[str, Any] = field(default_factory=dict)

    def modes(self) -> list[tuple[str, int, int]]:
        threads = (max(self.threads),) if self.quick and self.threads else self.threads
        processes = (max(self.processes),) if self.quick and self.processes else self.processes
        return (
            [("serial", 1, 1)]
            + [("threads", 1, n) for n in sorted(set(threads)) if n > 1]
            + [("processes", n, 1) for n in sorted(set(processes)) if n > 1]
        )

    @property
    def trials_per_mode(self) -> int:
        """Trials the progress display expects per mode (stress plus measurement trials)."""
        if self.quick:
            return QUICK_TRIALS
        return self.trials + self.timing_trials + 1


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


class Launchers:
    """Fork servers shared by the probes that preload the same libraries.

    A fork server only ever imports and forks (prepare and trials run in its children), so
    sharing one between probes keeps every trial's state fresh while paying for the imports
    (a second for Iris) once per library set instead of once per probe.
    """

    def __init__(self, options: Options, notes: list[str]) -> None:
        self.options = options
        self.notes = notes
        self._servers: dict[tuple[str, ...], isolation.ForkServer] = {}

    def get(self, info: ProbeInfo, preload: Sequence[str]) -> isolation.Launcher:
        if self.options.start == "spawn":
            return isolation.SpawnLauncher()
        key = tuple(preload) + tuple(p for p in self.options.plugins)
        server = self._servers.get(key)
        if server is not None and server.alive:
            return _Shared(server)
        server = isolation.ForkServer(preload=[*preload, *self.options.plugins])
        if not server.single_threaded:
            self.notes.append(f"{info.name}: fork server had {server.threads} threads after imports; "
                              "used fresh interpreters")
            server.close()
            return isolation.SpawnLauncher()
        self._servers[key] = server
        return _Shared(server)

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()


class _Shared:
    """A shared fork server, lent to one probe: closing the loan does not stop the server."""

    def __init__(self, server: isolation.ForkServer) -> None:
        self.server = server

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        return self.server.start(spec_path, worker, pgid)

    def exits(self, wait: float) -> dict[int, int]:
        return self.server.exits(wait)

    @property
    def alive(self) -> bool:
        return self.server.alive

    def close(self) -> None:
        pass



@dataclass
class ProbeRun:
    """Everything one probe's diagnosis produced, before and after classification."""

    info: ProbeInfo
    results: list[Result] = field(default_factory=list)
    samples: dict[tuple[str, str, int], tuple[float | None, dict[str, int]]] = field(default_factory=dict)
    outcomes: dict[tuple[str, int, int], list[Outcome]] = field(default_factory=dict)
    oracle: dict[str, str] | None = None
    iterations: int = 0
    seconds: float = 0.0
    started: float = 0.0
    minimum_seconds: float = 0.0  # prepare, oracle, timing, contention and one stress round: never cut


def _oracle(runs: Sequence[isolation.TrialRun]) -> dict[str, str] | None:
    """Digests of the first serial trial that ran cleanly on its own terms."""
    for run in runs:
        outcome = detect.classify(run, None)
        if outcome.kind == "ok":
            digests: dict[str, str] = {}
            for w in run.workers:
                digests.update((w.report or {}).get("digests", {}))
            return digests
    return None


def diagnose_probe(
    info: ProbeInfo,
    options: Options,
    root: Path,
    deadline: float | None,
    progress: Progress,
    counter: list[int],
    launchers: Launchers,
    remedy: str | None = None,
    modes: Sequence[tuple[str, int, int]] | None = None,
) -> ProbeRun:
    """Run one probe through every mode and return its results."""
    modes = list(modes or options.modes())
    started = time.monotonic()
    out = ProbeRun(info, started=started)
    if not info.available:
        ev = Evidence(kind="unavailable", trial=0, summary=info.reason or "unavailable")
        out.results = [detect.not_run(info.name, info.dependency, m, p, t, "unavailable", ev) for m, p, t in modes]
        counter[0] += len(modes) * options.trials_per_mode
        return out
    cls = registry.load(info.ref)
    out.iterations = options.iterations or cls.iterations or DEFAULT_ITERATIONS
    tag = safe_name(info.name) + (f"-{remedy}" if remedy else "")
    workdir = root / "work" / safe_name(info.name)
    jobs = root / "jobs" / tag
    try:
        launcher = launchers.get(info, cls.preload)
    except isolation.HarnessError as exc:
        ev = Evidence(kind="error", trial=0, stage="harness", summary=f"cannot start workers: {exc}")
        out.results = [detect.not_run(info.name, info.dependency, m, p, t, "error", ev) for m, p, t in modes]
        return out
    try:
        if remedy is None or not (workdir / ".prepared").exists():
            progress.update(info.name, "prepare", counter[0], 0)
            prep = isolation.run_prepare(info.ref, launcher, workdir, jobs / "prepare", options.plugins,
                                         timeout=options.prepare_timeout)
            if prep["errors"]:
                err = prep["errors"][0]
                ev = Evidence(
                    kind="error", trial=0, stage="prepare", error_type=err.get("error_type"),
                    message=err.get("message"), traceback=err.get("traceback"),
                    summary=f"prepare failed: {err.get('error_type')}: {detect.first_line(err.get('message'))}",
                )
                out.results = [detect.not_run(info.name, info.dependency, m, p, t, "error", ev) for m, p, t in modes]
                counter[0] += len(modes) * options.trials_per_mode
                return out
            (workdir / ".prepared").touch()
        launcher = _run_trials(info, options, modes, out, launcher, workdir, jobs, deadline, progress,
                               counter, remedy, launchers)
    finally:
        launcher.close()
    out.seconds = time.monotonic() - started
    return out


def _run_trials(info: ProbeInfo, options: Options, modes: list[tuple[str, int, int]], out: ProbeRun,
                launcher: isolation.Launcher, workdir: Path, jobs: Path, deadline: float | None,
                progress: Progress, counter: list[int], remedy: str | None,
                launchers: Launchers) -> isolation.Launcher:
    n = QUICK_TRIALS if options.quick else options.trials
    runs: dict[tuple[str, int, int], list[isolation.TrialRun]] = {m: [] for m in modes}
    failed: set[tuple[str, int, int]] = set()
    failures = 0
    oracle: dict[str, str] | None = None

    def one(mode: tuple[str, int, int], purpose: str, rounds: int = 1,
            sampler: StackSampler | None = None) -> isolation.TrialRun:
        nonlocal failures, oracle, launcher
        name, p, t = mode
        trial = Trial(
            probe=info.name, ref=info.ref, mode=name, processes=p, threads=t, iterations=out.iterations,
            index=len(runs[mode]), rounds=rounds, timeout=options.timeout, purpose=purpose, remedy=remedy,
            switch_interval=DEFAULT_SWITCH_INTERVAL if purpose != "stress" else STRESS_SWITCH_INTERVAL,
        )
        label = f"{name} {p * t}" if name != "serial" else "serial"
        progress.update(info.name, label, counter[0], failures)
        run = isolation.run_trial(
            trial, launcher, workdir, jobs / f"{name}-{p}x{t}-{trial.index}-{purpose}", options.plugins,
            on_start=sampler.start if sampler else None,
        )
        if run.harness_error and not getattr(launcher, "alive", True):
            launcher.close()
            launcher = launchers.get(info, registry.load(info.ref).preload)  # a fresh fork server
        runs[mode].append(run)
        if name == "serial" and oracle is None:
            oracle = _oracle([run])
        if detect.classify(run, oracle).kind != "ok":
            failures += 1
            failed.add(mode)
        counter[0] += 1
        progress.update(info.name, label, counter[0], failures)
        return run

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    serial = modes[0]
    first = one(serial, "oracle")
    stress_rounds = calibrate(first, STRESS_TARGET)
    timing = 0 if options.quick else options.timing_trials
    if timing:
        rounds = calibrate(first, TIMING_TARGET)
        for _ in range(timing):  # interleaved, so that a noisy spell hits every mode alike
            for mode in modes:
                one(mode, "timing", rounds)
        # The GIL monitor and py-spy perturb throughput, so they get trials of their own.
        threads_modes = [m for m in modes if m[0] == "threads"]
        for mode in threads_modes:
            one(mode, "contention", rounds)
        widest = threads_modes[-1] if threads_modes else None
        if options.attribute and widest and _lock_suspect(runs[serial], runs[widest], oracle):
            # Each py-spy sample pauses the worker for tens of milliseconds: a sampled trial runs
            # longer, so that it gathers enough samples to show where threads wait.
            sampler = StackSampler()
            one(widest, "contention", rounds * SAMPLED_ROUNDS_FACTOR, sampler)
            out.samples[(info.name, widest[0], widest[1] * widest[2])] = sampler.stop()
    # With one thread per process the switch interval changes nothing: those modes' timing trials
    # (longer than stress trials, and checked against the oracle alike) count as stress trials.
    # The oracle is a serial trial like any other.
    credited = {m: (timing if m[2] == 1 else 0) for m in modes}
    counter[0] += sum(min(n, k) for k in credited.values())  # their stress slots in the progress total
    stress = dict(credited)
    stress[serial] += 1
    if options.quick:
        stress[serial] = n  # quick mode spends its time where concurrency is: serial only gives the oracle
    first_round = True  # one stress trial per mode always runs: the budget cuts repetitions only
    while first_round or not out_of_time():
        active = [m for m in modes if stress[m] < n and not (options.quick and m in failed)]
        for mode in active:
            if out_of_time() and stress[mode] > 0:
                continue  # out of time: only modes still owed their first stress trial run
            one(mode, "stress", stress_rounds)
            stress[mode] += 1
        if first_round:  # what the budget cannot cut: the next probes' shares reserve this much
            out.minimum_seconds = time.monotonic() - out.started
            first_round = False
        if not active:
            break
    counter[0] += sum(max(0, n - k) for k in stress.values())  # skipped trials still count as done

    out.oracle = oracle or _oracle(runs[serial])
    for mode, mode_runs in runs.items():
        outcomes = [detect.classify(run, out.oracle) for run in mode_runs]
        out.outcomes[mode] = outcomes
        out.results.append(detect.summarise(info.name, info.dependency, outcomes, remedy=remedy,
                                               cores=os.cpu_count() or 1))
    return launcher


def share_deadline(now: float, deadline: float, left: int, minimums: Sequence[float]) -> float:
    """When this probe's repeated stress trials must stop, so that the whole budget is kept.

    Every probe's minimum rounds run whatever the clock says, so the time the probes after this
    one will need for theirs (estimated from the minimums seen so far) is set aside first; what
    is spare is shared equally. Without the reserve, the early probes spend the whole budget and
    the last ones overrun it by their minimum rounds.
    """
    typical = statistics.fmean(minimums) if minimums else 0.0
    spare = max(0.0, deadline - now - typical * left)
    return now + typical + spare / max(1, left)


def calibrate(run: isolation.TrialRun, target: float) -> int:
    """Rounds of the trial's indices that make ``target`` seconds of serial work."""
    seconds = run.seconds
    if not seconds or seconds <= 0:
        return 1
    return max(1, min(MAX_ROUNDS, math.ceil(target / seconds)))


def _lock_suspect(serial: Sequence[isolation.TrialRun], threads: Sequence[isolation.TrialRun],
                  oracle: dict[str, str] | None) -> bool:
    """Threads did not scale and the GIL monitor saw little waiting: py-spy should say where."""
    base = detect.throughput([detect.classify(r, oracle) for r in serial])
    outcomes = [detect.classify(r, oracle) for r in threads]
    tput = detect.throughput(outcomes)
    if not base or not tput:
        return False
    gil = [o.gil_wait for o in outcomes if o.gil_wait is not None]
    serialized = not detect.scales(tput / base, outcomes[0].trial.workers, os.cpu_count() or 1)
    return serialized and not (gil and max(gil) >= detect.GIL_THRESHOLD)


def diagnose(
    options: Options,
    progress: Progress | None = None,
    fingerprint: Callable[[], dict[str, Any]] | None = None,
) -> Diagnosis:
    """Run a whole diagnosis. Raises UsageError for bad input, never for a probe's failure."""
    progress = progress or NullProgress()
    started = time.monotonic()
    infos = registry.select(registry.discover(options.plugins, options.entry_points), options.probes)
    modes = options.modes()
    root = Path(options.workdir) if options.workdir else Path(tempfile.mkdtemp(prefix="threadprobe-"))
    root.mkdir(parents=True, exist_ok=True)
    deadline = started + options.budget if options.budget else None
    counter = [0]
    notes: list[str] = []
    runs: list[ProbeRun] = []
    launchers = Launchers(options, notes)
    progress.begin(len(infos) * len(modes) * options.trials_per_mode, options.budget)
    try:
        for k, info in enumerate(infos):
            share = None
            if deadline is not None:
                share = share_deadline(time.monotonic(), deadline, len(infos) - k,
                                       [r.minimum_seconds for r in runs if r.minimum_seconds])
            runs.append(diagnose_probe(info, options, root, share, progress, counter, launchers))
        cores = os.cpu_count() or 1
        samples: dict[tuple[str, str, int], tuple[float | None, dict[str, int]]] = {}
        for run in runs:
            samples.update(run.samples)
        results = detect.add_scaling([r for run in runs for r in run.results], cores, samples)
        extras: dict[str, Any] = {}
        startup = None
        if options.evidence and not options.quick:
            from toolkit.runner.schedulers import measure_startup

            progress.note("measuring what each dask scheduler costs to start (with Iris imported)")
            startup = measure_startup()
        if options.evidence:
            from toolkit import evidence

            extras = evidence.gather(runs, results, options, root, progress, launchers)
            results = extras.pop("results")
    finally:
        launchers.close()
        progress.end()
        if not options.keep and not options.workdir:
            shutil.rmtree(root, ignore_errors=True)
    from toolkit import fingerprint as fp

    config = {
        "probes": list(options.probes),
        "plugins": [str(Path(p).resolve()) for p in options.plugins],
        "modes": [{"mode": m, "processes": p, "threads": t} for m, p, t in modes],
        "trials": options.trials_per_mode,
        "iterations": {run.info.name: run.iterations for run in runs if run.iterations},
        "probe_seconds": {run.info.name: round(run.seconds, 2) for run in runs},
        "budget": options.budget,
        "timeout": options.timeout,
        "quick": options.quick,
        "start": options.start,
        "cores": os.cpu_count(),
        "switch_interval": {"stress": STRESS_SWITCH_INTERVAL, "timing": DEFAULT_SWITCH_INTERVAL},
        "notes": notes,
        "startup_seconds": startup,
    }
    diagnosis = Diagnosis(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        threadprobe=_version(),
        config=config,
        fingerprint=(fingerprint or fp.collect)(),
        results=tuple(results),
        seconds=round(time.monotonic() - started, 2),
        remedies=tuple(extras.get("remedies", ())),
        lock_audit=tuple(extras.get("lock_audit", ())),
        repro=extras.get("repro", {}),
    )
    from toolkit.recommendation import for_diagnosis

    recommendations = for_diagnosis(diagnosis)
    return diagnosis.replace(recommendation=recommendations["wind"], recommendations=recommendations)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("threadprobe")
    except Exception:
        return "0+unknown"

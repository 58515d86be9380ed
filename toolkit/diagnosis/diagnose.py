"""A diagnosis is a loop: ask the plan for the next trial, run it through the harness, classify it.

``Diagnoser`` owns the loop's state (fork servers, work folders, every trial's run and outcome)
and nothing else: which trial comes next is ``threadprobe.diagnosis.plan``'s decision, what a trial showed is
``threadprobe.diagnosis.detect``'s. It prepares each probe (in a child) just before the probe's first trial;
a probe whose ``prepare`` or ``open`` cannot import what it needs is *unavailable* there.

``evidence`` reuses a Diagnoser's probes and fork servers after the loop (remedies, native
frames, the lock audit), which is why ``diagnose`` hands it back instead of closing it; the
pipeline composes the two. Nothing here chooses a scheduler.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadprobe.diagnosis import detect
from threadprobe.diagnosis import plan
from threadprobe.probe import registry
from threadprobe.harness import launch, trial as harness
from threadprobe.diagnosis.options import Options
from threadprobe.diagnosis.progress import Count, NullProgress, Progress, Update, phase
from threadprobe.records import Diagnosis, EvidenceKind, Fingerprint, Instrument, Stage, GilState, Evidence, Kind, LockAudit, Mode, Outcome, ProbeInfo, Purpose, Remedy, Result, ThreadState, Trial, TrialRun, Verdict
from threadprobe.harness import fpstore

DEFAULT_ITERATIONS = 100  # a race hitting 1 task in 20 escapes one trial with probability 0.95**100 < 0.6%


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@dataclass
class ProbeRun:
    """Everything one probe's diagnosis produced: its trials, their outcomes, its oracle."""

    info: ProbeInfo
    cells: tuple[plan.Cell, ...]
    iterations: int = DEFAULT_ITERATIONS
    workdir: Path = Path()
    runs: dict[plan.Cell, list[tuple[TrialRun, Outcome]]] = field(default_factory=dict)
    oracle: detect.Oracle | None = None
    prepared: bool = False
    failed: Evidence | None = None  # prepare failed, or the probe is unavailable here
    waits: dict[GilState, dict[str, int]] = field(default_factory=dict)  # py-spy: where lock-bound threads wait

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def serial(self) -> plan.Cell:
        """The cell of the serial oracle (in the diagnosis's first GIL state)."""
        return next((c for c in self.cells if c.mode == Mode.SERIAL), plan.SERIAL)

    def state(self) -> plan.ProbeState:
        seen = {cell: tuple(_seen(run, outcome) for run, outcome in runs) for cell, runs in self.runs.items()}
        return plan.ProbeState(self.name, self.cells, seen, ready=self.failed is None,
                               timing_input=self.info.timing_input)

    def outcomes(self, cell: plan.Cell) -> list[Outcome]:
        return [o for _, o in self.runs.get(cell, [])]

    def count(self, cell: plan.Cell) -> Count:
        """This cell's own trials so far, and how many failed."""
        outcomes = self.outcomes(cell)
        return Count(len(outcomes), failed=sum(o.kind != Kind.OK for o in outcomes))

    def states(self, gil: GilState) -> dict[ThreadState, int]:
        """Thread states sampled in this probe's trials in one GIL state (the contention
        instrument), summed."""
        return {state: int(n) for state, n in self._summed(gil, lambda run: run.states or {}).items()}

    def state_times(self, gil: GilState) -> dict[ThreadState, float]:
        """Seconds per thread state in this probe's trials in one GIL state, summed."""
        return self._summed(gil, lambda run: run.state_times)

    def _summed(self, gil: GilState,
                per_run: Callable[[TrialRun], Mapping[ThreadState, float]]) -> dict[ThreadState, float]:
        total: dict[ThreadState, float] = {}
        for cell, runs in self.runs.items():
            for run, _ in runs:
                for state, n in (per_run(run).items() if cell.gil == gil else ()):
                    total[state] = total.get(state, 0) + n
        return total

    def state_windows(self, gil: GilState) -> list[dict[ThreadState, int]]:
        """The same samples, per window of sweeps (see harness.states)."""
        return [w for cell, runs in self.runs.items() if cell.gil == gil for run, _ in runs for w in run.state_windows]


def make_trial(name: str, ref: str, request: plan.Request, iterations: int, index: int, timeout: float,
               remedy: Remedy | None = None) -> Trial:
    """The trial a plan's request asks for."""
    cell = request.cell
    return Trial(probe=name, ref=ref, mode=cell.mode, processes=cell.processes, threads=cell.threads,
                 iterations=iterations, index=index, rounds=request.rounds, timeout=timeout,
                 switch_interval=request.switch_interval, purpose=request.purpose, remedy=remedy,
                 jitter=request.jitter, states=request.states, gil=cell.gil)


def run_one(trial: Trial, launcher: launch.Launcher, workdir: Path, folder: Path, oracle: detect.Oracle | None,
            plugins: tuple[str, ...] = (), on_start: Callable[[list[int]], None] | None = None,
            instruments: tuple[Instrument, ...] = ()) -> tuple[TrialRun, Outcome]:
    """The one trial step that diagnose and the plugin's ``threadprobe.check`` share: a trial
    through a launcher (a fork server, a spawn, a direct fork, or a fake one in tests), then
    classified against the serial oracle (None while the oracle itself runs)."""
    got = harness.run_trial(trial, launcher, workdir, folder, plugins, on_start=on_start, instruments=instruments)
    return got, detect.classify(got, oracle)


def _seen(run: TrialRun, outcome: Outcome) -> plan.Seen:
    return plan.Seen(run.trial.purpose, outcome.kind, run.wall, run.seconds, run.trial.rounds)


class Diagnoser:
    """Runs the plan's trials. Use as a context manager: it closes its fork servers."""

    def __init__(self, options: Options, progress: Progress | None = None) -> None:
        self.options = options
        self.progress = progress or NullProgress()
        self.policy = options.policy()
        chosen = options.selection
        infos = registry.select(registry.discover(chosen.plugins, chosen.entry_points), chosen.probes)
        workdir = options.output.workdir
        self.root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="threadprobe-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.launchers = launch.Launchers(options.launch.start, options.launch.python, options.selection.plugins)
        cells = options.cells()
        self.probes = [ProbeRun(info, cells) for info in infos]
        for run in self.probes:
            if not run.info.available:
                run.failed = Evidence(kind=EvidenceKind.UNAVAILABLE, trial=0, summary=run.info.reason or "unavailable")
        self.started = time.monotonic()
        self.trials = 0
        self.failures = 0
        self.serial_number = 0

    def __enter__(self) -> Diagnoser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.launchers.close()
        if not self.options.output.keep and not self.options.output.workdir:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def count(self) -> Count:
        """The run's trials so far in the cells the report has, and how many failed."""
        return Count(self.trials, failed=self.failures)

    def update(self, run: ProbeRun, cell: plan.Cell) -> Update:
        """Where the loop stands, in the counts the report will have."""
        if cell in run.cells:
            return Update(run.name, cell.label, own=run.count(cell), run=self.count())
        return Update(run.name, f"{cell.label} (thread states only: not a cell of the report)", run=self.count())

    # ----------------------------------------------------------------------------------------
    def launcher(self, run: ProbeRun, state: GilState | None = None) -> launch.Launcher:
        return self.launchers.get(run.info.preload, run.name, state or run.serial.gil)

    def prepare(self, run: ProbeRun) -> bool:
        """Prepare the probe's inputs in a child, once. False (and ``run.failed``) when it cannot."""
        if run.prepared or run.failed is not None:
            return run.failed is None
        cls = registry.load(run.info.ref)
        run.iterations = self.options.planner.iterations or cls.iterations or DEFAULT_ITERATIONS
        run.workdir = self.root / "work" / safe_name(run.name)
        self.progress.update(Update(run.name, "prepare", run=self.count()))
        try:
            prep = harness.run_prepare(run.info.ref, self.launcher(run), run.workdir,
                                       self.root / "jobs" / safe_name(run.name) / "prepare",
                                       self.options.selection.plugins, timeout=self.options.launch.prepare_timeout)
        except launch.HarnessError as exc:
            run.failed = Evidence(kind=EvidenceKind.ERROR, trial=0, stage=Stage.HARNESS, summary=f"cannot start workers: {exc}")
            return False
        if prep:
            err = prep[0]
            if err.missing:
                run.failed = unavailable(err.missing, cls.unavailable_hint)
            else:
                run.failed = Evidence(
                    kind=EvidenceKind.ERROR, trial=0, stage=Stage.PREPARE, error_type=err.error_type, message=err.message,
                    traceback=err.traceback,
                    summary=f"prepare failed: {err.error_type}: {detect.first_line(err.message)}")
            return False
        run.prepared = True
        return True

    def trial(self, run: ProbeRun, request: plan.Request, remedy: Remedy | None = None,
              on_start: Callable[[list[int]], None] | None = None, instruments: tuple[Instrument, ...] = (),
              record: bool = True) -> tuple[TrialRun, Outcome]:
        """Run one trial of ``run`` as ``request`` says, classify it and (``record``) keep it."""
        cell = request.cell
        trial = make_trial(run.name, run.info.ref, request, run.iterations, len(run.runs.get(cell, [])),
                           self.options.launch.timeout, remedy)
        self.progress.update(self.update(run, cell))
        self.serial_number += 1  # trials that are not recorded reuse no folder either
        tag = f"{self.serial_number:05d}-{cell.mode}-{cell.processes}x{cell.threads}-{cell.gil}-{request.purpose}" + (
            f"-{remedy.kind}" + "".join(f"-{name}" for name in remedy.libraries) if remedy else "")
        got, outcome = run_one(trial, self.launcher(run, cell.gil), run.workdir, self.root / "jobs" / safe_name(run.name) / tag,
                               run.oracle, tuple(self.options.selection.plugins), on_start=on_start, instruments=instruments)
        if request.purpose == Purpose.ORACLE:
            if outcome.unavailable:
                run.failed = unavailable(outcome.unavailable, registry.load(run.info.ref).unavailable_hint)
            elif outcome.kind == Kind.OK:
                run.oracle = detect.Oracle.of(got)
        if record:
            run.runs.setdefault(cell, []).append((got, outcome))
            if cell in run.cells:  # a cell outside the grid only samples thread states: no result has it
                self.trials += 1
                self.failures += outcome.kind != Kind.OK
            self.progress.update(self.update(run, cell))
        return got, outcome

    def run(self) -> list[ProbeRun]:
        """The whole loop: plan, run, classify, until the plan says stop."""
        budget = self.options.planner.budget
        by_name = {run.name: run for run in self.probes}
        while True:
            state = plan.Plan(tuple(run.state() for run in self.probes), self.policy, self.elapsed, budget)
            request = plan.next_trial(state)
            if request is None:
                return self.probes
            run = by_name[request.probe]
            if self.prepare(run):
                self.trial(run, request)

    # ----------------------------------------------------------------------------------------
    def results(self) -> list[Result]:
        """A verdict per probe x mode, with scaling and the contention class."""
        cores = os.cpu_count() or 1
        results: list[Result] = []
        for run in self.probes:
            if run.failed is not None:
                verdict = Verdict.UNAVAILABLE if run.failed.kind == EvidenceKind.UNAVAILABLE else Verdict.ERROR
                results += [detect.not_run(run.name, run.info.dependency, c.mode, c.processes, c.threads, verdict,
                                           run.failed, c.gil) for c in run.cells]
                continue
            for cell in run.cells:
                outcomes = [o for o in run.outcomes(cell) if o.trial.threads == cell.threads]
                if outcomes:
                    results.append(detect.summarise(run.name, run.info.dependency, outcomes, cores=cores))
        states = {(run.name, g): run.states(g) for run in self.probes for g in self.options.gil if run.states(g)}
        windows = {(run.name, g): run.state_windows(g) for run in self.probes for g in self.options.gil}
        waits = {(run.name, g): w for run in self.probes for g, w in run.waits.items() if w}
        times = {(run.name, g): run.state_times(g) for run in self.probes for g in self.options.gil}
        return detect.add_scaling(results, cores, states, waits, windows, times)

    def config(self) -> dict[str, Any]:
        """What the diagnosis was asked and ran with (open: read back by people and by compare, never parsed into
        options)."""
        o = self.options
        return {
            "probes": list(o.selection.probes),
            "plugins": [str(Path(p).resolve()) for p in o.selection.plugins],
            "modes": [{"mode": c.mode.value, "processes": c.processes, "threads": c.threads} for c in o.cells()],
            "trials": o.planner.trials,
            "iterations": {run.name: run.iterations for run in self.probes if run.prepared},
            "probe_seconds": {run.name: round(sum(r.wall for runs in run.runs.values() for r, _ in runs), 2)
                              for run in self.probes},
            "budget": o.planner.budget,
            "timeout": o.launch.timeout,
            "quick": o.grid.quick,
            "start": o.launch.start,
            "python": o.launch.python,
            "gil": [state.value for state in o.gil],
            "cores": os.cpu_count(),
            "policy": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in vars(self.policy).items()},
            "switch_interval": {"stress": plan.STRESS_SWITCH_INTERVAL, "timing": plan.DEFAULT_SWITCH_INTERVAL},
            "notes": list(self.launchers.notes),
            "stress": o.planner.stress,
            "races": o.races.tool if o.races is not None else None,
        }


def unavailable(module: str, hint: str = "") -> Evidence:
    return Evidence(kind=EvidenceKind.UNAVAILABLE, trial=0, stage=Stage.IMPORT,
                    summary=f"No module named {module!r}" + (f": {hint}" if hint else ""))


def diagnose(options: Options, progress: Progress | None = None,
             fingerprint: Callable[[], Fingerprint] | None = None) -> Diagnosis:
    """A diagnosis without evidence or recommendations (the pipeline adds those)."""
    with Diagnoser(options, progress) as session:
        run_session(session)
        return assemble(session, fingerprint)


def run_session(session: Diagnoser) -> None:
    with phase(session.progress, "trials", session.options.planner.budget):
        session.run()


def assemble(session: Diagnoser, fingerprint: Callable[[], Fingerprint] | None = None,
             results: list[Result] | None = None, remedies: tuple[Result, ...] = (), lock_audit: tuple[LockAudit, ...] = (),
             repro: dict[str, str] | None = None) -> Diagnosis:
    """Turn a session whose loop has run into a Diagnosis record."""
    collect = fingerprint or (lambda: fpstore.collect(session.options.launch.python))
    found = collect()
    return Diagnosis(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        threadprobe=version(),
        config=session.config(),
        fingerprint=found,
        results=tuple(results if results is not None else session.results()),
        seconds=round(session.elapsed, 2),
        interpreter=(found.get("python") or {}).get("executable") or session.options.launch.python or "",
        remedies=remedies, lock_audit=lock_audit, repro=repro or {},
    )


def version() -> str:
    try:
        from importlib.metadata import version as of

        return of("threadprobe")
    except Exception:
        return "0+unknown"

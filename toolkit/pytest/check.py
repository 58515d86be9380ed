"""The ``threadprobe`` fixture: ``threadprobe.check(fn, inputs, threads=2, processes=0, trials=3)``.

A function's thread safety checked inside a test, as ``diagnose`` checks a probe's: its trials
are chosen by ``threadprobe.diagnosis.plan`` (serial oracle, a timing trial per mode, then stress
trials to ``trials`` per concurrent mode, stopping a mode at its first crash or hang), run through
diagnose's own trial step, and summarised into verdicts by ``detect``. A failing verdict fails
the test with its evidence, unless ``fail=False``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from threadprobe.diagnosis import detect, plan
from threadprobe.diagnosis import diagnose as diagnosing
from threadprobe.harness import launch
from threadprobe.probe import function_probe, refs
from threadprobe.records import EvidenceKind, Kind, Mode, ProbeInfo, Purpose, Result, Start, is_clean


@dataclass(frozen=True)
class CheckResult:
    """What ``threadprobe.check`` measured: verdicts, counts, speedup and bound per mode."""

    results: tuple[Result, ...]

    def of(self, mode: str) -> Result:
        return next(r for r in self.results if r.mode == mode)

    @property
    def concurrent(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if r.mode != Mode.SERIAL)

    @property
    def trials(self) -> int:
        return sum(r.trials for r in self.concurrent)

    @property
    def speedup(self) -> float | None:
        return next((r.speed.speedup for r in self.results if r.mode == Mode.THREADS), None)

    @property
    def failure_rate_upper95(self) -> float:
        return max((r.safety.failure_rate_upper95 for r in self.concurrent), default=1.0)

    @property
    def outcomes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in self.concurrent:
            for k, n in r.safety.outcomes.items():
                total[k] = total.get(k, 0) + n
        return total


class Checker:
    """The ``threadprobe`` fixture's object."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._count = 0

    def check(self, fn: Any, inputs: Any, threads: int = 2, processes: int = 0, trials: int = 3,
              iterations: int | None = None, timeout: float = 30.0, fail: bool = True,
              start: str = "fork") -> CheckResult:
        """``start="fork"`` (default): workers are forks of this process, so closures work.
        ``start="spawn"``: fresh interpreters; ``fn`` must be importable and the inputs picklable."""
        inputs = list(inputs)
        if not inputs:
            raise ValueError("threadprobe.check needs at least one input")
        self._count += 1
        root = self._tmp / f"check-{self._count}"
        root.mkdir(parents=True, exist_ok=True)
        probe = function_probe(fn, inputs)
        key = f"{os.getpid()}-{id(fn)}-{self._count}"
        launcher: Any
        if start == Start.SPAWN:
            if not _importable(fn):
                raise ValueError(f"start='spawn' needs an importable function, not {fn!r}: use start='fork'")
            ref = refs.call_ref(fn, inputs, root / "inputs.pickle")
            launcher = launch.SpawnLauncher()
        else:
            ref = f"inline:{key}"
            refs.INLINE[key] = probe
            launcher = launch.DirectFork()
        try:
            results = check_trials(ProbeInfo(probe.name, probe.dependency, ref), launcher, root,
                                   cells(threads, processes), trials, iterations or max(len(inputs), 20), timeout)
        finally:
            launcher.close()
            refs.INLINE.pop(key, None)
        if fail:
            problems = [r for r in results if not is_clean(r.verdict)]
            if problems:
                pytest.fail(failure_text(problems, inputs), pytrace=False)
        return CheckResult(tuple(results))


def cells(threads: int, processes: int) -> tuple[plan.Cell, ...]:
    return ((plan.SERIAL,) + ((plan.Cell(Mode.THREADS, 1, threads),) if threads > 1 else ())
            + ((plan.Cell(Mode.PROCESSES, processes, 1),) if processes > 1 else ()))


def policy(cells: tuple[plan.Cell, ...], trials: int) -> plan.Policy:
    """``trials`` trials per concurrent cell (its timing trial included), no more, no fewer unless
    it crashed or hung; the threads' states sampled in the threads cell's own timing trial."""
    widest = max((c.threads for c in cells if c.mode == Mode.THREADS), default=1)
    return plan.Policy(timing_trials=1, min_stress=trials, max_trials=trials, contention_threads=widest)


def check_trials(info: ProbeInfo, launcher: launch.Launcher, root: Path, cells: tuple[plan.Cell, ...],
                 trials: int, iterations: int, timeout: float) -> list[Result]:
    """``threadprobe.check``'s trials: each one the plan's next (fed back what every trial so far
    showed), run through diagnose's own trial step, until the plan says stop."""
    run = diagnosing.ProbeRun(info, cells, iterations, root)
    rules = policy(cells, trials)
    while (request := plan.next_trial(plan.Plan((run.state(),), rules))) is not None:
        index = len(run.runs.get(request.cell, []))
        trial = diagnosing.make_trial(info.name, info.ref, request, iterations, index, timeout)
        got, outcome = diagnosing.run_one(trial, launcher, root, root / f"{request.cell.mode}-{index}", run.oracle)
        if request.purpose == Purpose.ORACLE and outcome.kind == Kind.OK:
            run.oracle = detect.Oracle.of(got)
        run.runs.setdefault(request.cell, []).append((got, outcome))
    cores = os.cpu_count() or 1
    return detect.add_scaling([detect.summarise(info.name, info.dependency, run.outcomes(c), cores=cores)
                               for c in cells if run.outcomes(c)], cores)


def _importable(fn: Any) -> bool:
    name = getattr(fn, "__qualname__", "")
    return bool(name) and "<" not in name and hasattr(sys.modules.get(getattr(fn, "__module__", ""), None), name)


def failure_text(problems: list[Result], inputs: list[Any]) -> str:
    lines = []
    for r in problems:
        mode = "serially" if r.mode == Mode.SERIAL else f"under {r.workers} {r.mode}"
        lines.append(f"{r.probe} {r.verdict} {mode} in {r.failed_trials} of {r.trials} trials")
        for e in r.safety.evidence[:3]:
            if e.kind == EvidenceKind.CORRUPT and e.index is not None:
                lines.append(f"  input {inputs[e.index % len(inputs)]!r} (i={e.index}): expected digest "
                             f"{e.expected}, got {e.actual}")
            elif e.kind == EvidenceKind.CRASH:
                lines.append(f"  killed by {e.signal}:\n{_indent(e.traceback)}")
            elif e.kind == EvidenceKind.HANG:
                lines.append(f"  hung; stacks ({e.stack_source}):\n{_indent(e.stacks)}")
            else:
                lines.append(f"  {e.summary}\n{_indent(e.traceback)}")
    return "\n".join(lines)


def _indent(text: str | None, limit: int = 3000) -> str:
    return "\n".join("    " + line for line in (text or "")[-limit:].splitlines())


@pytest.fixture
def threadprobe(tmp_path: Path) -> Checker:
    """Check a function's thread safety: ``threadprobe.check(fn, inputs, threads=2, processes=0)``."""
    return Checker(tmp_path)

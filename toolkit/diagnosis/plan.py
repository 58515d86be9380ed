"""Which trial to run next, given what has been seen: a pure policy, with no processes.

``next_trial(plan)`` looks at every probe's history and returns one ``Request`` or None (stop).
The diagnosis loop runs the request through the harness, classifies it, appends what it saw,
and asks again. Being pure, the policy is tested against fakes and simulated diagnoses
(tests/diagnosis/test_plan.py), the way pytest-xdist tests its schedulers without nodes.

Two phases:

1. **Minimum rounds**, probe by probe, so that the timing trials of one probe sit side by side:
   the serial oracle (which is also a timing trial when one pass is long enough to time, unless
   the probe's timing trials read a bigger input: then a serial timing trial of its own), then
   ``timing_trials`` bare timing trials of every mode, interleaved across modes. Those of the
   widest threads mode (at least 4 threads) also sample the threads' states from /proc, which
   decide the contention class without perturbing the timing; with narrower modes only, a
   contention trial of its own does. Timing trials are concurrent runs checked against the
   oracle like any other, so they count towards the verdicts.
2. **Adaptive**, over every probe at once, until the budget is spent: each step runs the
   concurrent cell whose next trial buys the most certainty per second. The threads cells a
   scheduler choice relies on (``Policy.rely``: a workload's probes) come first, until their bound
   reaches ``RELY_BOUND`` (29 clean trials), the evidence a choice needs to take threads. Those
   probes also get ``rely_timing_trials`` timing trials a cell in the minimum rounds, since their
   speedups rank the schedulers of a run too short to pilot. What their trials take is paid from
   an allowance beyond the budget first (``rely_budget``), so that the other probes keep theirs.
   For a clean cell, what one more trial buys is the fall of its 95% failure-rate bound (about
   3/n^2) over what its trials cost; a cell that failed without crashing is settled first (a few more trials decide
   its worst kind, so that the verdict does not depend on which failure came first). A cell
   stops once it crashed or hung, failed ``settle`` times, or its bound reached ``target``.

Quick mode has no timing trials: its widest threads mode gets one contention trial instead (the
threads' states, so the contention class is measured as in a full diagnosis). It stops a cell at
its first failure and aims at ``quick_trials`` clean trials per cell (a bound below 10%),
cheapest cells first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from functools import cached_property
from dataclasses import dataclass, field

from threadprobe.records import RELY_BOUND, GilState, Kind, Mode, Purpose

DEFAULT_SWITCH_INTERVAL = 0.005  # CPython's own default: what a real dask run sees
STRESS_SWITCH_INTERVAL = 1e-6
#: Stress trials alternate between these switch intervals. Measured (tests/bench/amplify.py, the
#: README's table): 1 us finds GIL-level races (cf-units' messages: none at all at 5 ms), while
#: for netCDF4 it makes every GIL hand-off a storm (12-19x fewer crashes per CPU-second than at
#: 100 us or 5 ms); 100 us serves both.
STRESS_SWITCH_INTERVALS = (1e-6, 1e-4)
MAX_ROUNDS = 4000


@dataclass(frozen=True)
class Cell:
    """One probe x mode: P processes of T threads, in a GIL state (on a free-threaded build, the
    same mode with the GIL as the imports leave it and forced off are two cells)."""

    mode: Mode
    processes: int = 1
    threads: int = 1
    gil: GilState = GilState.AS_IMPORTED

    @property
    def workers(self) -> int:
        return self.processes * self.threads

    @property
    def concurrent(self) -> bool:
        return self.workers > 1

    @property
    def label(self) -> str:
        base = "serial" if self.mode == Mode.SERIAL else f"{self.mode} {self.workers}"
        return f"{base}, GIL off" if self.gil == GilState.OFF else base


SERIAL = Cell(Mode.SERIAL)


def grid(threads: Sequence[int], processes: Sequence[int], states: Sequence[GilState]) -> tuple[Cell, ...]:
    """The cells of a diagnosis: one serial oracle and the processes modes, in the first GIL state
    (one thread per process: no GIL state can change them), and every threads mode in each state,
    the states of a width side by side."""
    first = states[0]
    return ((Cell(Mode.SERIAL, gil=first),)
            + tuple(Cell(Mode.THREADS, 1, n, state) for n in sorted(set(threads)) if n > 1 for state in states)
            + tuple(Cell(Mode.PROCESSES, n, 1, first) for n in sorted(set(processes)) if n > 1))


@dataclass(frozen=True)
class Seen:
    """What one finished trial tells the planner."""

    purpose: Purpose
    kind: Kind
    wall: float  # what it cost, fork to reap
    seconds: float | None = None  # work time (clean trials): calibrates the rounds
    rounds: int = 1


@dataclass(frozen=True)
class ProbeState:
    """One probe's cells and what each has seen. A probe that could not run is not ``ready``."""

    name: str
    cells: tuple[Cell, ...]
    seen: Mapping[Cell, tuple[Seen, ...]] = field(default_factory=dict)
    ready: bool = True
    #: Its timing trials read a bigger input than the oracle (``Probe.timing_input``): the oracle
    #: never stands for the serial timing trial, and timing trials are sized on the serial one.
    timing_input: bool = False

    def history(self, cell: Cell) -> tuple[Seen, ...]:
        return tuple(self.seen.get(cell, ()))

    @cached_property  # the planner asks on every trial, of every probe: a state never changes
    def serial(self) -> Cell:
        """The cell of the serial oracle (in the diagnosis's first GIL state)."""
        return next((c for c in self.cells if c.mode == Mode.SERIAL), SERIAL)

    @cached_property
    def oracle(self) -> Seen | None:
        return next((s for s in self.history(self.serial) if s.purpose == Purpose.ORACLE), None)

    @cached_property
    def timing_base(self) -> Seen | None:
        """What timing trials are sized on: the oracle, or for a probe with a timing input the
        serial timing trial (None before it ran)."""
        if not self.timing_input:
            return self.oracle
        return next((s for s in self.history(self.serial) if s.purpose == Purpose.TIMING and s.kind == Kind.OK), None)

    @property
    def broken(self) -> bool:
        """The serial oracle failed: what concurrency adds cannot be told apart."""
        oracle = self.oracle
        return oracle is not None and oracle.kind != Kind.OK


@dataclass(frozen=True)
class Policy:
    timing_trials: int = 1
    min_stress: int = 1
    settle: int = 3  # failures that settle a failing cell's worst kind
    target: float = 0.02  # a clean cell stops when its bound is this low (149 trials)
    max_trials: int = 200
    quick: bool = False
    quick_trials: int = 29
    contention_threads: int = 4
    stress_target: float = 0.05  # seconds of serial work per stress trial: short trials find more per CPU-second
    timing_target: float = 0.15  # seconds of serial work per timing trial
    contention_target: float = 0.3  # enough for a few hundred thread samples
    jitter: float = 0.002  # random start delays: desynchronised starts meet in new places (README's table)
    #: Probes whose threads cells a scheduler choice relies on (a workload's): in the adaptive phase,
    #: their clean threads cells come first until their bound reaches ``RELY_BOUND``.
    rely: frozenset[str] = frozenset()
    #: Their timing trials per cell (when timing trials run at all): a choice without a pilot ranks
    #: schedulers by these probes' speedups, and one trial a cell on a shared machine moves by 10-20%.
    rely_timing_trials: int = 3
    #: Seconds beyond the budget the top-up may take: what it spends is paid from this first, so the
    #: other probes keep the budget's share they had (0: the top-up comes out of the budget).
    rely_budget: float = 0.0


@dataclass(frozen=True)
class Plan:
    probes: tuple[ProbeState, ...]
    policy: Policy = Policy()
    elapsed: float = 0.0
    budget: float | None = None  # seconds for the adaptive phase to end by (from the start)


@dataclass(frozen=True)
class Request:
    """The next trial: which probe, which cell, what for, how long."""

    probe: str
    cell: Cell
    purpose: Purpose
    rounds: int = 1
    switch_interval: float = DEFAULT_SWITCH_INTERVAL
    jitter: float = 0.0
    states: bool = False  # sample the threads' states (the contention instrument)


def bound(n: int) -> float:
    """95% upper bound on a failure rate after n clean trials (the rule of three's exact form)."""
    return 1.0 if n <= 0 else 1.0 - 0.05 ** (1.0 / n)


def trials_for(target: float) -> int:
    """Clean trials that bring the bound down to ``target``."""
    return math.ceil(math.log(0.05) / math.log(1.0 - target))


def calibrate(oracle: Seen | None, target: float) -> int:
    """Rounds of a trial's indices that make ``target`` seconds of serial work."""
    if oracle is None or not oracle.seconds or oracle.seconds <= 0:
        return 1
    per_round = oracle.seconds / max(1, oracle.rounds)
    return max(1, min(MAX_ROUNDS, math.ceil(target / per_round)))


#: The purposes of the trials that count towards a cell's verdict.
VERDICT_PURPOSES = (Purpose.ORACLE, Purpose.TIMING, Purpose.STRESS, Purpose.CONTENTION)


def verdict_trials(history: Sequence[Seen]) -> list[Seen]:
    """The trials of a cell's history that count towards its verdict: oracle, timing, stress and
    contention trials (a history holds only trials of the cell's own width)."""
    return [s for s in history if s.purpose in VERDICT_PURPOSES]


def contention_cell(probe: ProbeState, policy: Policy, state: GilState = GilState.AS_IMPORTED) -> Cell | None:
    """Where the threads' states are sampled in a GIL state: the widest threads mode, at least 4
    threads wide (at 2 threads, waits on a C mutex hide behind slow wake-ups on a virtual machine)."""
    threads = [c for c in probe.cells if c.mode == Mode.THREADS and c.gil == state]
    if not threads:
        return None
    widest = max(c.threads for c in threads)
    return Cell(Mode.THREADS, 1, max(widest, policy.contention_threads), state)


def contention_cells(probe: ProbeState, policy: Policy) -> tuple[Cell, ...]:
    """One contention cell per GIL state diagnosed: what threads wait for differs between them."""
    states = dict.fromkeys(c.gil for c in probe.cells if c.mode == Mode.THREADS)
    return tuple(cell for state in states if (cell := contention_cell(probe, policy, state)) is not None)


def _minimum(probe: ProbeState, policy: Policy) -> Request | None:
    """The next trial of this probe's minimum rounds, or None when they are done."""
    oracle = probe.oracle
    if oracle is None:
        return Request(probe.name, probe.serial, Purpose.ORACLE)
    concurrent = [c for c in probe.cells if c.concurrent]
    if probe.broken:
        for cell in concurrent:  # one trial each: the report shows what they do, no more
            if not probe.history(cell):
                return Request(probe.name, cell, Purpose.STRESS, calibrate(oracle, policy.stress_target),
                               STRESS_SWITCH_INTERVAL)
        return None
    timing = 0 if policy.quick else policy.timing_trials
    if timing and probe.name in policy.rely:
        timing = max(timing, policy.rely_timing_trials)
    base = probe.timing_base  # the serial cell comes first: with a timing input, it sizes the rest
    rounds = calibrate(base, policy.timing_target)
    oracle_times = rounds == 1 and not probe.timing_input  # one oracle pass is a timing trial's length
    where = contention_cells(probe, policy)
    for k in range(timing):  # interleaved, so that a noisy spell hits every mode alike
        for cell in probe.cells:
            history = probe.history(cell)
            if dead(history) or (base is None and cell != probe.serial):
                continue  # crashed or hung (no timing to take, a hang costs a timeout), or no serial timing yet
            done = sum(s.purpose == Purpose.TIMING or (s.purpose == Purpose.ORACLE and oracle_times) for s in history)
            if done <= k:
                if cell in where:  # it also samples thread states: a few hundred samples need longer
                    return Request(probe.name, cell, Purpose.TIMING, calibrate(base, policy.contention_target),
                                   states=True)
                return Request(probe.name, cell, Purpose.TIMING, rounds)
    # No timing trial samples the states when the cell is not diagnosed, or in quick mode (no
    # timing trials): a contention trial of its own does, which counts towards the verdict too.
    for cell in where:
        own_trial = cell not in probe.cells or policy.quick
        same_state = [c for c in concurrent if c.gil == cell.gil]
        if own_trial and not any(dead(probe.history(c)) for c in same_state):
            if not any(s.purpose == Purpose.CONTENTION for s in probe.history(cell)):
                return Request(probe.name, cell, Purpose.CONTENTION, calibrate(oracle, policy.contention_target),
                               states=True)
    for cell in concurrent:
        if not dead(probe.history(cell)) and len(verdict_trials(probe.history(cell))) < policy.min_stress:
            return _stress(probe, cell, policy)
    return None


def dead(history: Sequence[Seen]) -> bool:
    """The cell crashed or hung: its verdict cannot get worse, and every trial more costs."""
    return any(s.kind in (Kind.CRASH, Kind.HANG) for s in history)


def _stress(probe: ProbeState, cell: Cell, policy: Policy) -> Request:
    done = sum(s.purpose == Purpose.STRESS for s in probe.history(cell))
    return Request(probe.name, cell, Purpose.STRESS, calibrate(probe.oracle, policy.stress_target),
                   STRESS_SWITCH_INTERVALS[done % len(STRESS_SWITCH_INTERVALS)], policy.jitter)


def stopped(history: Sequence[Seen], cell: Cell, policy: Policy) -> bool:
    counted = verdict_trials(history)
    kinds = [s.kind for s in counted]
    failures = sum(k != Kind.OK for k in kinds)
    if Kind.CRASH in kinds or Kind.HANG in kinds:
        return True  # a crash is the worst kind there is; a hang costs a whole timeout each
    if failures and (policy.quick or failures >= policy.settle):
        return True
    if len(counted) >= policy.max_trials:
        return True
    if not failures:
        return len(counted) >= (policy.quick_trials if policy.quick else trials_for(policy.target))
    return False


ALL_PURPOSES = tuple(Purpose)


def cost(history: Sequence[Seen], oracle: Seen | None, cell: Cell) -> float:
    """Seconds the cell's next trial should cost: its stress trials so far, else any of its
    trials, else the oracle's."""
    for purposes in ((Purpose.STRESS,), ALL_PURPOSES):
        walls = [s.wall for s in history if s.purpose in purposes and s.wall > 0]
        if walls:
            return statistics.fmean(walls)
    return max(0.01, (oracle.wall if oracle else 0.1))


def gain(history: Sequence[Seen], cell: Cell, policy: Policy) -> float:
    """What one more trial buys: the fall of the bound for a clean cell, a lot for an unsettled one."""
    counted = verdict_trials(history)
    if any(s.kind != Kind.OK for s in counted):
        return 1.0
    n = len(counted)
    return bound(n) - bound(n + 1)


def next_trial(plan: Plan) -> Request | None:
    """The next trial to run, or None when the diagnosis should stop."""
    for probe in plan.probes:
        if probe.ready:
            request = _minimum(probe, plan.policy)
            if request is not None:
                return request
    if plan.budget is None:
        return _adaptive(plan, True, None) or _adaptive(plan, False, None)
    topped = plan.budget + plan.policy.rely_budget
    general = plan.budget + min(plan.policy.rely_budget, topping(plan))
    relied = _adaptive(plan, True, topped) if plan.elapsed < topped else None
    return relied or (_adaptive(plan, False, general) if plan.elapsed < general else None)


def topping(plan: Plan) -> float:
    """Seconds the relied-on probes' trials took so far: their top-up, and the timing trials their
    timing input and ``rely_timing_trials`` add to the minimum rounds, all paid from the allowance."""
    return sum(s.wall for probe in plan.probes if probe.name in plan.policy.rely for cell in probe.cells
               for s in probe.history(cell))


def short_of_rely(history: Sequence[Seen]) -> bool:
    """A clean cell whose bound is still above ``RELY_BOUND``: a choice cannot rely on it yet."""
    counted = verdict_trials(history)
    return all(s.kind == Kind.OK for s in counted) and bound(len(counted)) > RELY_BOUND


def _adaptive(plan: Plan, relied: bool, until: float | None) -> Request | None:
    """The concurrent cell whose next trial buys the most certainty per second and ends by ``until``
    (seconds from the start; None: no budget); with ``relied``, among the threads cells of the probes
    a choice relies on that are short of ``RELY_BOUND``."""
    best: tuple[float, int, Request] | None = None
    for order, probe in enumerate(plan.probes):
        if not probe.ready or probe.broken:
            continue
        if relied and probe.name not in plan.policy.rely:
            continue
        for cell in probe.cells:
            if not cell.concurrent or (relied and cell.mode != Mode.THREADS):
                continue
            history = probe.history(cell)
            if stopped(history, cell, plan.policy) or (relied and not short_of_rely(history)):
                continue
            seconds = cost(history, probe.oracle, cell)
            if until is not None and plan.elapsed + seconds > until * 1.05:
                continue  # would overrun the budget
            worth = gain(history, cell, plan.policy) / seconds
            if best is None or worth > best[0]:
                best = (worth, order, _stress(probe, cell, plan.policy))
    return best[2] if best else None

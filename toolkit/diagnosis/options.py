"""What a diagnosis is asked to do, one small frozen record per concern, each default written once.

- ``Selection``: which probes (names or globs, plugin files, the installed entry points).
- ``Grid``: the cells (thread and process counts, GIL states; quick keeps the widest of each).
- ``Planner``: how many trials and how long; its defaults are ``plan.Policy``'s, read from it.
- ``Launch``: how workers start, in which interpreter, and when they are declared hung.
- ``EvidenceOptions``: what the evidence stage gathers after the trials (None in ``Options``: nothing).
- ``RaceOptions``: the happens-before race pass (None in ``Options``: no pass).
- ``Output``: where files go and whether the work folders are kept.

The command line builds these from its flags, passing only what the user gave, so that a default
lives here (or in the policy) and nowhere else; its help texts read them from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from threadprobe.diagnosis import plan
from threadprobe.harness import gil as gil_state
from threadprobe.records import GilState, RaceSchedule, RaceTool, RemedySearch, Start


@dataclass(frozen=True)
class Selection:
    """Which probes to diagnose."""

    probes: tuple[str, ...] = ()  # names or globs (none: every probe found)
    plugins: tuple[str, ...] = ()  # files of probes to load besides the installed ones
    entry_points: bool = True  # the probes installed through entry points (False: the plugins' only)


@dataclass(frozen=True)
class Grid:
    """The cells of the matrix: thread and process counts, and the GIL states of the threads cells
    (OFF: ``PYTHON_GIL=0`` in their children, free-threaded builds only; the serial oracle and the
    processes cells run in the first state). ``quick`` keeps the widest count of each mode."""

    threads: tuple[int, ...] = (2, 4)
    processes: tuple[int, ...] = (2,)
    gil: tuple[GilState, ...] = (GilState.AS_IMPORTED,)
    quick: bool = False  # widest cells only, each stopped at its first failure

    def cells(self) -> tuple[plan.Cell, ...]:
        threads = (max(self.threads),) if self.quick and self.threads else self.threads
        processes = (max(self.processes),) if self.quick and self.processes else self.processes
        return plan.grid(threads, processes, self.gil)


@dataclass(frozen=True)
class Planner:
    """How many trials, how long each, and when a clean cell stops: the planner's knobs a user sets."""

    stress: bool = True  # the stress trials (False: a race pass alone)
    trials: int = 0  # stress trials every concurrent cell gets before the adaptive phase (timing trials count)
    timing_trials: int = plan.Policy.timing_trials  # bare timing trials per cell; 0 skips scaling and contention
    iterations: int | None = None  # tasks per trial (None: the probe's own, else the diagnosis's default)
    budget: float | None = None  # seconds for all trials; the adaptive phase stops there
    target: float = plan.Policy.target  # a clean cell stops when its failure-rate bound is this low
    stress_target: float = plan.Policy.stress_target  # seconds of serial work per stress trial
    jitter: float = plan.Policy.jitter  # seconds: random start delays of the stress trials' threads
    rely: frozenset[str] = frozenset()  # probes whose threads cells a scheduler choice relies on: topped up first
    rely_budget: float = 0.0  # seconds beyond the budget that topping them up may take

    def policy(self, quick: bool) -> plan.Policy:
        return plan.Policy(timing_trials=0 if quick else self.timing_trials,
                           min_stress=max(self.trials, 1 if quick or not self.timing_trials else 0),
                           quick=quick, target=self.target, stress_target=self.stress_target, jitter=self.jitter,
                           rely=self.rely, rely_budget=self.rely_budget)


@dataclass(frozen=True)
class Launch:
    """How a trial's workers start, in which interpreter, and how long they may go silent."""

    start: Start = Start.FORK
    python: str | None = None  # another interpreter whose libraries to diagnose (None: this one)
    timeout: float = 10.0  # seconds without progress: a hang
    prepare_timeout: float = 300.0  # seconds for a probe's prepare (writing its inputs)


@dataclass(frozen=True)
class EvidenceOptions:
    """What the evidence stage adds after the trials: reproducers, native frames, the lock audit,
    where lock-bound threads wait (``attribute``: py-spy) and verified remedies."""

    attribute: bool = True
    remedies: RemedySearch = RemedySearch.FIRST


@dataclass(frozen=True)
class RaceOptions:
    """The race pass: each probe's concurrent work under valgrind's happens-before detector
    (``threadprobe.diagnosis.races.run``, whose constants explain the defaults)."""

    tool: RaceTool = RaceTool.HELGRIND
    threads: int | None = None  # None: MAX_THREADS, fewer for a probe whose calls are slow (threads_for)
    calls: int | None = None  # per probe; None: the probe's race_calls, else DEFAULT_CALLS
    seconds: float = 10.0  # of calls per probe: each thread stops taking tasks then (a netCDF4 call takes ~0.5 s)
    timeout: float = 300.0  # seconds without progress before a pass is declared failed
    suppressions: tuple[str, ...] = ()  # the user's own valgrind suppression files, after threadprobe's
    budget: float | None = None  # seconds for the whole pass; probes past it are not run
    lanes: int = 0  # 0: one per core, at most 2
    schedule: RaceSchedule = RaceSchedule.MEET


@dataclass(frozen=True)
class Output:
    """Where the diagnosis's files go."""

    out: str | None = None  # the report folder: reproducer scripts go to its repro/
    workdir: str | None = None  # the trials' folders (None: a temporary one)
    keep: bool = False  # keep the trials' folders


@dataclass(frozen=True)
class Options:
    """A whole diagnosis's request, by concern."""

    selection: Selection = field(default_factory=Selection)
    grid: Grid = field(default_factory=Grid)
    planner: Planner = field(default_factory=Planner)
    launch: Launch = field(default_factory=Launch)
    evidence: EvidenceOptions | None = field(default_factory=EvidenceOptions)  # None: verdicts only
    races: RaceOptions | None = None  # None: no race pass
    output: Output = field(default_factory=Output)

    @property
    def gil(self) -> tuple[GilState, ...]:
        return self.grid.gil

    @property
    def race_state(self) -> GilState:
        """The GIL state of the race pass: off when asked for, since nothing then orders the calls
        but the library's own locks."""
        return GilState.OFF if GilState.OFF in self.gil else GilState.AS_IMPORTED

    def child_env(self) -> dict[str, str]:
        """What the race pass's children get in their environment on top of the harness's."""
        return dict(gil_state.FORCED_OFF) if self.race_state == GilState.OFF else {}

    def cells(self) -> tuple[plan.Cell, ...]:
        return self.grid.cells()

    def policy(self) -> plan.Policy:
        return self.planner.policy(self.grid.quick)

"""The typed, immutable records a diagnosis flows through, and the one definition of "unsafe".

Data flows one way, each step a pure function of the one before:

    probe --plan--> Trial --harness--> TrialRun --detect.classify--> Outcome
          --detect.summarise--> Result (a verdict per probe x mode)
          --choose--> Choice --runner--> a run

Modes, outcome kinds, verdicts and contention classes are enums whose values are the strings the
JSON reports carry, so a report reads the same as before and compares equal to plain strings.
Whether a result is unsafe is decided here, by ``is_unsafe`` and ``unsafe_results``, and nowhere else.

Every JSON document names its schema. Format history, newest last (bump a version when a field
changes meaning or disappears; adding an optional field does not need a bump):

- ``threadprobe.trial/1``       (2026-11) the spec a worker process receives.
- ``threadprobe.trial/2``       (2026-12) the spec is a record (``WorkerSpec``), checked where the
  worker reads it; what the workers run under is a list of ``instruments`` by kind, in place of the
  ``core`` and ``instrument`` keys.
- ``threadprobe.worker/1``      (2026-11) what one worker process writes back.
- ``threadprobe.diagnosis/1``   (2026-11) the report; JSON Schema in ``toolkit/records/schema/``.
- ``threadprobe.fingerprint/1`` (2026-11) the library builds that were loaded.
- ``threadprobe.bench/1``       (2026-11) benchmark results.
- ``threadprobe.diagnosis/2``   (2026-11) adds the interpreter diagnosed, corruption severity, the
  bound per operation, thread states behind the contention class, and choices (scheduler, locks,
  pilot) in place of recommendations. Version 1 reports are still read (missing fields default).
- ``threadprobe.fingerprint/2`` (2026-11) libraries found by the symbols they export, not their
  file names; the flag and version each copy reports itself; packages by import name.
- ``threadprobe.choice/1``      (2026-11) a cached scheduler choice (workload, input, machine).
- ``threadprobe.diagnosis/3``   (2026-12) adds the ``racy`` verdict and, per result, the race pass
  (``races``: the happens-before detector's tool, calls, status and race pairs). Versions 1 and 2
  are still read: their results simply have no race pass. Later optional fields: per result,
  ``gil_enabled`` (the GIL as the workers found it after their imports); in the fingerprint's
  ``python``, ``gil_reenabled_by``; in ``config``, ``gil`` (``as_imported`` or ``off``).
- ``threadprobe.diagnosis/4``   (2026-12) the GIL state is a dimension of the matrix: each result
  names the state its trials ran in (``gil``: ``as_imported`` or ``off``) and the modules whose
  import turned the GIL back on in its workers (``gil_reenabled_by``); on a free-threaded build one
  diagnosis holds both states. Versions 1 to 3 are still read: their results ran ``as_imported``.
  Later optional fields, in a result's race pass: how the pass's threads were scheduled
  (``schedule``), the GIL-released sections of its calls, the calls that ran unordered with another
  thread's and the overlapping pairs (``sections``, ``unordered``, ``overlap_pairs``: counted by the
  scheduling shim), the GIL in its workers (``gil_enabled``), and why its power is unknown
  (``power_note``). A pass without them states no power: it reads as ``unknown``, never strong.
  A remedy is an object, in results and in a choice's ``locks`` (``kind``: ``library_lock`` with
  its ``libraries`` (packages, modules or module:function) and the ``calls`` made under it, ``global_lock``, ``processes``; ``trials``);
  the strings of earlier versions read as those kinds. A choice names the ``gil`` state it was
  made for.
- ``threadprobe.diagnosis/5``   (2026-12) a result groups its parts by concern: ``safety``
  (``outcomes``, ``failure_rate_upper95``, ``evidence``, ``corruption``, ``operations``,
  ``operation_bound``), ``speed`` (``throughput``, ``speedup``, ``efficiency``, ``scaling``,
  ``busy_fraction``, ``queued_fraction``) and ``contention`` (``kind``, ``evidence``,
  ``thread_states``: format 4's flat ``contention``, ``contention_evidence`` and ``thread_states``).
  Versions 1 to 4 are still read: their flat results read into the same groups.
"""

from __future__ import annotations

import dataclasses
import json
import enum
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, TypeVar

TRIAL_SCHEMA = "threadprobe.trial/2"
WORKER_SCHEMA = "threadprobe.worker/1"
DIAGNOSIS_SCHEMA = "threadprobe.diagnosis/5"
READABLE_DIAGNOSES = ("threadprobe.diagnosis/1", "threadprobe.diagnosis/2", "threadprobe.diagnosis/3",
                      "threadprobe.diagnosis/4", DIAGNOSIS_SCHEMA)
BENCH_SCHEMA = "threadprobe.bench/1"
CHOICE_SCHEMA = "threadprobe.choice/1"


class _Text(str, enum.Enum):
    """An enum whose members are their own JSON strings (and print as them). Not ``StrEnum``: the
    worker side imports this module under any interpreter (``--python``), 3.11's or older."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class Mode(_Text):
    SERIAL = "serial"
    THREADS = "threads"
    PROCESSES = "processes"


class Kind(_Text):
    """What one trial showed. Worst first: the worst kind seen decides a verdict. A crash outranks
    corruption only because a crash also hides whatever the dead process would have produced."""

    CRASH = "crash"
    CORRUPT = "corrupt"
    HANG = "hang"
    ERROR = "error"
    OK = "ok"


SEVERITY: tuple[Kind, ...] = tuple(Kind)


class EvidenceKind(_Text):
    """What one piece of evidence shows: a trial's failure, or why a probe could not run."""

    CRASH = "crash"
    CORRUPT = "corrupt"
    HANG = "hang"
    ERROR = "error"
    UNAVAILABLE = "unavailable"  # a module the probe needs is missing here


class Verdict(_Text):
    SAFE = "safe"
    CRASH = "crash"
    CORRUPT = "corrupt"
    HANG = "hang"
    ERROR = "error"
    RACY = "racy"  # no trial failed, but a happens-before detector saw two unordered accesses
    UNAVAILABLE = "unavailable"


#: Verdicts that say the probe failed in that mode (whether that makes it unsafe: ``is_unsafe``).
FAILING = frozenset({Verdict.CRASH, Verdict.CORRUPT, Verdict.HANG, Verdict.ERROR, Verdict.RACY})


class RaceStatus(_Text):
    """What a race pass concluded about one probe."""

    CLEAN = "clean"  # no race pair in the library under test, in the calls made
    RACY = "racy"  # at least one race pair in the library under test
    FAILED = "failed"  # the detector could not run the probe to the end (reason given): not clean


class RaceSchedule(_Text):
    """How the race pass's threads were scheduled under the detector (see harness/overlap.c)."""

    MEET = "meet"  # a thread that released the GIL yields until another has released it too
    NATURAL = "natural"  # valgrind's own thread switches, only counted


class RacePower(_Text):
    """How strong a clean race pass's evidence is: the rarest path it finds 9 times in 10."""

    STRONG = "strong"  # finds a path taken by 1 call in STRONG_FROM or rarer
    THIN = "thin"  # ran unordered, but too little to find a path that rare
    BLIND = "blind"  # nothing ran unordered: the pass could not have seen a race between calls
    UNKNOWN = "unknown"  # not counted (the scheduling shim did not load)


class Purpose(_Text):
    ORACLE = "oracle"  # the serial run every other result is compared with
    TIMING = "timing"  # bare, default switch interval: throughput
    CONTENTION = "contention"  # thread states sampled from /proc: what threads wait for
    ATTRIBUTION = "attribution"  # py-spy native stacks: where they wait
    STRESS = "stress"  # everything that raises the odds of a race
    AUDIT = "audit"  # the lock coverage audit
    RACES = "races"  # under a happens-before race detector (valgrind's helgrind or DRD)
    NATIVE = "native"  # a crash once more, core dumps on


class GilState(_Text):
    """The GIL a diagnosis runs its trials under. On a GIL build only ``AS_IMPORTED`` exists."""

    AS_IMPORTED = "as_imported"  # as the probe's imports leave it (on, where an import re-enabled it)
    OFF = "off"  # forced off (PYTHON_GIL=0) on a free-threaded build, whatever is imported


class Contention(_Text):
    NONE = "none"
    GIL = "gil"
    LIBRARY_LOCK = "library_lock"


class Corruption(_Text):
    DATA = "data"  # the values differ from the serial run
    MESSAGE = "message"  # only an exception's message differs (the same exception types)


class ThreadState(_Text):
    """What a probe thread was doing when sampled from /proc (``harness.states``)."""

    RUNNING = "running"  # on a CPU
    QUEUED = "queued"  # runnable, waiting for a CPU: a busy machine, never a wait of the work's own
    GIL = "gil"  # blocked on the GIL (a futex inside ``_PyRuntime``)
    LOCK = "lock"  # blocked on another lock: a library's, or a Python lock
    INTERP = "interp"  # parked on the free-threaded interpreter's own locks (per-object, critical sections)
    IO = "io"  # in a read, write or other I/O call
    SLEEP = "sleep"  # in a sleep or a poll
    OTHER = "other"  # in any other system call


class Scaling(_Text):
    """Whether a concurrent cell realised the extra parallelism it was given (``detect.scales``)."""

    SCALES = "scales"  # at least half of it
    SERIALIZED = "serialized"  # less


class Pin(_Text):
    """Where a trial's threads may run (measurements only: a diagnosis leaves them unpinned)."""

    ONE = "one"  # every thread on the first allowed CPU
    SPREAD = "spread"  # thread t on CPU t mod the allowed CPUs


class RaceTool(_Text):
    """valgrind's happens-before race detectors."""

    HELGRIND = "helgrind"
    DRD = "drd"


class StackSource(_Text):
    """What took a hung process's stacks."""

    PY_SPY = "py-spy"  # every thread's Python and native frames
    FAULTHANDLER = "faulthandler"  # Python frames only, asked for with SIGUSR1
    NONE = "none"  # the process was gone before its stacks could be taken


class Start(_Text):
    """How the harness starts a trial's worker processes."""

    FORK = "fork"  # forked from a warm fork server per library set (imports paid once)
    SPAWN = "spawn"  # a new interpreter per worker


class Scheduler(_Text):
    """dask's schedulers. What each one is, how it starts and what it needs: ``SCHEDULERS``."""

    SYNCHRONOUS = "synchronous"
    THREADS = "threads"
    PROCESSES = "processes"
    DISTRIBUTED = "distributed"


class Auto(_Text):
    """The scheduler a run leaves to threadprobe: the diagnosis says which schedulers are safe, a
    pilot on the run's own input which of them is fastest. A run asks for ``Scheduler | Auto``."""

    AUTO = "auto"


class StartMethod(_Text):
    """How a processes pool starts its workers: multiprocessing's start methods."""

    FORK = "fork"  # a copy of this process: nothing re-imported, open files inherited
    SPAWN = "spawn"  # a fresh interpreter per worker
    FORKSERVER = "forkserver"  # forks of a clean server process, started once


class Cluster(_Text):
    """Where a distributed scheduler's workers run."""

    LOCAL = "local"  # a LocalCluster on this machine
    SLURM = "slurm"  # dask-jobqueue's SLURMCluster, configured from dask's config files


class LockMaker(_Text):
    """The object a global lock becomes under a scheduler, as in xarray's ``backends/locks.py``."""

    NONE = "none"  # no two tasks of one process ever run at once: nothing to hold
    PROCESS = "process"  # dask's SerializableLock: one per process, the same name the same lock
    CLUSTER = "cluster"  # distributed.Lock: one lock across the cluster's workers


class RemedyKind(_Text):
    """What makes an unsafe probe safe: narrowest first."""

    LIBRARY_LOCK = "library_lock"  # one lock per process around every call into one library
    GLOBAL_LOCK = "global_lock"  # one lock per process around every task
    PROCESSES = "processes"  # no shared memory at all: one thread per process


class RemedySearch(_Text):
    """Which unsafe probes a diagnosis searches a remedy for, by trials."""

    FIRST = "first"  # the first unsafe probe of each dependency: the narrowest lock that holds
    ALL = "all"  # every unsafe probe: every suspect library's lock, and the global lock
    NONE = "none"

R = TypeVar("R", bound="Record")


class Record:
    """Mixin: JSON round trip for frozen dataclasses, driven by their type hints."""

    _omit_none: ClassVar[bool] = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and self._omit_none:
                continue
            out[f.name] = _dump(value)
        return out

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                kwargs[f.name] = _load(hints[f.name], data[f.name])
        return cls(**kwargs)

    def replace(self: R, **changes: Any) -> R:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    return value


def _load(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _load(inner[0], value)
        return _one_of(inner, value)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if origin is tuple:
        return tuple(_load(args[0], v) for v in value)
    if origin is dict:
        return {_load(args[0], k): _load(args[1], v) for k, v in value.items()}
    return value


def _one_of(hints: Sequence[Any], value: Any) -> Any:
    """A value of a union of enums (``Scheduler | Auto``): the member of the enum that has it."""
    for hint in hints:
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            try:
                return hint(value)
            except ValueError:
                continue
    return value


@dataclass(frozen=True)
class Remedy(Record):
    """A way to make an unsafe probe safe: its kind, what a ``library_lock`` wraps, and, once
    trials verified it, the entry points they called (most called first) and how many stress
    trials showed it safe. A remedy is what the workers apply; ``key`` is that alone.

    A library lock wraps one or more *targets*, each with a lock of its own: a package
    (``cf_units``: every call into it), a module (``iris.fileformats.pp_load_rules``), or one
    function of a module (``iris.fileformats.pp_load_rules:_epoch_date_hours``), narrowest last."""

    _omit_none: ClassVar[bool] = True

    kind: RemedyKind
    libraries: tuple[str, ...] = ()  # library_lock: the targets, each holding its own lock
    calls: tuple[str, ...] = ()  # library_lock: entry points called under it in the verifying trials
    trials: int = 0  # stress trials that ran under it (the verdict and bound are its Result's)

    @property
    def key(self) -> Remedy:
        """What the workers apply, without what its verification found."""
        return Remedy(self.kind, self.libraries)

    def describe(self, calls: int = 4) -> str:
        if self.kind == RemedyKind.LIBRARY_LOCK:
            shown = ", ".join(self.calls[:calls]) + (", ..." if len(self.calls) > calls else "")
            what = " and ".join(self.libraries)
            return f"a lock around {what}" + (f" ({shown})" if shown else "")
        if self.kind == RemedyKind.GLOBAL_LOCK:
            return "one global lock around every task"
        return "processes (no shared memory)"

    @classmethod
    def from_json(cls, data: Any) -> Remedy:
        """Also the strings older reports and choices carry: ``global_lock``, ``processes``,
        ``global:LABEL`` and ``library:PACKAGE``."""
        if isinstance(data, str):
            head, _, library = data.partition(":")
            if head == "library":
                return cls(RemedyKind.LIBRARY_LOCK, (library,))
            return cls(RemedyKind.GLOBAL_LOCK if head == "global" else RemedyKind(head))
        return super().from_json(data)


def remedy_key(result: Result) -> Remedy | None:
    """The remedy a result ran under, as the workers applied it (None: none)."""
    return result.remedy.key if result.remedy is not None else None


@dataclass(frozen=True)
class ProbeInfo(Record):
    """What discovery knows about a probe without importing the library it tests."""

    name: str
    dependency: str  # a label: a distribution or a C library's name
    ref: str  # how a child loads it: "package.module:Class" or "/abs/plugin.py:Class"
    available: bool = True
    reason: str | None = None  # why it is unavailable
    doc: str = ""
    preload: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # what `threadprobe list` imports to say whether it can run
    timing_input: bool = False  # its timing trials read an input of realistic size (Probe.timing_input)


@dataclass(frozen=True)
class Trial(Record):
    """One run of a probe in fresh children: P processes of T threads, K tasks dealt among them."""

    probe: str
    ref: str
    mode: Mode
    processes: int
    threads: int
    iterations: int
    index: int = 0
    rounds: int = 1  # every index is repeated this many times, so that a trial lasts long enough
    timeout: float = 20.0
    switch_interval: float = 1e-6
    purpose: Purpose = Purpose.STRESS
    remedy: Remedy | None = None  # the lock the workers hold (a global lock, or one around a library)
    jitter: float = 0.0  # seconds: each thread waits a random share of this before it starts
    pin: Pin | None = None  # measurements only: every thread on one core, or spread one per core
    states: bool = False  # sample the threads' states from /proc (contention trials always do)
    deadline: float = 0.0  # seconds: each thread stops taking tasks after this long (0: never)
    gil: GilState = GilState.AS_IMPORTED  # OFF: the workers start with PYTHON_GIL=0 (free-threaded builds)

    @property
    def workers(self) -> int:
        return self.processes * self.threads


class Job(_Text):
    """What a worker process is asked to do."""

    PREPARE = "prepare"  # call the probe's prepare (write its inputs), once per probe
    TRIAL = "trial"  # run its share of a trial


class Stage(_Text):
    """Where in a worker's (or the harness's) work a failure happened."""

    PREPARE = "prepare"  # the probe's prepare, in its own child
    IMPORT = "import"  # a module the probe needs is missing
    OPEN = "open"  # the probe's open, once per worker
    TASK = "task"  # one task call
    READBACK = "readback"  # the serial read-back of what a task wrote
    CLOSE = "close"  # the probe's close
    EXIT = "exit"  # the worker process ended without its report
    HARNESS = "harness"  # threadprobe's own side: a spec, a plugin, starting workers


class Instrument(_Text):
    """What a trial's workers run under besides the probe."""

    IRIS_LOCK_AUDIT = "iris_lock_audit"  # every netCDF4 call Iris makes, tallied against its lock
    CORE_DUMPS = "core_dumps"  # core dumps allowed, written in the trial's folder, for gdb's native frames


@dataclass(frozen=True)
class WorkerSpec(Record):
    """What the parent asks of one worker process (``threadprobe.trial/2``), written as JSON by the
    parent and parsed once, with ``parse``, where the worker starts: a prepare names the probe by
    ``ref``, a trial carries its ``Trial`` (whose defaults are the only ones)."""

    job: Job
    trial_dir: str  # the job's files: spec, progress slot, results, faults
    workdir: str  # the probe's inputs
    plugins: tuple[str, ...] = ()  # plugin files to load before the probe's ref resolves
    trial: Trial | None = None  # TRIAL only
    ref: str | None = None  # PREPARE only: the probe to prepare
    instruments: tuple[Instrument, ...] = ()
    schema: str = TRIAL_SCHEMA

    def __post_init__(self) -> None:
        if self.job == Job.TRIAL and self.trial is None:
            raise ValueError("a trial spec needs its trial")
        if self.job == Job.PREPARE and not self.ref:
            raise ValueError("a prepare spec needs the probe's ref")

    @staticmethod
    def parse(text: str) -> "WorkerSpec":
        """The spec in a worker's spec file, checked (its schema, its stage's fields); ValueError
        names what is wrong."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the worker spec is not JSON: {exc}") from None
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        if found != TRIAL_SCHEMA:
            raise ValueError(f"the worker spec is {found!r}, not {TRIAL_SCHEMA}")
        try:
            return WorkerSpec.from_json(data)
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"the worker spec is not valid: {exc}") from None


@dataclass(frozen=True)
class UnlockedCalls(Record):
    """How often one netCDF4 operation was called, from one caller, outside Iris's lock."""

    operation: str
    caller: str
    count: int


@dataclass(frozen=True)
class LockAudit(Record):
    """One serial run of an Iris netCDF probe under the lock audit: its netCDF4 calls in tasks
    (what runs concurrently, which decides thread safety), how many ran outside ``lock``, and by
    whom; and those of ``open()``, made once per worker."""

    _omit_none: ClassVar[bool] = True

    probe: str
    lock: str
    calls: int
    unlocked: int
    unlocked_by_caller: tuple[UnlockedCalls, ...] = ()
    tasks: int | None = None
    open_calls: int | None = None
    open_unlocked: int | None = None


@dataclass(frozen=True)
class AuditTally(Record):
    """The lock audit's count in one stage of a worker (``open``, ``tasks``): every netCDF4 call
    Iris made, those outside its lock, and those by operation and caller, most frequent first."""

    calls: int = 0
    unlocked: int = 0
    unlocked_by_caller: tuple[UnlockedCalls, ...] = ()


@dataclass(frozen=True)
class WorkerError(Record):
    """One failure a worker caught: where (``stage``), at which task index, what, and the module
    that was missing when an import failed."""

    stage: Stage | None = None
    index: int | None = None
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    missing: str | None = None


@dataclass(frozen=True)
class WorkerReport(Record):
    """A worker's own account of its share of a trial (``threadprobe.worker/1``), written as JSON
    by the worker side (any interpreter, standard library only) and parsed once, here, where it
    enters the parent: digests per task index (of the whole result, and of its data alone where
    an exception's message differs), the errors, counts and clocks, and the lock audit's tallies."""

    worker: int = 0
    pid: int | None = None
    digests: dict[str, str] = field(default_factory=dict)
    data_digests: dict[str, str] = field(default_factory=dict)
    errors: tuple[WorkerError, ...] = ()
    error_count: int = 0
    tasks: int = 0
    t_start: float | None = None
    t_end: float | None = None
    cpu: float | None = None
    queued: float | None = None
    cpu_only: bool = False
    audit: dict[str, AuditTally] | None = None  # by stage, under the lock audit
    gil_enabled: bool | None = None  # after the probe's imports and open (None: not reported)
    gil_reenabled_by: tuple[str, ...] = ()  # modules whose import turned the GIL back on (free-threaded)
    guarded: dict[str, int] = field(default_factory=dict)  # library_lock: calls per entry point under it
    schema: str = WORKER_SCHEMA

    @staticmethod
    def parse(text: str) -> "WorkerReport | None":
        """The report in a worker's result file; None when it is not one (a worker killed while
        writing leaves no file, since writes are atomic, but a foreign file could be anything)."""
        try:
            data = json.loads(text)
            return WorkerReport.from_json(data) if isinstance(data, dict) else None
        except (ValueError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class WorkerRun(Record):
    """What the parent saw of one worker process."""

    worker: int
    pid: int
    returncode: int | None
    report: WorkerReport | None
    fault: str
    output: str
    stacks: str | None = None
    stack_source: StackSource | None = None
    cpu: float | None = None  # user + system seconds of the whole process (rusage at exit)

    @property
    def signal(self) -> str | None:
        import signal as signals

        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signals.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


@dataclass(frozen=True)
class TrialRun(Record):
    """Everything the parent gathered about one trial, before classification."""

    trial: Trial
    workers: tuple[WorkerRun, ...]
    hung: bool
    seconds: float | None  # from the first worker's start to the last worker's end
    harness_error: str | None = None
    wall: float = 0.0  # what the trial cost, fork to reap, as the budget sees it
    states: dict[ThreadState, int] = field(default_factory=dict)  # thread states sampled from /proc
    state_windows: tuple[dict[ThreadState, int], ...] = ()  # the same, per window of sweeps
    #: Seconds per state summed over the probe threads: on a CPU and queued for one from schedstat,
    #: blocked time shared out by the blocked samples (harness.states.split_time).
    state_times: dict[ThreadState, float] = field(default_factory=dict)
    threads_at_fork: tuple[str, ...] = ()  # other threads alive where a direct fork happened
    folder: str = ""  # the trial's files (faulthandler output, core dumps)


@dataclass(frozen=True)
class Evidence(Record):
    """Why a trial was not ok: one record per finding, with the details of its kind."""

    _omit_none: ClassVar[bool] = True

    kind: EvidenceKind
    trial: int
    summary: str
    worker: int | None = None
    stage: Stage | None = None
    signal: str | None = None
    traceback: str | None = None  # faulthandler output (crash) or Python traceback (error)
    native: str | None = None  # native frames of the crashing thread, when gdb could give them
    stacks: str | None = None  # stacks of a hung process
    stack_source: StackSource | None = None
    error_type: str | None = None
    message: str | None = None
    index: int | None = None
    expected: str | None = None
    actual: str | None = None
    severity: Corruption | None = None  # for corrupt: data, or only an exception message


@dataclass(frozen=True)
class Outcome(Record):
    """The classified result of one trial."""

    trial: Trial
    kind: Kind
    evidence: tuple[Evidence, ...] = ()
    tasks: int = 0
    seconds: float | None = None  # from the start barrier to the last task
    cpu: float | None = None  # seconds the probe's threads could run (on a CPU or queued), summed
    cpu_only: bool = False  # True when only CPU time was known (no schedstat)
    queued: float | None = None  # seconds the threads were runnable but waited for a CPU, summed
    wall: float = 0.0
    process_cpu: float | None = None  # rusage of every worker process
    states: dict[ThreadState, int] = field(default_factory=dict)
    unavailable: str | None = None  # the module a probe needs is missing (ModuleNotFoundError)
    gil_enabled: bool | None = None  # any worker ran with the GIL on (None: no worker said)
    gil_reenabled_by: tuple[str, ...] = ()  # modules whose import turned it back on, in any worker


@dataclass(frozen=True)
class Frame(Record):
    """One frame of a detector's stack: the object it lies in, and its symbol and line if known."""

    _omit_none: ClassVar[bool] = True

    obj: str
    fn: str = ""
    file: str | None = None
    line: int | None = None

    def text(self) -> str:
        where = f" ({self.file}:{self.line})" if self.file and self.line else ""
        return f"{self.fn or '???'}{where} in {self.obj.rsplit('/', 1)[-1]}"


@dataclass(frozen=True)
class RacePair(Record):
    """Reports of two unordered accesses, grouped: the object the racing code lies in, and the
    two functions (the access reported, the conflicting one), with both stacks of the first report."""

    object: str  # file name of the native object, e.g. libhdf5.so.310
    functions: tuple[str, ...]  # (this access, the conflicting access): sorted, so a pair is one key
    count: int
    what: str = ""  # the detector's words for the first report
    stacks: tuple[tuple[Frame, ...], ...] = ()
    operations: tuple[str, ...] = ()  # Python-level calls that reached it (netCDF4.Variable._put...)

    @property
    def key(self) -> str:
        return f"{self.object}: {' <-> '.join(self.functions)}"


#: The chance at which a clean race pass's stated power is given: the rarest path it finds 9 in 10.
FIND_AT = 0.9
#: A clean pass is strong when it finds a path taken by 1 call in this many, 9 times in 10: a race
#: that spoils 2% of calls.
STRONG_FROM = 50


@dataclass(frozen=True)
class RacePass(Record):
    """One probe's concurrent work under a happens-before race detector.

    A clean pass is a statement about the code paths that ran ("no race in N concurrent calls"),
    not a bound on a failure rate: it is kept beside the stress bound, never mixed with it. Its
    power is how much of that work ran *unordered*: under the GIL, two calls are unordered only
    while both threads have released it at once (the scheduling shim counts those sections);
    with the GIL off, nothing but locks orders them.
    """

    tool: RaceTool
    threads: int
    calls: int  # task calls made concurrently under the detector
    status: RaceStatus
    pairs: tuple[RacePair, ...] = ()
    reason: str | None = None  # why a pass failed (timeout, crash, unsupported instruction...)
    reports: int = 0  # every report the detector made
    ignored: int = 0  # of those, outside the library under test (the interpreter, libc, valgrind)
    seconds: float = 0.0
    schedule: RaceSchedule | None = None  # None: the scheduling shim did not load (power unknown)
    sections: int | None = None  # GIL-released sections of the task calls, counted by the shim
    unordered: int | None = None  # calls with a section that overlapped another probe thread's
    overlap_pairs: int | None = None  # overlapping (so unordered) section pairs of two threads
    gil_enabled: bool | None = None  # the GIL in the pass's workers (False: nothing orders calls but locks)
    power_note: str | None = None  # why the power is unknown, when it is

    def summary(self) -> str:
        if self.status == RaceStatus.RACY:
            where = f"in {self.calls} concurrent calls" if not self.reason else f"before the pass ended ({self.reason})"
            return (f"{len(self.pairs)} race pair(s) {where} under {self.tool}: "
                    + "; ".join(p.key for p in self.pairs[:3]))
        if self.status == RaceStatus.FAILED:
            return f"{self.tool} could not finish: {self.reason}"
        return f"no race in {self.calls} concurrent calls under happens-before analysis ({self.tool}); " + self.power_text()

    def unordered_calls(self) -> int | None:
        """Calls that ran unordered with another thread's call: all of them with the GIL off, else
        those with a GIL-released section that overlapped another thread's (None: not counted)."""
        if self.gil_enabled is False:
            return self.calls
        return None if self.unordered is None else min(self.unordered, self.calls)

    def rarest(self) -> int | None:
        """N such that a racing path taken by 1 call in N is found with probability FIND_AT, if
        each unordered call is an independent chance: 1 - (1 - 1/N)^U = FIND_AT."""
        unordered = self.unordered_calls()
        if unordered is None:
            return None
        return int(1 / (1 - (1 - FIND_AT) ** (1 / unordered))) if unordered else 0

    def power(self) -> RacePower:
        rarest = self.rarest()
        if rarest is None:
            return RacePower.UNKNOWN
        if rarest == 0:  # no call ran unordered; a few that did leave it thin, not blind
            return RacePower.BLIND
        return RacePower.STRONG if rarest >= STRONG_FROM else RacePower.THIN

    def power_text(self) -> str:
        """What a pass saw, in one line: calls, unordered work, and the rarest path it finds."""
        rarest, unordered = self.rarest(), self.unordered_calls()
        if rarest is None or unordered is None:
            return f"{self.calls:,} calls; unordered work not counted ({self.power_note or 'no shim'})"
        if self.gil_enabled is False:
            seen = f"{self.calls:,} calls with the GIL off, unordered but for locks"
        else:
            seen = f"{self.calls:,} calls, {unordered:,} unordered ({self.overlap_pairs or 0:,} overlapping pairs)"
        if unordered == 0:
            return f"{seen}; no call ran unordered with another, so no race between calls could be seen"
        if rarest < 2:  # a few unordered calls: 9 times in 10 only for a path most calls take
            return f"{seen}; too few to find a race 9 times in 10 unless most calls take its path"
        missed = f"{seen}; a path taken by fewer than 1 call in ~{rarest:,} may be missed"
        if self.gil_enabled is False:
            return missed
        # Under the GIL a race between two rare calls needs those two calls to overlap: the rare
        # path squared, not once, so the statement above holds only for a rare path that races
        # with the other calls' common code.
        return f"{missed} (racing common code; two rare paths racing each other need far more calls)"

    def short_text(self) -> str:
        """The verdict and its strength in a few words, for a table cell."""
        if self.status == RaceStatus.RACY:
            return f"{len(self.pairs)} race pair(s)"
        if self.status == RaceStatus.FAILED:
            return "race pass not run to the end"
        power, rarest, unordered = self.power(), self.rarest(), self.unordered_calls()
        if power == RacePower.UNKNOWN:
            return f"clean ({power}): {self.calls:,} calls"
        if power == RacePower.BLIND:
            return f"clean ({power}): {self.calls:,} calls, none unordered"
        if rarest is not None and rarest < 2:
            return f"clean ({power}): {self.calls:,} calls, {unordered:,} unordered; too few to find a rare path"
        return f"clean ({power}): {self.calls:,} calls, {unordered:,} unordered; misses paths rarer than 1 in ~{rarest:,}"

    def verdict_text(self) -> str:
        """The pass's verdict with its evidence, as the console and the HTML show it."""
        if self.status == RaceStatus.RACY:
            return f"racy: {len(self.pairs)} race pair(s) in {self.calls:,} calls"
        if self.status == RaceStatus.FAILED:
            return f"not run to the end: {self.reason}"
        return f"clean: {self.power_text()}"


@dataclass(frozen=True)
class Safety(Record):
    """What a cell's trials showed about its safety, behind its verdict: trials per outcome kind,
    the bound on the failure rate, the evidence of every failure, and the bound per concurrent call."""

    outcomes: dict[Kind, int]  # trials per kind (every kind, zeros included)
    failure_rate_upper95: float  # per trial, Clopper-Pearson
    evidence: tuple[Evidence, ...] = ()
    corruption: Corruption | None = None  # set when the verdict is corrupt
    operations: int = 0  # concurrent task calls in clean trials
    operation_bound: float | None = None  # 95% bound per call, if calls were independent

    @property
    def failed_trials(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if kind != Kind.OK)


@dataclass(frozen=True)
class Speed(Record):
    """How fast a cell ran, against the serial throughput of the same run (timing trials only)."""

    _omit_none: ClassVar[bool] = True

    throughput: float | None = None  # tasks per second, clean timing trials only
    speedup: float | None = None  # against the serial throughput of the same run
    efficiency: float | None = None  # speedup / workers
    scaling: Scaling | None = None
    busy_fraction: float | None = None  # runnable thread time / (work time x threads)
    queued_fraction: float | None = None  # of that, waiting for a CPU: high means a busy machine


@dataclass(frozen=True)
class Waits(Record):
    """What a cell's threads wait for (its contention class), from their sampled states."""

    _omit_none: ClassVar[bool] = True

    kind: Contention | None = None  # None: not measured
    evidence: tuple[str, ...] = ()  # the shares behind the class, in words
    thread_states: dict[ThreadState, float] = field(default_factory=dict)  # share of samples per state (queued left out)
    gil_wait_fraction: float | None = None  # version 1 only


#: Where the fields of a flat result (formats 1 to 4) went in the grouped one.
_GROUPED = {"safety": ("outcomes", "failure_rate_upper95", "evidence", "corruption", "operations", "operation_bound"),
            "speed": ("throughput", "speedup", "efficiency", "scaling", "busy_fraction", "queued_fraction")}
_WAITS = {"contention": "kind", "contention_evidence": "evidence", "thread_states": "thread_states",
          "gil_wait_fraction": "gil_wait_fraction"}


@dataclass(frozen=True)
class Result(Record):
    """The verdict for one probe x mode x workers (and GIL state, and remedy), with its safety,
    speed and contention parts."""

    probe: str
    dependency: str
    mode: Mode
    workers: int
    processes: int
    threads: int
    trials: int
    verdict: Verdict
    safety: Safety
    speed: Speed = field(default_factory=Speed)
    contention: Waits = field(default_factory=Waits)
    remedy: Remedy | None = None  # the remedy this cell ran under (None: as the libraries are)
    seconds: float = 0.0  # wall time its trials cost
    races: RacePass | None = None  # the happens-before pass of this cell, when one ran
    gil_enabled: bool | None = None  # the GIL was on in its workers (None: not reported)
    gil: GilState = GilState.AS_IMPORTED  # the GIL state its trials ran in
    gil_reenabled_by: tuple[str, ...] = ()  # modules whose import turned the GIL back on in its workers

    @property
    def failed_trials(self) -> int:
        return self.safety.failed_trials

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """Also a flat result (formats 1 to 4), whose parts were not yet grouped."""
        if "safety" in data:
            return super().from_json(data)
        flat = dict(data)
        grouped: dict[str, Any] = {part: {k: flat.pop(k) for k in keys if k in flat} for part, keys in _GROUPED.items()}
        grouped["contention"] = {new: flat.pop(old) for old, new in _WAITS.items() if old in flat}
        return super().from_json({**flat, **grouped})

    @property
    def label(self) -> str:
        """The cell's column: its mode and width, and the GIL state when it was forced off."""
        base = "serial" if self.mode == Mode.SERIAL else f"{self.mode} {self.workers}"
        return f"{base}, GIL off" if self.gil == GilState.OFF else base


@dataclass(frozen=True)
class PilotRow(Record):
    """One candidate scheduler timed on the pilot sample."""

    candidate: str
    seconds: tuple[float, ...]  # wall time of each repetition on its share of the sample
    startup: float = 0.0  # measured once: what the scheduler costs before any work
    projected: tuple[float, ...] = ()  # each repetition projected to the whole run, start-up included


@dataclass(frozen=True)
class Choice(Record):
    """Which dask scheduler to run on, with the locks it must hold, and why."""

    workload: str
    scheduler: Scheduler
    n_workers: int = 1
    threads_per_worker: int = 1
    locks: tuple[Remedy, ...] = ()  # verified remedies the run applies (a library lock, a global lock)
    rationale: tuple[str, ...] = ()
    source: str = "command line"
    address: str | None = None
    cluster: Cluster = Cluster.LOCAL
    adapt: tuple[int, ...] | None = None
    pilot: tuple[PilotRow, ...] = ()
    context: StartMethod | None = None  # how a processes pool starts its workers
    gil: GilState | None = None  # the GIL state the choice was made for (None: a GIL build)

    @property
    def row(self) -> SchedulerRow:
        return scheduler_row(self.scheduler)

    def describe(self) -> str:
        return self.row.describe(self)

    def held(self) -> str:
        """The locks, in words: '' when there are none."""
        return ", holding " + "; ".join(r.describe() for r in self.locks) if self.locks else ""


@dataclass(frozen=True)
class SchedulerRow:
    """Everything about one scheduler: what it is, how it starts, the dask settings that select
    it, which diagnosed mode must be safe for it, the lock maker its global locks need, whether
    its workers share memory, and its simplicity rank (the pilot's tie-break: lower is simpler)."""

    what: str
    starts: str
    rank: int
    mode: Mode | None  # the diagnosed mode whose safety it needs (None: runs one task at a time)
    shares_memory: bool  # tasks of one worker run as threads of one process
    lock: LockMaker
    shape: Callable[[int | None, int | None, int], tuple[int, int]]  # (workers, threads, cores) asked -> used
    settings: Callable[[Choice], dict[str, Any]]  # dask config that makes dask run on the choice
    label: Callable[[Choice], str]  # a candidate's short name in pilot tables
    describe: Callable[[Choice], str]
    client: bool = False  # runs through a dask.distributed Client (a cluster), not a local pool
    context: StartMethod | None = None  # how an explicit choice's pool starts its workers
    shadowed_by: Scheduler | None = None  # not piloted beside it: the same workers plus a start-up


def _plus_lock(c: Choice) -> str:
    return " + " + "; ".join(" + ".join(r.libraries) or "lock" for r in c.locks) if c.locks else ""


def _distributed_text(c: Choice) -> str:
    where = c.address or ("SLURM via dask-jobqueue" if c.cluster == Cluster.SLURM else "LocalCluster")
    size = f"adaptive {c.adapt[0]}-{c.adapt[1]} workers" if c.adapt else f"{c.n_workers} workers"
    return f"distributed on {where} ({size} x {c.threads_per_worker} threads{c.held()})"


def scheduler_row(s: Scheduler) -> SchedulerRow:
    """The scheduler table: one row per member (mypy checks that every member has one)."""
    match s:
        case Scheduler.SYNCHRONOUS:
            return SchedulerRow(
                "every task in the calling thread, one at a time", "nothing to start", 0, None, True, LockMaker.NONE,
                lambda w, t, cores: (1, 1), lambda c: {"scheduler": "synchronous"},
                lambda c: "synchronous", lambda c: "synchronous (single-threaded)")
        case Scheduler.THREADS:
            return SchedulerRow(
                "a pool of threads in this process", "a thread pool, in microseconds", 1, Mode.THREADS, True,
                LockMaker.PROCESS, lambda w, t, cores: (1, t or w or cores),
                lambda c: {"scheduler": "threads", "num_workers": c.threads_per_worker},
                lambda c: f"threads {c.threads_per_worker}{_plus_lock(c)}",
                lambda c: f"threads ({c.threads_per_worker} threads{c.held()})")
        case Scheduler.PROCESSES:
            # dask batches 6 ready tasks per submission by default: a handful of big tasks would
            # all land on one worker, hence chunksize 1.
            return SchedulerRow(
                "a pool of one-thread worker processes", "forks (or spawns) its processes at the first task", 2,
                Mode.PROCESSES, False, LockMaker.NONE, lambda w, t, cores: (w or cores, 1),
                lambda c: {"scheduler": "processes", "num_workers": c.n_workers,
                           "multiprocessing": {"context": str(c.context or StartMethod.SPAWN)}, "chunksize": 1},
                lambda c: f"processes {c.n_workers}" + (f" ({c.context})" if c.context else ""),
                lambda c: f"processes ({c.n_workers} processes" + (f", {c.context})" if c.context else ")"),
                context=StartMethod.FORK)
        case Scheduler.DISTRIBUTED:
            return SchedulerRow(
                "dask.distributed: a scheduler and worker processes (LocalCluster, an address or SLURM)",
                "a scheduler, nannies and workers, in seconds", 3, Mode.PROCESSES, False, LockMaker.CLUSTER,
                lambda w, t, cores: (w or cores, t or 1),
                lambda c: {"scheduler-address": c.address} if c.address else {},
                lambda c: f"distributed {c.n_workers}x{c.threads_per_worker}{_plus_lock(c)}",
                _distributed_text, client=True, shadowed_by=Scheduler.PROCESSES)
        case _:
            typing.assert_never(s)


#: Every scheduler, simplest first.
SCHEDULERS: tuple[Scheduler, ...] = tuple(sorted(Scheduler, key=lambda s: scheduler_row(s).rank))


#: A fingerprint (``threadprobe.fingerprint/2``, made by ``harness.fingerprint``): open on purpose.
#: It holds whatever the loaded library builds say about themselves, so new keys need no schema bump.
#: People, compare, the choice cache's key and the check that a stored diagnosis still fits this
#: interpreter read it; no verdict depends on it.
Fingerprint: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class Diagnosis(Record):
    """The whole report: configuration, fingerprint, results and what they imply."""

    created: str
    threadprobe: str
    config: dict[str, Any]  # open: what was asked and run with, for people and compare (Diagnoser.config)
    fingerprint: Fingerprint
    results: tuple[Result, ...]
    schema: str = DIAGNOSIS_SCHEMA
    seconds: float = 0.0
    recommendations: dict[str, Choice] = field(default_factory=dict)
    remedies: tuple[Result, ...] = ()
    lock_audit: tuple[LockAudit, ...] = ()
    repro: dict[str, str] = field(default_factory=dict)
    interpreter: str = ""  # the Python whose libraries were diagnosed


def worst(kinds: Iterable[str]) -> Kind:
    """The most severe outcome kind among ``kinds`` (ok when empty)."""
    seen = {Kind(k) for k in kinds}
    for kind in SEVERITY:
        if kind in seen:
            return kind
    return Kind.OK


def verdict_of(kind: Kind) -> Verdict:
    """The verdict of a cell whose worst trial was ``kind``."""
    return Verdict.SAFE if kind == Kind.OK else Verdict(kind.value)


def is_failing(verdict: str) -> bool:
    """Did the probe fail in that mode (a failing trial, or a race pair)?"""
    return verdict in FAILING


def is_clean(verdict: str) -> bool:
    """No trial failed and no race was seen: the only verdict a bound can be claimed for."""
    return verdict == Verdict.SAFE


def is_unavailable(verdict: str) -> bool:
    return verdict == Verdict.UNAVAILABLE


def with_races(result: Result, races: RacePass) -> Result:
    """A cell's result with its race pass: a clean cell with race pairs becomes ``racy``; a cell
    that failed in trials keeps that verdict (a crash says more than a race), with the pairs beside it."""
    verdict = Verdict.RACY if races.status == RaceStatus.RACY and result.verdict == Verdict.SAFE else result.verdict
    return result.replace(races=races, verdict=verdict)


def race_keys(result: Result) -> frozenset[str]:
    """The race pairs a result's pass found, by key (empty when no pass ran)."""
    return frozenset(p.key for p in result.races.pairs) if result.races is not None else frozenset()


def serial_failures(results: Iterable[Result]) -> set[str]:
    """Probes whose serial run already errs: their errors are a broken probe or input, not a race."""
    return {r.probe for r in results if r.mode == Mode.SERIAL and r.verdict == Verdict.ERROR and r.remedy is None}


def is_unsafe(result: Result, fails_serially: bool = False) -> bool:
    """Does this result fail under concurrency? Crashes, corruption, hangs and race pairs always
    do; an error only when the serial run of the same probe was clean (else the probe itself is broken)."""
    if result.mode == Mode.SERIAL:
        return False
    verdict = Verdict(result.verdict)
    if verdict in (Verdict.CRASH, Verdict.CORRUPT, Verdict.HANG, Verdict.RACY):
        return True
    return verdict == Verdict.ERROR and not fails_serially


def unsafe_results(results: Sequence[Result]) -> list[Result]:
    """Every result (no remedies) that fails under concurrency: the one list of "unsafe"."""
    broken = serial_failures(results)
    return [r for r in results if r.remedy is None and is_unsafe(r, r.probe in broken)]


#: The bound (95%) on a clean threads cell's failure rate at or under which a scheduler may rely on
#: it, as on a verified remedy: 29 clean trials. A threads cell clean in 17 (bound 16%) was relied
#: on for the netCDF load on 3.13t, and one run of 10 crashed there
#: (bench-builds-load-nc-128-gil-as_imported). Separate processes share no memory to race on (what
#: forking after files were opened does is a probe of its own), so their clean cells count as they are.
RELY_BOUND = 0.10


def is_safe(result: Result, fails_serially: bool = False) -> bool:
    """Safe for a scheduler to rely on: clean (threads: with a failure-rate bound of at most
    ``RELY_BOUND``), or broken the same way serially (no concurrency issue)."""
    verdict = Verdict(result.verdict)
    if verdict == Verdict.ERROR and fails_serially:
        return True
    thin = result.mode == Mode.THREADS and result.safety.failure_rate_upper95 > RELY_BOUND
    return verdict == Verdict.SAFE and not thin


@dataclass(frozen=True)
class RunRequest(Record):
    """What a run needs besides its input: the scheduler asked for (``auto``: the diagnosis and a
    pilot decide), workers, a cluster (an address, SLURM, adaptive bounds), where safety comes
    from, and whether a cached choice may be used."""

    scheduler: Scheduler | Auto = Auto.AUTO
    workers: int | None = None
    threads_per_worker: int | None = None
    address: str | None = None
    cluster: Cluster = Cluster.LOCAL
    adapt: str | None = None
    diagnosis: str | None = None
    cache: bool = True
    locks: tuple[Remedy, ...] = ()  # an explicit scheduler holds these (a library's lock, the global lock)

    def on_cluster(self) -> Placement | None:
        """The cluster to run on, or None for this machine's own schedulers."""
        wanted = self.address or self.cluster != Cluster.LOCAL or self.adapt
        return Placement(self.address, self.cluster, self.adapt) if wanted else None


@dataclass(frozen=True)
class Placement:
    """Where a run's distributed workers are: a scheduler's address, else a cluster to start (a
    LocalCluster or SLURM), with adaptive bounds (``MIN:MAX``) or not."""

    address: str | None
    cluster: Cluster
    adapt: str | None


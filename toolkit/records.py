"""The typed, immutable records a diagnosis flows through, and their JSON form.

Data flows one way, each step a pure function of the one before:

    Trial --(isolation + detect.classify)--> Outcome --(detect.summarise)--> Result
    Results --(recommend)--> Recommendation;  all of it --> Diagnosis (reports/diagnosis.json)

Every JSON document names its schema. Format history, newest last (bump a version when a field
changes meaning or disappears; adding an optional field does not need a bump):

- ``threadprobe.trial/1``     (2026-11) the spec a worker process receives.
- ``threadprobe.worker/1``    (2026-11) what one worker process writes back.
- ``threadprobe.diagnosis/1`` (2026-11) the report; JSON Schema in ``toolkit/schema/``.
- ``threadprobe.fingerprint/1`` (2026-11) the library builds that were loaded.
- ``threadprobe.bench/1``     (2026-11) benchmark results.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

TRIAL_SCHEMA = "threadprobe.trial/1"
WORKER_SCHEMA = "threadprobe.worker/1"
DIAGNOSIS_SCHEMA = "threadprobe.diagnosis/1"
FINGERPRINT_SCHEMA = "threadprobe.fingerprint/1"
BENCH_SCHEMA = "threadprobe.bench/1"

MODES = ("serial", "threads", "processes")
# Worst first: the worst outcome seen decides a verdict. A crash outranks corruption only because
# a crash also hides whatever corruption the dead process would have produced.
SEVERITY = ("crash", "corrupt", "hang", "error", "ok")
VERDICTS = ("safe", "crash", "corrupt", "hang", "error", "unavailable")
UNSAFE = frozenset({"crash", "corrupt", "hang"})
SCHEDULERS = ("synchronous", "threads", "processes", "distributed")

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
        return _load(inner[0], value) if len(inner) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value)
    if origin is tuple:
        return tuple(_load(args[0], v) for v in value)
    if origin is dict:
        return {k: _load(args[1], v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ProbeInfo(Record):
    """What discovery knows about a probe without importing the library it tests."""

    name: str
    dependency: str
    ref: str  # how a child loads it: "package.module:Class" or "/abs/plugin.py:Class"
    available: bool = True
    reason: str | None = None  # why it is unavailable
    doc: str = ""


@dataclass(frozen=True)
class Trial(Record):
    """One run of a probe in fresh children: P processes of T threads, K tasks dealt among them."""

    probe: str
    ref: str
    mode: str
    processes: int
    threads: int
    iterations: int
    index: int = 0
    rounds: int = 1  # timing trials repeat every index so that they last long enough to time
    timeout: float = 20.0
    switch_interval: float = 1e-6
    # oracle | timing (bare, for throughput) | contention (GIL monitor, maybe py-spy) | stress
    # (1 microsecond switch interval); the last three run on CPython's default switch interval.
    purpose: str = "stress"
    remedy: str | None = None  # e.g. "global_lock": one process-wide lock around every task

    @property
    def workers(self) -> int:
        return self.processes * self.threads


@dataclass(frozen=True)
class Evidence(Record):
    """Why a trial was not ok: one record per finding, with the details of its kind."""

    _omit_none: ClassVar[bool] = True

    kind: str
    trial: int
    summary: str
    worker: int | None = None
    stage: str | None = None  # prepare | open | task | readback | close | exit
    signal: str | None = None
    traceback: str | None = None  # faulthandler output (crash) or Python traceback (error)
    native: str | None = None  # native frames of the crashing thread, when gdb could give them
    stacks: str | None = None  # stacks of a hung process
    stack_source: str | None = None  # py-spy | faulthandler
    error_type: str | None = None
    message: str | None = None
    index: int | None = None
    expected: str | None = None
    actual: str | None = None


@dataclass(frozen=True)
class Outcome(Record):
    """The classified result of one trial."""

    trial: Trial
    kind: str  # ok | crash | corrupt | hang | error
    evidence: tuple[Evidence, ...] = ()
    tasks: int = 0
    seconds: float | None = None  # from the start barrier to the last task
    gil_wait: float | None = None  # fraction of knocks that waited for the GIL
    cpu: float | None = None  # seconds the probe's threads could run (on a CPU or queued), summed
    cpu_only: bool = False  # True when only CPU time was known (no schedstat)
    queued: float | None = None  # seconds the threads were runnable but waited for a CPU, summed


@dataclass(frozen=True)
class Result(Record):
    """The verdict for one probe x mode x workers, with its statistics."""

    probe: str
    dependency: str
    mode: str
    workers: int
    processes: int
    threads: int
    trials: int
    outcomes: dict[str, int]
    verdict: str
    failure_rate_upper95: float
    evidence: tuple[Evidence, ...] = ()
    throughput: float | None = None  # tasks per second, clean timing trials only
    speedup: float | None = None  # against the serial throughput of the same run
    efficiency: float | None = None  # speedup / workers
    scaling: str | None = None  # scales | serialized
    gil_wait_fraction: float | None = None
    busy_fraction: float | None = None  # runnable thread time / (work time x threads)
    queued_fraction: float | None = None  # of that, waiting for a CPU: high means a busy machine
    contention: str | None = None  # none | gil | library_lock
    contention_evidence: tuple[str, ...] = ()
    remedy: str | None = None


@dataclass(frozen=True)
class Recommendation(Record):
    """Which dask scheduler a workload should run on, and why."""

    workload: str
    scheduler: str
    n_workers: int
    threads_per_worker: int
    locks: tuple[str, ...] = ()
    rationale: tuple[str, ...] = ()
    source: str = "diagnosis"


@dataclass(frozen=True)
class Diagnosis(Record):
    """The whole report: configuration, fingerprint, results and what they imply."""

    created: str
    threadprobe: str
    config: dict[str, Any]
    fingerprint: dict[str, Any]
    results: tuple[Result, ...]
    schema: str = DIAGNOSIS_SCHEMA
    seconds: float = 0.0
    recommendation: Recommendation | None = None
    recommendations: dict[str, Recommendation] = field(default_factory=dict)
    remedies: tuple[Result, ...] = ()
    lock_audit: tuple[dict[str, Any], ...] = ()
    repro: dict[str, str] = field(default_factory=dict)


def worst(kinds: typing.Iterable[str]) -> str:
    """The most severe outcome kind among ``kinds`` ("ok" when empty)."""
    seen = set(kinds)
    for kind in SEVERITY:
        if kind in seen:
            return kind
    return "ok"

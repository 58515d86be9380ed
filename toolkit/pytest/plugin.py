"""threadprobe's pytest plugin: a library's thread-safety bug, told apart from a test's shared state.

Installed with threadprobe (entry point ``pytest11``). Every trial runs through the harness that
``diagnose`` uses (a direct fork of this process, so the test's fixtures and closures come
along), with the same classification and the same switch interval.

- ``--threadprobe-threads=N`` (or the marker ``@pytest.mark.threadprobe(threads=N, iterations=K)``,
  or pytest-run-parallel's ``parallel_threads(N)``): the test body runs in N threads started
  together, K times each, in a child process; a segfault fails that test and the session goes
  on. Every thread gets its own function-scoped fixtures (its own ``tmp_path``, its own fixture
  cube); wider-scoped fixtures are shared, as pytest shares them (see ``pytest_fixtures``).
- Each thread's iterations share that thread's fixtures. When the threads fail, a control runs
  the same runs one after another in one thread, with exactly that sharing (``Layout``): two
  threads' worth of fixtures, each used for its iterations in a row. A failure the control shows
  too is **not re-entrant**: test state, not a library bug (it passes, listed, unless
  ``--threadprobe-strict``). One seen only concurrently is **thread-unsafe**, and fails the
  test with the signal, or the differing values. A control whose first run fails is an
  ordinary failure.
- Thread pools a forked child inherits without their threads (dask's, ``concurrent.futures``')
  are reset in the child, and the summary says when other threads were alive at a fork. A
  child dies with the session.
- ``--threadprobe-races``: each threaded test also runs in a child under valgrind's helgrind
  (``threadprobe.pytest.races``); a race pair in native code fails it, labelled **racy**, even when
  its threads gave the right answers.
- ``threadprobe`` fixture: ``threadprobe.check(fn, inputs, threads=2, processes=0, trials=3)``.
- ``--threadprobe-diagnosis=FILE``: fail the session when that diagnosis finds a dependency the
  suite declares (ini ``threadprobe_uses`` or ``--threadprobe-uses``) unsafe.

The plugin's state lives in one object, ``Threadprobe``, registered per session.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from threadprobe.diagnosis import detect
from threadprobe.diagnosis import diagnose as diagnosing
from threadprobe.diagnosis import plan
from threadprobe.pytest import fixtures
from threadprobe.pytest import races as pytest_races
from threadprobe.probe import refs
from threadprobe import report
from threadprobe.records.errors import UsageError
from threadprobe.harness import launch
from threadprobe.harness.valgrind import valgrind
from threadprobe.probe import Probe, function_probe
from threadprobe.pytest.fixtures import num_iterations, num_parallel_threads, thread_index  # noqa: F401 (fixtures)
from threadprobe.records import Mode, Purpose, RaceStatus, Trial, is_clean

DEFAULT_TIMEOUT = 60.0
NAME = "threadprobe-session"


# --------------------------------------------------------------------------------------------
# Options, markers


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("threadprobe", "thread-safety checks with crash isolation")
    group.addoption("--threadprobe-threads", default="0", metavar="N",
                    help="run every test in N threads at once, in a forked child ('auto': the cores; 0: off)")
    group.addoption("--threadprobe-iterations", type=int, default=1, metavar="K",
                    help="runs of the body per thread (default 1)")
    group.addoption("--threadprobe-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                    help=f"a threaded run silent for this long is a hang (default {DEFAULT_TIMEOUT:g})")
    group.addoption("--threadprobe-strict", action="store_true",
                    help="fail tests that are not re-entrant (they pass, listed, by default)")
    group.addoption("--threadprobe-skip-thread-unsafe", action="store_true",
                    help="skip tests that cannot run in threads instead of running them serially")
    group.addoption("--threadprobe-diagnosis", default=None, metavar="FILE",
                    help="fail the session if this diagnosis finds a dependency the suite uses unsafe")
    group.addoption("--threadprobe-races", nargs="?", const="helgrind", default=None, choices=("helgrind", "drd"),
                    metavar="TOOL", help="also run each threaded test in a child under valgrind's race detector "
                                         "(helgrind, or drd): a race pair in native code fails the test")
    group.addoption("--threadprobe-uses", default=None, metavar="DEP[,DEP]",
                    help="dependencies this suite uses (else the ini option threadprobe_uses)")
    parser.addini("threadprobe_uses", "dependencies the suite uses, for --threadprobe-diagnosis", type="linelist")
    for name, what in (("thread_unsafe_fixtures", "fixtures whose tests must run serially"),
                       ("thread_unsafe_functions", "functions (module.function) whose callers must run serially")):
        try:
            parser.addini(name, what, type="linelist")
        except ValueError:
            pass  # pytest-run-parallel, installed too, declared it: the same meaning


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "threadprobe(threads=2, iterations=10, timeout=60): run the body in threads started together, in a child",
        "thread_unsafe(reason=None): never run this test in threads",
        "parallel_threads(n): run this test in n threads (pytest-run-parallel's marker)",
        "iterations(n): run the body n times in each thread (pytest-run-parallel's marker)",
    ):
        config.addinivalue_line("markers", line)
    config.pluginmanager.register(Threadprobe(config), NAME)


def _uses(config: pytest.Config) -> list[str]:
    given = config.getoption("threadprobe_uses")
    if given:
        return [d.strip() for d in given.split(",") if d.strip()]
    return list(config.getini("threadprobe_uses"))


THREAD_UNSAFE, NOT_REENTRANT, SERIAL_FAILURE = "thread-unsafe", "not re-entrant", "serial failure"
DIED = ("crash", "hang")  # kinds that end a run: what comes after them is unknown


def triage(threaded: str, control: str, control_failed_index: int | None) -> str:
    """Pure: the label of a test whose threaded run failed (``threaded``: its outcome kind), from
    its control (the threaded run's runs one after another in one thread, sharing fixtures as the
    threads do: ``control``'s kind, and which run failed first).

    - The control's first run fails (or it dies): an ordinary failure, nothing to do with threads.
    - A later run of the control fails: the body fails on its own re-run, so the threaded failure may
      be that too: **not re-entrant** (test state), unless only the threads died (a crash or hang
      the control never showed is a concurrency bug whatever the test's state).
    - The control passes: **thread-unsafe**.
    """
    if control != "ok" and (control_failed_index in (None, 0) or control in DIED):
        return SERIAL_FAILURE
    if control != "ok" and not (threaded in DIED and control not in DIED):
        return NOT_REENTRANT
    return THREAD_UNSAFE


@dataclass
class Verdict:
    nodeid: str
    label: str  # thread-unsafe | racy | races not run | not re-entrant | serial
    why: str


@dataclass(eq=False)  # pytest keeps plugins in sets: identity, not value, makes one
class Threadprobe:
    """The plugin's state: settings, what each test was labelled, the diagnosis gate."""

    config: pytest.Config
    labels: list[Verdict] = field(default_factory=list)
    forks_with_threads: set[str] = field(default_factory=set)
    gate: tuple[str, list[str], list[str]] | None = None

    # ----------------------------------------------------------------------------------------
    def threads_for(self, item: pytest.Item) -> tuple[int, int, float] | None:
        """(threads, iterations, timeout) for a test that runs in threads, else None."""
        config = item.config
        timeout = config.getoption("threadprobe_timeout")
        iterations = config.getoption("threadprobe_iterations")
        marker = item.get_closest_marker("threadprobe")
        if marker is not None:
            return (int(marker.kwargs.get("threads", 2)), int(marker.kwargs.get("iterations", 10)),
                    float(marker.kwargs.get("timeout", timeout)))
        text = str(config.getoption("threadprobe_threads"))
        threads = (os.cpu_count() or 1) if text == "auto" else int(text or 0)
        parallel = item.get_closest_marker("parallel_threads")
        if parallel is not None and parallel.args:
            threads = int(parallel.args[0])
        repeat = item.get_closest_marker("iterations")
        if repeat is not None and repeat.args:
            iterations = int(repeat.args[0])
        return (threads, iterations, timeout) if threads > 1 else None

    def serial_reason(self, item: pytest.Item) -> str | None:
        return fixtures.serial_reason(item, self.config.getini("thread_unsafe_fixtures"),
                                      self.config.getini("thread_unsafe_functions"))

    # ----------------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        settings = self.threads_for(pyfuncitem)
        if settings is None or not hasattr(os, "fork"):
            return None
        why = self.serial_reason(pyfuncitem)
        if why is None and not fixtures.supported():
            why = "this pytest's fixture internals are unknown: fixtures cannot be duplicated"
        if why is not None:
            self.labels.append(Verdict(pyfuncitem.nodeid, "serial", why))
            if self.config.getoption("threadprobe_skip_thread_unsafe"):
                pytest.skip(f"threadprobe: {why}")
            return None
        threads, iterations, timeout = settings
        self.check_races(pyfuncitem, threads, iterations)
        threaded = run_body(pyfuncitem, threads, iterations, timeout)
        self.forks_with_threads.update(threaded.threads_at_fork)
        if threaded.kind == "ok":
            return True
        if threaded.skipped is not None:
            pytest.skip(threaded.skipped)
        if threaded.open_error is not None:
            self.labels.append(Verdict(pyfuncitem.nodeid, "serial", f"fixtures could not be duplicated: "
                                                                     f"{threaded.open_error}"))
            return None  # pytest runs the test as usual, in this process
        control = run_body(pyfuncitem, threads, iterations, timeout, control=True)
        self.forks_with_threads.update(control.threads_at_fork)
        label = triage(threaded.kind, control.kind, control.failed_index)
        if label == SERIAL_FAILURE:
            pytest.fail(f"failed serially too (in threadprobe's control run):\n{control.text}", pytrace=False)
        if label == NOT_REENTRANT:
            self.labels.append(Verdict(pyfuncitem.nodeid, NOT_REENTRANT, f"{threaded.headline}; serially: "
                                                                         f"{control.headline}"))
            message = (f"not re-entrant: fails under {threads} threads, and also when run again in one thread, "
                       f"sharing fixtures as each thread does (test state, not a library bug): "
                       f"{control.headline}\n{control.text}")
            if self.config.getoption("threadprobe_strict"):
                pytest.fail(message, pytrace=False)
            return True
        self.labels.append(Verdict(pyfuncitem.nodeid, THREAD_UNSAFE, threaded.headline))
        serially = "fine" if control.kind == "ok" else f"{control.headline}, which is not this"
        pytest.fail(f"thread-unsafe: {threaded.headline} (the same runs one after another, sharing fixtures as the "
                    f"threads do: {serially})\n{threaded.text}",
                    pytrace=False)

    def check_races(self, item: pytest.Function, threads: int, iterations: int) -> None:
        """``--threadprobe-races``: fail the test with its race pair, even when its threads are right."""
        tool = self.config.getoption("threadprobe_races")
        if not tool or pytest_races.in_child():
            return
        if valgrind() is None:
            raise pytest.UsageError("--threadprobe-races needs valgrind, which is not installed here")
        found = pytest_races.check(item, tool, threads, iterations)
        if found.status == RaceStatus.RACY:
            self.labels.append(Verdict(item.nodeid, "racy", found.summary()))
            pytest.fail(pytest_races.failure_text(found), pytrace=False)
        if found.status == RaceStatus.FAILED:  # never silently clean: listed in the summary
            self.labels.append(Verdict(item.nodeid, "races not run", found.summary()))

    # ----------------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        path = session.config.getoption("threadprobe_diagnosis")
        if not path or hasattr(session.config, "workerinput"):  # the xdist controller decides, once
            return

        try:
            diagnosis = report.read(path)
        except UsageError as exc:
            raise pytest.UsageError(f"--threadprobe-diagnosis: {exc}") from None
        uses = set(_uses(session.config))
        probes = {r.probe for r in diagnosis.results if r.dependency in uses or r.probe.split(".")[0] in uses}
        unsafe = [u for u in report.unsafe(diagnosis) if not uses or any(u.startswith(p + " ") for p in probes)]
        self.gate = (path, sorted(uses), unsafe)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.gate and self.gate[2] and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        groups: dict[str, list[Verdict]] = {}
        for v in self.labels:
            groups.setdefault(v.label, []).append(v)
        titles = {"thread-unsafe": "thread-unsafe (failed only concurrently: a library or the code under test)",
                  "racy": "racy (race pairs in native code under valgrind, whatever the answers)",
                  "races not run": "not run to the end under the race detector (not clean)",
                  "not re-entrant": "not re-entrant (failed when re-run in one thread too: test state)",
                  "serial": "ran serially"}
        for label in ("thread-unsafe", "racy", "races not run", "not re-entrant", "serial"):
            items = groups.get(label, [])
            if not items:
                continue
            terminalreporter.section(f"threadprobe: {len(items)} {titles[label]}", sep="=" if label != "serial" else "-",
                                     red=label in ("thread-unsafe", "racy"))
            for v in items:
                terminalreporter.line(f"{v.nodeid}: {v.why}")
        if self.forks_with_threads:
            terminalreporter.line(f"threadprobe: other threads were alive when tests forked "
                                  f"({', '.join(sorted(self.forks_with_threads)[:5])}); their thread pools were reset "
                                  "in the children")
        if self.gate:
            path, uses, unsafe = self.gate
            terminalreporter.section("threadprobe: diagnosis gate", sep="=", red=bool(unsafe), green=not unsafe)
            what = f"for {', '.join(uses)}" if uses else "for every dependency"
            if unsafe:
                terminalreporter.line(f"{path} finds unsafe verdicts {what}; the session fails:")
                for line in unsafe:
                    terminalreporter.line(f"  {line}")
            else:
                terminalreporter.line(f"{path}: no unsafe verdict {what}")

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        threads = config.getoption("threadprobe_threads")
        return f"threadprobe: every test runs in {threads} threads, crash-isolated" if str(threads) not in ("0", "") \
            else None


# --------------------------------------------------------------------------------------------
# A test body as a probe, through the harness


class _Skip(Exception):
    """pytest.skip() inside a thread: carried out as an error, turned back into a skip."""


class _Outcome(Exception):
    """pytest.fail() and friends inside a thread: an ordinary failure for the harness."""


@dataclass(frozen=True)
class Layout:
    """Which fixture instance each run of the body uses. The threaded run: ``threads`` instances,
    thread t's ``iterations`` runs all on instance t (the worker gives thread t the runs i with
    i % threads == t). The control mirrors that sharing exactly, one run after another in one
    thread: the first two threads' instances, each used for its ``iterations`` runs in a row. So a
    body that fails when re-run on the same fixture fails in the control too (not re-entrant),
    and, with one iteration, two runs on instances of their own show process-wide test state."""

    instances: int
    runs: int
    iterations: int
    control: bool

    @staticmethod
    def of(threads: int, iterations: int, control: bool) -> "Layout":
        instances = min(threads, 2) if control else threads
        return Layout(instances, instances * iterations, iterations, control)

    def instance(self, i: int) -> int:
        return i // self.iterations if self.control else i % self.instances


def body_probe(item: pytest.Function, threads: int, layout: Layout) -> type:
    class TestBody(Probe):
        name = f"pytest.{item.name}"
        dependency = "pytest"

        def open(self, workdir: Any) -> list[fixtures.Instance]:
            fixtures.CURRENT.update(threads=threads, iterations=layout.iterations)
            if layout.control:  # pytest's own instance is not used: it tears that down itself
                return [fixtures.fresh(item, t) for t in range(layout.instances)]
            # Thread 0 uses what pytest set up in its own process; the others get new instances.
            return [fixtures.shared(item)] + [fixtures.fresh(item, t) for t in range(1, threads)]

        def task(self, ctx: list[fixtures.Instance], i: int) -> Any:
            try:
                ctx[layout.instance(i)].call()
            except pytest.skip.Exception as exc:
                raise _Skip(str(exc.msg if hasattr(exc, "msg") else exc)) from None
            except BaseException as exc:  # noqa: BLE001 - every failure of the body is reported
                if isinstance(exc, Exception):
                    raise
                raise _Outcome(str(exc)) from None
            return None

        def close(self, ctx: list[fixtures.Instance]) -> None:
            for instance in reversed(ctx if layout.control else ctx[1:]):  # pytest tears its own down
                instance.teardown()

    return TestBody


@dataclass
class BodyRun:
    kind: str  # ok | crash | hang | error
    headline: str = ""
    text: str = ""
    failed_index: int | None = None
    skipped: str | None = None
    open_error: str | None = None
    threads_at_fork: tuple[str, ...] = ()


def run_body(item: pytest.Function, threads: int, iterations: int, timeout: float, control: bool = False) -> BodyRun:
    """The test body in ``threads`` threads, ``iterations`` times each, in a forked child; or,
    ``control``, its serial mirror in one thread (``Layout``)."""
    key = f"{os.getpid()}-{threading.get_ident()}-{id(item)}-{'c' if control else 't'}"
    layout = Layout.of(threads, iterations, control)
    refs.INLINE[key] = body_probe(item, threads, layout)
    folder = Path(tempfile.mkdtemp(prefix="threadprobe-pytest-"))
    launcher = launch.DirectFork()
    workers = 1 if control else threads
    # 100 us, not 1 us: a test body is mostly Python, and at 1 us every GIL hand-off costs more than
    # the work (a 30 ms Iris test took 0.6 s); 100 us finds races as often (README's amplification table).
    trial = Trial(f"pytest.{item.name}", f"inline:{key}", Mode.SERIAL if control else Mode.THREADS, 1, workers,
                  layout.runs, timeout=timeout, purpose=Purpose.STRESS,
                  switch_interval=plan.DEFAULT_SWITCH_INTERVAL if control else plan.STRESS_SWITCH_INTERVALS[1])
    try:
        got, outcome = diagnosing.run_one(trial, launcher, folder, folder / "trial", None)
    finally:
        launcher.close()
        refs.INLINE.pop(key, None)
        shutil.rmtree(folder, ignore_errors=True)
    run = BodyRun(str(outcome.kind), threads_at_fork=got.threads_at_fork)
    errors = [e for e in outcome.evidence if e.kind == "error"]
    if outcome.kind == "ok":
        return run
    if errors and all((e.error_type or "").endswith("_Skip") for e in errors):
        run.skipped = errors[0].message or "skipped in threads"
        return run
    opened = [e for e in errors if e.stage == "open"]
    if opened and not control:
        run.open_error = f"{opened[0].error_type}: {detect.first_line(opened[0].message)}"
        return run
    first = outcome.evidence[0]
    context = f"in one thread, {layout.runs} runs in a row" if control else f"under {threads} threads"
    if outcome.kind == "crash":
        run.headline = f"killed by {first.signal} {context}"
        run.text = first.traceback or ""
    elif outcome.kind == "hang":
        run.headline = f"hung {context}: no progress for {timeout:g}s"
        run.text = f"stacks ({first.stack_source}):\n{first.stacks or ''}"
    else:
        tasks = [e for e in errors if e.stage == "task"]
        shown = tasks[0] if tasks else first
        run.failed_index = min((e.index for e in tasks if e.index is not None), default=None)
        where = shown.stage
        if shown.index is not None:
            where = (f"run {shown.index + 1}, on fixtures {layout.instance(shown.index)}" if control else
                     f"thread {shown.index % threads}, run {shown.index // threads}")
        run.headline = (f"{shown.error_type} {context} ({len(tasks)} failing runs; first: {where}): "
                        f"{detect.first_line(shown.message)}")
        run.text = user_frames(shown.traceback or shown.message or "")
    return run


def user_frames(traceback: str) -> str:
    """A traceback without the frames of threadprobe's own machinery (the worker, this plugin)."""
    package = str(Path(__file__).resolve().parents[1])
    out, skipping = [], False
    for line in traceback.splitlines():
        if line.startswith('  File "'):
            skipping = line.split('"')[1].startswith(package)
        if not skipping:
            out.append(line)
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# The fixture


@dataclass(frozen=True)
class CheckResult:
    """What ``threadprobe.check`` measured: verdicts, counts, speedup and bound per mode."""

    results: tuple[Any, ...]

    def of(self, mode: str) -> Any:
        return next(r for r in self.results if r.mode == mode)

    @property
    def trials(self) -> int:
        return sum(r.trials for r in self.results if r.mode != "serial")

    @property
    def speedup(self) -> float | None:
        return next((r.speedup for r in self.results if r.mode == "threads"), None)

    @property
    def failure_rate_upper95(self) -> float:
        return max((r.failure_rate_upper95 for r in self.results if r.mode != "serial"), default=1.0)

    @property
    def outcomes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in self.results:
            if r.mode != "serial":
                for k, n in r.outcomes.items():
                    total[k] = total.get(k, 0) + n
        return total


class Checker:
    """The ``threadprobe`` fixture's object."""

    def __init__(self, tmp: Any) -> None:
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
        if start == "spawn":
            if not _importable(fn):
                raise ValueError(f"start='spawn' needs an importable function, not {fn!r}: use start='fork'")
            ref = refs.call_ref(fn, inputs, root / "inputs.pickle")
            launcher = launch.SpawnLauncher()
        else:
            ref = f"inline:{key}"
            refs.INLINE[key] = probe
            launcher = launch.DirectFork()
        try:
            results = check_trials(probe, ref, launcher, root, threads, processes, trials,
                                   iterations or max(len(inputs), 20), timeout)
        finally:
            launcher.close()
            refs.INLINE.pop(key, None)
        checked = CheckResult(tuple(results))
        if fail:
            problems = [r for r in results if not is_clean(r.verdict)]
            if problems:
                pytest.fail(_failure_text(problems, inputs), pytrace=False)
        return checked


def check_trials(probe: Any, ref: str, launcher: launch.Launcher, root: Path, threads: int, processes: int,
                 trials: int, iterations: int, timeout: float) -> list[Any]:
    """``threadprobe.check``'s trials, through diagnose's own trial step: the serial oracle
    (timed), then per repetition each concurrent cell (timed first, then stressed)."""
    cells = [plan.SERIAL] + ([plan.Cell(Mode.THREADS, 1, threads)] if threads > 1 else []) + \
            ([plan.Cell(Mode.PROCESSES, processes, 1)] if processes > 1 else [])
    outcomes: dict[plan.Cell, list[Any]] = {c: [] for c in cells}
    oracle = None
    for rep in range(trials):
        for cell in cells[1:] if rep else cells:
            request = plan.Request(probe.name, cell, Purpose.TIMING if rep == 0 else Purpose.STRESS,
                                   switch_interval=plan.DEFAULT_SWITCH_INTERVAL if rep == 0 else plan.STRESS_SWITCH_INTERVAL)
            trial = diagnosing.make_trial(probe.name, ref, request, iterations, rep, timeout)
            got, outcome = diagnosing.run_one(trial, launcher, root, root / f"{cell.mode}-{rep}", oracle)
            if cell == plan.SERIAL and outcome.kind == "ok":
                oracle = detect.Oracle.of(got)
            outcomes[cell].append(outcome)
    cores = os.cpu_count() or 1
    return detect.add_scaling([detect.summarise(probe.name, probe.dependency, found, cores=cores)
                               for found in outcomes.values()], cores)


def _importable(fn: Any) -> bool:
    name = getattr(fn, "__qualname__", "")
    return bool(name) and "<" not in name and hasattr(sys.modules.get(getattr(fn, "__module__", ""), None), name)


def _failure_text(problems: list[Any], inputs: list[Any]) -> str:
    lines = []
    for r in problems:
        mode = "serially" if r.mode == "serial" else f"under {r.workers} {r.mode}"
        lines.append(f"{r.probe} {r.verdict} {mode} in {r.failed_trials} of {r.trials} trials")
        for e in r.evidence[:3]:
            if e.kind == "corrupt" and e.index is not None:
                lines.append(f"  input {inputs[e.index % len(inputs)]!r} (i={e.index}): expected digest "
                             f"{e.expected}, got {e.actual}")
            elif e.kind == "crash":
                lines.append(f"  killed by {e.signal}:\n{_indent(e.traceback)}")
            elif e.kind == "hang":
                lines.append(f"  hung; stacks ({e.stack_source}):\n{_indent(e.stacks)}")
            else:
                lines.append(f"  {e.summary}\n{_indent(e.traceback)}")
    return "\n".join(lines)


def _indent(text: str | None, limit: int = 3000) -> str:
    return "\n".join("    " + line for line in (text or "")[-limit:].splitlines())


@pytest.fixture
def threadprobe(tmp_path: Any) -> Checker:
    """Check a function's thread safety: ``threadprobe.check(fn, inputs, threads=2, processes=0)``."""
    return Checker(tmp_path)

"""threadprobe's pytest plugin: thread-safety failures as ordinary, reproducible test failures.

Installed with threadprobe (entry point ``pytest11``), it adds:

- the ``threadprobe`` fixture: ``threadprobe.check(fn, inputs, threads=2, processes=0, trials=3)``
  runs ``fn(x)`` serially for an oracle, then concurrently in isolated child processes, and fails
  the test on a crash (signal and faulthandler traceback), a hang (stacks), an exception, or a
  result that differs from the serial one (which input, both digests). It returns the counts,
  the speedup and the failure-rate bound. ``fn`` may be any importable function; a closure or a
  lambda works too, through the fork start method (the workers are forks of this process).
- the marker ``@pytest.mark.threadprobe(threads=2, iterations=10)``: the test body runs once,
  then ``iterations`` times in each of ``threads`` threads started together, in a forked child.
  A segfault fails this test and the session goes on.
- ``--threadprobe-threads=N``: the marker on every collected test (like pytest-run-parallel, but
  with crash isolation); ``@pytest.mark.thread_unsafe`` opts a test out. The terminal summary
  lists the tests that failed only under threads.
- ``--threadprobe-diagnosis=FILE``: fail the session when that diagnosis finds a dependency the
  suite declares (ini ``threadprobe_uses``, or ``--threadprobe-uses``) unsafe.

Fixtures are set up once per test, in the pytest process, before the fork: every thread of the
child shares the same fixture values (one ``tmp_path``, one cube, one open file). In whole-suite
mode, tests using fixtures that cannot be shared at all (``monkeypatch``, ``mocker``, ``capsys``,
``caplog``...; extend with the ini option ``thread_unsafe_fixtures``) run serially and are listed
in the summary. A test that mutates a shared fixture value (realises a cube's data, writes a
fixed path) fails under threads for that reason: mark it ``@pytest.mark.thread_unsafe``.

Importing this module costs almost nothing; the harness loads only when a test uses it.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import pytest

DEFAULT_TIMEOUT = 60.0
_FAILED_ONLY_UNDER_THREADS = pytest.StashKey[list]()
_RAN_SERIALLY = pytest.StashKey[list]()
#: Fixtures whose one shared value cannot serve several threads: patching module globals,
#: capturing the process's output. A test that uses one runs serially (as pytest-run-parallel does).
THREAD_UNSAFE_FIXTURES = frozenset({"monkeypatch", "mocker", "class_mocker", "module_mocker", "session_mocker",
                                    "capsys", "capsysbinary", "capfd", "capfdbinary", "caplog", "recwarn"})


# --------------------------------------------------------------------------------------------
# Options, markers, the regression gate


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("threadprobe", "thread-safety checks with crash isolation")
    group.addoption("--threadprobe-threads", type=int, default=0, metavar="N",
                    help="run every test also in N threads at once, in a forked child (0: off)")
    group.addoption("--threadprobe-iterations", type=int, default=1, metavar="K",
                    help="with --threadprobe-threads: runs of the body per thread (default 1)")
    group.addoption("--threadprobe-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                    help=f"a threaded run silent for this long is a hang (default {DEFAULT_TIMEOUT:g})")
    group.addoption("--threadprobe-diagnosis", default=None, metavar="FILE",
                    help="fail the session if this diagnosis finds a dependency the suite uses unsafe")
    group.addoption("--threadprobe-uses", default=None, metavar="DEP[,DEP]",
                    help="dependencies this suite uses (else the ini option threadprobe_uses)")
    parser.addini("threadprobe_uses", "dependencies the suite uses, for --threadprobe-diagnosis", type="linelist")
    parser.addini("thread_unsafe_fixtures", "more fixtures whose tests must not run in threads", type="linelist")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "threadprobe(threads=2, iterations=10, timeout=60): run the body in threads "
                                       "started together, in an isolated child process")
    config.addinivalue_line("markers", "thread_unsafe: never run this test in threads (--threadprobe-threads)")
    config.stash[_FAILED_ONLY_UNDER_THREADS] = []
    config.stash[_RAN_SERIALLY] = []


def _uses(config: pytest.Config) -> list[str]:
    given = config.getoption("threadprobe_uses")
    if given:
        return [d.strip() for d in given.split(",") if d.strip()]
    return list(config.getini("threadprobe_uses"))


def pytest_sessionstart(session: pytest.Session) -> None:
    path = session.config.getoption("threadprobe_diagnosis")
    if not path or hasattr(session.config, "workerinput"):  # the xdist controller decides, once
        return
    from toolkit import report
    from toolkit.errors import UsageError

    try:
        diagnosis = report.read(path)
    except UsageError as exc:
        raise pytest.UsageError(f"--threadprobe-diagnosis: {exc}") from None
    uses = set(_uses(session.config))
    unsafe = [u for u in report.unsafe(diagnosis) if not uses or any(d in u for d in _probes_of(diagnosis, uses))]
    session.config.stash[_GATE] = (path, sorted(uses), unsafe)


_GATE = pytest.StashKey[tuple]()


def _probes_of(diagnosis: Any, uses: set[str]) -> set[str]:
    return {r.probe for r in diagnosis.results if r.dependency in uses or r.probe.split(".")[0] in uses}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gate = session.config.stash.get(_GATE, None)
    if gate and gate[2] and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    serial = config.stash.get(_RAN_SERIALLY, [])
    if serial:
        terminalreporter.section("threadprobe: ran serially (thread-unsafe fixtures)", sep="-")
        terminalreporter.line(f"{len(serial)} tests use fixtures that cannot be shared by threads: "
                              + ", ".join(sorted({f for _, fixtures in serial for f in fixtures})))
    only = config.stash.get(_FAILED_ONLY_UNDER_THREADS, [])
    if only:
        terminalreporter.section("threadprobe: failed only under threads", sep="=", red=True)
        for nodeid, why in only:
            terminalreporter.line(f"{nodeid}: {why}")
    gate = config.stash.get(_GATE, None)
    if gate:
        path, uses, unsafe = gate
        terminalreporter.section("threadprobe: diagnosis gate", sep="=", red=bool(unsafe), green=not unsafe)
        what = f"for {', '.join(uses)}" if uses else "for every dependency"
        if unsafe:
            terminalreporter.line(f"{path} finds unsafe verdicts {what}; the session fails:")
            for line in unsafe:
                terminalreporter.line(f"  {line}")
        else:
            terminalreporter.line(f"{path}: no unsafe verdict {what}")


def pytest_report_header(config: pytest.Config) -> str | None:
    threads = config.getoption("threadprobe_threads")
    return f"threadprobe: every test also runs in {threads} threads, crash-isolated" if threads else None


# --------------------------------------------------------------------------------------------
# Running a test body in threads, in a forked child


@dataclass
class ThreadedRun:
    """What the forked child reported."""

    serial_ok: bool = False
    serial_error: str | None = None
    errors: list[tuple[int, int, str]] = field(default_factory=list)  # thread, iteration, traceback
    signal: str | None = None
    hung: bool = False
    stacks: str | None = None
    exit_code: int | None = None


def _run_threads(call: Any, threads: int, iterations: int) -> list[tuple[int, int, str]]:
    """The test body ``iterations`` times in each of ``threads`` threads started together."""
    import threading

    from toolkit.execute import run_together

    errors: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def body(t: int) -> None:
        for k in range(iterations):
            try:
                call()
            except BaseException:  # noqa: BLE001 - every failure is reported, pytest.fail included
                with lock:
                    errors.append((t, k, traceback.format_exc()))

    run_together(threads, body, switch_interval=1e-6)
    return errors


def run_forked(call: Any, threads: int, iterations: int, timeout: float, serial_first: bool = True) -> ThreadedRun:
    """Fork; in the child run ``call`` once serially, then in threads. Never raises for the child."""
    import faulthandler
    import tempfile

    from toolkit.isolation import capture_stacks, kill_tree, signal_name

    folder = tempfile.mkdtemp(prefix="threadprobe-pytest-")
    fault_path = os.path.join(folder, "fault")
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        os.close(read_end)
        code = 0
        try:
            os.setpgid(0, 0)
            fault = open(fault_path, "w")
            faulthandler.enable(fault, all_threads=True)
            faulthandler.register(signal.SIGUSR1, fault, all_threads=True, chain=False)
            if serial_first:
                try:
                    call()
                    _send(write_end, ("serial", None))
                except BaseException:  # noqa: BLE001
                    _send(write_end, ("serial", traceback.format_exc()))
                    os._exit(0)
            _send(write_end, ("threads", _run_threads(call, threads, iterations)))
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    out = ThreadedRun()
    buffer = b""
    last = time.monotonic()
    status = None
    import select

    while True:
        ready, _, _ = select.select([read_end], [], [], 0.05)
        if ready:
            chunk = os.read(read_end, 1 << 20)
            if chunk:
                buffer += chunk
                last = time.monotonic()
                buffer = _receive(buffer, out)
                continue
        got, raw = os.waitpid(pid, os.WNOHANG)
        if got:
            status = os.waitstatus_to_exitcode(raw)
            while True:  # drain what the child wrote before it went
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    break
                buffer += chunk
            _receive(buffer, out)
            break
        if time.monotonic() - last > timeout:
            out.hung = True
            out.stacks, _ = capture_stacks(pid, __import__("pathlib").Path(fault_path))
            kill_tree([pid], pid)
            os.waitpid(pid, 0)
            break
    os.close(read_end)
    if status is not None:
        out.exit_code = status
        out.signal = signal_name(status)
        if out.signal:
            try:
                out.stacks = open(fault_path).read()[-8000:]
            except OSError:
                pass
    kill_tree([], pid)  # anything the test body started in the child's group
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return out


def _send(fd: int, message: Any) -> None:
    data = pickle.dumps(message)
    os.write(fd, len(data).to_bytes(8, "little") + data)


def _receive(buffer: bytes, out: ThreadedRun) -> bytes:
    while len(buffer) >= 8:
        size = int.from_bytes(buffer[:8], "little")
        if len(buffer) < 8 + size:
            break
        kind, value = pickle.loads(buffer[8:8 + size])
        buffer = buffer[8 + size:]
        if kind == "serial":
            out.serial_ok = value is None
            out.serial_error = value
        else:
            out.errors = value
    return buffer


def describe(run: ThreadedRun, threads: int, timeout: float) -> str | None:
    """Why the threaded run failed (None when it did not)."""
    if run.signal:
        phase = "under threads" if run.serial_ok else "serially (before the threads started)"
        return f"crashed {phase}: killed by {run.signal}\n{run.stacks or ''}"
    if run.hung:
        return f"hung under {threads} threads: no progress for {timeout:g}s; stacks:\n{run.stacks or ''}"
    if run.errors:
        t, k, tb = run.errors[0]
        return f"failed under {threads} threads ({len(run.errors)} failing runs; first: thread {t}, run {k}):\n{tb}"
    if run.exit_code not in (0, None):
        return f"the child exited with code {run.exit_code}"
    return None


def _settings(item: pytest.Item) -> tuple[int, int, float] | None:
    config = item.config
    marker = item.get_closest_marker("threadprobe")
    if item.get_closest_marker("thread_unsafe"):
        return None
    timeout = config.getoption("threadprobe_timeout")
    if marker is not None:
        return (int(marker.kwargs.get("threads", 2)), int(marker.kwargs.get("iterations", 10)),
                float(marker.kwargs.get("timeout", timeout)))
    threads = config.getoption("threadprobe_threads")
    if threads:
        unsafe = (THREAD_UNSAFE_FIXTURES | set(config.getini("thread_unsafe_fixtures"))) & set(item.fixturenames)
        if unsafe:
            config.stash[_RAN_SERIALLY].append((item.nodeid, sorted(unsafe)))
            return None
        return threads, config.getoption("threadprobe_iterations"), timeout
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    settings = _settings(pyfuncitem)
    if settings is None or not hasattr(os, "fork"):
        return None
    threads, iterations, timeout = settings
    funcargs = pyfuncitem.funcargs
    kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    test = pyfuncitem.obj

    def call() -> None:
        test(**kwargs)

    run = run_forked(call, threads, iterations, timeout)
    if run.serial_error is not None:
        # The plain test failed: report that, as pytest would have without the plugin.
        pytest.fail(f"failed serially (in threadprobe's child):\n{run.serial_error}", pytrace=False)
    why = describe(run, threads, timeout)
    if why is not None:
        if run.serial_ok:
            pyfuncitem.config.stash[_FAILED_ONLY_UNDER_THREADS].append((pyfuncitem.nodeid, why.splitlines()[0]))
        pytest.fail(why, pytrace=False)  # the failure happened in the child: its report is the whole story
    return True


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
        from toolkit import detect, isolation, registry
        from toolkit.probe import function_probe
        from toolkit.records import Trial

        inputs = list(inputs)
        if not inputs:
            raise ValueError("threadprobe.check needs at least one input")
        self._count += 1
        root = self._tmp / f"check-{self._count}"
        root.mkdir(parents=True, exist_ok=True)
        FunctionProbe = function_probe(fn, inputs)
        key = f"{os.getpid()}-{id(fn)}-{self._count}"
        if start == "spawn":
            if not _importable(fn):
                raise ValueError(f"start='spawn' needs an importable function, not {fn!r}: use start='fork'")
            ref = registry.call_ref(fn, inputs, root / "inputs.pickle")
            launcher: Any = isolation.SpawnLauncher()
        else:
            ref = f"inline:{key}"
            registry.INLINE[key] = FunctionProbe
            launcher = isolation.DirectFork()
        k = iterations or max(len(inputs), 20)
        modes = [("serial", 1, 1)] + ([("threads", 1, threads)] if threads > 1 else []) + \
                ([("processes", processes, 1)] if processes > 1 else [])
        try:
            runs: dict[tuple[str, int, int], list[Any]] = {m: [] for m in modes}
            oracle = None
            for rep in range(trials):
                for mode in modes:
                    if mode[0] == "serial" and rep > 0:
                        continue
                    purpose = "timing" if rep == 0 else "stress"
                    trial = Trial(FunctionProbe.name, ref, mode[0], mode[1], mode[2], k, index=rep,
                                  timeout=timeout, purpose=purpose,
                                  switch_interval=0.005 if purpose == "timing" else 1e-6)
                    run = isolation.run_trial(trial, launcher, root, root / f"{mode[0]}-{rep}")
                    runs[mode].append(run)
                    if mode[0] == "serial":
                        outcome = detect.classify(run, None)
                        if outcome.kind == "ok":
                            oracle = {d: h for w in run.workers for d, h in (w.report or {}).get("digests", {}).items()}
            results = []
            for mode_runs in runs.values():
                outcomes = [detect.classify(run, oracle) for run in mode_runs]
                results.append(detect.summarise(FunctionProbe.name, FunctionProbe.dependency, outcomes,
                                                cores=os.cpu_count() or 1))
            results = detect.add_scaling(results, os.cpu_count() or 1)
        finally:
            launcher.close()
            registry.INLINE.pop(key, None)
        checked = CheckResult(tuple(results))
        if fail:
            problems = [r for r in results if r.verdict != "safe"]
            if problems:
                pytest.fail(_failure_text(problems, inputs), pytrace=False)
        return checked


def _importable(fn: Any) -> bool:
    name = getattr(fn, "__qualname__", "")
    return bool(name) and "<" not in name and hasattr(sys.modules.get(getattr(fn, "__module__", ""), None), name)


def _failure_text(problems: list[Any], inputs: list[Any]) -> str:
    lines = []
    for r in problems:
        mode = "serially" if r.mode == "serial" else f"under {r.workers} {r.mode}"
        failing = r.trials - r.outcomes.get("ok", 0)
        lines.append(f"{r.probe} {r.verdict} {mode} in {failing} of {r.trials} trials")
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

"""The plugin's state, one object per session (``Threadprobe``), and the hooks that run each test.

A test that runs in threads (``settings``) has its body run by ``body.run_body`` in a forked
child; when that fails, controls run and ``triage.triage`` labels the failure; the label fails
the test, or lets it pass and lists it. Everything the summary shows is kept here: findings,
threads alive at forks, the diagnosis gate and the session's GIL (``gilwatch``); ``summary``
writes it out.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

from threadprobe import report
from threadprobe.harness.valgrind import valgrind
from threadprobe.pytest import fixtures, summary, unsafe
from threadprobe.pytest import races as pytest_races
from threadprobe.pytest.body import BodyRun, Run, run_body
from threadprobe.pytest.gilwatch import GilWatch
from threadprobe.pytest.triage import FAILS, TEST_STATE, Control, Finding, Label, triage
from threadprobe.records import Kind, RaceStatus, RaceTool
from threadprobe.records.errors import UsageError

#: Threaded runs with each thread on its own state, until one fails: a rare race may pass one. As
#: many again with the fixtures shared, until one fails, when every own-state run passed.
OWN_STATE_RUNS = 3


@dataclass(frozen=True)
class Settings:
    threads: int
    iterations: int
    timeout: float


@dataclass(eq=False)  # pytest keeps plugins in sets: identity, not value, makes one
class Threadprobe:
    """The plugin's state: what each test was labelled, forks with threads, gate, GIL."""

    config: pytest.Config
    findings: list[Finding] = field(default_factory=list)
    forks_with_threads: set[str] = field(default_factory=set)
    gate: tuple[str, list[str], list[str]] | None = None
    gil: GilWatch = field(default_factory=GilWatch)

    def settings(self, item: pytest.Item) -> Settings | None:
        """How a test runs in threads, or None when it does not."""
        config = item.config
        timeout = config.getoption("threadprobe_timeout")
        marker = item.get_closest_marker("threadprobe")
        if marker is not None:
            return Settings(int(marker.kwargs.get("threads", 2)), int(marker.kwargs.get("iterations", 10)),
                            float(marker.kwargs.get("timeout", timeout)))
        text = str(config.getoption("threadprobe_threads"))
        threads = (os.cpu_count() or 1) if text == "auto" else int(text or 0)
        iterations = config.getoption("threadprobe_iterations")
        parallel = item.get_closest_marker("parallel_threads")
        if parallel is not None and parallel.args:
            threads = int(parallel.args[0])
        repeat = item.get_closest_marker("iterations")
        if repeat is not None and repeat.args:
            iterations = int(repeat.args[0])
        return Settings(threads, iterations, timeout) if threads > 1 else None

    def serial_reason(self, item: pytest.Item) -> str | None:
        return unsafe.serial_reason(item, self.config.getini("thread_unsafe_fixtures"),
                                    self.config.getini("thread_unsafe_functions"))

    def body(self, item: pytest.Function, settings: Settings, run: Run) -> BodyRun:
        got = run_body(item, settings.threads, settings.iterations, settings.timeout, run)
        self.forks_with_threads.update(got.threads_at_fork)
        if run == Run.THREADS:
            self.gil.runs[got.gil_enabled] += 1
        return got

    # ----------------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        settings = self.settings(pyfuncitem)
        if settings is None or not hasattr(os, "fork"):
            return None
        why = self.serial_reason(pyfuncitem)
        if why is None and not fixtures.supported():
            why = "this pytest's fixture internals are unknown: fixtures cannot be duplicated"
        if why is not None:
            self.findings.append(Finding(pyfuncitem.nodeid, Label.SERIAL, why))
            if self.config.getoption("threadprobe_skip_thread_unsafe"):
                pytest.skip(f"threadprobe: {why}")
            return None
        self.check_races(pyfuncitem, settings)
        threaded = self.body(pyfuncitem, settings, Run.THREADS)
        if threaded.kind == Kind.OK:
            return True
        if threaded.skipped is not None:
            pytest.skip(threaded.skipped)
        if threaded.open_error is not None:
            self.findings.append(Finding(pyfuncitem.nodeid, Label.SERIAL,
                                         f"fixtures could not be duplicated: {threaded.open_error}"))
            return None  # pytest runs the test as usual, in this process
        control = self.body(pyfuncitem, settings, Run.ONE_THREAD)
        own = self.own_state(pyfuncitem, settings) if control.kind == Kind.OK else None
        ran_own = own.kind if own is not None and own.open_error is None else None  # unset up: no evidence
        again = self.repeat(pyfuncitem, settings, Run.THREADS) if ran_own == Kind.OK else None
        label = triage(threaded.kind, Control(control.kind, control.failed_index), ran_own,
                       again.kind if again is not None else None)
        return self.conclude(pyfuncitem, label, settings, threaded, control, own, again)

    def own_state(self, item: pytest.Function, settings: Settings) -> BodyRun | None:
        """The threads again, each on its own instance of every fixture the test owns; None when
        the test owns none wider than a function (that run would be the threaded one again). A
        fixture that cannot be set up a second time (Iris's module ``_setup`` yields only once per
        process) leaves its ``open_error`` set: that control did not run."""
        if not fixtures.wider_fixtures(item):
            return None
        return self.repeat(item, settings, Run.OWN_STATE)

    def repeat(self, item: pytest.Function, settings: Settings, run: Run) -> BodyRun:
        """``run`` up to ``OWN_STATE_RUNS`` times, until one does not pass: that one, or the last."""
        got = self.body(item, settings, run)
        for _ in range(OWN_STATE_RUNS - 1):
            if got.kind != Kind.OK or got.open_error is not None:
                break
            got = self.body(item, settings, run)
        return got

    def conclude(self, item: pytest.Function, label: Label, settings: Settings, threaded: BodyRun,
                 control: BodyRun, own: BodyRun | None, again: BodyRun | None = None) -> bool:
        """Record the label; fail the test, or let it pass (listed) as the label says."""
        shown = control if label == Label.SERIAL_FAILURE else threaded
        self.findings.append(Finding(item.nodeid, label, summary.why(label, threaded, control, own, again),
                                     shown.signal, shown.frames))
        message = summary.failure(label, settings.threads, threaded, control, own, fixtures.wider_fixtures(item),
                                  again)
        if label in FAILS or (label in TEST_STATE and self.config.getoption("threadprobe_strict")):
            pytest.fail(message, pytrace=False)
        return True

    def check_races(self, item: pytest.Function, settings: Settings) -> None:
        """``--threadprobe-races``: fail the test with its race pair, even when its threads are right."""
        tool = self.config.getoption("threadprobe_races")
        if not tool or pytest_races.in_child():
            return
        if valgrind() is None:
            raise pytest.UsageError("--threadprobe-races needs valgrind, which is not installed here")
        found = pytest_races.check(item, RaceTool(tool), settings.threads, settings.iterations)
        if found.status == RaceStatus.RACY:
            self.findings.append(Finding(item.nodeid, Label.RACY, found.summary()))
            pytest.fail(pytest_races.failure_text(found), pytrace=False)
        if found.status == RaceStatus.FAILED:  # never silently clean: listed in the summary
            self.findings.append(Finding(item.nodeid, Label.RACES_NOT_RUN, found.summary()))

    # ----------------------------------------------------------------------------------------
    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str, nodeid: str,
                                location: Any) -> None:
        self.gil.warning(str(warning_message.message))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.gil.check(f"collecting {report.nodeid or 'the session'}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.gil.check(f"running {report.nodeid}")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        path = session.config.getoption("threadprobe_diagnosis")
        if not path or hasattr(session.config, "workerinput"):  # the xdist controller decides, once
            return
        try:
            diagnosis = report.read(path)
        except UsageError as exc:
            raise pytest.UsageError(f"--threadprobe-diagnosis: {exc}") from None
        uses = set(uses_of(session.config))
        probes = {r.probe for r in diagnosis.results if r.dependency in uses or r.probe.split(".")[0] in uses}
        unsafe_lines = [u for u in report.unsafe(diagnosis) if not uses or any(u.startswith(p + " ") for p in probes)]
        self.gate = (path, sorted(uses), unsafe_lines)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.gate and self.gate[2] and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        summary.write(terminalreporter, self)

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        threads = str(config.getoption("threadprobe_threads"))
        if threads in ("0", "") and not self.gil.free_threaded:
            return None
        runs = f"every test runs in {threads} threads, crash-isolated; " if threads not in ("0", "") else ""
        return f"threadprobe: {runs}{self.gil.at_start()}"


def uses_of(config: pytest.Config) -> list[str]:
    given = config.getoption("threadprobe_uses")
    if given:
        return [d.strip() for d in given.split(",") if d.strip()]
    return list(config.getini("threadprobe_uses"))

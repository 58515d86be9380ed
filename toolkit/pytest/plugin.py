"""threadprobe's pytest plugin: a library's thread-safety bug, told apart from a test's shared state.

Installed with threadprobe (entry point ``pytest11``); this module registers it: options, ini
names, markers, fixtures, and the session's one state object (``session.Threadprobe``, as
pytest-run-parallel keeps its state). Every trial runs through the harness that ``diagnose`` uses
(a direct fork of this process, so the test's fixtures and closures come along).

- ``--threadprobe-threads=N`` (or the marker ``@pytest.mark.threadprobe(threads=N, iterations=K)``,
  or pytest-run-parallel's ``parallel_threads(N)``): the test body runs in N threads started
  together, K times each, in a child process; a segfault fails that test and the session goes
  on. Every thread gets its own function-scoped fixtures (``fixtures``); wider-scoped ones are
  shared, as pytest shares them. When the threads fail, controls label the failure
  (``triage``): thread-unsafe, shared state, not re-entrant, or a failure in one thread too.
- It runs on free-threaded builds, with the GIL as imported or forced off (``PYTHON_GIL=0``); the
  summary says which, and which module turned the GIL back on (``gilwatch``).
- Thread pools a forked child inherits without their threads (dask's, ``concurrent.futures``')
  are reset in the child, and the summary says when other threads were alive at a fork.
- ``--threadprobe-races``: each threaded test also runs in a child under valgrind's helgrind
  (``races``); a race pair in native code fails it, labelled racy.
- ``threadprobe`` fixture: ``threadprobe.check(fn, inputs, threads=2, processes=0, trials=3)`` (``check``).
- ``--threadprobe-diagnosis=FILE``: fail the session when that diagnosis finds a dependency the
  suite declares (ini ``threadprobe_uses`` or ``--threadprobe-uses``) unsafe.
"""

from __future__ import annotations

from typing import Any

import pytest

from threadprobe.pytest.check import threadprobe  # noqa: F401 (a fixture: pytest finds it here)
from threadprobe.pytest.fixtures import CURRENT
from threadprobe.pytest.session import Threadprobe
from threadprobe.harness.valgrind import TOOLS
from threadprobe.records import RaceTool

DEFAULT_TIMEOUT = 60.0
NAME = "threadprobe-session"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("threadprobe", "thread-safety checks with crash isolation")
    group.addoption("--threadprobe-threads", default="0", metavar="N",
                    help="run every test in N threads at once, in a forked child ('auto': the cores; 0: off)")
    group.addoption("--threadprobe-iterations", type=int, default=1, metavar="K",
                    help="runs of the body per thread (default 1)")
    group.addoption("--threadprobe-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                    help=f"a threaded run silent for this long is a hang (default {DEFAULT_TIMEOUT:g})")
    group.addoption("--threadprobe-strict", action="store_true",
                    help="fail tests whose failure is test state (not re-entrant, shared state); listed by default")
    group.addoption("--threadprobe-skip-thread-unsafe", action="store_true",
                    help="skip tests that cannot run in threads instead of running them serially")
    group.addoption("--threadprobe-diagnosis", default=None, metavar="FILE",
                    help="fail the session if this diagnosis finds a dependency the suite uses unsafe")
    group.addoption("--threadprobe-races", nargs="?", const=RaceTool.HELGRIND.value, default=None, choices=[t.value for t in TOOLS],
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


def _threads_and_iterations(request: Any) -> tuple[int, int]:
    state = request.config.pluginmanager.get_plugin(NAME)
    found = state.settings(request.node) if state is not None else None
    if found is None or state.serial_reason(request.node) is not None:
        return 1, 1
    return found.threads, found.iterations


@pytest.fixture
def thread_index() -> int:
    """Which thread this instance of the test's fixtures belongs to (0 outside threads)."""
    return CURRENT["thread"]


@pytest.fixture
def num_parallel_threads(request: Any) -> int:
    """How many threads run this test at once (1 outside threads)."""
    return _threads_and_iterations(request)[0]


@pytest.fixture
def num_iterations(request: Any) -> int:
    """How many times each thread runs the test body."""
    return _threads_and_iterations(request)[1]

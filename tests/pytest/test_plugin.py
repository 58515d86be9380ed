"""The pytest plugin: crashes, races and hangs become ordinary test failures; nothing dies."""

import pathlib
import subprocess
import sys
import textwrap

import pytest

from tests.bench import triage as triage_bench
from tests.conftest import HERE

pytest_plugins = ["pytester"]
TARGETS = HERE / "plugin_targets"

FUNCTIONS = textwrap.dedent('''
    import contextlib, ctypes, threading, time
    state = {"inside": 0}
    lock = threading.Lock()

    def square(x):
        return x * x

    @contextlib.contextmanager
    def inside():
        """How many threads are inside a planted function, this one included."""
        with lock:
            state["inside"] += 1
            n = state["inside"]
        try:
            yield n
        finally:
            with lock:
                state["inside"] -= 1

    def racy(x):
        with inside() as n:
            time.sleep(0.0005)
            return x + (n - 1)  # differs from serial whenever another thread is inside

    def crashy(x):
        with inside() as n:
            time.sleep(0.001)
            if n > 1:
                ctypes.string_at(0)
            return x

    def hangy(x):
        with inside() as n:
            time.sleep(0.001)
            if n > 1:
                time.sleep(600)  # a second thread inside: never comes back
            return x
''')


@pytest.fixture
def suite(pytester):
    pytester.makepyfile(funcs=FUNCTIONS)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    return pytester


def test_check_passes_a_safe_function_and_measures_it(suite):
    suite.makepyfile(test_it='''
        from funcs import square

        def test_square(threadprobe):
            got = threadprobe.check(square, range(10), threads=2, processes=2, trials=2)
            assert got.outcomes["ok"] == got.trials == 4
            assert 0 < got.failure_rate_upper95 < 1 and got.speedup is not None
            assert got.of("threads").verdict == got.of("processes").verdict == "safe"

        def test_a_closure_with_fork(threadprobe):
            offset = 3
            assert threadprobe.check(lambda x: x + offset, [1, 2], threads=2, trials=1).of("threads").verdict == "safe"

        def test_spawn_needs_an_importable_function(threadprobe):
            assert threadprobe.check(square, [1, 2, 3], threads=2, trials=1, start="spawn").trials == 1
    ''')
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize("fn, text", [
    ("racy", "corrupt under 2 threads"),
    ("crashy", "killed by SIGSEGV"),
    ("hangy", "hung; stacks"),
])
def test_check_fails_the_test_with_the_evidence(suite, fn, text):
    suite.makepyfile(test_it=f'''
        from funcs import {fn}

        def test_it(threadprobe):
            threadprobe.check({fn}, range(8), threads=2, trials=2, timeout=3)

        def test_after():
            assert True
    ''')
    result = suite.runpytest_subprocess()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([f"*{text}*"])
    if fn == "racy":
        result.stdout.fnmatch_lines(["*input * (i=*): expected digest *, got *"])


MARKED = '''
    import contextlib, ctypes, threading, time
    import pytest

    state = {"inside": 0}
    lock = threading.Lock()

    @pytest.mark.threadprobe(threads=2, iterations=20)
    def test_segfaults_only_under_threads():
        with lock:
            state["inside"] += 1
        try:
            time.sleep(0.001)
            if state["inside"] > 1:
                ctypes.string_at(0)
        finally:
            with lock:
                state["inside"] -= 1

    @pytest.mark.threadprobe(threads=2, iterations=5)
    def test_fine_under_threads(tmp_path):
        (tmp_path / f"{threading.get_ident()}.txt").write_text("ok")

    def test_plain():
        assert 1 + 1 == 2
'''


def test_a_segfault_under_the_marker_fails_that_test_and_the_session_goes_on(suite):
    suite.makepyfile(test_marked=MARKED)
    result = suite.runpytest_subprocess("-rf")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["*thread-unsafe: killed by SIGSEGV under 2 threads*",
                                 "*1 thread-unsafe*", "*test_segfaults_only_under_threads*"])


def test_the_marker_works_with_xdist(suite):
    suite.makepyfile(test_marked=MARKED)
    result = suite.runpytest_subprocess("-n", "2")
    result.assert_outcomes(failed=1, passed=2)


def test_whole_suite_mode_with_an_opt_out_and_a_summary(suite):
    suite.makepyfile(test_suite='''
        import threading, time
        import pytest

        counter = {"n": 0}

        def test_racy_counter():
            counter["n"] += 1
            mine = counter["n"]
            time.sleep(0.001)  # another thread's increment lands here
            assert counter["n"] == mine

        def test_pure():
            assert sum(range(10)) == 45

        @pytest.mark.thread_unsafe(reason="it says so")
        def test_opted_out():
            assert threading.active_count() >= 1
    ''')
    result = suite.runpytest_subprocess("--threadprobe-threads=2", "--threadprobe-iterations=20")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["*threadprobe: every test runs in 2 threads*", "*1 thread-unsafe*",
                                 "*test_racy_counter: AssertionError under 2 threads*", "*1 ran serially*",
                                 "*test_opted_out: marked thread_unsafe: it says so*"])


FIXTURES = '''
    import threading
    import pytest

    SEEN = []

    class Cube:
        def __init__(self):
            self.lazy = True

        def realise(self):
            self.lazy = False

    @pytest.fixture
    def cube():
        return Cube()

    @pytest.fixture(scope="module")
    def shared_list():
        return []

    def test_save(tmp_path):
        path = tmp_path / "tmp.nc"
        assert not path.exists()  # Iris's test_save does this: one shared tmp_path would fail it
        path.write_text("data")

    def test_realise(cube):
        assert cube.lazy  # a shared fixture cube would have been realised by another thread
        cube.realise()

    def test_module_fixtures_are_shared(shared_list, thread_index, num_parallel_threads):
        shared_list.append(thread_index)
        assert num_parallel_threads == 2 and thread_index in (0, 1)

    def test_the_module_list_saw_both_threads(shared_list):
        pass

    class TestState:
        def setup_method(self):
            self.items = []

        def test_own_instance(self):
            assert self.items == []
            self.items.append(threading.get_ident())
'''


def test_every_thread_gets_its_own_function_fixtures_and_class_instance(suite):
    suite.makepyfile(test_fixtures=FIXTURES)
    result = suite.runpytest_subprocess("--threadprobe-threads=2", "-v")
    result.assert_outcomes(passed=5)
    assert "thread-unsafe" not in result.stdout.str() and "not re-entrant" not in result.stdout.str()


def test_a_test_that_is_not_reentrant_is_told_apart_and_passes_unless_strict(suite):
    suite.makepyfile(test_state='''
        DONE = []

        def test_only_once():
            assert not DONE, "ran before in this process"
            DONE.append(1)
    ''')
    lenient = suite.runpytest_subprocess("--threadprobe-threads=2")
    lenient.assert_outcomes(passed=1)
    lenient.stdout.fnmatch_lines(["*1 not re-entrant*", "*test_only_once: AssertionError*"])
    strict = suite.runpytest_subprocess("--threadprobe-threads=2", "--threadprobe-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*not re-entrant: fails under 2 threads, and also when run again in one thread*"])


@pytest.fixture(scope="module")
def libdefects(tmp_path_factory):
    lib = tmp_path_factory.mktemp("planted") / "libdefects.so"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-pthread", "-o", str(lib),
                    str(TARGETS.parent / "planted" / "defects.c")], check=True)
    return lib


@pytest.mark.parametrize("iterations", [1, 3])
def test_triage_mirrors_fixture_sharing_and_never_blames_the_library_for_test_state(
        pytester, libdefects, monkeypatch, iterations):
    """Planted tests (plugin_targets/test_triage.py), each failure forced: a thread's iterations
    share its tmp_path, and the control shares it the same way, so re-using it is test state."""
    monkeypatch.setenv("LIBDEFECTS", str(libdefects))
    pytester.makepyfile(test_triage=(TARGETS / "test_triage.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--threadprobe-threads=2",
                                           f"--threadprobe-iterations={iterations}")
    assert triage_bench.labels_of(result.stdout.str()) == triage_bench.expected(iterations), result.stdout.str()[-3000:]
    result.assert_outcomes(passed=4, failed=2)  # not re-entrant and shared state pass, listed, unless strict


def test_a_plain_failure_is_reported_as_one(suite):
    suite.makepyfile(test_plain="def test_wrong():\n    assert 1 + 1 == 3\n")
    result = suite.runpytest_subprocess("--threadprobe-threads=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*failed serially too*", "*test_plain.py*test_wrong*", "*assert (1 + 1) == 3*"])
    assert "harness/worker.py" not in result.stdout.str()  # the harness's own frames are noise here


def test_run_parallel_markers_and_ini_lists_are_honoured(suite):
    suite.makeini('''
        [pytest]
        addopts = -p no:cacheprovider
        thread_unsafe_fixtures = my_global
        thread_unsafe_functions = helpers.not_for_threads
    ''')
    suite.makepyfile(helpers="def not_for_threads():\n    return 1\n")
    suite.makepyfile(test_markers='''
        import pytest
        import helpers

        @pytest.fixture
        def my_global():
            return 1

        def test_uses_fixture(my_global):
            pass

        def test_calls_function():
            helpers.not_for_threads()

        @pytest.mark.parallel_threads(1)
        def test_one_thread(num_parallel_threads):
            assert num_parallel_threads == 1

        @pytest.mark.parallel_threads(3)
        @pytest.mark.iterations(2)
        def test_three_threads(num_parallel_threads, num_iterations):
            assert (num_parallel_threads, num_iterations) == (3, 2)
    ''')
    result = suite.runpytest_subprocess("--threadprobe-threads=2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*2 ran serially*", "*uses thread-unsafe fixture(s): my_global*",
                                 "*calls thread-unsafe function helpers.not_for_threads*"])


def test_process_wide_test_tools_send_a_test_down_the_serial_path(suite):
    """pytest.warns and mock.patch change the whole process: two threads running them break each
    other's test (Iris's own suite showed "DID NOT WARN" and MagicMocks where ints belong)."""
    suite.makepyfile(test_tools='''
        import warnings
        from unittest import mock
        import pytest

        def test_warns():
            with pytest.warns(UserWarning):
                warnings.warn("x", UserWarning)

        @mock.patch("os.getcwd", return_value="/nowhere")
        def test_patched(getcwd):
            import os
            assert os.getcwd() == "/nowhere"

        def test_plain(thread_index):
            pass
    ''')
    result = suite.runpytest_subprocess("--threadprobe-threads=2")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*2 ran serially*"])
    out = result.stdout.str()
    assert "test_warns: calls thread-unsafe function pytest.warns" in out
    assert "test_patched: calls thread-unsafe function mock.patch" in out
    assert "test_plain:" not in out  # the plain one ran in threads


def test_a_tool_called_through_the_tests_own_helpers_is_found(suite):
    """Iris's PP save tests patch inside a module-level helper that a method of the test class
    calls: followed through both, the test runs serially (under threads: a patch restored by the
    other thread, so the module keeps the patched value)."""
    suite.makepyfile(test_helpers='''
        import sys
        import time
        from unittest import mock

        VALUE = 1

        def _patched_value():
            with mock.patch(__name__ + ".VALUE", 2):
                time.sleep(0.02)
                return sys.modules[__name__].VALUE

        def _plain_value():
            return VALUE

        class TestViaHelpers:
            def check(self):
                assert _patched_value() == 2
                assert sys.modules[__name__].VALUE == 1

            def test_via_method(self):
                self.check()

        def test_with_a_harmless_helper():
            assert _plain_value() == 1
    ''')
    result = suite.runpytest_subprocess("--threadprobe-threads=2")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "test_via_method: calls thread-unsafe function mock.patch" in out
    assert "test_with_a_harmless_helper:" not in out


def test_a_child_forked_after_dask_ran_in_the_pytest_process_does_not_hang(suite):
    """The minimal case: a test that runs serially (it uses mocker) computes with dask's threads,
    so the pytest process holds a thread pool; a later test's forked child must not inherit it
    dead and wait forever on its queue."""
    suite.makepyfile(test_dask='''
        import dask.array as da

        def test_first(mocker):
            assert int(da.ones(100, chunks=10).sum().compute()) == 100

        def test_second():
            assert int(da.ones(100, chunks=10).sum().compute()) == 100
    ''')
    result = suite.runpytest_subprocess("--threadprobe-threads=2", "--threadprobe-timeout=20")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*other threads were alive when tests forked*"])


def test_a_killed_session_leaves_no_child_behind(suite, tmp_path):
    import os
    import signal
    import time

    import psutil

    marker = f"threadprobe-orphan-{os.getpid()}-{time.time_ns()}"
    suite.makepyfile(test_hang=f'''
        import time

        def test_sleeps():
            time.sleep(600)  # {marker}
    ''')
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--threadprobe-threads=2", "-p", "no:cacheprovider",
                             "-q", "test_hang.py"], cwd=suite.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not psutil.Process(proc.pid).children(recursive=True):
        time.sleep(0.1)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the session forked no child"
    proc.send_signal(signal.SIGKILL)  # as `timeout -s KILL` or a cancelled CI job would
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_a_hypothesis_test_under_the_marker(suite):
    suite.makepyfile(test_hyp='''
        import pytest
        from hypothesis import given, settings, strategies as st

        # Hypothesis imports parts of itself as a run goes on (its optimiser, in the phase after
        # the first examples), and pytest rewrites them (hypothesis is a plugin's package): two
        # threads doing that at once can break CPython 3.11's compiler ("AST constructor
        # recursion depth mismatch"), which the marker rightly calls thread-unsafe (6 of 25
        # sessions beside a busy process, when the plain run below had 5 examples). A plain run
        # with the same settings first keeps this test about the marker.
        @settings(max_examples=20, database=None)
        @given(st.integers())
        def test_warm_up(x):
            assert x == x

        @pytest.mark.threadprobe(threads=2, iterations=2)
        @settings(max_examples=20, database=None)
        @given(st.integers())
        def test_addition_commutes(x):
            assert x + 1 == 1 + x
    ''')
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_the_diagnosis_gate_fails_a_session_that_uses_an_unsafe_dependency(suite, tmp_path):
    from threadprobe import report
    from threadprobe.records import Diagnosis, Result, Safety

    def result(probe, dependency, verdict, mode="threads"):
        return Result(probe=probe, dependency=dependency, mode=mode, workers=2, processes=1, threads=2, trials=3,
                      verdict=verdict,
                      safety=Safety(outcomes={"ok": 0, "crash": 3, "corrupt": 0, "error": 0, "hang": 0}, failure_rate_upper95=1.0))

    diag = Diagnosis(created="t", threadprobe="0", config={}, fingerprint={"python": {"version": "3", "gil_enabled": True},
                     "platform": "p", "packages": {}},
                     results=(result("netcdf4.read", "netCDF4", "crash"), result("cftime.x", "cftime", "safe")))
    path = report.write(diag, tmp_path)
    suite.makepyfile(test_ok="def test_ok():\n    assert True\n")
    unsafe = suite.runpytest_subprocess(f"--threadprobe-diagnosis={path}", "--threadprobe-uses=netCDF4")
    assert unsafe.ret == 1
    unsafe.stdout.fnmatch_lines(["*threadprobe: diagnosis gate*", "*netcdf4.read (threads 2): crash*"])
    safe = suite.runpytest_subprocess(f"--threadprobe-diagnosis={path}", "--threadprobe-uses=cftime")
    assert safe.ret == 0
    missing = suite.runpytest_subprocess(f"--threadprobe-diagnosis={tmp_path / 'nope.json'}")
    assert missing.ret == 4 and "no such file" in str(missing.stderr)


@pytest.mark.bench
def test_a_raw_netcdf4_crash_is_reported_thread_unsafe_in_every_session(tmp_path):
    """netcdf-c under two threads either kills the process (a signal) or fails with its own
    "NetCDF: HDF error": both must reach the report as this test's failure, labelled
    thread-unsafe, and the session must complete every time. Whether the real library fails
    within a session is the wheels' behaviour, not the plugin's: a benchmark (make bench), never
    a make test result; the planted triage tests cover the plugin's side."""
    reported = []
    for k in range(3):
        done = subprocess.run([sys.executable, "-m", "pytest", str(TARGETS / "test_raw_netcdf4.py"),
                               "--threadprobe-threads=2", "-p", "no:cacheprovider", "-q", "-p", "no:xdist"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode in (0, 1), f"session {k} did not complete normally:\n{done.stdout[-2000:]}"
        reported.append("1 failed" in done.stdout and "1 thread-unsafe" in done.stdout)
    assert all(reported), reported



def test_an_own_state_control_whose_fixture_cannot_be_set_up_again_is_said_not_run(suite):
    """Iris's module ``_setup`` yields only the first time in a process: the control with each
    thread on its own fixtures cannot run, and the summary says so instead of showing its error."""
    suite.makepyfile(test_once='''
        import threading
        import pytest

        BOTH = threading.Barrier(2)
        SET = []

        @pytest.fixture(autouse=True, scope="module")
        def _setup():
            if not SET:
                SET.append(1)
                yield

        def test_fails_only_when_both_threads_meet():
            try:
                BOTH.wait(timeout=2)
            except threading.BrokenBarrierError:
                return  # alone (the one-thread control): fine
            raise AssertionError("two threads at once")
    ''')
    result = suite.runpytest_subprocess("--threadprobe-threads=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 thread-unsafe*", "*test_fails_only_when_both_threads_meet: AssertionError under 2 "
                                 "threads*each thread with its own fixtures: not run (a fixture could not be set up "
                                 "again: *did not yield a value*"])

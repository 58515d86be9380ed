"""A test body as a probe (threadprobe.pytest.body): which fixtures each run uses, and how a
crash's frames and an error's traceback are shown."""

import pytest

from threadprobe.pytest import body
from threadprobe.pytest.body import Layout, Run


@pytest.mark.parametrize("threads, iterations, run, instances, runs", [
    (2, 1, Run.THREADS, [0, 1], 2),  # each thread its own fixtures, one run each
    (2, 3, Run.THREADS, [0, 1, 0, 1, 0, 1], 6),  # thread t runs i % 2 == t, all on its own instance
    (3, 2, Run.THREADS, [0, 1, 2, 0, 1, 2], 6),
    (2, 2, Run.OWN_STATE, [0, 1, 0, 1], 4),  # own state: the threads' layout, new instances
    (2, 1, Run.ONE_THREAD, [0, 1], 2),  # the control: two threads' worth, one after another
    (2, 3, Run.ONE_THREAD, [0, 0, 0, 1, 1, 1], 6),  # each instance's iterations in a row, as its thread had them
    (4, 2, Run.ONE_THREAD, [0, 0, 1, 1], 4),  # two threads' worth, whatever the thread count
])
def test_layout_gives_the_control_the_threads_fixture_sharing(threads, iterations, run, instances, runs):
    layout = Layout.of(threads, iterations, run)
    assert layout.runs == runs
    assert [layout.instance(i) for i in range(layout.runs)] == instances


PACKAGE = str(body.Path(body.__file__).resolve().parents[1])
FAULT = f'''Fatal Python error: Segmentation fault

Thread 0x00007f0000000001 (most recent call first):
  File "{PACKAGE}/harness/worker.py", line 90 in run_together

Current thread 0x00007f0000000002 (most recent call first):
  File "/site/netCDF4/utils.py", line 12 in _read
  File "/site/iris/fileformats/netcdf/loader.py", line 300 in load
  File "{PACKAGE}/pytest/body.py", line 80 in task
  File "/tests/test_load.py", line 7 in test_load
  File "/tests/test_load.py", line 3 in helper

Extension modules: numpy (total: 1)
'''


def test_a_crash_shows_the_crashing_threads_innermost_frames_without_threadprobes_own():
    assert body.crash_frames(FAULT) == ('File "/site/netCDF4/utils.py", line 12 in _read',
                                        'File "/site/iris/fileformats/netcdf/loader.py", line 300 in load',
                                        'File "/tests/test_load.py", line 7 in test_load')
    assert body.crash_frames("Fatal Python error: Aborted\n\nStack (most recent call first):\n"
                             '  File "/x.py", line 1 in f\n') == ('File "/x.py", line 1 in f',)
    assert body.crash_frames("") == ()
    unmarked = ("Fatal Python error: Aborted\n\nThread 0x1 (most recent call first):\n"
                '  File "/lib/concurrent/futures/thread.py", line 90 in _worker\n\nThread 0x2 (most recent call first):\n'
                "  <no Python frame>\n")
    assert body.crash_frames(unmarked) == ()  # no thread marked as the crashing one: no frames, not another's


def test_an_errors_traceback_leaves_threadprobes_frames_out():
    text = (f'Traceback (most recent call last):\n  File "{PACKAGE}/harness/worker.py", line 1, in run\n'
            "    task()\n  File \"/tests/test_x.py\", line 4, in test_x\n    assert 1 == 2\nAssertionError")
    assert body.user_frames(text).splitlines() == ["Traceback (most recent call last):", '  File "/tests/test_x.py", '
                                                   "line 4, in test_x", "    assert 1 == 2", "AssertionError"]

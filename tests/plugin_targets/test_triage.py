"""Planted tests for the plugin's triage, each with a failure whose cause is known and certain.

Run under ``--threadprobe-threads=2``, with ``--threadprobe-iterations`` 1 or more; ``LIBDEFECTS``
names the planted C library (tests/planted/defects.c, compiled by the caller). Nothing here
depends on timing luck: each failure is forced.

- ``test_own_file``: not re-entrant on its own function-scoped fixture. It passes at 1 iteration
  (each thread has its own ``tmp_path``) and fails from the second iteration on (a thread's
  iterations share its ``tmp_path``): that is the test's state, never the library's.
- ``test_once_per_process``: not re-entrant on process state: exactly one run per process may
  pass (the check and the claim are one atomic step), so it fails at any iteration count.
- ``test_planted_c_race``: a real C race (``racy_fill``: fill a static buffer, dawdle with the
  GIL released, copy it out), with a window far wider than the threads' start skew: the other
  thread's fill lands in this one's result. The threads meet at a barrier first, so that a late
  start on a busy machine cannot run the two calls one after the other. Fine serially: thread-unsafe.
- ``test_shared_module_box``: the threads share a module-scoped fixture, and each claims it and
  then finds the other's claim (the claims are 0.2 s apart from the check, far longer than the
  threads' start skew). Fine in one thread, and fine when each thread has its own box: shared state.
- ``TestClassFolder::test_lock``: a class-scoped fixture sets the class's folder (as Iris's UGRID
  save tests set ``request.cls.temp_dir``), and each run holds an exclusive lock on one file there
  for 0.2 s: in a row, fine; two threads on the class's one folder, the second cannot lock; with a
  class of their own each (own state), fine: shared state.
- ``test_rare_failure``: a module-scoped fixture, and a failure planted once, in whichever run comes
  first (a file created atomically marks it done): the threaded run fails, every control passes,
  the threads sharing the fixture again pass too. A rare failure that sharing does not bring back
  is not put down to the fixture: thread-unsafe.
(Not collected by threadprobe's own suite: tests/pytest/test_plugin.py runs it in sessions.)
"""

import ctypes
import fcntl
import os
import threading
import time

import pytest

#: About 20 ms of busy work inside the race window: the second thread enters it long before the
#: first leaves, even on one busy core (it gets the GIL the moment the first releases it).
WORK = 20_000_000
SIZE = 256
lib = ctypes.CDLL(os.environ["LIBDEFECTS"])
CLAIMED: set[int] = set()
CLAIM = threading.Lock()


def test_own_file(tmp_path):
    target = tmp_path / "only-mine.txt"
    assert not target.exists(), "written by an earlier run on the same tmp_path"
    target.write_text("mine")


def test_once_per_process():
    with CLAIM:
        first = os.getpid() not in CLAIMED
        CLAIMED.add(os.getpid())
    assert first, "a run in this process came first"


#: The threads of a run meet before the race: on a busy machine one can start a whole window
#: (20 ms) after the other, and then each call runs alone. A run alone (a triage control) waits
#: ``ALONE`` seconds and goes on.
MEET = threading.Barrier(2)
ALONE = 0.25


def meet() -> None:
    try:
        MEET.wait(timeout=ALONE)
    except threading.BrokenBarrierError:
        MEET.reset()


def test_planted_c_race(thread_index, num_parallel_threads):
    buf = ctypes.create_string_buffer(SIZE)
    i = thread_index + 1
    if num_parallel_threads == 2:
        meet()
    lib.racy_fill(i, buf, SIZE, ctypes.c_long(WORK))
    assert buf.raw == bytes((i * 31 + k) & 0xFF for k in range(SIZE)), "another call's fill"


@pytest.fixture(scope="module")
def box():
    return {"owner": None}


def test_shared_module_box(box, thread_index):
    box["owner"] = thread_index
    time.sleep(0.2)
    assert box["owner"] == thread_index, "another thread claimed the module's box"


class TestClassFolder:
    @pytest.fixture(autouse=True, scope="class")
    def _folder(self, request, tmp_path_factory):
        request.cls.folder = tmp_path_factory.mktemp("class-folder")

    def test_lock(self):
        with open(self.folder / "held.lock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while another run holds it
            time.sleep(0.2)


@pytest.fixture(scope="module")
def once(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "rare-failure-came"


def test_rare_failure(once):
    try:
        os.close(os.open(once, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return  # it came before: this run is fine
    raise AssertionError("the planted failure, once")

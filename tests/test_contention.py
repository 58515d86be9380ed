"""Where threads wait (py-spy samples), and the contention figure on planted defects."""

import pytest

from tests.conftest import run_planted, result
from toolkit import contention


def thread(name, active, gil=False, frames=()):
    return {"thread_name": name, "active": active, "owns_gil": gil,
            "frames": [{"name": n, "filename": f, "short_filename": f, "line": 1} for n, f in frames]}


MUTEX_WAIT = (("0x7f00", "libc.so.6"), ("pthread_mutex_lock", "libc.so.6"), ("task", "probes.py"))
RUNNING = (("safe_sum", "libdefects.so"), ("task", "probes.py"))


def test_a_thread_in_a_mutex_is_waiting_even_when_py_spy_calls_it_active():
    assert contention.waiting(thread("probe-0", True, frames=MUTEX_WAIT))
    assert not contention.waiting(thread("probe-1", True, frames=RUNNING))


def test_tally_counts_waits_with_the_gil_free_only():
    lock_bound = [[thread("probe-0", True, frames=MUTEX_WAIT), thread("probe-1", True, frames=RUNNING)]] * 4
    share, waits = contention.tally(lock_bound)
    assert share == 0.5 and waits == {"pthread_mutex_lock <- task (probes.py:1)": 4}
    gil_bound = [[thread("probe-0", True, gil=True, frames=RUNNING),
                  thread("probe-1", False, frames=(("take_gil", "libpython3.11.so"), ("task", "probes.py")))]] * 4
    assert contention.tally(gil_bound) == (0.0, {})
    assert contention.tally([[thread("MainThread", False)]]) == (None, {})


REPEATS = 20


@pytest.mark.alone
@pytest.mark.parametrize("probe, expected", [
    ("planted.gil", "gil"), ("planted.mutex", "library_lock"), ("planted.safe", "none"),
])
def test_contention_is_classified_right_in_19_of_20_runs(planted, tmp_path, probe, expected):
    got = []
    for k in range(REPEATS):
        diag = run_planted(probe, tmp_path / str(k), trials=1, timing_trials=3, processes=())
        got.append(result(diag, "threads").contention)
    right = got.count(expected)
    print(f"{probe}: contention {expected} in {right} of {REPEATS} runs")
    assert right >= 19, f"{probe}: {right}/{REPEATS} classified {expected}: {got}"

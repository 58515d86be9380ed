"""Where threads wait (py-spy samples), and the contention figure on planted defects."""

import pytest

from tests.conftest import HERE, PLANTED
from threadprobe.harness.instruments import contention


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


REPEATS = 3
#: The planted cases test the classifier: all three in each of REPEATS diagnoses, 2 of 3 right
#: each (at a 95% per-diagnosis rate, 99% of runs pass; a classifier that is wrong fails them all).
PLANTED_CASES = {"planted.gil": "gil", "planted.mutex": "library_lock", "planted.safe": "none"}
# These describe the installed wheels, and how often a real library's waits are sampled right
# beside a busy neighbour is that library's behaviour, not the classifier's: they are benchmarks
# (20 runs each in tests/bench/test_contention_noise.py), never a make test result (h5py's once
# gave 3 of 5).
LIBRARY_CASES = [("cf_units.parse", "gil"), ("h5py.read_shared_file.gzip", "library_lock")]


def contention_of(probes, tmp_path):
    """One diagnosis of ``probes`` (threads 2 and 4): each probe's contention classes over its threads cells."""
    from threadprobe.harness import fingerprint
    from threadprobe.diagnosis.diagnose import diagnose
    from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection

    planted = all(p.startswith("planted.") for p in probes)
    diag = diagnose(Options(selection=Selection(probes=tuple(probes), plugins=(str(PLANTED),) if planted else (),
                                                entry_points=not planted),
                            grid=Grid(threads=(2, 4), processes=()),
                            planner=Planner(budget=0.5 * len(probes)),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None),
                    fingerprint=fingerprint.light)
    found: dict[str, set[str]] = {}
    for r in diag.results:
        if r.mode == "threads":
            found.setdefault(r.probe, set()).add(str(r.contention.kind))
    return found


@pytest.mark.slow
def test_contention_is_classified_right_beside_a_busy_neighbour(planted, tmp_path, busy_neighbour):
    runs = [contention_of(PLANTED_CASES, tmp_path / str(k)) for k in range(REPEATS)]
    for probe, expected in PLANTED_CASES.items():
        right = sum(run.get(probe) == {expected} for run in runs)
        assert right >= REPEATS - 1, f"{probe}: {right}/{REPEATS} classified {expected}: {[r.get(probe) for r in runs]}"


QUICK_CASES = PLANTED_CASES


def quick_contention(tmp_path) -> dict[str, set[str]]:
    """One quick diagnosis (``--quick``: the widest threads mode only, no timing trials) of the
    planted GIL-bound, mutex and free probes: each probe's contention class(es)."""
    from threadprobe.harness import fingerprint
    from threadprobe.diagnosis.diagnose import diagnose
    from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection

    diag = diagnose(Options(selection=Selection(probes=tuple(QUICK_CASES), plugins=(str(PLANTED),), entry_points=False),
                            grid=Grid(threads=(2, 4), processes=(), quick=True),
                            planner=Planner(budget=2.0),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None),
                    fingerprint=fingerprint.light)
    found: dict[str, set[str]] = {}
    for r in diag.results:
        if r.mode == "threads":
            found.setdefault(r.probe, set()).add(str(r.contention.kind))
    return found


@pytest.mark.slow
def test_quick_mode_measures_contention_on_its_widest_threads_mode(planted, tmp_path, busy_neighbour):
    runs = [quick_contention(tmp_path / str(k)) for k in range(3)]
    for probe, expected in QUICK_CASES.items():
        right = sum(run.get(probe) == {expected} for run in runs)
        assert right >= 2, f"{probe}: {right}/3 quick diagnoses classified {expected}: {runs}"


# --------------------------------------------------------------------------------------------
# Without the GIL (the free-threaded build): none, a library lock, or the GIL where an import
# turned it back on; the interpreter's own per-object locks are none of these.

FT = HERE.parent / ".venv-ft" / "bin" / "python"
FT_PLANTED = HERE / "planted" / "ft_probes.py"
#: (probe, GIL state) -> the class. Planted C code compiled in the worker, against the headers of
#: the free-threaded interpreter that runs it (tests/planted/ft_probes.py).
#: A ``threading.Lock`` (ft.pylock) spins with sched_yield before it parks, so on a loaded machine its
#: waits read as running: its class is the bench's to count (tests/bench/freethreaded.py), not make test's.
FT_CASES = {("ft.free", "off"): "none", ("ft.mutex", "off"): "library_lock", ("ft.objects", "off"): "none",
            ("ft.gil", "as_imported"): "gil", ("ft.gil", "off"): "none"}


def ft_contention(tmp_path) -> dict[tuple[str, str], set[str]]:
    """One diagnosis of the planted free-threaded probes in both GIL states: each cell's classes."""
    from threadprobe.harness import fingerprint
    from threadprobe.diagnosis.diagnose import diagnose
    from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection
    from threadprobe.records import GilState

    diag = diagnose(Options(selection=Selection(probes=tuple(dict.fromkeys(p for p, _ in FT_CASES)),
                                                plugins=(str(FT_PLANTED),), entry_points=False),
                            grid=Grid(threads=(4,), processes=(), gil=(GilState.AS_IMPORTED, GilState.OFF)),
                            planner=Planner(budget=0.5),  # the classes come from the minimum rounds
                            launch=Launch(python=str(FT)),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None),
                    fingerprint=fingerprint.light)
    found: dict[tuple[str, str], set[str]] = {}
    for r in diag.results:
        if r.mode == "threads":
            found.setdefault((r.probe, str(r.gil)), set()).add(str(r.contention.kind))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not FT.exists(), reason=".venv-ft is missing (.ci/freethreaded-up builds it)")
def test_without_the_gil_contention_is_none_a_library_lock_or_a_gil_an_import_turned_on(tmp_path, busy_neighbour):
    runs = [ft_contention(tmp_path / str(k)) for k in range(3)]
    for cell, expected in FT_CASES.items():
        right = sum(run.get(cell) == {expected} for run in runs)
        assert right >= 2, f"{cell}: {right}/3 diagnoses classified {expected}: {[run.get(cell) for run in runs]}"

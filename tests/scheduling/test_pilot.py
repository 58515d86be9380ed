"""The pilot: real units on each safe candidate, side by side; the simplest unless another is
clearly faster; nothing computed twice; a short run is not piloted; a cached answer is instant."""

import os
import statistics
import time
from contextlib import ExitStack

import dask
import pytest

from threadprobe.scheduling import pipeline
from threadprobe.records import Choice, Diagnosis
from threadprobe.scheduling import cache, choose, pilot

SYNC, THREADS = Choice("w", "synchronous"), Choice("w", "threads", 1, 2)
PROCESSES = Choice("w", "processes", 2, 1, context="fork")


def nap(seconds, parent, away):
    """Sleep; ``away`` times as long in a process other than ``parent`` (a planted transfer cost)."""
    time.sleep(seconds * (away if os.getpid() != parent else 1.0))


class SleepJob:
    """Units that each take ``unit`` seconds of sleep, split over the tasks a scheduler runs at
    once: threads and processes halve the time, as work that releases the GIL would; in worker
    processes a task takes ``away`` times as long."""

    def __init__(self, units, unit, away=1.5):
        self.units, self.unit, self.away = units, unit, away
        self.done: list[int] = []

    def run(self, active, units, tasks, on_done=None):
        per_task = self.unit * len(units) / max(1, tasks)
        active.compute(*[dask.delayed(nap, pure=False)(per_task, os.getpid(), self.away)
                         for _ in range(max(1, tasks))])
        self.done += list(units)
        self.ran_on = getattr(self, "ran_on", []) + [str(active.choice.scheduler)] * len(units)

    def signature(self, fmt):
        return {"format": fmt, "units": self.units, "unit": self.unit}


REAL_MIN_BATCH = pilot.MIN_BATCH


@pytest.fixture
def long_enough(monkeypatch):
    """These jobs are made of sleeps: pilot them although they are shorter than a real pilot needs."""
    monkeypatch.setattr(pilot, "SHORT_RUN", 0.5)
    monkeypatch.setattr(pilot, "MIN_BATCH", 0.1)


def test_each_candidate_is_timed_on_real_units_and_none_is_computed_twice(long_enough):
    job = SleepJob(units=120, unit=0.06)  # long enough units that a compute's overhead is no tie-breaker
    with ExitStack() as stack:
        result, active = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack)
    assert sorted(job.done) == sorted(set(job.done)) == sorted(result.done)  # every unit once, kept
    rows = {row.candidate: row for row in result.rows}
    assert set(rows) == {"synchronous", "threads 2", "processes 2 (fork)"}
    assert all(len(row.seconds) >= 2 for row in rows.values())  # a 2x gap shows in two repetitions
    # Threads halve the sleep; processes take half as long again: threads are the pick.
    assert result.choice == THREADS and active.choice == THREADS
    assert any(line.startswith("fastest on the pilot: threads 2") for line in result.why)
    assert result.cost < result.seconds


class FixedCostJob(SleepJob):
    """A planted fixed cost: in a worker process every task first takes ``fixed`` seconds whatever
    its units (its results shipped back), then ``unit`` a unit; threads take ``slow`` times as long
    a unit and no fixed cost. A whole run on processes, which pays the fixed cost once, is the
    faster; a batch scaled as if its fixed cost grew with its size says the opposite."""

    def __init__(self, units, unit, fixed, slow):
        super().__init__(units, unit)
        self.fixed, self.slow = fixed, slow

    def run(self, active, units, tasks, on_done=None):
        per_task = self.unit * len(units) / max(1, tasks)
        parent = os.getpid()
        active.compute(*[dask.delayed(fixed_then, pure=False)(per_task, self.fixed, self.slow, parent)
                         for _ in range(max(1, tasks))])
        self.done += list(units)


def fixed_then(seconds, fixed, slow, parent):
    time.sleep(fixed + seconds if os.getpid() != parent else seconds * slow)


def test_a_batch_s_fixed_cost_is_counted_once_not_scaled_with_the_run(long_enough, monkeypatch):
    """2000 units of 5 ms: processes run the whole in 0.06 + 5.0 s, threads in 5.0 x 1.3 = 6.5 s.
    A pilot batch of 0.4 s takes about as long on processes as on threads: scaled whole, as if the
    fixed cost grew with the work, they tie at about 6.5 s. From batches of two sizes the pilot
    finds the fixed cost and takes processes."""
    # A real pilot's batches: large beside the fixed cost, as a long run's are. At half this size a
    # loaded machine's noise in the intercept, multiplied by the run's 25 batches' worth, moved the
    # projection by a fifth (3.9 s) in one make test.
    monkeypatch.setattr(pilot, "MIN_BATCH", REAL_MIN_BATCH)
    job = FixedCostJob(units=2000, unit=0.005, fixed=0.06, slow=1.3)
    with ExitStack() as stack:
        result, active = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack)
    rows = {row.candidate: row for row in result.rows}
    assert result.choice == PROCESSES == active.choice, (result.rows, result.why)
    # Near the planted 5.06 s, where scaling whole puts it at about 6.5 s: at most a fifth above
    # (dask's own per-batch costs join the planted one), which tells the two apart, and at most 30%
    # below. A neighbour's noise in the two sizes' medians moves the line either way; it read
    # 3.8 s once, in a test run beside a bench.
    projected = statistics.median(rows["processes 2 (fork)"].projected)
    planted = 0.06 + 2000 * 0.005 / 2
    assert 0.7 * planted <= projected <= 1.2 * planted, (result.rows, result.why)
    assert projected < statistics.median(rows["threads 2"].projected)
    (line,) = [w for w in result.why if w.startswith("a batch's fixed cost on processes 2 (fork)")]
    assert 0.03 <= float(line.split(": ")[1].split(" s")[0]) <= 0.2


def test_a_fixed_cost_is_the_intercept_of_two_batch_sizes_and_never_from_one():
    assert pilot.fixed_cost([0.45, 0.85, 0.45], [10.0, 30.0, 10.0]) == pytest.approx(0.25)
    assert pilot.fixed_cost([0.45, 0.5, 0.45], [10.0, 10.0, 10.0]) == 0.0  # one size: no line
    assert pilot.fixed_cost([0.45, 0.5], [10.0, 11.0]) == 0.0  # a unit's weight apart: no line
    assert pilot.fixed_cost([0.9, 0.5], [10.0, 30.0]) == 0.0  # noise put the larger batch faster
    assert pilot.fixed_cost([1.0, 1.1], [10.0, 30.0]) == 0.75  # never more than 3/4 of the quickest batch


class RacyJob(SleepJob):
    """A planted remedy that does not hold on this input: every batch run on threads raises, as
    Iris's netCDF loader did under a cf-units lock verified by too few trials."""

    def run(self, active, units, tasks, on_done=None):
        if active.choice.scheduler == "threads":
            active.compute(dask.delayed(nap, pure=False)(0.01, os.getpid(), 1.0))  # some work, then the failure
            raise KeyError("<EncodedNetCDFDataProxy shape=(128, 48, 64)>")
        super().run(active, units, tasks, on_done)


def test_a_candidate_that_fails_on_the_input_is_dropped_and_its_units_computed_elsewhere(long_enough):
    job = RacyJob(units=120, unit=0.02)
    with ExitStack() as stack:
        result, active = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack)
    assert "threads 2" not in {row.candidate for row in result.rows} and result.choice != THREADS
    assert active.choice == result.choice
    assert sorted(job.done) == sorted(set(job.done)) == sorted(result.done)  # the failed batch went back, once
    (line,) = [w for w in result.why if w.startswith("dropped: threads 2")]
    assert "KeyError" in line and "EncodedNetCDFDataProxy" in line


def test_when_every_parallel_candidate_fails_the_pilot_settles_on_synchronous(long_enough):
    job = RacyJob(units=120, unit=0.02)
    with ExitStack() as stack:
        result, active = pilot.run_pilot(job, (SYNC, THREADS), stack)
    assert result.choice == SYNC and active.choice == SYNC and [r.candidate for r in result.rows] == ["synchronous"]


def test_a_failure_of_the_serial_run_itself_is_not_swallowed(long_enough):
    class Broken(SleepJob):
        def run(self, active, units, tasks, on_done=None):
            raise ValueError("a bad file")

    with ExitStack() as stack, pytest.raises(ValueError, match="a bad file"):
        pilot.run_pilot(Broken(units=120, unit=0.02), (SYNC, THREADS), stack)


def test_a_run_too_short_to_gain_is_not_piloted(long_enough, monkeypatch):
    monkeypatch.setattr(pilot, "SHORT_RUN", 2.0)  # 10 times the work: a busy machine's slow sleeps stay under it
    job = SleepJob(units=20, unit=0.01)  # 0.2 s of serial work
    with ExitStack() as stack:
        result, _ = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack)
    assert not result.rows and result.choice == THREADS and "not piloted" in result.why[0]
    assert len(result.done) == 2


def test_a_run_too_short_to_pilot_takes_the_fastest_candidate_the_diagnosis_measured(long_enough, monkeypatch):
    monkeypatch.setattr(pilot, "SHORT_RUN", 2.0)
    monkeypatch.setattr(choose, "MIN_PARALLEL", 0.0)  # 0.2 s of planted work: a pool is allowed here
    measured = (choose.Estimate(SYNC, 1.0, 0.0), choose.Estimate(THREADS, 0.8, 0.0),
                choose.Estimate(PROCESSES, 1.8, choose.POOL_START["fork"]))
    job = SleepJob(units=20, unit=0.01)
    with ExitStack() as stack:
        result, active = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack, measured=measured)
    assert not result.rows and result.choice == PROCESSES and active.choice == PROCESSES
    assert "not piloted" in result.why[0] and "measured speedups" in result.why[1]
    assert len(result.done) == 2  # the rest runs on the pick


def test_the_expected_run_is_the_serial_work_on_the_fastest_measured_candidate():
    measured = (choose.Estimate(SYNC, 1.0, 0.0), choose.Estimate(THREADS, None, 0.0),
                choose.Estimate(PROCESSES, 1.6, 0.5))
    assert pilot.expected_run(160.0, measured) == pytest.approx(160.0 / 1.6 + 0.5)
    assert pilot.expected_run(160.0) == 160.0  # nothing measured: only a pilot can tell


def test_serial_work_over_the_threshold_is_not_piloted_when_its_measured_run_is_under_it(long_enough, monkeypatch):
    """What a pilot costs is a share of the run it chooses for, not of the serial work: 3.6 s of
    planted serial work, a threshold of 3 s, and threads measured at x2 (1.8 s)."""
    monkeypatch.setattr(pilot, "SHORT_RUN", 3.0)
    job = SleepJob(units=120, unit=0.03)
    measured = (choose.Estimate(SYNC, 1.0, 0.0), choose.Estimate(THREADS, 2.0, 0.0))
    with ExitStack() as stack:
        result, active = pilot.run_pilot(job, (SYNC, THREADS), stack, measured=measured)
    assert result.serial_estimate > pilot.SHORT_RUN
    assert not result.rows and result.choice == THREADS == active.choice
    assert any(line.startswith("not piloted") and "on the fastest measured candidate" in line for line in result.why)


FAVOUR_THREADS = (choose.Estimate(SYNC, 1.0, 0.0), choose.Estimate(THREADS, 2.0, 0.0),
                  choose.Estimate(PROCESSES, 1.5, choose.POOL_START["fork"]))


def unpiloted(job, monkeypatch, measured=FAVOUR_THREADS):
    """``job`` decided without a pilot (``SHORT_RUN`` out of reach), pools allowed however short."""
    monkeypatch.setattr(pilot, "SHORT_RUN", 1e6)
    monkeypatch.setattr(choose, "MIN_PARALLEL", 0.0)
    with ExitStack() as stack:
        result, active = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack, measured=measured)
    assert active.choice == result.choice and not result.rows
    return result


def test_a_run_the_speedups_give_to_threads_opens_on_them_and_runs_no_unit_serially(long_enough, monkeypatch):
    """The serial rate from one batch on threads and their measured x2: nothing runs serially, and
    the estimate still finds the planted 3.6 s of serial work."""
    job = SleepJob(units=120, unit=0.03)
    result = unpiloted(job, monkeypatch)
    assert result.choice == THREADS
    assert job.ran_on == ["threads"] * 2 * pilot.OPENING_FIRST and len(result.done) == len(job.ran_on)
    assert result.serial_estimate == pytest.approx(120 * 0.03, rel=0.35)
    assert any(line.startswith("opened on threads 2") for line in result.why)


def test_an_opening_that_may_lead_to_a_pilot_times_more_batches_on_threads(long_enough):
    """One batch's rate bounds the run's from above: where that bound does not settle that the run
    is too short to pilot, the opening takes more batches for a closer rate, then the pilot runs."""
    job = SleepJob(units=120, unit=0.03)
    with ExitStack() as stack:
        result, _ = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack, measured=FAVOUR_THREADS)
    opened = pilot.OPENING_FIRST * 2 + (pilot.OPENING_BATCHES - 1) * 2
    assert job.ran_on[:opened] == ["threads"] * opened and "synchronous" in job.ran_on[opened:]
    assert result.rows and result.serial_estimate == pytest.approx(120 * 0.03, rel=0.35)


@pytest.mark.parametrize("measured", [(), FAVOUR_THREADS], ids=["serial opening", "threads opening"])
def test_a_job_whose_units_all_run_in_the_opening_is_not_piloted(long_enough, measured):
    """Two units, both measured serially, or four on threads: nothing is left for a pilot's rounds."""
    for units in (2, 4):
        job = SleepJob(units=units, unit=0.3)
        with ExitStack() as stack:
            result, active = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES), stack, measured=measured)
        if measured or units == 2:
            assert not result.rows and sorted(result.done) == list(range(units)) == sorted(job.done)
            assert any(line.startswith(f"not piloted: its {units} units all ran") for line in result.why)
        assert active.choice == result.choice


def test_an_opening_on_threads_that_fails_drops_them_and_opens_serially(long_enough, monkeypatch):
    job = RacyJob(units=120, unit=0.02)
    result = unpiloted(job, monkeypatch)
    assert result.choice == PROCESSES
    assert job.ran_on == ["synchronous"] * 2 and sorted(result.done) == [0, 1]  # the failed batch went back
    (line,) = [w for w in result.why if w.startswith("dropped: threads 2")]
    assert "opening batch" in line and "EncodedNetCDFDataProxy" in line


def test_an_opening_is_on_threads_only_when_the_speedups_favour_them():
    measured = (choose.Estimate(SYNC, 1.0, 0.0), choose.Estimate(THREADS, 1.2, 0.0),
                choose.Estimate(PROCESSES, 1.8, choose.POOL_START["fork"]))
    assert pilot._opening((SYNC, THREADS, PROCESSES), measured) is None  # processes lead
    assert pilot._opening((SYNC, THREADS, PROCESSES), ()) is None  # nothing measured: serially
    faster = (*measured[:1], choose.Estimate(THREADS, 1.9, 0.0), measured[2])
    assert pilot._opening((SYNC, THREADS, PROCESSES), faster) == (THREADS, 1.9)


def test_a_run_s_decider_hands_the_pilot_the_diagnosis_s_speeds(long_enough, monkeypatch, tmp_path):
    """Through ``pipeline.decider``: a planted diagnosis where threads are safe but slower than
    serial and processes x1.8, a run too short to pilot: processes, never the old threads rule."""
    from tests.scheduling.test_choose import timed

    monkeypatch.setenv("THREADPROBE_CACHE", str(tmp_path / "choices.json"))
    monkeypatch.setattr(pilot, "SHORT_RUN", 2.0)
    monkeypatch.setattr(choose, "MIN_PARALLEL", 0.0)  # 0.2 s of planted work: a pool is allowed here
    monkeypatch.setattr(pipeline.here, "machine", lambda: choose.Machine(2, 24))
    diag = Diagnosis("t", "0", {}, {"packages": {}}, tuple(timed()))
    with ExitStack() as stack:
        chosen, active, ran = pipeline.decider("load", ("iris_pp.load_metadata.many_times",), diag, "test",
                                               use_cache=False)(SleepJob(units=20, unit=0.01), stack)
    assert ran is not None and not ran.rows
    assert chosen.scheduler == "processes" and active.choice.scheduler == "processes"
    assert ran.done == [0, 1]  # measured serially before the choice: the pool forks from a warm parent


def test_a_local_cluster_is_not_tried_beside_the_processes_scheduler(long_enough):
    job = SleepJob(units=120, unit=0.02)
    with ExitStack() as stack:
        result, _ = pilot.run_pilot(job, (SYNC, THREADS, PROCESSES, Choice("w", "distributed", 2, 1)), stack)
    assert "distributed 2x1" not in {row.candidate for row in result.rows}
    assert any("LocalCluster" in line for line in result.why)


def test_a_second_run_on_the_same_input_reuses_the_answer_in_well_under_a_second(tmp_path, monkeypatch, long_enough):
    monkeypatch.setenv("THREADPROBE_CACHE", str(tmp_path / "choices.json"))
    monkeypatch.setattr(pipeline.choose, "candidates", lambda *a, **k: ((SYNC, THREADS, PROCESSES), ()))
    diag = Diagnosis("t", "0", {}, {"packages": {}}, ())
    decide = pipeline.decider("w", ("p",), diag, "test", fmt="nc")
    with ExitStack() as stack:
        first, _, ran = decide(SleepJob(units=120, unit=0.02), stack)
    assert ran is not None and ran.rows and cache.path().exists()
    began = time.perf_counter()
    with ExitStack() as stack:
        second, _, again = decide(SleepJob(units=120, unit=0.02), stack)
    assert time.perf_counter() - began < 1.0
    assert again is None and second.scheduler == first.scheduler and second.source.startswith("cached pilot")


def test_a_run_told_not_to_read_the_cache_pilots_and_still_stores_its_answer(tmp_path, monkeypatch, long_enough):
    monkeypatch.setenv("THREADPROBE_CACHE", str(tmp_path / "choices.json"))
    monkeypatch.setattr(pipeline.choose, "candidates", lambda *a, **k: ((SYNC, THREADS, PROCESSES), ()))
    diag = Diagnosis("t", "0", {}, {"packages": {}}, ())
    for _ in range(2):  # --no-cache twice: both pilot
        with ExitStack() as stack:
            _, _, ran = pipeline.decider("w", ("p",), diag, "test", fmt="nc", use_cache=False)(
                SleepJob(units=120, unit=0.02), stack)
        assert ran is not None and ran.rows
    with ExitStack() as stack:  # a plain run then reuses what they stored
        chosen, _, again = pipeline.decider("w", ("p",), diag, "test", fmt="nc")(SleepJob(units=120, unit=0.02), stack)
    assert again is None and chosen.source.startswith("cached pilot")


def test_a_damaged_cache_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADPROBE_CACHE", str(tmp_path / "choices.json"))
    (tmp_path / "choices.json").write_text("{not json")
    assert cache.lookup("anything") is None
    cache.store("k", THREADS)
    assert cache.lookup("k") == THREADS


class SizedJob(SleepJob):
    """Units of 1 and 3 time steps in turn: a unit's sleep is proportional to its size."""

    def __init__(self, units, unit):
        super().__init__(units, unit)
        self.sizes = [1 + 2 * (k % 2) for k in range(units)]

    def run(self, active, units, tasks, on_done=None):
        per_task = self.unit * sum(self.sizes[k] for k in units) / max(1, tasks)
        active.compute(*[dask.delayed(nap, pure=False)(per_task, os.getpid(), self.away)
                         for _ in range(max(1, tasks))])
        self.done += list(units)


def test_units_are_weighed_by_their_size(long_enough):
    job = SizedJob(units=60, unit=0.03)
    with ExitStack() as stack:
        result, _ = pilot.run_pilot(job, (SYNC, THREADS), stack)
    true_serial = job.unit * sum(job.sizes)  # 3.6 s; one unit of 3 counted as one would say 5.4 s
    assert abs(result.serial_estimate - true_serial) < 0.25 * true_serial
    sync = next(row for row in result.rows if row.candidate == "synchronous")
    assert max(sync.projected) < 1.3 * min(sync.projected)


def test_a_tie_between_two_leaders_is_sampled_beyond_the_usual_rounds():
    assert pilot._more(pilot.MAX_ROUNDS, 2, 0.3, pilot.SHARE)  # two left within the noise: go on
    assert not pilot._more(pilot.MAX_ROUNDS, 3, 0.1, pilot.SHARE)  # three: the usual limit
    assert not pilot._more(pilot.TIE_ROUNDS, 2, 0.1, pilot.SHARE)
    assert not pilot._more(pilot.MIN_ROUNDS, 2, pilot.TIE_SHARE, pilot.SHARE)
    assert pilot._more(1, 5, 0.9, pilot.SHARE)  # never fewer than the least rounds

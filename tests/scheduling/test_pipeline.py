"""threadprobe.scheduler, as the README shows it: a real lazy Iris cube, the probes it runs
concurrently, and a choice that follows their verdicts, applied to dask for the block."""

import os
import threading

import dask
import iris
import iris.analysis
import numpy as np
import pytest

import threadprobe
from tests.scheduling.test_choose import verdicts
from threadprobe.records import Diagnosis

WIND = ["iris_netcdf.wind_chunks"]


def where_it_ran() -> tuple[int, bool]:
    """This task's process, and whether it ran on the main thread."""
    return os.getpid(), threading.current_thread() is threading.main_thread()


def diagnosis(**cells):
    return Diagnosis("2026-11-29T00:00:00+00:00", "0", {}, {"packages": {}}, tuple(verdicts(**cells)))


@pytest.fixture
def speed(wind_nc):
    cubes = iris.load(str(wind_nc / "*.nc")).concatenate()  # one cube per file until joined
    u, v = cubes.extract_cube("x_wind"), cubes.extract_cube("y_wind")
    out = (u * u + v * v) ** 0.5
    assert out.has_lazy_data()
    return out


def test_the_readme_example_runs_on_the_choice_and_gives_the_synchronous_answer(speed):
    with dask.config.set(scheduler="synchronous"):
        expected = speed.collapsed("time", iris.analysis.MEAN).data
    before = dask.config.get("scheduler", None)
    with threadprobe.scheduler("auto", speed, probes=WIND, diagnosis=diagnosis()) as choice:
        assert dask.config.get("scheduler") == choice.scheduler  # a plain cube.data obeys it
        got = speed.collapsed("time", iris.analysis.MEAN).data
        where = dask.compute(dask.delayed(where_it_ran)())[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Where a task ran says which scheduler ran it, whichever the pilot picked.
    expected_where = {"synchronous": (os.getpid(), True), "threads": (os.getpid(), False)}
    if choice.scheduler == "processes":
        assert where[0] != os.getpid(), (choice.scheduler, where)
    else:
        assert where == expected_where[choice.scheduler], (choice.scheduler, where)
    assert dask.config.get("scheduler", None) == before  # the block left dask as it found it


def test_an_unsafe_mode_is_never_chosen_for_the_block(speed):
    with threadprobe.scheduler("auto", speed, probes=WIND, diagnosis=diagnosis(t2="crash", t4="crash")) as choice:
        assert choice.scheduler != "threads" and dask.config.get("scheduler") != "threads"
    with threadprobe.scheduler("auto", speed, probes=WIND, diagnosis=diagnosis(t2="crash", p2="crash")) as choice:
        assert choice.scheduler == "synchronous"  # nothing concurrent is safe
        assert "UNSAFE" in " ".join(choice.rationale)


def test_an_explicit_scheduler_is_applied_as_named(speed):
    with threadprobe.scheduler("threads") as choice:
        assert choice.scheduler == "threads" and dask.config.get("scheduler") == "threads"
    assert dask.config.get("scheduler", None) != "threads"  # and undone after the block


def test_the_scheduler_section_has_a_choice_per_gil_state():
    from threadprobe.diagnosis.detect import failure_upper95
    from threadprobe.records import Diagnosis, GilState, Result, Safety
    from threadprobe.scheduling import choose, pipeline

    def cell(probe, mode, verdict, gil=GilState.AS_IMPORTED, workers=2):
        failed = 0 if verdict == "safe" else 3
        return Result(probe=probe, dependency="d", mode=mode, workers=workers if mode != "serial" else 1,
                      processes=workers if mode == "processes" else 1, threads=workers if mode == "threads" else 1,
                      trials=30, verdict=verdict, gil=gil,
                      safety=Safety(outcomes={"ok": 30 - failed, "crash": failed}, failure_rate_upper95=failure_upper95(failed, 30)))

    probes = [p for wl in pipeline.WORKLOADS.values() for p in wl.probes_for()] + list(choose.FORK_PROBES)
    results = [cell(p, m, "safe") for p in probes for m in ("serial", "threads", "processes")]
    results += [cell(p, "threads", "crash", GilState.OFF) for p in probes]
    diag = Diagnosis(created="t", threadprobe="0", config={}, fingerprint={}, results=tuple(results))
    choices = pipeline.safe_choices(diag, choose.Machine(cores=2, memory_gb=16))
    assert set(choices) == {"wind", "load", "wind, GIL off", "load, GIL off"}
    threads = [line for line in choices["load"].rationale if line.startswith("safe candidates")]
    assert "threads 2" in threads[0]
    off = [line for line in choices["load, GIL off"].rationale if line.startswith("safe candidates")]
    assert "threads" not in off[0] and "processes 2" in off[0]


def measured(threads, processes, probes=("iris_pp.load_metadata.many_times",)):
    """A diagnosis whose timing trials measured these speedups on every probe (and x1.8 forking)."""
    from tests.scheduling.test_choose import r
    from threadprobe.scheduling import choose

    cells = [c for p in probes for c in (r(p, "serial", 1, speedup=1.0), r(p, "threads", 2, speedup=threads),
                                        r(p, "threads", 4, speedup=threads), r(p, "processes", 2, speedup=processes))]
    cells += [r(f, "processes", 2, speedup=1.8) for f in choose.FORK_PROBES]
    return Diagnosis("2026-12-07T00:00:00+00:00", "0", {}, {"packages": {}}, tuple(cells))


@pytest.mark.parametrize("threads, processes, expected", [(0.8, 1.7, "processes"), (1.9, 1.7, "threads"),
                                                          (1.0, 1.02, "synchronous")])
def test_a_choice_without_a_pilot_follows_the_diagnosiss_measured_speedups(threads, processes, expected):
    from threadprobe.scheduling import pipeline

    load = pipeline.recommend("load", diagnosis=measured(threads, processes), fmt="pp")
    assert load.scheduler == expected, load.rationale
    assert any("measured speedups" in line for line in load.rationale)  # it says what it went by
    section = pipeline.safe_choices(measured(threads, processes, pipeline.WORKLOADS["load"].probes_for()))
    assert section["load"].scheduler == expected, section["load"].rationale


def test_a_collection_too_small_to_pilot_gets_the_measured_choice():
    import dask.array as da

    small = da.ones((4, 4), chunks=(2, 4))  # 2 blocks: too few to sample
    with threadprobe.scheduler("auto", small, probes=WIND, diagnosis=measured(0.8, 1.7, WIND)) as choice:
        assert choice.scheduler == "processes", choice.rationale
        assert any("too few blocks" in line for line in choice.rationale)


def test_a_collection_with_blocks_enough_but_too_little_work_to_pilot_gets_the_measured_choice():
    """Blocks enough to sample, a few milliseconds of work: not piloted, and chosen by the same
    measured speedups as a run too short to pilot: threads measured x0.8 and no process pool for
    so little work leave synchronous (never the no-speed fallback's threads)."""
    import dask.array as da

    many = da.ones((64, 4), chunks=(2, 4))  # 32 blocks of nothing
    with threadprobe.scheduler("auto", many, probes=WIND, diagnosis=measured(0.8, 1.7, WIND)) as choice:
        assert choice.scheduler == "synchronous", choice.rationale
        assert any("not piloted" in line for line in choice.rationale)
        assert any("measured speedups" in line for line in choice.rationale)


def _unit(k):
    """A planted unit: the first one 'imports' a module (the way a real first unit imports Iris);
    every unit says where it ran and whether that module was there."""
    import os
    import sys
    import types

    if k == 0:
        sys.modules.setdefault("threadprobe_planted_warm", types.ModuleType("threadprobe_planted_warm"))
    return k, os.getpid(), "threadprobe_planted_warm" in sys.modules


class WarmJob:
    units = 6

    def __init__(self):
        self.seen = {}

    def run(self, active, units, tasks, on_done=None):
        import dask

        for k, pid, warm in active.compute(*[dask.delayed(_unit, pure=False)(k) for k in units]):
            self.seen[k] = (pid, warm)

    def signature(self, fmt):
        return {"units": self.units}


def test_an_explicit_forking_pool_starts_from_a_parent_that_ran_the_first_unit():
    """The first unit runs here, before the pool forks: the workers inherit what it imported, and
    it is not run again."""
    import os
    import sys
    from contextlib import ExitStack

    from threadprobe.records import Scheduler
    from threadprobe.scheduling import pipeline, schedulers

    sys.modules.pop("threadprobe_planted_warm", None)
    job = WarmJob()
    choice = schedulers.explicit("planted", Scheduler.PROCESSES, workers=2)
    try:
        with ExitStack() as stack:
            chosen, active, warmed = pipeline.decider("planted", (), None, "test", explicit=choice)(job, stack)
            assert warmed is not None and warmed.done == [0] and warmed.why[0].startswith("warmed")
            job.run(active, [k for k in range(job.units) if k not in warmed.done], 2)
    finally:
        sys.modules.pop("threadprobe_planted_warm", None)
    assert job.seen[0][0] == os.getpid()
    rest = [job.seen[k] for k in range(1, job.units)]
    assert all(pid != os.getpid() and warm for pid, warm in rest), job.seen


def test_a_cached_pick_of_a_forking_pool_starts_warm_too(monkeypatch):
    """A cached answer runs no pilot: its pool would fork from a parent that ran nothing, so it
    starts from one that ran the first unit, as an explicit one does."""
    import os
    import sys
    from contextlib import ExitStack

    from threadprobe.records import Diagnosis, Scheduler
    from threadprobe.scheduling import pipeline, schedulers

    sync, fork = (schedulers.explicit("planted", s, workers=2) for s in (Scheduler.SYNCHRONOUS, Scheduler.PROCESSES))
    monkeypatch.setattr(pipeline.choose, "candidates", lambda *a, **k: ((sync, fork), ()))
    monkeypatch.setattr(pipeline.cache, "lookup", lambda key: fork)
    sys.modules.pop("threadprobe_planted_warm", None)
    job = WarmJob()
    try:
        with ExitStack() as stack:
            chosen, active, warmed = pipeline.decider("planted", ("p",), Diagnosis("t", "0", {}, {"packages": {}}, ()),
                                                      "test")(job, stack)
            assert chosen.source.startswith("cached") and warmed is not None and warmed.done == [0]
            job.run(active, [k for k in range(job.units) if k not in warmed.done], 2)
    finally:
        sys.modules.pop("threadprobe_planted_warm", None)
    assert job.seen[0][0] == os.getpid()
    assert all(pid != os.getpid() and warm for pid, warm in (job.seen[k] for k in range(1, job.units))), job.seen


def test_threads_and_synchronous_are_not_warmed():
    from contextlib import ExitStack

    from threadprobe.records import Scheduler
    from threadprobe.scheduling import pipeline, schedulers

    for scheduler in (Scheduler.THREADS, Scheduler.SYNCHRONOUS):
        with ExitStack() as stack:
            _, _, warmed = pipeline.decider("planted", (), None, "test",
                                            explicit=schedulers.explicit("planted", scheduler))(WarmJob(), stack)
        assert warmed is None


def test_a_runs_quick_diagnosis_tops_up_the_threads_cells_it_relies_on(tmp_path, monkeypatch):
    from threadprobe.scheduling import pipeline

    asked = []

    def fake(options, progress=None, fingerprint=None):
        asked.append(options)
        return Diagnosis("2026-12-07T00:00:00+00:00", "0", {}, {}, tuple(verdicts()))

    monkeypatch.setattr(pipeline, "DEFAULT_DIAGNOSIS", tmp_path / "none.json")
    monkeypatch.setattr(pipeline.diagnosing, "diagnose", fake)
    _, why = pipeline.safety(["iris_netcdf.wind_chunks"])
    (options,) = asked
    assert "quick diagnosis" in why and options.policy().rely == {"iris_netcdf.wind_chunks"}
    assert options.policy().timing_trials == 0  # a run times its own input: no timing trials

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

"""toolkit.scheduler, as the README shows it: a real lazy Iris cube, the probes it runs
concurrently, and a choice that follows their verdicts, applied to dask for the block."""

import threading

import dask
import iris
import iris.analysis
import numpy as np
import pytest

import toolkit
from tests.test_choose import verdicts
from toolkit.records import Diagnosis

WIND = ["iris_netcdf.wind_chunks"]


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
    seen = set()
    with toolkit.scheduler("auto", speed, probes=WIND, diagnosis=diagnosis()) as choice:
        assert choice.scheduler in ("synchronous", "threads", "processes")
        assert dask.config.get("scheduler") == choice.scheduler  # a plain cube.data obeys it
        got = speed.collapsed("time", iris.analysis.MEAN).data
        dask.compute(dask.delayed(lambda: seen.add(threading.current_thread().name))())
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert seen


def test_an_unsafe_mode_is_never_chosen_for_the_block(speed):
    with toolkit.scheduler("auto", speed, probes=WIND, diagnosis=diagnosis(t2="crash", t4="crash")) as choice:
        assert choice.scheduler != "threads" and dask.config.get("scheduler") != "threads"
    with toolkit.scheduler("auto", speed, probes=WIND, diagnosis=diagnosis(t2="crash", p2="crash")) as choice:
        assert choice.scheduler == "synchronous"  # nothing concurrent is safe
        assert "UNSAFE" in " ".join(choice.rationale)


def test_an_explicit_scheduler_is_applied_as_named(speed):
    with toolkit.scheduler("threads") as choice:
        assert choice.scheduler == "threads" and dask.config.get("scheduler") == "threads"
    assert dask.config.get("scheduler", None) != "threads"  # and undone after the block

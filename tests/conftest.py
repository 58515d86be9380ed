"""Shared fixtures: the planted-defect plugin, a quick diagnosis helper, and process hygiene."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import psutil
import pytest

from threadprobe.harness import fingerprint
from threadprobe.report.validate import errors as report_errors
from threadprobe.diagnosis.diagnose import diagnose
from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection

# Targets for the pytest plugin's tests: run by those tests in sessions of their own.
collect_ignore = ["plugin_targets"]

HERE = pathlib.Path(__file__).parent
PLANTED = HERE / "planted" / "probes.py"
TRIVIAL = HERE / "plugins" / "trivial.py"
SHARED = HERE.parent.parent / "shared"
TEST_DATA = SHARED / "iris-test-data" / "test_data"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Every report a test writes under its tmp_path, in this process or in a CLI subprocess,
    keeps the shipped JSON Schema of the format it names (``write`` itself checks nothing)."""
    result = yield
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    problems = reports_breaking_schema(pathlib.Path(tmp)) if tmp is not None else []
    if problems:
        pytest.fail("reports break their schema:\n" + "\n".join(problems[:10]))
    return result


def reports_breaking_schema(folder: pathlib.Path) -> list[str]:
    """'path: $.where: why' for every diagnosis.json under ``folder`` that breaks its schema."""
    return [f"{path}: {problem}" for path in sorted(folder.rglob("diagnosis.json"))
            for problem in report_errors(json.loads(path.read_text()))]


@pytest.fixture(scope="session")
def planted() -> pathlib.Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile the planted defects")
    return PLANTED


def run_planted(probe: str, workdir: pathlib.Path | None = None, timeout: float = 2.0, budget: float = 1.0,
                processes: tuple[int, ...] = (), trials: int = 2):
    """A small diagnosis of one planted probe: serial + threads 2, no evidence, light fingerprint."""
    options = Options(Selection((probe,), (str(PLANTED),), entry_points=False), Grid(threads=(2,), processes=processes),
                      Planner(trials=trials, timing_trials=0, budget=budget), Launch(timeout=timeout), evidence=None,
                      output=Output(workdir=str(workdir) if workdir is not None else None))
    return diagnose(options, fingerprint=fingerprint.light)


def result(diagnosis, mode: str, workers: int | None = None):
    for r in diagnosis.results:
        if r.mode == mode and (workers is None or r.workers == workers):
            return r
    raise AssertionError(f"no {mode} result in {[(r.mode, r.workers) for r in diagnosis.results]}")


# multiprocessing's resource tracker is a singleton of this process that lives until it exits.
SINGLETONS = ("multiprocessing.resource_tracker",)


def descendants() -> list[psutil.Process]:
    found = []
    try:
        for p in psutil.Process(os.getpid()).children(recursive=True):
            try:
                if p.status() != "zombie" and not any(s in " ".join(p.cmdline()) for s in SINGLETONS):
                    found.append(p)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return found


@pytest.fixture
def no_orphans():
    """Fails the test if it leaves a child process of this test process running."""
    before = {p.pid for p in descendants()}
    yield
    left = [p for p in descendants() if p.pid not in before]
    assert not left, f"processes left running: {[(p.pid, p.cmdline()) for p in left]}"


@pytest.fixture
def busy_neighbour():
    """Another process keeping a core busy all along, as on a machine others use."""
    import subprocess
    import sys

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield hog
    hog.kill()
    hog.wait()


@pytest.fixture(scope="session")
def wind_nc(tmp_path_factory):
    """A small wind data set (3 x/y pairs, netCDF), made once per session."""
    from threadprobe.scheduling.runs.data import DataSpec, make_data

    out = tmp_path_factory.mktemp("wind_nc")
    make_data(DataSpec(out, files=3, size_mb=1.0, fmt="nc", ny=45, nx=60))
    return out


@pytest.fixture(scope="session")
def wind_pp(tmp_path_factory):
    """The same, as PP."""
    from threadprobe.scheduling.runs.data import DataSpec, make_data

    out = tmp_path_factory.mktemp("wind_pp")
    make_data(DataSpec(out, files=3, size_mb=1.0, fmt="pp", ny=45, nx=60))
    return out

"""Race evidence reused: a diagnosis without a pass of its own takes the latest stored pass of the
same build, says where it came from, and never takes one made on another build.

The builds are planted: fingerprints whose libraries, packages and Python are set by the test, one
the same as the build under test, others differing by one thing each. The end-to-end tests run a
real diagnosis of a planted probe through ``pipeline.diagnose`` with the planted fingerprint."""

from __future__ import annotations

import copy
import hashlib
import io

import pytest

from tests.conftest import PLANTED
from threadprobe import report
from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection
from threadprobe.diagnosis.detect import failure_upper95
from threadprobe.records import Diagnosis, RacePair, RacePass, RaceStatus, Result, Safety
from threadprobe.report import html as htmlreport
from threadprobe.report import racesource, strength
from threadprobe.report.strength import Strength
from threadprobe.scheduling.pipeline import diagnose

def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


BUILD = {"python": {"version": "3.11.7", "gil_enabled": True, "executable": "/venv/bin/python"},
         "platform": "Linux", "packages": {"netCDF4": {"version": "1.7.2"}, "h5py": {"version": "3.16.0"}},
         "libraries": [{"path": "/venv/lib/libhdf5-ab.so", "family": "libhdf5", "version": "1.14.6", "sha256": sha("h5"),
                        "threadsafe": False, "soname": "libhdf5.so.310", "loaded_by": "h5py"},
                       {"path": "/venv/lib/libdefects.so", "family": "other", "sha256": sha("d1"), "soname": None, "version": None,
                        "loaded_by": "planted"},
                       {"path": "/usr/lib/libc.so.6", "family": "libc", "sha256": sha("c1"), "soname": "libc.so.6", "version": "2.36",
                        "loaded_by": "python"}]}


def build(**changes) -> dict:
    fp = copy.deepcopy(BUILD)
    for what, value in changes.items():
        if what == "package":
            fp["packages"]["h5py"] = {"version": value}
        elif what == "python":
            fp["python"]["version"] = value
        else:  # a library's bytes or place, by its index
            index, key = what.split("_", 1)
            fp["libraries"][int(index.removeprefix("lib"))][key] = value
    return fp


def cell(probe: str, races: RacePass | None = None, trials: int = 0, gil: str = "as_imported") -> Result:
    return Result(probe=probe, dependency="planted", mode="threads", workers=2, processes=1, threads=2, trials=trials,
                  verdict="safe", races=races, gil=gil,
                  safety=Safety({"ok": trials, "crash": 0, "corrupt": 0, "error": 0, "hang": 0}, failure_upper95(0, trials)))


def stored(fp: dict, *results: Result) -> Diagnosis:
    return Diagnosis("2031-05-06T07:08:09+00:00", "0", {}, fp, results)


CLEAN = RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=2000, unordered=1900, overlap_pairs=1900)  # strong
RACY = RacePass("helgrind", 2, 2000, RaceStatus.RACY, (RacePair("libdefects.so", ("racy_fill", "racy_fill"), 3),))


@pytest.mark.parametrize("other, expected", [
    (build(), []),
    (build(lib1_path="/elsewhere/libdefects.so"), []),  # moved, same bytes: the same build
    (build(lib1_sha256=sha("d2")), ["native libraries with other bytes: libdefects.so"]),
    (build(lib0_sha256=sha("h5-rebuilt")), ["native libraries with other bytes: libhdf5-ab.so"]),  # same version
    (build(package="3.17.0"), ["h5py: 3.16.0 -> 3.17.0"]),
])
def test_two_builds_differ_by_their_bytes_packages_and_python(other, expected):
    assert racesource.differences(stored(BUILD), stored(other)) == expected


def test_a_python_change_or_a_fingerprint_without_libraries_is_never_the_same_build():
    assert any("python" in line for line in racesource.differences(stored(BUILD), stored(build(python="3.11.8"))))
    light = {**BUILD, "libraries": [], "light": True}
    assert racesource.differences(stored(light), stored(light)) == [
        "the fingerprint of the stored pass records no native libraries, so the builds cannot be compared"]


def test_a_stored_pass_joins_the_cell_a_pass_of_its_own_would_join_in_its_gil_state():
    wide = RacePass("helgrind", 8, 2000, RaceStatus.CLEAN)  # make races: a cell of its own, 8 threads wide
    passes = racesource.passes(stored(BUILD, cell("p.a", wide).replace(threads=8, workers=8), cell("p.b", CLEAN, gil="off"),
                                      cell("p.c", CLEAN)))
    now = (cell("p.a", trials=11), cell("p.a", trials=11).replace(threads=4, workers=4), cell("p.b", trials=11),
           cell("p.c", trials=11, races=RACY))
    got = racesource.attach(now, passes)
    assert got[0].races is None and got[1].races == wide  # the widest threads cell, as a fresh pass joins
    assert got[2].races is None  # another GIL state's pass
    assert got[3].races == RACY  # a pass of its own is kept


def run(tmp_path, stored_diagnosis: Diagnosis | None) -> Diagnosis:
    out = tmp_path / "reports"
    if stored_diagnosis is not None:
        report.write(stored_diagnosis, out / "races")
    options = Options(selection=Selection(probes=("planted.safe", "planted.mutex"), plugins=(str(PLANTED),),
                                          entry_points=False),
                      grid=Grid(threads=(2,), processes=()),
                      planner=Planner(trials=1, timing_trials=0, budget=1.0),
                      launch=Launch(timeout=20.0),
                      output=Output(out=str(out), workdir=str(tmp_path / "w")),
                      evidence=None)
    return diagnose(options, fingerprint=lambda: copy.deepcopy(BUILD))


def threads_cell(d: Diagnosis, probe: str) -> Result:
    return next(r for r in d.results if r.probe == probe and r.mode == "threads")


def text_of(d: Diagnosis) -> str:
    out = io.StringIO()
    report.console_table(d, out)
    return out.getvalue().replace("\n", " ")


def test_a_pass_of_the_same_build_is_reused_and_says_where_it_came_from(planted, tmp_path):
    d = run(tmp_path, stored(build(lib1_path="/moved/libdefects.so"), cell("planted.safe", CLEAN),
                             cell("planted.mutex", RACY)))
    safe, mutex = threads_cell(d, "planted.safe"), threads_cell(d, "planted.mutex")
    assert safe.races == CLEAN and strength.of(safe) == Strength.RACE_CLEAN
    assert mutex.races == RACY and mutex.verdict == "racy"  # clean trials, but the stored pairs are acted on
    source = racesource.of(d)
    assert source is not None and source.reused and source.probes == ("planted.mutex", "planted.safe")
    where = f"{tmp_path / 'reports' / 'races' / 'diagnosis.json'} (2031-05-06T07:08:09+00:00)"
    assert f"race evidence: the race pass of {where}" in text_of(d)
    assert where in htmlreport.render(d)


def test_a_pass_of_another_build_is_never_reused_and_the_report_says_how_to_run_one(planted, tmp_path):
    d = run(tmp_path, stored(build(lib1_sha256=sha("rebuilt")), cell("planted.safe", CLEAN)))
    assert all(r.races is None for r in d.results)
    source = racesource.of(d)
    assert source is not None and not source.reused and "libdefects.so" in source.why
    text = text_of(d)
    assert "no race pass covers this build (made on another build: native libraries with other bytes: " \
           "libdefects.so)" in text
    assert f"threadprobe diagnose --races --no-stress --plugin {PLANTED} --out {tmp_path / 'reports' / 'races'}" in text
    assert strength.of(threads_cell(d, "planted.safe")) != Strength.RACE_CLEAN


def test_without_a_stored_pass_the_report_says_so(planted, tmp_path):
    d = run(tmp_path, None)
    source = racesource.of(d)
    assert source is not None and not source.reused and source.why.startswith("no ")
    assert "no race pass covers this build" in htmlreport.render(d)

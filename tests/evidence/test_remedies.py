"""The remedy search on planted libraries: the narrowest lock that holds is found by trials, the
innocent library's lock is ruled out by them, and the choice then holds that lock; suspects come
from the evidence before the declared modules; the trials a failure rate needs."""

from __future__ import annotations

import os
import pathlib

import pytest

from threadprobe.diagnosis.options import Grid, Options, Output, Planner, Selection
from threadprobe.evidence import remedies
from threadprobe.harness import fingerprint
from threadprobe.records import Evidence, Remedy, RemedyKind, Result, Safety, Scheduler
from threadprobe.report import remedy_summary
from threadprobe.scheduling import choose
from threadprobe.scheduling.pipeline import diagnose

PLANTED = pathlib.Path(__file__).parents[1] / "planted"
LIBRARY_PROBES = PLANTED / "library_probes.py"


@pytest.fixture
def planted_libs(planted, monkeypatch):
    """The planted libraries importable here and in every child, as installed packages are."""
    libs = str(PLANTED / "libs")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (libs, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.syspath_prepend(libs)
    return LIBRARY_PROBES


def result(probe="p", trials=10, failed=2, evidence=()):
    return Result(probe=probe, dependency="d", mode="threads", workers=2, processes=1, threads=2, trials=trials,
                  verdict="crash" if failed else "safe",
                  safety=Safety(outcomes={"ok": trials - failed, "crash": failed}, failure_rate_upper95=1.0, evidence=evidence))


def test_enough_trials_to_see_the_failure_again_at_the_rate_it_was_seen():
    assert remedies.MIN_TRIALS == 29 and 0.9 ** 29 < 0.05  # what a lock leaves is bound at 10%
    assert remedies.trials_needed(result(trials=10, failed=10)) == remedies.MIN_TRIALS  # never fewer
    assert remedies.trials_needed(result(trials=10, failed=5)) == remedies.MIN_TRIALS
    assert remedies.trials_needed(result(trials=15, failed=1)) == 44  # fewer, and an unchanged rate passes often
    assert remedies.trials_needed(result(trials=20, failed=1)) == 59
    assert remedies.trials_needed(result(trials=40, failed=1)) == remedies.MAX_TRIALS


FAULT = """Fatal Python error: Aborted

Thread 0x00007f0000000001 (most recent call first):
  File "/v/lib/python3.13t/site-packages/dask/threaded.py", line 90 in _worker

Current thread 0x00007f0000000002 (most recent call first):
  File "/v/lib/python3.13t/site-packages/cf_units/__init__.py", line 731 in __init__
  File "/v/lib/python3.13t/site-packages/iris/fileformats/pp.py", line 1378 in time_unit
  File "/work/threadprobe/probes/iris_pp.py", line 90 in task

Extension modules: numpy._core._multiarray_umath
"""


DICT = """Traceback (most recent call last):
  File "/v/lib/python3.13t/site-packages/iris/loading.py", line 235, in load
  File "/v/lib/python3.13t/site-packages/iris/fileformats/pp_load_rules.py", line 643, in date2hours
  File "/v/lib/python3.13t/site-packages/iris/fileformats/pp_load_rules.py", line 594, in _epoch_date_hours
RuntimeError: dictionary changed size during iteration
"""


def test_the_failing_frame_names_the_suspects_narrowest_first():
    assert remedies.traceback_packages(FAULT) == ["cf_units", "iris"]
    assert remedies.targets(FAULT) == ["cf_units", "iris"]  # a method (__init__) is no module function
    assert remedies.targets(DICT) == ["iris.fileformats.pp_load_rules:_epoch_date_hours",
                                      "iris.fileformats.pp_load_rules", "iris"]


def test_a_lock_that_moves_the_failure_elsewhere_is_kept_one_that_does_not_is_dropped():
    after = result(evidence=(Evidence(kind="error", trial=0, summary="x", traceback=DICT),))
    assert remedies.moved("cf_units", after)[0] == "iris.fileformats.pp_load_rules:_epoch_date_hours"
    again = result(evidence=(Evidence(kind="crash", trial=0, summary="x", traceback=FAULT),))
    assert remedies.moved("cf_units", again) == []
    assert remedies.moved("cf_units", result(evidence=(Evidence(kind="corrupt", trial=0, summary="x"),))) == []


@pytest.mark.slow
def test_a_lock_the_workers_could_not_install_is_no_remedy_tried():
    """On 3.13t a crash's innermost frame named dask._expr's simplify_once, a method: the guard
    raised LookupError in every worker, and the try was listed among the remedies as an error."""
    missing = Evidence(kind="error", trial=25, summary="LookupError in harness", stage="harness",
                       error_type="LookupError", message="dask._expr:simplify_once: dask._expr has no function ...")
    crashed = Evidence(kind="crash", trial=3, summary="worker 0 died by SIGSEGV", signal="SIGSEGV")
    assert remedies.not_installed([result(failed=1, evidence=(missing,))])
    assert not remedies.not_installed([result(failed=1, evidence=(missing, crashed))])
    assert not remedies.not_installed([result(failed=0)])  # a clean try: the lock held


def test_the_search_finds_the_racy_library_s_lock_after_ruling_out_the_innocent_one(planted_libs, tmp_path,
                                                                                      monkeypatch):
    # The search's order is under test here; the floor of trials is (test above, and test_evidence's global lock).
    monkeypatch.setattr(remedies, "MIN_TRIALS", 8)
    diag = diagnose(Options(selection=Selection(probes=("planted.library_race",), plugins=(str(planted_libs),),
                                                entry_points=False),
                            grid=Grid(threads=(2,), processes=(2,)),
                            planner=Planner(trials=2, timing_trials=1, budget=3.0),
                            output=Output(out=str(tmp_path / "r"),
                                          workdir=str(tmp_path / "w"))), fingerprint=fingerprint.light)
    assert any(r.verdict == "corrupt" for r in diag.results if r.mode == "threads")
    tried = {(r.remedy.kind, r.remedy.libraries): r for r in diag.remedies}
    assert tried[(RemedyKind.LIBRARY_LOCK, ("planted_innocent",))].verdict == "corrupt"
    racy = tried[(RemedyKind.LIBRARY_LOCK, ("planted_racy",))]
    assert racy.verdict == "safe" and racy.speed.speedup is not None and racy.remedy.trials >= remedies.MIN_TRIALS
    assert racy.remedy.calls[0] == "fill" and "checksum" not in racy.remedy.calls
    assert (RemedyKind.GLOBAL_LOCK, ()) not in tried  # a library lock held: the wider one is not needed
    assert any("a lock around planted_racy (fill): safe" in line for line in remedy_summary(diag.remedies))
    # The choice: threads holding that lock, never threads bare.
    found, why = choose.candidates(diag.results, ("planted.library_race",), choose.Machine(2, 8), "w", diag.remedies)
    threads = [c for c in found if c.scheduler == Scheduler.THREADS]
    assert [c.locks for c in threads] == [(Remedy(RemedyKind.LIBRARY_LOCK, ("planted_racy",), racy.remedy.calls,
                                                 racy.remedy.trials),)]

"""Whole diagnoses of planted defects: each is found in at least 19 of 20 diagnoses, the safe
function never is, nothing stops the run, and no child outlives it."""

import pathlib

import pytest

from tests.conftest import PLANTED, result, run_planted
from toolkit import fingerprint
from toolkit.diagnose import QUICK_TRIALS, Options, diagnose, share_deadline

PLUGINS = pathlib.Path(__file__).parent / "plugins"
REPEATS = 20


@pytest.mark.slow
@pytest.mark.parametrize("probe, verdict", [
    ("planted.race", "corrupt"),
    ("planted.crash", "crash"),
    ("planted.deadlock", "hang"),
])
def test_each_planted_defect_is_found_in_19_of_20_diagnoses(planted, tmp_path, probe, verdict, no_orphans):
    found = 0
    for k in range(REPEATS):
        diag = run_planted(probe, tmp_path / str(k), timeout=1.0 if verdict == "hang" else 2.0,
                           trials=1 if verdict == "hang" else 2)
        assert result(diag, "serial").verdict == "safe"  # the defect needs concurrency
        found += result(diag, "threads").verdict == verdict
    print(f"{probe}: found as {verdict} in {found} of {REPEATS} diagnoses")
    assert found >= 19, f"{probe} found as {verdict} in only {found} of {REPEATS} diagnoses"


@pytest.mark.slow
def test_the_safe_function_is_never_flagged(planted, tmp_path):
    flagged = []
    for k in range(REPEATS):
        diag = run_planted("planted.safe", tmp_path / str(k))
        flagged += [(r.mode, r.verdict) for r in diag.results if r.verdict != "safe"]
    assert not flagged


def test_evidence_says_what_happened(planted, tmp_path):
    crash = result(run_planted("planted.crash", tmp_path / "c", trials=3), "threads")
    ev = next(e for e in crash.evidence if e.kind == "crash")
    assert ev.signal in ("SIGSEGV", "SIGABRT", "SIGBUS") and "most recent call first" in ev.traceback
    race = result(run_planted("planted.race", tmp_path / "r", trials=3), "threads")
    ev = next(e for e in race.evidence if e.kind == "corrupt")
    assert ev.index is not None and ev.expected != ev.actual
    hang = result(run_planted("planted.deadlock", tmp_path / "h", trials=1, timeout=1.0), "threads")
    ev = next(e for e in hang.evidence if e.kind == "hang")
    assert ev.stacks and "inverted" in ev.stacks or "Deadlock" in ev.stacks


def test_a_crash_a_hang_and_corruption_never_stop_the_run(planted, tmp_path, no_orphans):
    diag = diagnose(Options(probes=("planted.*",), plugins=(str(PLANTED),), entry_points=False, threads=(2,),
                            processes=(2,), trials=2, timing_trials=0, evidence=False, timeout=1.0,
                            workdir=str(tmp_path)), fingerprint=fingerprint.light)
    verdicts = {(r.probe, r.mode): r.verdict for r in diag.results}
    assert verdicts[("planted.crash", "threads")] == "crash"
    assert verdicts[("planted.deadlock", "threads")] == "hang"
    assert verdicts[("planted.race", "threads")] == "corrupt"
    # Probes diagnosed after the failures still ran, and separate processes never fail here.
    assert verdicts[("planted.safe", "threads")] == "safe"
    assert all(v == "safe" for (p, m), v in verdicts.items() if m == "processes")


def test_a_failing_prepare_is_an_error_of_that_probe_and_the_run_goes_on(tmp_path):
    diag = diagnose(Options(plugins=(str(PLUGINS / "bad_prepare.py"),), entry_points=False, threads=(2,),
                            processes=(), trials=1, timing_trials=0, evidence=False, workdir=str(tmp_path)),
                    fingerprint=fingerprint.light)
    bad = [r for r in diag.results if r.probe == "bad.prepare"]
    assert bad and all(r.verdict == "error" and r.trials == 0 for r in bad)
    assert "disk on fire" in bad[0].evidence[0].message and bad[0].evidence[0].stage == "prepare"
    assert all(r.verdict == "safe" for r in diag.results if r.probe == "bad.zz_fine")


def test_unavailable_probes_are_reported_not_run(tmp_path):
    diag = diagnose(Options(plugins=(str(PLUGINS / "unavailable.py"),), entry_points=False, threads=(2,),
                            processes=(2,), evidence=False, workdir=str(tmp_path)), fingerprint=fingerprint.light)
    assert {r.verdict for r in diag.results} == {"unavailable"}
    assert len(diag.results) == 3 and "not installed" in diag.results[0].evidence[0].summary


def test_the_budget_cuts_stress_trials_not_the_diagnosis(planted, tmp_path):
    diag = run_planted("planted.safe", tmp_path, trials=1000, budget=3.0)
    threads = result(diag, "threads")
    assert 1 <= threads.trials < 1000
    assert diag.seconds < 20
    assert threads.failure_rate_upper95 == pytest.approx(1 - 0.05 ** (1 / threads.trials), abs=1e-3)


def test_a_probes_share_sets_aside_the_minimum_rounds_of_the_probes_to_come():
    # 100 s left for 10 probes whose minimum rounds take ~6 s each: 60 s are set aside, and this
    # probe may repeat stress trials for its own 6 s plus a tenth of the 40 s that are spare.
    assert share_deadline(0.0, 100.0, 10, [5.0, 7.0]) == pytest.approx(6.0 + 4.0)
    # When the minimums alone fill the budget, each probe gets its minimum rounds and no more.
    assert share_deadline(50.0, 100.0, 10, [6.0]) == pytest.approx(56.0)
    # Before any probe has run, the time is shared equally (the earlier behaviour).
    assert share_deadline(0.0, 120.0, 4, []) == pytest.approx(30.0)
    # Shares add up to the budget: run 10 probes whose minimum is 6 s and which spend their share.
    now, minimums = 0.0, []
    for k in range(10):
        now = share_deadline(now, 100.0, 10 - k, minimums)
        minimums.append(6.0)
    assert now == pytest.approx(100.0)


def test_quick_mode_stops_a_mode_at_its_first_failure_and_bounds_safe_ones_below_10pc(planted, tmp_path):
    diag = diagnose(Options(probes=("planted.crash", "planted.safe"), plugins=(str(PLANTED),), entry_points=False,
                            threads=(2, 4), processes=(2,), quick=True, evidence=False, workdir=str(tmp_path)),
                    fingerprint=fingerprint.light)
    assert {(r.mode, r.workers) for r in diag.results} == {("serial", 1), ("threads", 4), ("processes", 2)}
    crash = next(r for r in diag.results if r.probe == "planted.crash" and r.mode == "threads")
    assert crash.verdict == "crash" and crash.trials < QUICK_TRIALS
    safe = next(r for r in diag.results if r.probe == "planted.safe" and r.mode == "threads")
    assert safe.trials == QUICK_TRIALS and safe.failure_rate_upper95 < 0.1

"""Whole diagnoses of planted defects: each is found, the safe function never is, nothing stops
the run, no child outlives it, and the adaptive plan spends the budget it is given."""

import pathlib

import pytest

from tests.conftest import PLANTED, result, run_planted
from threadprobe.diagnosis import detect
from threadprobe.diagnosis import diagnose as diagnose_module
from threadprobe.harness import fingerprint
from threadprobe.diagnosis import plan
from threadprobe.diagnosis.diagnose import diagnose
from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection
from tests.harness.fakes import FakeLauncher
from threadprobe.records import Mode, Purpose
from tests.conftest import HERE

PLUGINS = HERE / "plugins"
REPEATS = 3


@pytest.mark.slow
@pytest.mark.parametrize("probe, verdict", [
    ("planted.race", "corrupt"),
    ("planted.crash", "crash"),
    ("planted.deadlock", "hang"),
])
def test_each_planted_defect_is_found_in_every_diagnosis(planted, tmp_path, probe, verdict, no_orphans):
    found = []
    for k in range(REPEATS):
        diag = run_planted(probe, tmp_path / str(k), timeout=1.0 if verdict == "hang" else 2.0)
        assert result(diag, "serial").verdict == "safe"  # the defect needs concurrency
        found.append(result(diag, "threads").verdict)
    assert found == [verdict] * REPEATS


def test_the_safe_function_is_never_flagged(planted, tmp_path):
    # Ten trials asked for, not a budget's worth: on a busy machine 4 s bought only 9.
    diag = run_planted("planted.safe", tmp_path, budget=4.0, processes=(2,), trials=10)
    assert {r.verdict for r in diag.results} == {"safe"}
    threads = result(diag, "threads")
    assert threads.trials >= 10 and threads.safety.operations >= 1000 and threads.safety.operation_bound < 0.01


def test_evidence_says_what_happened(planted, tmp_path):
    crash = result(run_planted("planted.crash", tmp_path / "c"), "threads")
    ev = next(e for e in crash.safety.evidence if e.kind == "crash")
    assert ev.signal in ("SIGSEGV", "SIGABRT", "SIGBUS") and "most recent call first" in ev.traceback
    race = result(run_planted("planted.race", tmp_path / "r"), "threads")
    ev = next(e for e in race.safety.evidence if e.kind == "corrupt")
    assert ev.index is not None and ev.expected != ev.actual and race.safety.corruption == "data"
    hang = result(run_planted("planted.deadlock", tmp_path / "h", timeout=1.0), "threads")
    ev = next(e for e in hang.safety.evidence if e.kind == "hang")
    assert ev.stacks and ("inverted" in ev.stacks or "Deadlock" in ev.stacks)


def test_a_crash_a_hang_and_corruption_never_stop_the_run(planted, tmp_path, no_orphans):
    probes = ("planted.crash", "planted.deadlock", "planted.race", "planted.safe")
    diag = diagnose(Options(selection=Selection(probes=probes, plugins=(str(PLANTED),), entry_points=False),
                            grid=Grid(threads=(2,), processes=(2,)),
                            planner=Planner(trials=1, timing_trials=0, budget=1.0),
                            launch=Launch(timeout=1.0),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None),
                    fingerprint=fingerprint.light)
    verdicts = {(r.probe, r.mode): r.verdict for r in diag.results}
    assert verdicts[("planted.crash", "threads")] == "crash"
    assert verdicts[("planted.deadlock", "threads")] == "hang"
    assert verdicts[("planted.race", "threads")] == "corrupt"
    # Probes diagnosed after the failures still ran, and separate processes never fail here.
    assert verdicts[("planted.safe", "threads")] == "safe"
    assert all(v == "safe" for (p, m), v in verdicts.items() if m == "processes")


def test_a_failing_prepare_is_an_error_of_that_probe_and_the_run_goes_on(tmp_path):
    diag = diagnose(Options(selection=Selection(plugins=(str(PLUGINS / "bad_prepare.py"),), entry_points=False),
                            grid=Grid(threads=(2,), processes=()),
                            planner=Planner(trials=1, timing_trials=0, budget=1.0),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None), fingerprint=fingerprint.light)
    bad = [r for r in diag.results if r.probe == "bad.prepare"]
    assert bad and all(r.verdict == "error" and r.trials == 0 for r in bad)
    assert "disk on fire" in bad[0].safety.evidence[0].message and bad[0].safety.evidence[0].stage == "prepare"
    assert all(r.verdict == "safe" for r in diag.results if r.probe == "bad.zz_fine")


def test_a_probe_is_unavailable_when_it_cannot_import_what_it_needs_whatever_its_label(tmp_path):
    diag = diagnose(Options(selection=Selection(plugins=(str(PLUGINS / "unavailable.py"),), entry_points=False),
                            grid=Grid(threads=(2,), processes=()),
                            planner=Planner(trials=1, timing_trials=0, budget=1.0),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None), fingerprint=fingerprint.light)
    verdicts = {(r.probe, r.mode): r for r in diag.results}
    for name in ("missing.library", "missing.in_prepare"):
        r = verdicts[(name, "serial")]
        assert r.verdict == "unavailable" and "no_such_library_for_threadprobe" in r.safety.evidence[0].summary
    # A label that is no module name (a C library called through ctypes) is no reason to skip it.
    assert verdicts[("missing.label_only", "threads")].verdict == "safe"


def test_the_budget_stops_the_adaptive_trials_not_the_diagnosis(planted, tmp_path):
    short = result(run_planted("planted.safe", tmp_path / "a", budget=1.0), "threads")
    longer = result(run_planted("planted.safe", tmp_path / "b", budget=6.0), "threads")
    assert 1 <= short.trials < longer.trials
    assert longer.safety.failure_rate_upper95 == pytest.approx(1 - 0.05 ** (1 / longer.trials), abs=1e-3)


def test_quick_mode_stops_a_mode_at_its_first_failure(planted, tmp_path):
    diag = diagnose(Options(selection=Selection(probes=("planted.crash", "planted.safe"), plugins=(str(PLANTED),),
                                                entry_points=False),
                            grid=Grid(threads=(2, 4), processes=(2,), quick=True),
                            planner=Planner(budget=60.0),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None), fingerprint=fingerprint.light)
    assert {(r.mode, r.workers) for r in diag.results} == {("serial", 1), ("threads", 4), ("processes", 2)}
    crash = next(r for r in diag.results if r.probe == "planted.crash" and r.mode == "threads")
    assert crash.verdict == "crash" and crash.trials == 1
    safe = next(r for r in diag.results if r.probe == "planted.safe" and r.mode == "threads")
    assert safe.trials == plan.Policy.quick_trials and safe.safety.failure_rate_upper95 < 0.1


# --------------------------------------------------------------------------------------------
# The one trial step (diagnose and threadprobe.check), against a fake launcher: no process runs,
# as pytest-xdist tests its schedulers against a MockNode.


def step(tmp_path, launcher, oracle, cell=plan.Cell(Mode.THREADS, 1, 2), name="t"):
    request = plan.Request("fake", cell, Purpose.STRESS, switch_interval=plan.STRESS_SWITCH_INTERVAL)
    trial = diagnose_module.make_trial("fake", "inline:fake", request, iterations=8, index=0, timeout=5.0)
    return diagnose_module.run_one(trial, launcher, tmp_path, tmp_path / name, oracle)


def test_the_trial_step_classifies_what_a_fake_worker_reports(tmp_path):
    right = lambda i: f"d{i}"  # noqa: E731
    got, serial = step(tmp_path, FakeLauncher(right), None, plan.SERIAL, "serial")
    assert serial.kind == "ok" and serial.tasks == 8 and got.seconds == 1.0
    oracle = detect.Oracle.of(got)
    assert step(tmp_path, FakeLauncher(right), oracle, name="ok")[1].kind == "ok"
    wrong = step(tmp_path, FakeLauncher(lambda i: "x" if i == 5 else f"d{i}"), oracle, name="bad")[1]
    assert wrong.kind == "corrupt" and [e.index for e in wrong.evidence] == [5]
    dead = step(tmp_path, FakeLauncher(right, signal=11), oracle, name="dead")[1]
    assert dead.kind == "crash" and {e.signal for e in dead.evidence} == {"SIGSEGV"}


FT = HERE.parent / ".venv-ft" / "bin" / "python"
FT_PLANTED = HERE / "planted" / "ft_probes.py"


@pytest.mark.skipif(not FT.exists(), reason=".venv-ft is missing (.ci/freethreaded-up builds it)")
def test_a_free_threaded_build_is_diagnosed_in_both_gil_states_in_one_matrix(tmp_path, no_orphans):
    from threadprobe.records import GilState

    both = (GilState.AS_IMPORTED, GilState.OFF)
    diag = diagnose(Options(selection=Selection(probes=("ft.gil", "ft.free"), plugins=(str(FT_PLANTED),),
                                                entry_points=False),
                            grid=Grid(threads=(2,), processes=(2,), gil=both),
                            planner=Planner(budget=1.0),
                            launch=Launch(python=str(FT)),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None), fingerprint=fingerprint.light)
    cells = {(r.probe, r.label): r for r in diag.results}
    assert sorted(label for probe, label in cells if probe == "ft.gil") == [
        "processes 2", "serial", "threads 2", "threads 2, GIL off"]  # the serial oracle once
    assert diag.config["gil"] == ["as_imported", "off"]
    # As imported, the planted module turned the GIL back on, and the cell names it; forced off, it stays off.
    held = cells[("ft.gil", "threads 2")]
    assert (held.gil, held.gil_enabled, held.gil_reenabled_by) == (GilState.AS_IMPORTED, True, ("planted_gil_user",))
    forced = cells[("ft.gil", "threads 2, GIL off")]
    assert (forced.gil, forced.gil_enabled) == (GilState.OFF, False)
    assert cells[("ft.free", "threads 2")].gil_enabled is False  # nothing turned it on: off as imported too
    assert {r.verdict for r in diag.results} == {"safe"}

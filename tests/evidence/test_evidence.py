"""Evidence after the trials: what gets a reproducer, remedies, native frames, the audit."""

import shutil

import pytest

from tests.conftest import PLANTED, TRIVIAL
from threadprobe import evidence
from threadprobe.harness import fingerprint
from threadprobe.diagnosis.options import EvidenceOptions, Grid, Options, Output, Planner, Selection
from threadprobe.scheduling.pipeline import diagnose
from threadprobe.records import RemedyKind, RemedySearch, Result, Safety
from threadprobe.report import remedy_summary


def res(probe, mode, verdict, workers=2, dependency="d", ok=0):
    return Result(probe=probe, dependency=dependency, mode=mode, workers=workers, processes=1, threads=workers,
                  trials=3, verdict=verdict, safety=Safety(outcomes={"ok": ok}, failure_rate_upper95=1.0))


def test_reproducers_are_for_unsafe_modes_and_errors_that_serial_does_not_have():
    results = [
        res("a", "serial", "safe", 1), res("a", "threads", "crash"), res("a", "processes", "safe"),
        res("b", "serial", "error", 1), res("b", "threads", "error"),  # broken everywhere: no reproducer
        res("c", "serial", "safe", 1), res("c", "threads", "error", 4),  # fails only concurrently
        res("d", "serial", "safe", 1), res("d", "threads", "safe"),
    ]
    assert set(evidence.to_reproduce(results)) == {"a", "c"}


def test_one_per_dependency():
    picked = evidence.first_per_dependency({"x": res("x", "threads", "crash", dependency="n"),
                                            "y": res("y", "threads", "crash", dependency="n"),
                                            "z": res("z", "threads", "crash", dependency="m")})
    assert [r.probe for r in picked] == ["x", "z"]


@pytest.mark.slow
def test_the_global_lock_remedy_is_verified_on_a_planted_race(planted, tmp_path):
    out = tmp_path / "reports"
    diag = diagnose(Options(selection=Selection(probes=("planted.race",), plugins=(str(PLANTED),), entry_points=False),
                            grid=Grid(threads=(2,), processes=(2,)),
                            planner=Planner(trials=2, timing_trials=1, budget=2.0),
                            output=Output(out=str(out), workdir=str(tmp_path / "w"))),
                    fingerprint=fingerprint.light)
    locked = next(r for r in diag.remedies if r.remedy.kind == RemedyKind.GLOBAL_LOCK)
    assert locked.verdict == "safe" and locked.mode == "threads" and locked.speed.speedup is not None
    assert locked.remedy.trials >= 3  # verified by stress trials, counted
    assert next(r for r in diag.remedies if r.remedy.kind == RemedyKind.PROCESSES).verdict == "safe"
    assert (out / diag.repro["planted.race"]).exists()
    assert any("one global lock around every task: safe" in line for line in remedy_summary(diag.remedies))


@pytest.mark.slow
def test_a_crash_gets_native_frames_from_gdb(planted, tmp_path):
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed")
    diag = diagnose(Options(selection=Selection(probes=("planted.crash",), plugins=(str(PLANTED),), entry_points=False),
                            grid=Grid(threads=(2,), processes=()),
                            planner=Planner(trials=1, timing_trials=0, budget=1.0),
                            output=Output(out=str(tmp_path / "r"), workdir=str(tmp_path / "w")),
                            evidence=EvidenceOptions(remedies=RemedySearch.NONE)), fingerprint=fingerprint.light)
    crash = next(r for r in diag.results if r.mode == "threads")
    native = next(e.native for e in crash.safety.evidence if e.kind == "crash")
    assert native and "crashy" in native  # the planted C function is on the crashing thread's stack
    assert not list(tmp_path.rglob("core*")), "core dumps must not be left behind"


def test_no_evidence_work_for_a_safe_run(tmp_path):
    diag = diagnose(Options(selection=Selection(plugins=(str(TRIVIAL),), entry_points=False),
                            grid=Grid(threads=(2,), processes=()),
                            planner=Planner(trials=1, timing_trials=0, budget=1.0),
                            output=Output(out=str(tmp_path / "r"), workdir=str(tmp_path / "w"))),
                    fingerprint=fingerprint.light)
    assert diag.repro == {} and diag.remedies == () and diag.lock_audit == ()

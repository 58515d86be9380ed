"""The parent's side of a trial (threadprobe.harness.trial), against a fake launcher: workers that
report, die or fall silent become a TrialRun, a crash or a hang, never an exception."""

from __future__ import annotations

from pathlib import Path

from tests.harness.fakes import FakeLauncher
from threadprobe.harness import trial as harness
from threadprobe.records import Mode, Purpose, StackSource, Trial

TRIAL = Trial("fake", "inline:fake", Mode.PROCESSES, 2, 2, 12, timeout=0.3, purpose=Purpose.STRESS)


def test_every_worker_is_started_released_and_gathered(tmp_path: Path):
    launcher, started = FakeLauncher(lambda i: f"d{i}"), []
    run = harness.run_trial(TRIAL, launcher, tmp_path, tmp_path / "t", on_start=started.append)
    assert [w.worker for w in run.workers] == [0, 1] and not run.hung and run.harness_error is None
    assert sum(len(w.report.digests) for w in run.workers) == 12  # every index, once
    assert started == [[]]  # released after both had exited (a fake worker exits at once)
    assert run.seconds == 1.0  # from the reports' own clocks, not the parent's polling


def test_a_silent_worker_is_a_hang_with_its_stacks(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(harness, "capture_stacks", lambda pid, fault: (f"stack of {pid}", StackSource.PY_SPY))
    run = harness.run_trial(TRIAL, FakeLauncher(lambda i: "", silent=True), tmp_path, tmp_path / "t")
    assert run.hung and run.seconds is None
    assert all(w.stacks and w.stack_source == StackSource.PY_SPY and w.returncode == -9 for w in run.workers)


def test_a_dead_prepare_is_an_error_that_says_how_it_died(tmp_path: Path):
    (died,) = harness.run_prepare("inline:fake", FakeLauncher(lambda i: "", signal=11), tmp_path / "w", tmp_path / "p")
    assert died.stage == "prepare" and died.message == "prepare died (SIGSEGV)"
    assert harness.run_prepare("inline:fake", FakeLauncher(lambda i: ""), tmp_path / "w", tmp_path / "q") == ()


def test_a_launcher_that_fails_is_a_harness_error_not_an_exception(tmp_path: Path):
    class Broken(FakeLauncher):
        def start(self, spec_path, worker, pgid):
            raise harness.HarnessError("fork server gone")

    run = harness.run_trial(TRIAL, Broken(lambda i: ""), tmp_path, tmp_path / "t")
    assert run.harness_error == "fork server gone" and all(w.report is None for w in run.workers)

"""The ``threadprobe`` fixture's trials (threadprobe.pytest.check): chosen by diagnose's plan, run
through diagnose's own trial step. Whole sessions using the fixture: tests/pytest/test_plugin.py."""

import json
import pathlib

from threadprobe.diagnosis import diagnose as diagnose_module
from threadprobe.pytest import check
from threadprobe.records import ProbeInfo
from tests.harness.fakes import FakeLauncher


def run(tmp_path, monkeypatch, launcher, trials=3, processes=0):
    seen = []
    real = diagnose_module.run_one

    def spy(trial, *args, **kwargs):
        seen.append((str(trial.mode), trial.workers, str(trial.purpose)))
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(diagnose_module, "run_one", spy)
    results = check.check_trials(ProbeInfo("fake", "none", "inline:fake"), launcher, tmp_path,
                                 check.cells(2, processes), trials, iterations=8, timeout=5.0)
    return seen, results


def test_the_plan_chooses_the_trials_and_the_same_step_runs_them(tmp_path, monkeypatch):
    seen, results = run(tmp_path, monkeypatch, FakeLauncher(lambda i: f"d{i}"))
    assert seen == [("serial", 1, "oracle"), ("threads", 2, "timing"), ("threads", 2, "stress"),
                    ("threads", 2, "stress")]
    assert {(r.mode, r.trials, r.verdict) for r in results} == {("serial", 1, "safe"), ("threads", 3, "safe")}


def test_every_concurrent_mode_gets_its_trials_and_a_crash_stops_its_mode(tmp_path, monkeypatch):
    seen, results = run(tmp_path, monkeypatch, FakeLauncher(lambda i: f"d{i}"), trials=2, processes=2)
    assert sorted(seen[1:]) == sorted([("threads", 2, "timing"), ("processes", 2, "timing"),
                                       ("threads", 2, "stress"), ("processes", 2, "stress")])
    seen, results = run(tmp_path / "crash", monkeypatch, ThreadsCrash(lambda i: f"d{i}"), trials=5)
    assert seen == [("serial", 1, "oracle"), ("threads", 2, "timing")]
    assert {(r.mode, r.trials, r.verdict) for r in results} == {("serial", 1, "safe"), ("threads", 1, "crash")}


class ThreadsCrash(FakeLauncher):
    """Its workers die by SIGSEGV whenever a trial has more than one thread."""

    def start(self, spec_path, worker, pgid):
        self.signal = 11 if json.loads(pathlib.Path(spec_path).read_text())["trial"]["threads"] > 1 else None
        return super().start(spec_path, worker, pgid)

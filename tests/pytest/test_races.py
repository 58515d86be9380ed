"""threadprobe.pytest.races and the plugin's --threadprobe-races: the plugin's side is tested with a fake
detector (the way pytest-xdist tests its schedulers against a MockNode); the child's command and
the pairs' text are tested as they are. The whole path under the real helgrind, a planted race
whose threads give right answers, is in the bench (tests/bench/test_plugin_races.py): pytest
itself takes a minute to start under helgrind."""

from __future__ import annotations

import pytest

from threadprobe.pytest import session as pytest_session
from threadprobe.pytest import races as pytest_races
from threadprobe.records import Frame, RacePair, RacePass, RaceStatus

pytest_plugins = ["pytester"]

PAIR = RacePair("libdefects.so", ("racy_fill", "racy_fill"), 5, "Possible data race during write of size 1",
                ((Frame("/tmp/libdefects.so", "racy_fill", "defects.c", 20),),
                 (Frame("/tmp/libdefects.so", "racy_fill", "defects.c", 20),)))
RESULTS = {"racy": RacePass("helgrind", 2, 10, RaceStatus.RACY, (PAIR,)),
           "clean": RacePass("helgrind", 2, 10, RaceStatus.CLEAN),
           "stuck": RacePass("helgrind", 2, 0, RaceStatus.FAILED, reason="no result within 1200s under helgrind")}


@pytest.fixture
def fake_detector(monkeypatch):
    seen = []

    def check(item, tool, threads, iterations):
        seen.append((item.name, tool, threads, iterations))
        return RESULTS[item.name.removeprefix("test_")]

    monkeypatch.setattr(pytest_races, "check", check)
    monkeypatch.setattr(pytest_session, "valgrind", lambda: "/usr/bin/valgrind")
    return seen


def test_a_race_pair_fails_a_test_whose_threads_were_right(pytester, fake_detector):
    pytester.makepyfile("def test_racy(): pass\ndef test_clean(): pass\ndef test_stuck(): pass\n")
    result = pytester.runpytest_inprocess("--threadprobe-threads=2", "--threadprobe-races", "-p", "no:xdist")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*racy: 1 race pair(s) in 10 concurrent calls under helgrind*",
                                 "*race libdefects.so: racy_fill <-> racy_fill x5*", "*racy_fill (defects.c:20)*",
                                 "*1 racy (race pairs in native code*", "*1 races not run (not run to the end under the race detector*",
                                 "*test_stuck*no result within 1200s*"])
    assert sorted(fake_detector) == [(n, "helgrind", 2, 1) for n in ("test_clean", "test_racy", "test_stuck")]


def test_without_the_option_no_detector_runs(pytester, fake_detector):
    pytester.makepyfile("def test_racy(): pass\n")
    pytester.runpytest_inprocess("--threadprobe-threads=2", "-p", "no:xdist").assert_outcomes(passed=1)
    assert fake_detector == []


def test_the_child_runs_that_one_test_in_threads_and_starts_no_child_of_its_own(pytester, monkeypatch):
    item = pytester.getitem("def test_x(): pass", funcname="test_x")
    args = pytest_races.command(item, 2, 3)
    assert args[1:4] == ["-m", "pytest", item.nodeid] and "--threadprobe-threads=2" in args
    assert "--threadprobe-iterations=3" in args and not any(a.startswith("--threadprobe-races") for a in args)
    monkeypatch.setenv(pytest_races.CHILD, "1")
    assert pytest_races.in_child()


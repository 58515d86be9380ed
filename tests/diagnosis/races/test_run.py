"""threadprobe.diagnosis.races.run: the race pass over planted probes under the real helgrind, and its pure parts
(attaching passes to results, the order of probes, the reasons a pass did not finish)."""

from __future__ import annotations

from pathlib import Path

import pytest

from threadprobe.diagnosis.races import run as racepass
from threadprobe.diagnosis.diagnose import Diagnoser
from threadprobe.diagnosis.options import Options, Output, Selection
from threadprobe.harness.valgrind import valgrind
from threadprobe.records import (Mode, Purpose, RacePair, RacePass, RaceStatus, Result, Safety, Trial, TrialRun,
                                 Verdict, WorkerReport, WorkerRun, is_unsafe)
from tests.conftest import HERE

PLANTED = str(HERE / "planted" / "probes.py")
needs_valgrind = pytest.mark.skipif(valgrind() is None, reason="valgrind is not installed (.ci/run installs it)")


def result(probe: str, mode: Mode = Mode.THREADS, threads: int = 2, verdict: Verdict = Verdict.SAFE) -> Result:
    return Result(probe=probe, dependency="planted", mode=mode, workers=threads, processes=1, threads=threads, trials=5,
                  verdict=verdict, safety=Safety(outcomes={"ok": 5}, failure_rate_upper95=0.45))


RACY = RacePass("helgrind", 2, 100, RaceStatus.RACY, (RacePair("libx.so", ("f", "g"), 3),))
CLEAN = RacePass("helgrind", 2, 100, RaceStatus.CLEAN)


def test_a_pass_with_pairs_makes_a_clean_cell_racy_and_unsafe():
    got = racepass.attach([result("p"), result("p", threads=4)], {"p": RACY}, {"p": "planted"})
    assert [r.verdict for r in got] == [Verdict.RACY, Verdict.SAFE]  # only the cell of its width
    assert got[0].races == RACY and got[0].safety.failure_rate_upper95 == 0.45  # the bound is kept, beside it
    assert is_unsafe(got[0]) and not is_unsafe(got[1])


def test_a_wider_pass_joins_the_widest_threads_cell():
    wide = RacePass("helgrind", 8, 100, RaceStatus.RACY, (RacePair("libx.so", ("f", "g"), 3),))
    got = racepass.attach([result("p"), result("p", threads=4), result("p", Mode.SERIAL, 1)], {"p": wide}, {})
    assert [r.verdict for r in got] == [Verdict.SAFE, Verdict.RACY, Verdict.SAFE] and got[1].races == wide


def test_a_failing_cell_keeps_its_verdict_with_the_pairs_beside_it():
    got = racepass.attach([result("p", verdict=Verdict.CRASH)], {"p": RACY}, {})
    assert got[0].verdict == Verdict.CRASH and got[0].races == RACY


def test_a_pass_alone_gets_a_cell_of_its_own_with_no_stress_bound():
    got = racepass.attach([result("p", Mode.SERIAL, 1)], {"p": CLEAN}, {"p": "planted"})
    mine = got[-1]
    assert (mine.mode, mine.threads, mine.trials, mine.verdict) == (Mode.THREADS, 2, 0, Verdict.SAFE)
    assert mine.safety.failure_rate_upper95 == 1.0 and mine.races == CLEAN


def test_an_unavailable_probe_gets_no_race_cell():
    gone = result("p", verdict=Verdict.UNAVAILABLE).replace(threads=4, workers=4)
    assert racepass.attach([gone], {"p": CLEAN}, {}) == [gone]


def _run(workers: tuple[WorkerRun, ...], hung: bool = False, error: str | None = None) -> TrialRun:
    trial = Trial("p", "m:C", Mode.THREADS, 1, 2, 10, timeout=30)
    return TrialRun(trial, workers, hung, None, error)


@pytest.mark.parametrize("run, words", [
    (_run((WorkerRun(0, 1, -4, None, "", ""),)), "SIGILL under helgrind (an instruction valgrind cannot run?)"),
    (_run((WorkerRun(0, 1, None, None, "", ""),), hung=True), "no progress for 30s"),
    (_run((), error="fork server did not answer"), "could not start under helgrind"),
    (_run((WorkerRun(0, 1, 3, None, "", ""),)), "exited with code 3"),
])
def test_why_a_pass_did_not_finish_is_one_line(run, words):
    assert words in racepass.failure_of(run, "helgrind")


def test_a_pass_that_finished_has_no_failure():
    assert racepass.failure_of(_run((WorkerRun(0, 1, 0, WorkerReport(tasks=10), "", ""),)), "helgrind") is None


@needs_valgrind
@pytest.mark.slow
def test_planted_race_is_racy_and_locked_and_free_work_are_clean(tmp_path):
    """The detector's test: a race on every call is named; the same work behind a mutex, and
    lock-free work, have no race in their own code; a deadlock is a failed pass, never clean."""
    options = Options(selection=Selection(probes=("planted.race", "planted.mutex", "planted.safe", "planted.deadlock"),
                                          plugins=(PLANTED,), entry_points=False),
                      output=Output(workdir=str(tmp_path)))
    with Diagnoser(options) as session:
        passes = racepass.run_races(session, racepass.RaceOptions(seconds=2.0, timeout=5.0))
    assert set(passes) == {"planted.race", "planted.mutex", "planted.safe", "planted.deadlock"}
    race = passes["planted.race"]
    assert race.status == RaceStatus.RACY, race.summary()
    assert any(p.object == "libdefects.so" and "racy_fill" in p.functions for p in race.pairs)
    for name in ("planted.mutex", "planted.safe"):
        got = passes[name]
        assert got.status == RaceStatus.CLEAN and got.calls > 0, got.summary()
        assert not any(p.object == "libdefects.so" for p in got.pairs)
    stuck = passes["planted.deadlock"]
    assert stuck.status != RaceStatus.CLEAN, stuck.summary()
    if stuck.status == RaceStatus.FAILED:
        assert "no progress" in (stuck.reason or "")


def test_probes_with_clean_cells_go_first():
    class Run:  # the two fields priority reads, as a ProbeRun has them
        def __init__(self, name: str) -> None:
            self.name, self.iterations = name, 100

        def outcomes(self, cell):
            return []

    results = [result("failing", verdict=Verdict.CRASH), result("clean")]
    ordered = sorted([Run("failing"), Run("clean")], key=lambda r: racepass.priority(r, results))
    assert [r.name for r in ordered] == ["clean", "failing"]


def test_without_a_budget_the_longest_pass_goes_first_and_within_one_the_cheapest():
    slow, fast, untimed = _Named("iris", 8.0 / racepass.SLOWDOWN), _Named("h5py", 1e-5), _Named("new", None)
    runs = [fast, untimed, slow]
    alone = sorted(runs, key=lambda r: racepass.priority(r, []))
    assert [r.name for r in alone] == ["iris", "h5py", "new"]  # 2 threads x 8 s a call, then two 10 s boxes
    budgeted = racepass.RaceOptions(budget=60.0)
    assert sorted(runs, key=lambda r: racepass.priority(r, [], budgeted))[-1].name == "iris"
    assert racepass.expected_seconds(slow, racepass.RaceOptions()) == pytest.approx(16.0)  # past the 10 s box
    assert racepass.expected_seconds(fast, racepass.RaceOptions()) == 10.0


SHARED = """
from threadprobe import Probe


class _Light(Probe):
    dependency = "stdlib"
    iterations = 40
    preload = ("json",)

    def task(self, ctx, i):
        import json
        return json.dumps([i] * 50)


class _Heavy(_Light):
    preload = ("json", "decimal")


class L1(_Light):
    name = "shared.light1"


class L2(_Light):
    name = "shared.light2"


class H1(_Heavy):
    name = "shared.heavy1"


class H2(_Heavy):
    name = "shared.heavy2"
"""


def test_two_lanes_share_a_light_and_a_heavy_server_and_every_worker_exit_reaches_its_lane(tmp_path, monkeypatch):
    """The servers' sharing, run natively (no detector: the pass then fails for want of a report,
    after its calls): each probe's worker ran every call and its lane heard it exit."""
    plugin = tmp_path / "shared_probes.py"
    plugin.write_text(SHARED)
    monkeypatch.setattr(racepass.Detector, "prefix", lambda self: [])
    monkeypatch.setattr(racepass, "shim", lambda: (None, "not built in this test"))
    monkeypatch.setattr(racepass.servers, "import_costs", lambda python, modules: {"json": 0.01, "decimal": 1.0})
    options = Options(selection=Selection(probes=("shared.*",), plugins=(str(plugin),), entry_points=False),
                      output=Output(workdir=str(tmp_path / "work")))
    with Diagnoser(options) as session:
        passes = racepass.run_races(session, racepass.RaceOptions(lanes=2, calls=40, seconds=10.0, timeout=30.0))
        folders = sorted(p.name for p in (session.root / "races").iterdir())
        notes = [n for n in session.launchers.notes if n.startswith("race pass server")]
    assert sorted(passes) == ["shared.heavy1", "shared.heavy2", "shared.light1", "shared.light2"]
    for got in passes.values():
        assert got.calls == 40 and got.reason == "helgrind wrote no report", got.summary()
    assert folders == ["all", "light"] and len(notes) == 2, notes


RARE = str(HERE / "planted" / "rare_probes.py")


@needs_valgrind
@pytest.mark.slow
def test_the_pass_counts_what_ran_unordered_and_correct_work_stays_clean(tmp_path):
    """Exact, not by luck: the planted race on every call is racy; the same rare-path work under a
    mutex, or on private memory, has no race pair in its library; and the shim counted every call,
    with unordered ones among them."""
    rare = ("planted.rare.writer_1", "planted.rare.guarded_48", "planted.rare.private_48")
    options = Options(selection=Selection(probes=rare, plugins=(RARE,), entry_points=False),
                      output=Output(workdir=str(tmp_path)))
    with Diagnoser(options) as session:
        passes = racepass.run_races(session, racepass.RaceOptions(threads=4, calls=200, seconds=5.0, timeout=60.0))
    racy = passes["planted.rare.writer_1"]
    assert racy.status == RaceStatus.RACY and any("rare_writer" in p.functions for p in racy.pairs), racy.summary()
    for name in ("planted.rare.guarded_48", "planted.rare.private_48"):
        got = passes[name]
        assert got.status == RaceStatus.CLEAN and not any(p.object == "librare.so" for p in got.pairs), got.summary()
    for got in passes.values():
        assert got.schedule is not None and got.sections is not None and got.sections >= got.calls > 0
        assert got.unordered is not None and 0 < got.unordered <= got.calls and got.gil_enabled is True
        assert got.rarest() is not None


class _Timed:
    """A probe run whose serial oracle took ``seconds`` per call (the fields threads_for reads)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def outcomes(self, cell):
        from types import SimpleNamespace

        return [] if self.seconds is None else [SimpleNamespace(seconds=self.seconds * 10, tasks=10)]


@pytest.mark.parametrize("per_call, threads", [
    (None, racepass.MAX_THREADS),  # not timed: the most
    (1e-5, racepass.MAX_THREADS),  # fast calls: eight threads' first round fits the time box easily
    (3.0 / racepass.SLOWDOWN, 3),  # 3 s a call under the detector: three fit in 10 s
    (1.0, 2),  # Iris's load: never fewer than two
])
def test_a_slow_probe_gets_fewer_threads_and_the_users_choice_wins(per_call, threads):
    assert racepass.threads_for(_Timed(per_call), racepass.RaceOptions(seconds=10.0)) == threads
    assert racepass.threads_for(_Timed(per_call), racepass.RaceOptions(threads=5)) == 5


def test_a_pass_joins_the_threads_cell_of_the_gil_state_it_ran_in():
    from threadprobe.records import GilState, RacePass, RaceStatus, Result, Safety

    def cell(gil):
        return Result(probe="p", dependency="d", mode="threads", workers=2, processes=1, threads=2, trials=5,
                      verdict="safe", safety=Safety({"ok": 5}, 0.45), gil=gil)

    found = RacePass(tool="helgrind", threads=2, calls=100, status=RaceStatus.RACY)
    cells = [cell(GilState.OFF), cell(GilState.AS_IMPORTED)]
    for state in (GilState.AS_IMPORTED, GilState.OFF):
        out = racepass.attach(cells, {"p": found}, {"p": "d"}, state)
        assert [r.verdict for r in out if r.gil == state] == ["racy"]
        assert [r.verdict for r in out if r.gil != state] == ["safe"]


class _Named(_Timed):
    """A timed probe run with a name, as priority reads it."""

    def __init__(self, name: str, seconds: float | None) -> None:
        super().__init__(seconds)
        self.name = name


BOXED = """
from threadprobe import Probe


class Boxed(Probe):
    name = "boxed.short"
    race_seconds = 3.0

    def task(self, ctx, i):
        return i


class Plain(Probe):
    name = "boxed.plain"

    def task(self, ctx, i):
        return i
"""


class _Declared(_Timed):
    """A timed probe run whose probe class is found through its ref, as box_for reads it."""

    def __init__(self, ref: str, seconds: float | None) -> None:
        from types import SimpleNamespace

        super().__init__(seconds)
        self.name = ref.rsplit(":", 1)[-1]
        self.info = SimpleNamespace(name=self.name, ref=ref)


def test_a_probe_declares_its_time_box_and_the_users_seconds_replace_it(tmp_path):
    plugin = tmp_path / "boxed_probes.py"
    plugin.write_text(BOXED)
    boxed, plain = _Declared(f"{plugin}:Boxed", 1.0 / racepass.SLOWDOWN), _Declared(f"{plugin}:Plain", None)
    default = racepass.RaceOptions()
    assert racepass.box_for(boxed, default) == 3.0 and racepass.box_for(plain, default) == racepass.DEFAULT_SECONDS
    assert racepass.box_for(boxed, racepass.RaceOptions(seconds=20.0)) == 20.0  # the user's choice wins
    trial = racepass.race_trial(boxed, 100, default, index=0)
    assert trial.purpose == Purpose.RACES  # what its workers see (``threadprobe.probe.in_race_pass``)
    assert trial.deadline == 3.0 and trial.threads == 3  # a 1 s call: three fit the probe's 3 s box
    assert racepass.expected_seconds(boxed, default) == 3.0
    assert racepass.race_trial(boxed, 100, racepass.RaceOptions(seconds=20.0), index=0).threads == 8


def test_the_built_in_probes_box_their_passes():
    from threadprobe.probes import _common, fork_safety, iris_pp, netcdf, udunits

    assert udunits.Parse.race_seconds == netcdf.ReadSharedDataset.race_seconds == _common.LIBRARY_RACE_SECONDS
    assert iris_pp.WindChunks.race_seconds == _common.IRIS_RACE_SECONDS < _common.LIBRARY_RACE_SECONDS
    assert fork_safety.NetcdfInherited.race_seconds < racepass.DEFAULT_SECONDS


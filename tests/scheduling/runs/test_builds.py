"""The bench across builds and GIL states: its environments, the configurations each diagnosis
allows (threads holding each verified remedy), and a summary that judges auto against the fastest
safe configuration and checks that auto's pick was safe, with fake runs (nothing is timed)."""

from __future__ import annotations

import fcntl
import json
import sys

import pytest

from tests.scheduling.test_choose import r
from threadprobe.records import Choice, Diagnosis, GilState, Remedy, RemedyKind, Scheduler
from threadprobe.scheduling.runs import bench, builds

PP = "iris_pp.load_metadata.many_times"
CF = Remedy(RemedyKind.LIBRARY_LOCK, ("cf_units",))
OFF = builds.Env(sys.executable, "3.13.5t", GilState.OFF)  # an interpreter that exists, named free-threaded


def diagnosis() -> Diagnosis:
    """Threads unsafe with the GIL off, safe under a lock around cf_units; safe as imported."""
    results = [r(PP, "serial", 1), r(PP, "threads", 2), r(PP, "processes", 2),
               r(PP, "threads", 2, "crash", gil=GilState.OFF)]
    remedies = [r(PP, "threads", 2, "safe", remedy=CF, gil=GilState.OFF),
                r(PP, "threads", 2, "error", remedy=Remedy(RemedyKind.LIBRARY_LOCK, ("iris",)), gil=GilState.OFF)]
    return Diagnosis("2026-12-06T00:00:00+00:00", "0", {}, {"python": {}}, tuple(results), remedies=tuple(remedies))


def test_a_gil_build_is_one_environment_and_a_free_threaded_one_two(tmp_path):
    (here,) = builds.environments([sys.executable])
    assert here.gil is None and here.label.endswith("(GIL build)")
    assert OFF.label == "3.13.5t, GIL off" and OFF.environ(tmp_path)["PYTHON_GIL"] == "0"
    assert "PYTHON_GIL" not in builds.Env(sys.executable, "3.13.5t", GilState.AS_IMPORTED).environ(tmp_path)


def test_threads_hold_each_verified_remedy_and_only_safe_ones_count():
    names = {name: safe for name, _, safe in builds.configs(diagnosis(), OFF, "load", "pp")}
    assert names == {"synchronous": True, "threads": False, "threads + cf_units lock": True, "processes": True,
                     "auto": True}
    as_imported = builds.Env(sys.executable, "3.13.5t", GilState.AS_IMPORTED)
    assert {n: s for n, _, s in builds.configs(diagnosis(), as_imported, "load", "pp")}["threads"] is True


@pytest.fixture
def asked() -> list[GilState | None]:
    """The GIL states the fake diagnoses were asked for."""
    return []


@pytest.fixture
def fake(monkeypatch, tmp_path, asked):
    def diagnose(python, folder, workload, formats, budget, state=None):
        asked.append(state)
        folder.mkdir(parents=True)
        (folder / "diagnosis.json").write_text(json.dumps(diagnosis().to_json()))
        return folder / "diagnosis.json"

    seconds = {"synchronous": 100.0, "threads": 40.0, "threads + cf_units lock": 60.0, "processes": 70.0}

    def one(env, spec, timeout, cache):
        request = spec.request
        name = "threads + cf_units lock" if request.locks else request.scheduler
        if name == "threads":
            return bench.Run(failed="SIGSEGV")
        if name == "auto":
            choice = Choice("load", Scheduler.THREADS, 1, 2, locks=(CF,))
            return bench.Run(seconds=62.0, digest=["cubes"], choice="threads + cf_units", choice_record=choice,
                             pilot_seconds=3.0, pilot_cost=1.0)
        return bench.Run(seconds=seconds[name], digest=["cubes"], choice=name, pilot_seconds=0.0, pilot_cost=0.0)

    monkeypatch.setattr(builds, "diagnose", diagnose)
    monkeypatch.setattr(builds, "one", one)
    (tmp_path / "pp").mkdir()
    (tmp_path / "pp" / "x_wind_0.pp").write_bytes(b"x")
    return tmp_path


def test_auto_is_judged_against_the_fastest_safe_configuration_and_its_pick_checked(fake, asked):
    result = builds.run("load", fake, ["pp"], [OFF], repeats=2)
    (res,) = result.environments
    assert res.environment == "3.13.5t, GIL off" and "threads" not in res.safe_explicit
    assert res.regrets == (round(62.0 / 60.0, 3),) * 2  # the unsafe, faster threads do not count
    assert res.auto_safe == (True, True)
    assert builds.Result.from_json(json.loads(json.dumps(result.to_json()))) == result
    assert any("threads + cf_units lock" in line for line in builds.table(result))
    assert asked == [GilState.OFF]  # benched in one state: diagnosed in that state alone


def test_a_configuration_whose_every_run_failed_is_shown_with_why(fake):
    result = builds.run("load", fake, ["pp"], [OFF], repeats=2)
    (line,) = [x for x in builds.table(result) if "every run failed" in x]
    assert line.split()[4] == "threads" and line.endswith("every run failed: SIGSEGV")


def test_the_reading_names_the_targets_met_and_missed(fake):
    (res,) = builds.run("load", fake, ["pp"], [OFF], repeats=2).environments
    found = builds.read(res)
    # auto 62 s against synchronous 100 s: x1.61, over the GIL-off target; 62 against the lock's 60: 3% regret
    assert found.auto_over_sync == round(100 / 62, 3) and found.target_speedup == builds.AUTO_OVER_SYNC_GIL_OFF
    assert found.fastest_safe == "threads + cf_units lock" and found.regret == round(62 / 60, 3)
    assert found.missed == () and found.auto_picks == {"threads + cf_units": 2}
    slow = res.replace(ratios_to_synchronous={**res.ratios_to_synchronous, "auto": (1.2, 1.3)},
                       auto_safe=(True, False))
    # auto x1.2 and x1.3 where the lock ran x1.67: slow against the fastest safe too
    assert set(builds.read(slow).missed) == {"auto >= x1.6 synchronous", "no unsafe pick",
                                             "auto within 5% of the fastest safe"}
    as_imported = res.replace(gil=GilState.AS_IMPORTED)
    assert builds.read(as_imported).target_speedup is None  # the x1.6 figure is the GIL-off one's alone


def test_the_repetitions_so_far_are_handed_on_after_each_one(fake):
    partial: list[builds.Result] = []
    final = builds.run("load", fake, ["pp"], [OFF], repeats=3, done=partial.append)
    assert [p.repeats for p in partial] == [1, 2] and final.repeats == 3
    assert [len(p.environments[0].repetitions) for p in partial] == [1, 2]
    assert partial[1].environments[0].regrets == final.environments[0].regrets[:2]


def test_a_run_far_slower_than_any_seen_is_taken_to_hang():
    assert builds.hang_after({"synchronous": []}, 1800.0) == 1800.0  # nothing seen yet: the whole timeout
    seen = {"synchronous": [bench.Run(seconds=20.0)], "threads": [bench.Run(failed="SIGSEGV"), bench.Run(seconds=9.0)]}
    assert builds.hang_after(seen, 1800.0) == builds.HANG_FACTOR * 20.0
    assert builds.hang_after({"synchronous": [bench.Run(seconds=0.5)]}, 1800.0) == 60.0  # a floor for short runs
    assert builds.hang_after({"synchronous": [bench.Run(seconds=500.0)]}, 1800.0) == 1800.0  # never past timeout


def held(lock) -> bool:
    """Is ``lock`` flocked by another open file (a run's turn)?"""
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def test_with_a_lock_each_diagnosis_and_each_run_takes_a_turn_of_its_own(fake, monkeypatch, tmp_path):
    lock = tmp_path / "heavy.lock"
    seen: list[tuple[str, bool]] = []
    diagnose, one = builds.diagnose, builds.one
    monkeypatch.setattr(builds, "diagnose", lambda *a, **k: seen.append(("diagnose", held(lock))) or diagnose(*a, **k))
    monkeypatch.setattr(builds, "one", lambda *a, **k: seen.append(("run", held(lock))) or one(*a, **k))
    result = builds.run("load", fake, ["pp"], [OFF], repeats=2, lock=lock)
    assert seen[0] == ("diagnose", True) and len(seen) == 1 + 2 * 5 and all(h for _, h in seen)
    assert not held(lock)  # released between turns and at the end
    assert result.environments[0].regrets == (round(62.0 / 60.0, 3),) * 2
    seen.clear()
    builds.run("load", fake, ["pp"], [OFF], repeats=1)  # no lock asked: none taken
    assert not any(h for _, h in seen)


FT = builds.Path(__file__).parents[3] / ".venv-ft" / "bin" / "python"


@pytest.mark.skipif(not FT.exists(), reason=".venv-ft is missing (.ci/freethreaded-up builds it)")
def test_a_free_threaded_interpreter_is_two_environments():
    envs = builds.environments([str(FT)])
    assert [e.gil for e in envs] == [GilState.AS_IMPORTED, GilState.OFF] and envs[0].version.endswith("t")


def test_the_bench_leaves_no_temporary_folder_and_keeps_diagnoses_where_asked(fake, tmp_path, monkeypatch):
    import pathlib
    import shutil
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    builds.run("load", fake, ["pp"], [OFF], repeats=1)
    assert not list((tmp_path / "tmp").glob("threadprobe-builds-*"))
    kept = pathlib.Path(tempfile.mkdtemp())  # gone before the test ends: the fake diagnosis keeps no schema
    try:
        (res,) = builds.run("load", fake, ["pp"], [OFF], repeats=1, keep=kept / "diagnoses").environments
        assert res.diagnosis.startswith(str(kept / "diagnoses")) and pathlib.Path(res.diagnosis).exists()
    finally:
        shutil.rmtree(kept)


def test_the_regret_is_against_the_fastest_scheduler_not_each_repetitions_luckiest_run(fake):
    """auto is synchronous; processes are slower on median but luckier in some repetitions."""
    (res,) = builds.run("load", fake, ["pp"], [OFF], repeats=2).environments
    noisy = res.replace(safe_explicit=("synchronous", "processes"),
                        median_seconds={"synchronous": 1.0, "processes": 1.3, "auto": 1.0},
                        ratios_to_synchronous={"synchronous": (1.0, 1.0, 1.0), "processes": (1.25, 0.6, 0.5),
                                               "auto": (1.0, 1.0, 1.0)},
                        regrets=(1.25, 1.0, 1.0))
    found = builds.read(noisy)
    assert found.fastest_safe == "synchronous" and found.regret == 1.0
    assert builds.to_fastest(noisy, "processes") == [1.25, 0.6, 0.5]


def test_benches_pooled_read_as_one_over_all_their_repetitions(fake):
    first = builds.run("load", fake, ["pp"], [OFF], repeats=2)
    second = builds.run("load", fake, ["pp"], [OFF], repeats=3)
    (slow,) = second.environments
    second = second.replace(environments=(slow.replace(ratios_to_synchronous={
        **slow.ratios_to_synchronous, "auto": (1.2, 1.3, 1.4)}),))
    pooled = builds.pool([first, second])
    (res,) = pooled.environments
    assert pooled.repeats == 5 and len(res.repetitions) == 5 and len(res.runs["auto"]) == 5
    assert res.ratios_to_synchronous["auto"] == first.environments[0].ratios_to_synchronous["auto"] + (1.2, 1.3, 1.4)
    assert res.auto_safe == (True,) * 5 and res.correct["auto"]
    assert builds.read(res).auto_over_sync == 1.4  # the median of 1.613, 1.613, 1.2, 1.3, 1.4
    assert builds.pool([first, second], [OFF.label]) == pooled


def test_benches_that_allowed_other_schedulers_or_ran_other_data_are_not_pooled(fake):
    one = builds.run("load", fake, ["pp"], [OFF], repeats=1)
    (res,) = one.environments
    for other, words in ((res.replace(safe_explicit=("synchronous",)), "allowed"),
                         (res.replace(input_files=res.input_files + 1), "different data")):
        with pytest.raises(builds.UsageError, match=words):
            builds.pool([one, one.replace(environments=(other,))])
    with pytest.raises(builds.UsageError, match="no bench ran"):
        builds.pool([one], ["3.11.7 (GIL build)"])

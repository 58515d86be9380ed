"""Records survive a JSON round trip unchanged, and the worst outcome wins."""

import json

from threadprobe.records import (
    DIAGNOSIS_SCHEMA, FIND_AT, STRONG_FROM, Choice, Diagnosis, Evidence, Frame, Kind, Mode, Outcome, PilotRow, RacePair,
    RacePass, RacePower, RaceSchedule, RaceStatus, Remedy, RemedyKind, Result, Safety, Scaling, Scheduler, Speed,
    ThreadState, Trial, Verdict, Waits, Contention, Corruption, GilState, RELY_BOUND, is_safe, is_unsafe, race_keys,
    unsafe_results, with_races, worst,
)
from threadprobe.report.validate import errors


def make_result(outcomes=None, **changes):
    base = dict(
        probe="p", dependency="d", mode="threads", workers=2, processes=1, threads=2, trials=3, verdict="crash",
        safety=Safety(outcomes or {"ok": 2, "crash": 1, "corrupt": 0, "error": 0, "hang": 0}, 0.9,
                      (Evidence(kind="crash", trial=1, summary="died", signal="SIGSEGV", traceback="tb"),)),
        speed=Speed(speedup=1.5), contention=Waits(evidence=("a", "b")),
    )
    base.update(changes)
    return Result(**base)


def flat(result: dict) -> dict:
    """A result as formats 1 to 4 wrote it: its parts' fields at the top."""
    out = {k: v for k, v in result.items() if k not in ("safety", "speed", "contention")}
    waits = result.get("contention", {})
    return {**out, **result["safety"], **result.get("speed", {}), "contention": waits.get("kind"),
            "contention_evidence": waits.get("evidence", []), "thread_states": waits.get("thread_states", {})}


def as_format_4(doc: dict) -> dict:
    """A format 5 diagnosis (``to_json``) as format 4 wrote the same: its results flat."""
    return {**doc, "schema": "threadprobe.diagnosis/4", "results": [flat(r) for r in doc["results"]]}


def test_diagnosis_round_trip_through_json_text():
    cf = Remedy(RemedyKind.LIBRARY_LOCK, ("cf_units",), ("parse", "format"), 3)
    rec = Choice("wind", Scheduler.THREADS, 1, 2, locks=(cf,), rationale=("why",),
                 pilot=(PilotRow("threads 2", (1.0, 1.1), 0.0, (10.0, 11.0)),))
    diag = Diagnosis(
        created="2026-11-27T00:00:00+00:00", threadprobe="0", config={"trials": 3}, fingerprint={"python": {}},
        results=(make_result(), make_result(mode="serial", workers=1, threads=1)),
        recommendations={"wind": rec}, remedies=(make_result(remedy=Remedy(RemedyKind.GLOBAL_LOCK)),
                                                 make_result(remedy=cf)),
    )
    text = json.dumps(diag.to_json())
    back = Diagnosis.from_json(json.loads(text))
    assert back == diag
    assert back.schema == DIAGNOSIS_SCHEMA
    assert isinstance(back.results[0].safety.evidence[0], Evidence)
    assert back.recommendations["wind"].locks == (cf,) and back.recommendations["wind"].scheduler is Scheduler.THREADS
    assert not [e for e in errors(diag.to_json()) if not e.startswith("$.fingerprint")]  # remedies as the schema says
    assert back.results[0].mode is Mode.THREADS and back.results[0].verdict is Verdict.CRASH


def test_enums_are_their_json_strings():
    assert Verdict.CRASH == "crash" and f"{Mode.THREADS} 2" == "threads 2" and str(Kind.OK) == "ok"
    assert json.dumps({"v": Verdict.SAFE}) == '{"v": "safe"}'


def test_unsafe_is_decided_in_one_place():
    results = [make_result(probe="a", verdict="crash"), make_result(probe="b", verdict="error"),
               make_result(probe="c", verdict="error"), make_result(probe="c", mode="serial", verdict="error"),
               make_result(probe="d", verdict="safe"), make_result(probe="e", verdict="corrupt", remedy=Remedy(RemedyKind.GLOBAL_LOCK))]
    assert [r.probe for r in unsafe_results(results)] == ["a", "b"]  # c errs serially too: a broken probe
    assert not is_unsafe(make_result(mode="serial", verdict="crash"))


def test_a_scheduler_relies_on_a_clean_threads_cell_only_with_a_remedy_s_evidence():
    """29 clean trials bound the failure rate at 9.8%, as a verified remedy's do; 17 only at 16%,
    a rate one netCDF load in ten on 3.13t crashed at under threads."""
    clean = {"ok": 29, "crash": 0, "corrupt": 0, "error": 0, "hang": 0}
    enough = make_result(verdict="safe", trials=29, safety=Safety(clean, 0.0981))
    few = make_result(verdict="safe", trials=17, safety=Safety({**clean, "ok": 17}, 0.1616))
    assert is_safe(enough) and not is_safe(few) and 0.0981 <= RELY_BOUND < 0.1616
    assert is_safe(few.replace(mode="processes", processes=2, threads=1))  # nothing shared to race on
    assert not is_unsafe(few)  # not relied on, and not unsafe either: it only lacks evidence
    assert is_safe(make_result(verdict="error"), fails_serially=True)  # broken the same way serially
    assert not is_safe(make_result(verdict="crash"))


def test_evidence_omits_empty_fields_but_keeps_its_kind():
    data = Evidence(kind="hang", trial=0, summary="stuck", stacks="...").to_json()
    assert data == {"kind": "hang", "trial": 0, "summary": "stuck", "stacks": "..."}


def test_outcome_round_trip_keeps_the_trial():
    trial = Trial("p", "m:C", "processes", 2, 1, 50, index=3, rounds=4, purpose="timing")
    outcome = Outcome(trial, "ok", tasks=200, seconds=0.5, cpu=0.9)
    assert Outcome.from_json(outcome.to_json()) == outcome
    assert trial.workers == 2


def test_worst_outcome_wins():
    assert worst(["ok", "error", "corrupt"]) == "corrupt"
    assert worst(["hang", "crash"]) == "crash"
    assert worst(["ok", "ok"]) == "ok"
    assert worst([]) == "ok"


PAIR = RacePair("libhdf5.so.310", ("H5FL_reg_malloc", "H5FL_reg_malloc"), 4, "Possible data race",
                ((Frame("/x/libhdf5.so.310", "H5FL_reg_malloc", "H5FL.c", 10),), (Frame("/x/libhdf5.so.310", "H5FL_reg_malloc"),)))


def test_a_race_pass_round_trips_and_a_racy_cell_is_unsafe():
    found = RacePass("helgrind", 2, 40, RaceStatus.RACY, (PAIR,), reports=9, ignored=5, seconds=12.5)
    racy = with_races(make_result(verdict="safe", outcomes={"ok": 3}), found)
    assert racy.verdict == Verdict.RACY and is_unsafe(racy)
    assert Result.from_json(json.loads(json.dumps(racy.to_json()))) == racy
    assert race_keys(racy) == {"libhdf5.so.310: H5FL_reg_malloc <-> H5FL_reg_malloc"}
    clean = with_races(make_result(verdict="safe", outcomes={"ok": 3}), RacePass("helgrind", 2, 40, RaceStatus.CLEAN))
    assert clean.verdict == Verdict.SAFE and not is_unsafe(clean) and race_keys(clean) == frozenset()


FINGERPRINT = {"python": {"version": "3.11.7", "executable": "/x/python", "gil_enabled": True},
               "platform": "x", "packages": {}}


def test_a_format_4_file_reads_into_the_same_grouped_results_and_each_format_meets_only_its_schema():
    corrupt = make_result(
        verdict="corrupt", gil=GilState.OFF,
        safety=Safety({"ok": 5, "crash": 0, "corrupt": 2, "error": 0, "hang": 0}, 0.7,
                      (Evidence(kind="corrupt", trial=3, summary="differs", index=1, expected="1", actual="2",
                                severity=Corruption.DATA),), Corruption.DATA, 40, 0.07),
        speed=Speed(throughput=12.5, speedup=0.9, efficiency=0.45, scaling=Scaling.SERIALIZED, busy_fraction=0.5,
                    queued_fraction=0.1),
        contention=Waits(Contention.GIL, ("gil 0.62 of samples",), {ThreadState.GIL: 0.62, ThreadState.RUNNING: 0.38}))
    unmeasured = make_result(mode="serial", workers=1, threads=1, verdict="safe", contention=Waits(), speed=Speed(),
                             outcomes={"ok": 3, "crash": 0, "corrupt": 0, "error": 0, "hang": 0})
    diag = Diagnosis(created="t", threadprobe="0", config={}, results=(corrupt, unmeasured, make_result()),
                     fingerprint=FINGERPRINT)
    new = diag.to_json()
    old = as_format_4(new)
    assert old["results"][0]["contention"] == "gil" and old["results"][1]["contention"] is None
    assert errors(new) == [] and errors(old) == []  # each against the schema it names
    assert errors({**old, "schema": DIAGNOSIS_SCHEMA}) and errors({**new, "schema": "threadprobe.diagnosis/4"})
    back = Diagnosis.from_json(json.loads(json.dumps(old)))
    assert back.results == diag.results and back.schema == "threadprobe.diagnosis/4"
    assert back.results[0].contention.thread_states[ThreadState.GIL] == 0.62
    assert back.results[0].safety.corruption is Corruption.DATA and back.results[0].speed.scaling is Scaling.SERIALIZED


def test_a_report_with_a_race_pass_meets_its_schema_and_older_formats_still_read():
    found = RacePass("drd", 2, 40, RaceStatus.RACY, (PAIR,))
    diag = Diagnosis(created="t", threadprobe="0", config={}, fingerprint=FINGERPRINT,
                     results=(with_races(make_result(verdict="safe", outcomes={"ok": 3, "crash": 0, "corrupt": 0,
                                                                                "error": 0, "hang": 0}), found),))
    assert errors(diag.to_json()) == []
    old = dict(diag.to_json(), schema="threadprobe.diagnosis/2")
    old["results"] = [{k: v for k, v in flat(r).items() if k not in ("races", "gil", "gil_reenabled_by")}
                      | {"verdict": "safe"} for r in old["results"]]
    assert errors(old) == [] and Diagnosis.from_json(old).results[0].races is None
    back = Diagnosis.from_json(old).results[0]
    assert back.safety == diag.results[0].safety and back.speed == diag.results[0].speed
    assert back.contention == diag.results[0].contention  # the flat fields read into the parts
    broken = diag.to_json()
    broken["results"][0]["races"]["status"] = "maybe"
    assert any("races" in e for e in errors(broken))


def test_remedies_of_older_reports_and_choices_read_as_records():
    assert Remedy.from_json("global_lock") == Remedy(RemedyKind.GLOBAL_LOCK)
    assert Remedy.from_json("processes") == Remedy(RemedyKind.PROCESSES)
    assert Remedy.from_json("global:netCDF4") == Remedy(RemedyKind.GLOBAL_LOCK)
    assert Remedy.from_json("library:cf_units") == Remedy(RemedyKind.LIBRARY_LOCK, ("cf_units",))
    old = flat(make_result(verdict="safe").to_json()) | {"remedy": "global_lock"}
    assert Result.from_json(old).remedy == Remedy(RemedyKind.GLOBAL_LOCK)


def test_every_scheduler_has_one_row_and_a_choice_reads_from_it():
    from threadprobe.records import SCHEDULERS, scheduler_row

    assert set(SCHEDULERS) == set(Scheduler) and [scheduler_row(s).rank for s in SCHEDULERS] == sorted(
        scheduler_row(s).rank for s in Scheduler)
    held = Choice("w", Scheduler.THREADS, 1, 4, locks=(Remedy(RemedyKind.LIBRARY_LOCK, ("cf_units",), ("parse",)),))
    assert held.describe() == "threads (4 threads, holding a lock around cf_units (parse))"
    assert held.row.settings(held) == {"scheduler": "threads", "num_workers": 4}
    assert Choice("w", Scheduler.PROCESSES, 2, context="fork").describe() == "processes (2 processes, fork)"


def test_a_clean_pass_states_the_rarest_path_it_finds_nine_times_in_ten():
    counted = RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=2100, unordered=1000, overlap_pairs=990)
    n = counted.rarest()
    assert n is not None and 1 - (1 - 1 / n) ** 1000 >= FIND_AT > 1 - (1 - 1 / (n + 1)) ** 1000
    assert counted.power() == RacePower.STRONG
    assert counted.verdict_text() == ("clean: 2,000 calls, 1,000 unordered (990 overlapping pairs); "
                                      f"a path taken by fewer than 1 call in ~{n:,} may be missed (racing common code; "
                                      "two rare paths racing each other need far more calls)")
    off = counted.replace(gil_enabled=False)  # every call unordered: two rare calls need not overlap
    assert off.verdict_text().endswith(f"in ~{off.rarest():,} may be missed")
    thin = counted.replace(unordered=20)
    assert thin.power() == RacePower.THIN and thin.rarest() < STRONG_FROM


def test_nothing_unordered_is_blind_and_nothing_counted_is_unknown():
    blind = RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=0, unordered=0, overlap_pairs=0)
    assert blind.power() == RacePower.BLIND and "no race between calls could be seen" in blind.verdict_text()
    unknown = RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, power_note="no C compiler to build the scheduling shim")
    assert unknown.power() == RacePower.UNKNOWN and "no C compiler" in unknown.verdict_text()


def test_a_few_unordered_calls_are_thin_and_never_said_to_be_none():
    """Three unordered calls find, 9 times in 10, only a path most calls take (rarest < 2): the
    text says so, and neither it nor the table cell says that no call ran unordered."""
    few = RacePass("helgrind", 3, 3, RaceStatus.CLEAN, sections=3, unordered=3, overlap_pairs=119)
    assert few.rarest() == 1 and few.power() == RacePower.THIN
    assert few.verdict_text() == ("clean: 3 calls, 3 unordered (119 overlapping pairs); "
                                  "too few to find a race 9 times in 10 unless most calls take its path")
    assert few.short_text() == "clean (thin): 3 calls, 3 unordered; too few to find a rare path"
    assert "no call ran unordered" not in few.summary() and "none unordered" not in few.short_text()


def test_with_the_gil_off_every_call_is_unordered_but_for_locks():
    off = RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, schedule=RaceSchedule.MEET, sections=2000, unordered=30,
                   gil_enabled=False)
    assert off.unordered_calls() == 2000 and off.power() == RacePower.STRONG
    assert "with the GIL off" in off.verdict_text()
    back = RacePass.from_json(json.loads(json.dumps(off.to_json())))
    assert back == off and back.schedule is RaceSchedule.MEET

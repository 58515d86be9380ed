"""Records survive a JSON round trip unchanged, and the worst outcome wins."""

import json

from toolkit.records import (
    DIAGNOSIS_SCHEMA, Choice, Diagnosis, Evidence, Kind, Mode, Outcome, PilotRow, Recommendation, Result, Trial, Verdict,
    is_unsafe, unsafe_results, worst,
)


def make_result(**changes):
    base = dict(
        probe="p", dependency="d", mode="threads", workers=2, processes=1, threads=2, trials=3,
        outcomes={"ok": 2, "crash": 1, "corrupt": 0, "error": 0, "hang": 0}, verdict="crash",
        failure_rate_upper95=0.9,
        evidence=(Evidence(kind="crash", trial=1, summary="died", signal="SIGSEGV", traceback="tb"),),
        speedup=1.5, contention_evidence=("a", "b"),
    )
    base.update(changes)
    return Result(**base)


def test_diagnosis_round_trip_through_json_text():
    rec = Choice("wind", "threads", 1, 2, locks=("netcdf",), rationale=("why",),
                 pilot=(PilotRow("threads 2", (1.0, 1.1), 0.0, (10.0, 11.0)),))
    diag = Diagnosis(
        created="2026-11-27T00:00:00+00:00", threadprobe="0", config={"trials": 3}, fingerprint={"python": {}},
        results=(make_result(), make_result(mode="serial", workers=1, threads=1)),
        recommendation=rec, recommendations={"wind": rec}, remedies=(make_result(remedy="global_lock"),),
    )
    text = json.dumps(diag.to_json())
    back = Diagnosis.from_json(json.loads(text))
    assert back == diag
    assert back.schema == DIAGNOSIS_SCHEMA
    assert isinstance(back.results[0].evidence[0], Evidence)
    assert back.recommendations["wind"].locks == ("netcdf",)
    assert back.results[0].mode is Mode.THREADS and back.results[0].verdict is Verdict.CRASH
    assert Recommendation is Choice  # version 1 reports still read


def test_enums_are_their_json_strings():
    assert Verdict.CRASH == "crash" and f"{Mode.THREADS} 2" == "threads 2" and str(Kind.OK) == "ok"
    assert json.dumps({"v": Verdict.SAFE}) == '{"v": "safe"}'


def test_unsafe_is_decided_in_one_place():
    results = [make_result(probe="a", verdict="crash"), make_result(probe="b", verdict="error"),
               make_result(probe="c", verdict="error"), make_result(probe="c", mode="serial", verdict="error"),
               make_result(probe="d", verdict="safe"), make_result(probe="e", verdict="corrupt", remedy="global_lock")]
    assert [r.probe for r in unsafe_results(results)] == ["a", "b"]  # c errs serially too: a broken probe
    assert not is_unsafe(make_result(mode="serial", verdict="crash"))


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

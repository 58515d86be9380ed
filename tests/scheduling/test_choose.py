"""The choice is pure: safety from verdicts (never an unsafe scheduler), speed from pilot rows."""

import math
import random
import pytest

from threadprobe.scheduling import choose
from threadprobe.records import Choice, PilotRow, Result

MACHINE = choose.Machine(cores=2, memory_gb=24)
WIND = ("iris_netcdf.wind_chunks",)


def r(probe, mode, workers, verdict="safe", remedy=None):
    failed = 0 if verdict == "safe" else 3
    return Result(probe=probe, dependency="d", mode=mode, workers=workers, processes=workers if mode == "processes" else 1,
                  threads=workers if mode == "threads" else 1, trials=3,
                  outcomes={"ok": 3 - failed, "crash": failed, "corrupt": 0, "error": 0, "hang": 0}, verdict=verdict,
                  failure_rate_upper95=0.63 if not failed else 1.0, remedy=remedy)


def verdicts(probe="iris_netcdf.wind_chunks", t2="safe", t4="safe", p2="safe", fork="safe"):
    out = [r(probe, "serial", 1), r(probe, "threads", 2, t2), r(probe, "threads", 4, t4), r(probe, "processes", 2, p2)]
    out += [r(f, "processes", 2, fork) for f in choose.FORK_PROBES]
    return out


def labels(found):
    return [choose.label(c) for c in found]


def test_every_safe_kind_of_scheduler_is_a_candidate():
    found, _ = choose.candidates(verdicts(), WIND, MACHINE)
    assert labels(found) == ["synchronous", "threads 2", "processes 2 (fork)", "distributed 2x1"]


def test_a_crash_at_any_thread_count_rules_threads_out():
    found, why = choose.candidates(verdicts(t4="crash"), WIND, MACHINE)
    assert "threads 2" not in labels(found) and any("UNSAFE" in line for line in why)


def test_unsafe_processes_leave_threads_and_synchronous():
    found, _ = choose.candidates(verdicts(p2="crash"), WIND, MACHINE)
    assert labels(found) == ["synchronous", "threads 2"]


def test_forking_after_open_files_must_be_known_safe_else_processes_spawn():
    found, why = choose.candidates(verdicts(fork="crash"), WIND, MACHINE)
    assert "processes 2 (spawn)" in labels(found) and any("fork" in line for line in why)


def test_without_evidence_only_synchronous_is_known_safe():
    found, why = choose.candidates(verdicts(probe="something.else"), WIND, MACHINE)
    assert labels(found) == ["synchronous"] and any("no evidence" in line for line in why)


def test_a_verified_global_lock_makes_threads_a_candidate_that_holds_it():
    results = verdicts(t2="crash", t4="crash", p2="crash")
    remedies = [r("iris_netcdf.wind_chunks", "threads", 2, "safe", remedy="global_lock")]
    found, _ = choose.candidates(results, WIND, MACHINE, remedies=remedies)
    (locked,) = [c for c in found if c.scheduler == "threads"]
    assert locked.locks == ("global:d",) and choose.label(locked) == "threads 2 + lock"


def test_workers_are_capped_by_cores_and_memory():
    found, _ = choose.candidates(verdicts(), WIND, choose.Machine(16, 5), memory_per_worker_gb=2.0)
    assert {c.n_workers for c in found if c.scheduler == "processes"} == {2}


def row(name, *seconds):
    return PilotRow(name, tuple(seconds), 0.0, tuple(seconds))


def test_the_fastest_wins_when_it_is_faster_beyond_the_noise():
    pick, settled, why = choose.decide([row("synchronous", 60, 61, 59), row("threads 2", 40, 41, 42),
                                        row("processes 2", 33, 34, 32)])
    assert pick.candidate == "processes 2" and settled and "beyond the noise" in why[-1]


def test_the_simpler_candidate_keeps_a_tie_within_the_noise():
    pick, settled, why = choose.decide([row("synchronous", 60, 61, 59), row("threads 2", 33, 36, 34),
                                        row("processes 2", 32, 37, 33)])
    assert pick.candidate == "threads 2" and not settled and "simpler" in why[1]


def test_a_win_smaller_than_the_margin_is_no_win():
    pick, _, _ = choose.decide([row("threads 2", 33.0, 33.1, 33.2), row("processes 2", 32.4, 32.5, 32.6)])
    assert pick.candidate == "threads 2"


def test_one_repetition_never_settles_and_agreeing_repetitions_are_not_a_quiet_machine():
    pick, settled, _ = choose.decide([row("synchronous", 60), row("processes 2", 30, 31)])
    assert not settled
    # 3% apart, each pair identical: without the noise floor that would be infinitely significant.
    pick, settled, _ = choose.decide([row("threads 2", 34.0, 34.0), row("processes 2", 33.0, 33.0)])
    assert pick.candidate == "threads 2" and not settled


def test_a_more_complex_candidate_that_cannot_win_by_the_margin_settles_the_tie():
    same = [33.0 + 0.1 * (k % 3) for k in range(30)]
    pick, settled, _ = choose.decide([row("threads 2", *same), row("processes 2", *same)])
    assert pick.candidate == "threads 2" and settled


def simulate(truth, reps, spread, rng):
    return [row(name, *(t * math.exp(rng.gauss(0.0, spread)) for _ in range(reps))) for name, t in truth]


def test_under_planted_noise_a_real_speed_up_is_taken_and_a_tie_keeps_the_simpler():
    rng = random.Random(20261129)
    # The wind study on 2 cores: threads and processes 1.8x the synchronous speed, 15% noise per
    # repetition, three repetitions (the pilot's least): synchronous at most 5% of the time.
    truth = [("synchronous", 70.0), ("threads 2", 39.0), ("processes 2", 39.5)]
    picks = [choose.decide(simulate(truth, 3, 0.15, rng))[0].candidate for _ in range(400)]
    assert picks.count("synchronous") <= 20
    # No real difference, 25% noise: the more complex one is taken (wrongly) at most about 5% of the time.
    tie = [("threads 2", 39.0), ("processes 2", 39.0)]
    picks = [choose.decide(simulate(tie, 3, 0.25, rng))[0].candidate for _ in range(400)]
    assert picks.count("processes 2") <= 28
    # A plain 2x at 10% noise, three repetitions: all but a rare miss.
    picks = [choose.decide(simulate([("synchronous", 70.0), ("threads 2", 35.0)], 3, 0.10, rng))[0].candidate
             for _ in range(100)]
    assert picks.count("threads 2") >= 98


@pytest.mark.parametrize("found, expected", [
    ((Choice("w", "synchronous"), Choice("w", "threads", 1, 2)), "threads"),
    ((Choice("w", "synchronous"), Choice("w", "threads", 1, 2, locks=("global:x",))), "synchronous"),
    ((Choice("w", "synchronous"), Choice("w", "processes", 2, 1)), "synchronous"),
])
def test_without_a_pilot_threads_if_safe_and_lock_free_else_synchronous(found, expected):
    assert choose.fallback(found).scheduler == expected

"""The choice is pure: safety from verdicts (never an unsafe scheduler), speed from pilot rows."""

import dataclasses
import math
import statistics
import random
import pytest

from threadprobe.scheduling import choose
from threadprobe.diagnosis.plan import bound
from threadprobe.records import (Choice, GilState, PilotRow, Remedy, RemedyKind, Result, Safety, Scheduler, Speed,
                                 is_unsafe)

MACHINE = choose.Machine(cores=2, memory_gb=24)
WIND = ("iris_netcdf.wind_chunks",)


GLOBAL = Remedy(RemedyKind.GLOBAL_LOCK)


def library(name):
    return Remedy(RemedyKind.LIBRARY_LOCK, (name,))


def r(probe, mode, workers, verdict="safe", remedy=None, gil=GilState.AS_IMPORTED, speedup=None, trials=29):
    """A cell of ``trials`` trials: clean ones bound the failure rate as the diagnosis does."""
    failed = 0 if verdict == "safe" else 3
    return Result(probe=probe, dependency="d", mode=mode, workers=workers,
                  processes=workers if mode == "processes" else 1, threads=workers if mode == "threads" else 1,
                  trials=trials, verdict=verdict, remedy=remedy, gil=gil,
                  safety=Safety({"ok": trials - failed, "crash": failed, "corrupt": 0, "error": 0, "hang": 0},
                                round(bound(trials), 4) if not failed else 1.0),
                  speed=Speed(speedup=speedup))


def verdicts(probe="iris_netcdf.wind_chunks", t2="safe", t4="safe", p2="safe", fork="safe", gil=GilState.AS_IMPORTED):
    out = [r(probe, "serial", 1, gil=gil), r(probe, "threads", 2, t2, gil=gil), r(probe, "threads", 4, t4, gil=gil),
           r(probe, "processes", 2, p2, gil=gil)]
    out += [r(f, "processes", 2, fork, gil=gil) for f in choose.FORK_PROBES]
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
    remedies = [r("iris_netcdf.wind_chunks", "threads", 2, "safe", remedy=GLOBAL)]
    found, _ = choose.candidates(results, WIND, MACHINE, remedies=remedies)
    (locked,) = [c for c in found if c.scheduler == "threads"]
    assert locked.locks == (GLOBAL,) and choose.label(locked) == "threads 2 + lock"


def test_the_narrowest_verified_remedy_is_held_a_library_lock_before_the_global_one():
    results = verdicts(t2="crash", t4="crash", p2="crash")
    remedies = [r("iris_netcdf.wind_chunks", "threads", 4, "safe", remedy=GLOBAL, speedup=1.0),
                r("iris_netcdf.wind_chunks", "threads", 4, "crash", remedy=library("numpy")),
                r("iris_netcdf.wind_chunks", "threads", 4, "safe", remedy=library("cf_units"), speedup=1.6)]
    found, why = choose.candidates(results, WIND, MACHINE, remedies=remedies)
    (locked,) = [c for c in found if c.scheduler == "threads"]
    assert locked.locks == (library("cf_units"),) and choose.label(locked) == "threads 2 + cf_units"
    assert any("a lock around cf_units" in line for line in why)
    # An unverified (failing) library lock is never held.
    found, _ = choose.candidates(results, WIND, MACHINE, remedies=remedies[1:2])
    assert [c.scheduler for c in found] == ["synchronous"]


def test_only_the_cells_of_the_run_s_gil_state_count():
    safe_on, unsafe_off = verdicts(), verdicts(t2="crash", t4="crash", gil=GilState.OFF)
    off = choose.Machine(2, 24, GilState.OFF)
    found, why = choose.candidates(safe_on + unsafe_off, WIND, off)
    assert Scheduler.THREADS not in [c.scheduler for c in found] and any("GIL off UNSAFE" in w for w in why)
    found, _ = choose.candidates(safe_on + unsafe_off, WIND, choose.Machine(2, 24, GilState.AS_IMPORTED))
    assert Scheduler.THREADS in [c.scheduler for c in found]
    # A diagnosis with no threads cell in the run's state is no evidence for threads; its serial
    # and processes cells (one thread per process) hold in either state.
    found, why = choose.candidates(safe_on, WIND, off)
    assert Scheduler.THREADS not in [c.scheduler for c in found] and Scheduler.PROCESSES in [c.scheduler for c in found]
    assert any("threads with the GIL off not diagnosed" in w for w in why)
    # A remedy verified with the GIL as imported does not make threads safe with it off.
    fixed = [r("iris_netcdf.wind_chunks", "threads", 4, "safe", remedy=GLOBAL)]
    found, _ = choose.candidates(unsafe_off, WIND, off, remedies=fixed)
    assert Scheduler.THREADS not in [c.scheduler for c in found]


@pytest.mark.parametrize("seed", range(200))
def test_no_candidate_is_ever_unsafe_without_a_verified_remedy(seed):
    """Random verdicts, remedies and GIL states: every threads candidate is safe as it is in the
    run's state, or holds a remedy verified clean in that state for each probe that is not."""
    rng = random.Random(seed)
    verdict = lambda: rng.choice(["safe", "safe", "crash", "corrupt", "racy", "hang", "unavailable"])  # noqa: E731
    probes = ("a", "b")
    results, remedies = [], []
    for gil in GilState:
        for p in probes:
            results += [r(p, "serial", 1, gil=gil), r(p, "threads", 2, verdict(), gil=gil),
                        r(p, "threads", 4, verdict(), gil=gil), r(p, "processes", 2, verdict(), gil=gil)]
            for fix in (GLOBAL, library("x"), library("y")):
                if rng.random() < 0.4:
                    remedies.append(r(p, "threads", 4, verdict(), remedy=fix, gil=gil))
    state = rng.choice(list(GilState))
    found, _ = choose.candidates(results, probes, choose.Machine(2, 24, state), remedies=remedies)
    for c in found:
        mode = c.row.mode
        if mode is None:
            continue
        for p in probes:
            # Threads cells of the run's own state; serial and processes cells hold in either.
            mine = [x for x in results if x.probe == p and x.mode == mode and (x.gil == state or mode != "threads")]
            assert any(x.verdict != "unavailable" for x in mine)
            if any(is_unsafe(x) for x in mine):
                assert mode == "threads" and c.locks, (c, p)
                verified = {x.remedy for x in remedies if x.verdict == "safe" and x.gil == state and x.probe == p}
                # A global lock serialises every task, so it covers whatever a library lock covered.
                assert set(c.locks) & verified or (GLOBAL in c.locks and verified), (c, p)


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
    ((Choice("w", "synchronous"), Choice("w", "threads", 1, 2, locks=(GLOBAL,))), "synchronous"),
    ((Choice("w", "synchronous"), Choice("w", "processes", 2, 1)), "synchronous"),
])
def test_without_a_pilot_or_any_speed_measured_threads_if_safe_and_lock_free_else_synchronous(found, expected):
    assert choose.without_pilot(found)[0].scheduler == expected
    # A diagnosis with no timing trials (a quick one) measures no speed: the same rule.
    unmeasured = [choose.Estimate(c, None if c.row.mode else 1.0, 0.0) for c in found]
    pick, why = choose.without_pilot(found, unmeasured, serial=15.0)
    assert pick.scheduler == expected and "no speed measured" in why[0]


LOAD = ("iris_pp.load_metadata.many_times",)


def timed(probe=LOAD[0], t2=0.8, t4=0.8, p2=1.8, t_verdict="safe", gil=GilState.AS_IMPORTED, fork="safe"):
    """A planted diagnosis of one probe with speedups on its concurrent cells (None: not timed)."""
    out = [r(probe, "serial", 1, gil=gil), r(probe, "threads", 2, t_verdict, gil=gil, speedup=t2),
           r(probe, "threads", 4, t_verdict, gil=gil, speedup=t4), r(probe, "processes", 2, gil=gil, speedup=p2)]
    return out + [r(f, "processes", 2, fork, gil=gil) for f in choose.FORK_PROBES]


def pick_for(results, serial=15.0, machine=MACHINE, remedies=(), probes=LOAD):
    found, _ = choose.candidates(results, probes, machine, remedies=remedies)
    measured = choose.estimates(found, results, remedies, probes, machine.gil)
    return choose.without_pilot(found, measured, serial), found


def test_without_a_pilot_processes_are_taken_when_the_diagnosis_measured_them_fastest_and_safe():
    """The GIL build's load experiment: threads safe but slower than serial, processes x1.8; the
    old rule took threads (or synchronous), 1.5x slower than processes."""
    (pick, why), found = pick_for(timed())
    assert "threads 2" in labels(found)
    assert choose.label(pick) == "processes 2 (fork)" and "processes 2 (fork) x1.80" in why[0]
    # Processes that spawn pay their start-up: on a 1 s run threads x1.5 win, on a long one processes do.
    slow_start = timed(t2=1.5, t4=1.5, p2=1.9, fork="crash")
    assert choose.label(pick_for(slow_start, serial=1.0)[0][0]) == "threads 2"
    assert choose.label(pick_for(slow_start, serial=200.0)[0][0]) == "processes 2 (spawn)"
    # Threads measured fastest are taken, as before.
    assert choose.label(pick_for(timed(t2=1.9, t4=1.9, p2=1.6))[0][0]) == "threads 2"


def test_a_run_too_short_for_a_process_pool_takes_none_whatever_its_speedup():
    """The netCDF load experiment: about 1 s of serial work, processes measured x1.8 by the probes
    but slower than synchronous on the run (the pool's fixed costs)."""
    (pick, why), _ = pick_for(timed(t2=0.8, t4=0.8, p2=1.8), serial=choose.MIN_PARALLEL / 2)
    assert pick.scheduler == Scheduler.SYNCHRONOUS and "too short for a process pool" in why[0]
    (pick, _), _ = pick_for(timed(t2=1.5, t4=1.5, p2=1.8), serial=choose.MIN_PARALLEL / 2)
    assert choose.label(pick) == "threads 2"  # threads start in microseconds: still a candidate
    (pick, why), _ = pick_for(timed(t2=0.8, t4=0.8, p2=1.8), serial=choose.MIN_PARALLEL * 2)
    assert pick.scheduler == Scheduler.PROCESSES and not any("too short" in line for line in why)


def test_a_cluster_is_never_started_on_a_probe_s_word():
    (pick, _), found = pick_for(timed(p2=1.8))
    assert "distributed 2x1" in labels(found) and pick.scheduler == Scheduler.PROCESSES
    assert all(e.choice.scheduler != Scheduler.DISTRIBUTED for e in choose.estimates(found, timed(), (), LOAD, None))


def test_the_tie_rule_keeps_the_simpler_candidate_unless_another_is_faster_by_the_margin():
    # 1% apart: within the margin, the simpler (threads) stays.
    assert choose.label(pick_for(timed(t2=1.80, t4=1.80, p2=1.82))[0][0]) == "threads 2"
    (pick, why), _ = pick_for(timed(t2=0.99, t4=0.99, p2=1.01), serial=15.0)
    assert pick.scheduler == Scheduler.SYNCHRONOUS and "simpler synchronous" in why[1]
    # 11% apart, as the netCDF wind probe reads processes ahead where the study runs threads ahead: the
    # diagnosis's speedups are a model of the run, and that is within its measured error.
    assert choose.label(pick_for(timed(t2=1.74, t4=1.74, p2=1.93))[0][0]) == "threads 2"
    # 20% apart: beyond it.
    assert choose.label(pick_for(timed(t2=1.60, t4=1.60, p2=1.92))[0][0]) == "processes 2 (fork)"
    # A pilot, timing the run's own input, has the narrower margin of the two.
    assert choose.MARGIN < choose.ESTIMATE_MARGIN


def test_a_candidate_with_no_timed_cell_is_left_out_and_a_probe_s_slowest_speed_counts():
    (pick, _), _ = pick_for(timed(t2=None, t4=None, p2=1.3))
    assert choose.label(pick) == "processes 2 (fork)"
    # Two probes: the run waits for both, so a candidate is as fast as its slower probe.
    two = timed(t2=1.9, t4=1.9, p2=1.9) + timed("other", t2=0.7, t4=0.7, p2=1.5)
    (pick, _), _ = pick_for(two, probes=(LOAD[0], "other"))
    assert choose.label(pick) == "processes 2 (fork)"


def test_threads_under_a_verified_lock_are_ranked_by_the_lock_s_own_speed():
    """3.13t with the GIL off: threads crash as they are, a cf_units lock is verified; the choice
    weighs the lock's measured speedup against processes'."""
    off = choose.Machine(2, 24, GilState.OFF)
    results = timed(t_verdict="crash", t2=None, t4=None, p2=1.6, gil=GilState.OFF)
    lock = [r(LOAD[0], "threads", 4, "safe", remedy=library("cf_units"), gil=GilState.OFF, speedup=1.25)]
    (pick, _), found = pick_for(results, machine=off, remedies=lock)
    assert "threads 2 + cf_units" in labels(found) and choose.label(pick) == "processes 2 (fork)"
    faster = [lock[0].replace(speed=Speed(speedup=1.9))]
    (pick, _), _ = pick_for(results, machine=off, remedies=faster)
    assert choose.label(pick) == "threads 2 + cf_units" and pick.locks == (library("cf_units"),)


def test_speeds_measured_in_another_gil_state_do_not_count():
    """Threads x1.9 with the GIL as imported say nothing of a run with it off, where they crash."""
    off = choose.Machine(2, 24, GilState.OFF)
    results = timed(t2=1.9, t4=1.9, p2=1.3) + timed(t_verdict="crash", t2=3.0, t4=3.0, p2=1.3, gil=GilState.OFF)
    (pick, _), found = pick_for(results, machine=off)
    assert Scheduler.THREADS not in [c.scheduler for c in found] and pick.scheduler == Scheduler.PROCESSES


@pytest.mark.parametrize("seed", range(200))
def test_without_a_pilot_no_pick_is_ever_unsafe_whatever_was_measured(seed):
    """Random verdicts, remedies, GIL states and speedups, unsafe cells and unverified remedies
    included (a failing cell can be the fastest one timed): the pick is always one of the safe
    candidates, holding its locks; an estimate planted for an unsafe scheduler is never taken."""
    rng = random.Random(seed)
    verdict = lambda: rng.choice(["safe", "safe", "crash", "corrupt", "racy", "hang"])  # noqa: E731
    speed = lambda: rng.choice([None, round(rng.uniform(0.3, 3.0), 2)])  # noqa: E731
    probes = ("a", "b")
    results, remedies = [], []
    for gil in GilState:
        for p in probes:
            results += [r(p, "serial", 1, gil=gil), r(p, "threads", 2, verdict(), gil=gil, speedup=speed()),
                        r(p, "threads", 4, verdict(), gil=gil, speedup=speed()),
                        r(p, "processes", 2, verdict(), gil=gil, speedup=speed())]
            for fix in (GLOBAL, library("x")):
                if rng.random() < 0.5:
                    remedies.append(r(p, "threads", 4, verdict(), remedy=fix, gil=gil, speedup=speed()))
    machine = choose.Machine(2, 24, rng.choice(list(GilState)))
    found, _ = choose.candidates(results, probes, machine, remedies=remedies)
    measured = list(choose.estimates(found, results, remedies, probes, machine.gil))
    # Planted: estimates for every scheduler as if it were safe, faster than anything measured.
    measured += [choose.Estimate(Choice("", kind, 2 if kind == "processes" else 1, 2 if kind == "threads" else 1),
                                 10.0, 0.0) for kind in ("threads", "processes")]
    pick, _ = choose.without_pilot(found, measured, serial=rng.choice([None, 1.0, 30.0]))
    assert pick in found


def test_the_choice_reads_no_host_the_purity_contract_says_so(tmp_path):
    from tests.test_layers import lint, planted_copy

    root = planted_copy(tmp_path, "scheduling/choose.py", "import os")
    done = lint(root, root)
    assert done.returncode == 1 and "threadprobe.scheduling.choose is not allowed to import os" in done.stdout


def test_a_tie_is_broken_on_the_spread_the_steadier_or_faster_wins():
    steady, jumpy = row("threads 2", 34.0, 34.5, 34.2), row("processes 2", 31.0, 40.0, 33.5)
    pick, settled, _ = choose.decide([steady, jumpy])
    assert not settled
    best, why = choose.break_tie([steady, jumpy], pick)
    assert best is steady and "broken on the spread" in why[0]
    faster = row("processes 2", 33.0, 33.3, 33.1)
    assert choose.break_tie([steady, faster], choose.decide([steady, faster])[0])[0] is faster


def test_sampling_a_tie_longer_then_breaking_it_costs_less_than_keeping_the_simpler():
    """Two leaders 4% apart under 15% noise per repetition: the pilot's rule alone, after its three
    repetitions, keeps the simpler (slower) one; sampled to the tie's rounds and broken on the
    spread, the pick's expected time is closer to the fastest."""
    from threadprobe.scheduling import pilot

    rng = random.Random(20261206)
    truth = {"threads 2": 39.0, "processes 2": 37.5}
    plain, tied = [], []
    for _ in range(300):
        rows = simulate(list(truth.items()), pilot.TIE_ROUNDS, 0.15, rng)
        short = [row(r.candidate, *r.projected[:pilot.MIN_ROUNDS]) for r in rows]
        plain.append(truth[choose.decide(short)[0].candidate])
        pick, settled, _ = choose.decide(rows)
        tied.append(truth[(pick if settled else choose.break_tie(rows, pick)[0]).candidate])
    best = min(truth.values())
    assert statistics.fmean(tied) / best < statistics.fmean(plain) / best
    assert statistics.fmean(tied) / best < 1.02


def test_a_lock_verified_for_a_probe_but_never_timed_leaves_the_candidate_unmeasured():
    """The probe's plain cells (safe at 2 threads, crashing at 4) say nothing of threads holding the
    lock: the candidate has no estimate, and processes, measured, are taken."""
    results = timed(p2=1.3)
    results = [x.replace(verdict="crash") if x.mode == "threads" and x.workers == 4 else x for x in results]
    lock = [r(LOAD[0], "threads", 4, "safe", remedy=library("cf_units"))]  # verified, no timing trial
    (pick, _), found = pick_for(results, remedies=lock)
    assert "threads 2 + cf_units" in labels(found) and choose.label(pick) == "processes 2 (fork)"
    measured = choose.estimates(found, results, lock, LOAD, None)
    assert [e.speedup for e in measured if e.choice.locks] == [None]
    # Synchronous counts as x1.0 even when no estimate names it.
    only = [e for e in measured if e.choice.scheduler == Scheduler.PROCESSES]
    slower = [dataclasses.replace(e, speedup=0.5) for e in only]
    assert choose.without_pilot(found, slower, serial=15.0)[0].scheduler == Scheduler.SYNCHRONOUS


def test_a_cell_timed_while_a_neighbour_held_the_cpus_is_judged_without_that_queueing():
    """The GIL build's load diagnosis: processes timed once while a neighbour was busy (busy 0.98,
    43% of the runnable time queued) read x1.01; without the queueing they are x1.76 and are taken.
    A cell's own oversubscription is already left out of its queued share; a quiet cell is as read."""
    results = timed(t2=0.76, t4=0.8, p2=1.014, t_verdict="error")
    results = [x.replace(speed=Speed(speedup=1.014, busy_fraction=0.982, queued_fraction=0.432))
               if x.mode == "processes" and x.probe == LOAD[0] else x for x in results]
    (pick, why), _ = pick_for(results, serial=19.0)
    assert choose.label(pick) == "processes 2 (fork)" and "processes 2 (fork) x1.76" in why[0]
    quiet = [x.replace(speed=Speed(speedup=1.014, busy_fraction=0.982, queued_fraction=0.0))
             if x.mode == "processes" and x.probe == LOAD[0] else x for x in results]
    assert pick_for(quiet, serial=19.0)[0][0].scheduler == Scheduler.SYNCHRONOUS
    # Never beyond one per worker, however much was queued.
    capped = [x.replace(speed=Speed(speedup=1.9, busy_fraction=1.0, queued_fraction=0.8))
              if x.mode == "processes" and x.probe == LOAD[0] else x for x in results]
    found, _ = choose.candidates(capped, LOAD, MACHINE)
    assert max(e.speedup for e in choose.estimates(found, capped, (), LOAD, None)) == 2.0


def test_a_cell_clean_in_too_few_trials_is_no_candidate_and_the_rationale_says_why():
    """17 clean trials bound the failure rate at 16%: threads are left out, and the line says it
    is the evidence that is short, not that the probe failed."""
    cells = [r("iris_netcdf.load_realise", "serial", 1), r("iris_netcdf.load_realise", "threads", 2, trials=17),
             r("iris_netcdf.load_realise", "processes", 2)] + [r(f, "processes", 2) for f in choose.FORK_PROBES]
    found, why = choose.candidates(cells, ["iris_netcdf.load_realise"], MACHINE, "load")
    assert Scheduler.THREADS not in {c.scheduler for c in found} and Scheduler.PROCESSES in {c.scheduler for c in found}
    (line,) = [w for w in why if w.startswith("iris_netcdf.load_realise: threads")]
    assert "clean in 17 trials only (95% bound 16%)" in line and "UNSAFE" not in line
    enough = [c if c.mode != "threads" else r("iris_netcdf.load_realise", "threads", 2, trials=29) for c in cells]
    assert Scheduler.THREADS in {c.scheduler for c in choose.candidates(enough, ["iris_netcdf.load_realise"], MACHINE,
                                                                       "load")[0]}

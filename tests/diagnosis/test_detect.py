"""Pure classification: synthetic runs in, outcomes, verdicts, bounds and contention out."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadprobe.diagnosis import detect
from threadprobe.probe import digest
from threadprobe.records import Corruption, GilState, Outcome, Trial, TrialRun, WorkerReport, WorkerRun

scipy_stats = pytest.importorskip("scipy.stats")  # an independent implementation to check against

TRIAL = Trial("p", "r", "threads", 1, 2, 4, index=1, timeout=3)


def worker(report=None, returncode=0, **kw):
    """A worker as the parent sees it, its report parsed as the harness parses the result file."""
    report = WorkerReport.parse(json.dumps(report)) if report is not None else None
    return WorkerRun(worker=0, pid=1, returncode=returncode, report=report, fault=kw.pop("fault", ""),
                     output=kw.pop("output", ""), **kw)


def ok_report(digests, **extra):
    return {"digests": digests, "errors": [], "tasks": len(digests), "t_start": 0.0, "t_end": 1.0, **extra}


ORACLE = detect.Oracle({"0": "a", "1": "b", "2": "c", "3": "d"})


def test_ok_when_every_digest_matches_the_oracle():
    run = TrialRun(TRIAL, (worker(ok_report(dict(ORACLE.digests), cpu=1.5)),), False, 0.5)
    outcome = detect.classify(run, ORACLE)
    assert outcome.kind == "ok" and outcome.tasks == 4 and outcome.seconds == 0.5 and outcome.cpu == 1.5


def test_a_differing_digest_is_corruption_naming_the_index_and_both_digests():
    run = TrialRun(TRIAL, (worker(ok_report({**ORACLE.digests, "2": "X"})),), False, 0.5)
    outcome = detect.classify(run, ORACLE)
    assert outcome.kind == "corrupt" and outcome.seconds is None
    (ev,) = outcome.evidence
    assert (ev.index, ev.expected, ev.actual) == (2, "c", "X") and ev.severity == Corruption.DATA


def test_a_result_that_differs_only_in_an_exception_message_is_message_corruption():
    serial = ("error", ValueError("[UT_SUCCESS] Failed to parse unit"))
    threaded = ("error", ValueError("[UT_UNKNOWN] Failed to parse unit"))
    wrong_type = ("error", TypeError("[UT_SUCCESS] Failed to parse unit"))
    oracle = detect.Oracle({"0": digest(serial), "1": digest(serial)},
                           {"0": digest(serial, messages=False), "1": digest(serial, messages=False)})
    report = ok_report({"0": digest(threaded), "1": digest(wrong_type)},
                       data_digests={"0": digest(threaded, messages=False), "1": digest(wrong_type, messages=False)})
    outcome = detect.classify(TrialRun(TRIAL, (worker(report),), False, 0.5), oracle)
    severities = {ev.index: ev.severity for ev in outcome.evidence}
    assert severities == {0: Corruption.MESSAGE, 1: Corruption.DATA}
    assert detect.summarise("p", "d", [outcome]).safety.corruption == Corruption.DATA
    only_message = detect.classify(TrialRun(TRIAL, (worker(ok_report({"0": digest(threaded), "1": digest(serial)},
                                   data_digests={"0": digest(threaded, messages=False)})),), False, 0.5), oracle)
    assert detect.summarise("p", "d", [only_message]).safety.corruption == Corruption.MESSAGE


def test_a_missing_module_in_open_makes_the_probe_unavailable_not_failing():
    err = {"stage": "open", "error_type": "ModuleNotFoundError", "message": "No module named 'mo_pack'",
           "traceback": "tb", "missing": "mo_pack"}
    outcome = detect.classify(TrialRun(TRIAL, (worker({**ok_report({}), "errors": [err]}),), False, 0.1), None)
    assert outcome.unavailable == "mo_pack"
    task_err = {**err, "stage": "task"}  # a failing import under threads is a finding, not an absence
    assert detect.classify(TrialRun(TRIAL, (worker({**ok_report({}), "errors": [task_err]}),), False, 0.1),
                           None).unavailable is None


def test_death_by_signal_is_a_crash_with_the_faulthandler_text():
    run = TrialRun(TRIAL, (worker(None, returncode=-11, fault="Fatal Python error: Segmentation fault"),), False, None)
    outcome = detect.classify(run, ORACLE)
    assert outcome.kind == "crash"
    assert outcome.evidence[0].signal == "SIGSEGV" and "Segmentation" in outcome.evidence[0].traceback


def test_a_hung_worker_is_a_hang_not_a_crash_although_it_was_killed():
    run = TrialRun(TRIAL, (worker(None, returncode=-9, stacks="Thread 1 (idle)", stack_source="py-spy"),), True, None)
    outcome = detect.classify(run, ORACLE)
    assert outcome.kind == "hang" and outcome.evidence[0].stack_source == "py-spy"


def test_a_task_error_keeps_type_message_and_traceback():
    err = {"stage": "task", "index": 1, "error_type": "OSError", "message": "NetCDF: HDF error", "traceback": "tb"}
    run = TrialRun(TRIAL, (worker({**ok_report({"0": "a"}), "errors": [err]}),), False, 0.1)
    outcome = detect.classify(run, ORACLE)
    assert outcome.kind == "error"
    ev = outcome.evidence[0]
    assert (ev.error_type, ev.message, ev.index, ev.stage) == ("OSError", "NetCDF: HDF error", 1, "task")
    assert "NetCDF: HDF error" in ev.summary


def test_exit_without_report_is_an_error_naming_the_code():
    outcome = detect.classify(TrialRun(TRIAL, (worker(None, returncode=3),), False, None), ORACLE)
    assert outcome.kind == "error" and "code 3" in outcome.evidence[0].summary


def test_the_worst_outcome_of_the_workers_wins():
    a = WorkerRun(0, 1, 0, WorkerReport.parse(json.dumps(ok_report({"0": "a", "1": "WRONG"}))), "", "")
    b = WorkerRun(1, 2, -6, None, "abort", "")
    outcome = detect.classify(TrialRun(TRIAL, (a, b), False, None), ORACLE)
    assert outcome.kind == "crash" and {e.kind for e in outcome.evidence} == {"crash", "corrupt"}


@given(st.integers(1, 500))
def test_zero_failures_bound_is_the_rule_of_three_and_falls_with_every_clean_trial(n):
    bound = detect.failure_upper95(0, n)
    assert detect.failure_upper95(0, n + 1) < bound <= 0.95
    if n >= 30:
        assert 2.5 / n < bound < 3.1 / n  # the rule of three, from below and above


@given(st.integers(1, 60), st.data())
def test_bound_matches_clopper_pearson(n, data):
    x = data.draw(st.integers(0, n))
    expected = 1.0 if x == n else scipy_stats.beta.ppf(0.95, x + 1, n - x)
    assert math.isclose(detect.failure_upper95(x, n), expected, abs_tol=1e-9)


def outcome(kind, purpose="stress", tasks=100, seconds=1.0, mode="threads", workers=2, cpu=None,
            cpu_only=False, wall=0.1):
    t = Trial("p", "r", mode, 1 if mode != "processes" else workers, workers if mode == "threads" else 1, tasks,
              purpose=purpose)
    return Outcome(t, kind, tasks=tasks, seconds=seconds if kind == "ok" else None, cpu=cpu, cpu_only=cpu_only,
                   wall=wall)


def test_summary_counts_outcomes_and_bounds_the_rate():
    result = detect.summarise("p", "d", [outcome("ok"), outcome("crash"), outcome("ok")])
    assert result.verdict == "crash" and result.safety.outcomes["crash"] == 1 and result.trials == 3
    assert result.safety.failure_rate_upper95 == pytest.approx(detect.failure_upper95(1, 3), abs=1e-4)
    clean = detect.summarise("p", "d", [outcome("ok")] * 10)
    assert clean.verdict == "safe" and clean.safety.failure_rate_upper95 == pytest.approx(0.2589, abs=1e-4)


def test_throughput_comes_from_timing_trials_when_there_are_any():
    outs = [outcome("ok", "timing", seconds=1.0), outcome("ok", "timing", seconds=2.0), outcome("ok", "timing", 100, 4.0),
            outcome("ok", "stress", seconds=0.01)]
    assert detect.throughput(outs) == pytest.approx(50.0)


def test_busy_fraction_is_runnable_time_over_work_time():
    # With schedstat, 4 threads runnable all the time are fully busy, whatever the cores.
    assert detect.busy([outcome("ok", "timing", workers=4, seconds=1.0, cpu=4.0)], cores=2) == 1.0
    assert detect.busy([outcome("ok", "timing", workers=2, seconds=1.0, cpu=1.0)], cores=2) == 0.5
    # CPU time only: 4 threads on 2 cores can use 2 CPU-seconds per second at most.
    assert detect.busy([outcome("ok", "timing", workers=4, seconds=1.0, cpu=2.0, cpu_only=True)], cores=2) == 1.0


@pytest.mark.parametrize(
    "states, expected",
    [
        ({"running": 100, "gil": 200}, "gil"),  # GIL-holding work: the others wait on the GIL
        ({"running": 300, "lock": 60}, "library_lock"),  # waits on a lock outside the interpreter
        ({"running": 300, "gil": 40}, "none"),  # a little GIL waiting between calls that release it
        ({"running": 90, "queued": 900, "lock": 10}, "library_lock"),  # a busy neighbour: queued samples left out
        ({"running": 80, "gil": 40, "lock": 60}, "library_lock"),  # Python around a locked library call
        ({"running": 20}, None),  # too few samples to say
    ],
)
def test_contention_from_thread_states(states, expected):
    assert detect.contention(states)[0] == expected


def test_a_busy_neighbour_does_not_turn_free_threads_into_waiting_ones():
    idle = {"running": 400, "gil": 10}
    busy = {"running": 400, "queued": 1200, "gil": 10}  # the same threads, waiting for a CPU most of the time
    assert detect.contention(idle)[0] == detect.contention(busy)[0] == "none"
    assert detect.state_shares(busy) == detect.state_shares(idle)


def test_a_spell_of_gil_waits_in_a_few_windows_does_not_make_free_work_gil_bound():
    calm = [{"running": 40, "gil": 2}] * 6
    spell = [{"running": 2, "gil": 40}] * 3  # a GIL holder preempted: everyone queues behind it
    states = {"running": 6 * 40 + 3 * 2, "gil": 6 * 2 + 3 * 40}
    assert detect.state_shares(states)["gil"] >= detect.GIL_SHARE  # the whole trial would say gil
    assert detect.contention(states, calm + spell)[0] == "none"
    assert detect.contention(states, calm[:1] + spell)[0] == "gil"  # mostly spell: it is the work
    assert detect.contention(states, calm[:2])[0] == "gil"  # too few windows: the whole trial decides


def test_lock_waits_count_from_every_sample_even_in_one_spell():
    windows = [{"running": 40}] * 8 + [{"running": 10, "lock": 30}]
    states = {"running": 8 * 40 + 10, "lock": 30}
    assert detect.contention(states, windows)[0] == "library_lock"


def test_clean_concurrent_calls_give_a_bound_per_operation():
    result = detect.summarise("p", "d", [outcome("ok", tasks=1000)] * 3)
    assert result.safety.operations == 3000 and result.safety.operation_bound == pytest.approx(1 - 0.05 ** (1 / 3000), rel=1e-6)
    failing = detect.summarise("p", "d", [outcome("ok", tasks=1000), outcome("crash", tasks=10)])
    assert failing.safety.operations == 1000 and failing.safety.operation_bound is None


def test_scaling_is_judged_against_the_usable_cores():
    assert detect.scales(1.9, workers=2, cores=2)
    assert not detect.scales(1.2, workers=2, cores=2)
    assert detect.scales(1.0, workers=4, cores=1)


def test_add_scaling_fills_speedup_and_the_probes_contention_class():
    serial = detect.summarise("p", "d", [outcome("ok", "timing", mode="serial", workers=1, seconds=1.0, cpu=1.0)])
    threads = detect.summarise("p", "d", [outcome("ok", "timing", seconds=1.0, cpu=1.0)], cores=2)
    out = {r.mode: r for r in detect.add_scaling([serial, threads], cores=2, states={("p", GilState.AS_IMPORTED): {"running": 100, "gil": 200}})}
    assert out["threads"].speed.speedup == 1.0 and out["threads"].speed.efficiency == 0.5
    assert out["threads"].speed.scaling == "serialized" and out["threads"].contention.kind == "gil"
    assert out["threads"].contention.thread_states == {"gil": 0.667, "running": 0.333}
    assert out["serial"].speed.speedup is None


def test_without_the_gil_the_class_is_none_or_a_library_lock_and_the_interpreters_own_locks_never_count():
    parked = {"running": 300, "interp": 200, "lock": 1}
    assert detect.contention(parked)[0] == "none"
    assert "per-object locks in 40%" in detect.contention(parked)[1][0]
    # Waits on an address inside _PyRuntime cannot be the GIL where the workers said it was off.
    odd = {"running": 100, "gil": 200}
    assert detect.contention(odd, gil_enabled=False)[0] == "none"
    assert detect.contention(odd, gil_enabled=True)[0] == "gil"
    assert detect.contention({"running": 100, "lock": 60, "interp": 60}, gil_enabled=False)[0] == "library_lock"


def test_a_cell_says_which_module_turned_the_gil_back_on_and_a_forced_off_cell_says_so():
    on = detect.summarise("p", "d", [outcome("ok", "timing", seconds=1.0, cpu=1.0)]).replace(
        gil_enabled=True, gil_reenabled_by=("netCDF4._netCDF4",))
    assert detect.gil_lines(on) == ("the GIL was on in the workers: importing netCDF4._netCDF4 turned it back on",)
    off = on.replace(gil=GilState.OFF, gil_enabled=False, gil_reenabled_by=())
    assert detect.gil_lines(off) == ("GIL forced off (PYTHON_GIL=0); in the workers it was off",)
    states = {("p", GilState.OFF): {"running": 100, "gil": 200}}
    (got,) = detect.add_scaling([off], cores=2, states=states)
    assert got.contention.kind == "none" and got.contention.evidence[0].startswith("GIL forced off")


def test_where_an_import_turned_the_gil_back_on_a_gil_bound_cell_is_gil_beside_a_library_locks_waits():
    both = {"running": 100, "gil": 80, "lock": 20}
    assert detect.contention(both, gil_enabled=True)[0] == "library_lock"  # a GIL build: the lock decides
    assert detect.contention(both, gil_enabled=True, reenabled=True)[0] == "gil"
    assert detect.contention({"running": 100, "lock": 20}, gil_enabled=True, reenabled=True)[0] == "library_lock"


def test_the_lock_share_is_of_the_threads_measured_time_when_it_was_measured():
    # A mutex's woken waiters queue for a CPU and are sampled "running": the samples under-read
    # the lock (3%), while the time measured says the threads were blocked on it most of the time.
    samples = {"running": 300, "queued": 100, "lock": 10}
    assert detect.contention(samples)[0] == "none"
    times = {"running": 0.10, "queued": 0.75, "lock": 0.15}
    cls, lines = detect.contention(samples, times=times)
    assert cls == "library_lock" and "another lock in 60%" in lines[0] and "of 0.25 s of thread time" in lines[0]
    # Free work beside a busy neighbour: queued for long, blocked on nothing.
    assert detect.contention({"running": 400}, times={"running": 0.2, "queued": 0.8, "other": 0.01})[0] == "none"
    # Too little time measured: the samples decide.
    assert detect.contention(samples, times={"running": 0.01, "lock": 0.02})[0] == "none"
    # The GIL share still comes from the samples (their windows): times never make a cell GIL-bound.
    assert detect.contention({"running": 300, "gil": 20}, times={"running": 0.1, "gil": 0.4})[0] == "none"

"""The planner is a pure policy: fed fake histories, it must ask for the right next trial.

No process runs here (as pytest-xdist tests its schedulers against a fake node): a simulated
diagnosis feeds the planner outcomes drawn from known failure rates and costs.
"""

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadprobe.diagnosis import plan
from threadprobe.records import GilState, Kind, Mode, Purpose

T2, T4, P2 = plan.Cell(Mode.THREADS, 1, 2), plan.Cell(Mode.THREADS, 1, 4), plan.Cell(Mode.PROCESSES, 2, 1)
CELLS = (plan.SERIAL, T2, T4, P2)
ORACLE = plan.Seen(Purpose.ORACLE, Kind.OK, wall=0.4, seconds=0.3)


def probe(name="p", history=None):
    full = {plan.SERIAL: (ORACLE,)}
    full.update(history or {})
    return plan.ProbeState(name, CELLS, full)


def seen(kind=Kind.OK, purpose=Purpose.STRESS, wall=0.1):
    return plan.Seen(purpose, kind, wall=wall, seconds=0.1 if kind == Kind.OK else None)


def test_the_oracle_comes_first():
    request = plan.next_trial(plan.Plan((plan.ProbeState("p", CELLS),)))
    assert (request.cell, request.purpose) == (plan.SERIAL, Purpose.ORACLE)


def test_timing_trials_go_round_the_modes_and_the_widest_threads_one_samples_thread_states():
    state, asked = probe(), []
    policy = plan.Policy(timing_trials=2)
    for _ in range(7):
        request = plan.next_trial(plan.Plan((state,), policy))
        asked.append((request.cell.label, request.purpose, request.states))
        history = dict(state.seen)
        history[request.cell] = history.get(request.cell, ()) + (seen(purpose=request.purpose),)
        state = plan.ProbeState("p", CELLS, history)
    assert asked[:3] == [("threads 2", Purpose.TIMING, False), ("threads 4", Purpose.TIMING, True),
                         ("processes 2", Purpose.TIMING, False)]
    # The oracle (one pass of 0.3 s, so one round) stood in for serial's first timing trial.
    assert asked[3:7] == [("serial", Purpose.TIMING, False), ("threads 2", Purpose.TIMING, False),
                          ("threads 4", Purpose.TIMING, True), ("processes 2", Purpose.TIMING, False)]


def test_a_probe_with_a_timing_input_times_serial_work_on_it_first_and_sizes_its_timing_trials_on_that():
    policy = plan.Policy(timing_trials=1)
    state, asked = plan.ProbeState("p", CELLS, {plan.SERIAL: (ORACLE,)}, timing_input=True), []
    for _ in range(4):
        request = plan.next_trial(plan.Plan((state,), policy))
        asked.append((request.cell.label, request.purpose, request.rounds))
        history = dict(state.seen)
        # The timing input: a serial pass takes 2 s where the oracle's took 0.3 s.
        done = plan.Seen(request.purpose, Kind.OK, wall=2.2, seconds=2.0) if request.cell == plan.SERIAL else \
            seen(purpose=request.purpose)
        history[request.cell] = history.get(request.cell, ()) + (done,)
        state = plan.ProbeState("p", CELLS, history, timing_input=True)
    # The oracle (0.3 s, one round) does not stand for it: serial is timed on the timing input,
    # first, and the concurrent timing trials are sized on that pass (one round of 2 s).
    assert asked == [("serial", Purpose.TIMING, 1), ("threads 2", Purpose.TIMING, 1),
                     ("threads 4", Purpose.TIMING, 1), ("processes 2", Purpose.TIMING, 1)]
    assert state.timing_base.seconds == 2.0 and state.oracle == ORACLE


def test_a_probe_whose_serial_timing_trial_failed_gets_no_concurrent_timing_trial():
    failed = plan.Seen(Purpose.TIMING, Kind.ERROR, wall=1.0)
    state = plan.ProbeState("p", CELLS, {plan.SERIAL: (ORACLE, failed)}, timing_input=True)
    request = plan.next_trial(plan.Plan((state,), plan.Policy(timing_trials=1)))
    assert state.timing_base is None and request.purpose != Purpose.TIMING  # no speedup against another input


def cells(probe_name, wall, threads_trials, kind=Kind.OK):
    """A probe past its minimum rounds: ``threads_trials`` stress trials in each threads cell (the
    last of threads 2 of ``kind``), 5 in processes 2, each taking ``wall`` seconds."""
    runs = {T2: (seen(wall=wall),) * (threads_trials - 1) + (seen(kind, wall=wall),), T4: (seen(wall=wall),)
            * threads_trials, P2: (seen(wall=wall),) * 5}
    return probe(probe_name, runs)


def test_the_threads_cells_a_choice_relies_on_are_topped_up_first_to_the_bar_then_the_usual_rule():
    cheap = cells("cheap", 0.01, 5)  # a library probe: trials cost 10 ms
    policy = plan.Policy(timing_trials=0, rely=frozenset({"relied"}))
    # Without the workload's probes named, the cheap probe's cells buy the most per second.
    assert plan.next_trial(plan.Plan((cheap, cells("relied", 0.5, 5)), plan.Policy(timing_trials=0))).probe == "cheap"
    # Named, the relied-on probe's threads cells come first, dear as they are...
    first = plan.next_trial(plan.Plan((cheap, cells("relied", 0.5, 5)), policy))
    assert (first.probe, first.cell.mode) == ("relied", Mode.THREADS)
    # ...until both reach the bar a choice relies on (29 clean trials: a bound under 10%).
    assert plan.bound(28) > plan.RELY_BOUND >= plan.bound(29)
    assert plan.next_trial(plan.Plan((cheap, cells("relied", 0.5, 28)), policy)).probe == "relied"
    assert plan.next_trial(plan.Plan((cheap, cells("relied", 0.5, 29)), policy)).probe == "cheap"
    # A relied-on cell that failed is not topped up: it is unsafe whatever more trials say.
    failed = cells("relied", 0.5, 5, Kind.CRASH)
    failed = plan.ProbeState("relied", CELLS, {**failed.seen, T4: (seen(wall=0.5),) * 29})
    assert plan.next_trial(plan.Plan((cheap, failed), policy)).probe == "cheap"
    # Nor beyond the budget.
    assert plan.next_trial(plan.Plan((cells("relied", 1.0, 5),), policy, elapsed=9.8, budget=10.0)) is None


def test_the_top_up_is_paid_from_its_own_allowance_so_the_other_probes_keep_their_budget():
    cheap, short, done = cells("cheap", 0.01, 5), cells("relied", 1.0, 5), cells("relied", 1.0, 29)
    policy = plan.Policy(timing_trials=0, rely=frozenset({"relied"}), rely_budget=60.0)
    # At the budget's end, a relied-on cell short of the bar still gets trials, from the allowance...
    assert plan.next_trial(plan.Plan((cheap, short), policy, elapsed=100.0, budget=100.0)).probe == "relied"
    # ...and the others get back what the relied-on probe's trials took (58 s in its threads cells, 5 s
    # in processes 2, the oracle's 0.4 s).
    assert plan.topping(plan.Plan((cheap, done), policy)) == pytest.approx(63.4)
    assert plan.next_trial(plan.Plan((cheap, done), policy, elapsed=150.0, budget=100.0)).probe == "cheap"
    assert plan.next_trial(plan.Plan((cheap, done), policy, elapsed=160.0, budget=100.0)) is None
    # Without an allowance, the top-up comes out of the budget.
    none = dataclasses.replace(policy, rely_budget=0.0)
    assert plan.next_trial(plan.Plan((cheap, short), none, elapsed=100.0, budget=100.0)) is None


def test_the_probes_a_choice_relies_on_get_three_timing_trials_a_cell_and_none_when_timing_is_off():
    def timings(state, policy):
        asked = []
        while (request := plan.next_trial(plan.Plan((state,), policy))) is not None \
                and request.purpose == Purpose.TIMING:
            asked.append(request.cell)
            history = dict(state.seen)
            history[request.cell] = history.get(request.cell, ()) + (seen(purpose=Purpose.TIMING),)
            state = plan.ProbeState(state.name, CELLS, history)
        return asked

    relied = plan.Policy(timing_trials=1, rely=frozenset({"p"}))
    assert len(timings(probe(), plan.Policy(timing_trials=1))) == 3  # serial's is the oracle
    assert len(timings(probe(), relied)) == 3 * 4 - 1
    assert timings(probe(), plan.Policy(timing_trials=0, rely=frozenset({"p"}))) == []  # a run's quick diagnosis


def test_narrow_threads_modes_get_a_contention_trial_of_their_own_at_4_threads():
    state = plan.ProbeState("p", (plan.SERIAL, T2), {plan.SERIAL: (ORACLE,), T2: (seen(purpose=Purpose.TIMING),)})
    request = plan.next_trial(plan.Plan((state,)))
    assert (request.cell, request.purpose, request.states) == (T4, Purpose.CONTENTION, True)


def test_quick_mode_samples_thread_states_in_a_contention_trial_of_its_widest_threads_mode():
    quick = plan.Policy(quick=True, timing_trials=0)
    cells = (plan.SERIAL, T4, P2)  # quick diagnoses the widest modes only
    state = plan.ProbeState("p", cells, {plan.SERIAL: (ORACLE,)})
    request = plan.next_trial(plan.Plan((state,), quick))
    assert (request.cell, request.purpose, request.states) == (T4, Purpose.CONTENTION, True)
    sampled = plan.ProbeState("p", cells, {plan.SERIAL: (ORACLE,), T4: (seen(purpose=Purpose.CONTENTION),)})
    after = plan.next_trial(plan.Plan((sampled,), quick))
    assert after.purpose == Purpose.STRESS and not after.states  # once per probe
    assert plan.verdict_trials(sampled.history(T4))  # and it counts towards the verdict


def test_a_cell_that_crashed_gets_no_timing_trial_and_no_more_trials():
    state = probe(history={T2: (seen(Kind.CRASH, Purpose.TIMING),)})
    request = plan.next_trial(plan.Plan((state,)))
    assert request.cell != T2
    assert plan.stopped(state.history(T2), T2, plan.Policy())


def test_a_failure_that_is_not_a_crash_is_settled_with_more_trials_first():
    # threads 2 failed once (corrupt): it outranks every clean cell until it has failed 3 times.
    history = {T2: (seen(), seen(Kind.CORRUPT)), T4: (seen(),), P2: (seen(),)}
    state = probe(history=history)
    request = plan.next_trial(plan.Plan((state,), plan.Policy(timing_trials=0)))
    assert request.cell == T2 and request.purpose == Purpose.STRESS
    settled = probe(history={**history, T2: (seen(Kind.CORRUPT),) * 3})
    assert plan.stopped(settled.history(T2), T2, plan.Policy())


def test_cheap_cells_whose_bound_is_weakest_come_first():
    cheap = probe("cheap", {T2: (seen(wall=0.05),) * 3, T4: (seen(wall=0.05),) * 30, P2: (seen(wall=0.05),) * 30})
    dear = probe("dear", {T2: (seen(wall=1.0),) * 3, T4: (seen(wall=1.0),) * 30, P2: (seen(wall=1.0),) * 30})
    request = plan.next_trial(plan.Plan((dear, cheap), plan.Policy(timing_trials=0)))
    assert (request.probe, request.cell) == ("cheap", T2)


def test_nothing_more_once_the_budget_is_spent_but_the_minimum_rounds_always_run():
    spent = plan.Plan((probe(history={T2: (seen(),), T4: (seen(),), P2: (seen(),)}),), plan.Policy(timing_trials=0),
                      elapsed=10.0, budget=5.0)
    assert plan.next_trial(spent) is None
    fresh = plan.Plan((plan.ProbeState("q", CELLS),), elapsed=10.0, budget=5.0)
    assert plan.next_trial(fresh).purpose == Purpose.ORACLE


def test_a_probe_whose_oracle_failed_gets_one_trial_per_mode_and_no_more():
    broken = plan.Seen(Purpose.ORACLE, Kind.ERROR, wall=0.1)
    state = plan.ProbeState("p", CELLS, {plan.SERIAL: (broken,)})
    asked = []
    for _ in range(5):
        request = plan.next_trial(plan.Plan((state,)))
        if request is None:
            break
        asked.append(request.cell)
        history = dict(state.seen)
        history[request.cell] = (seen(Kind.ERROR),)
        state = plan.ProbeState("p", CELLS, history)
    assert asked == [T2, T4, P2]


def test_quick_mode_stops_a_cell_at_its_first_failure_and_a_clean_one_at_29_trials():
    policy = plan.Policy(quick=True, timing_trials=0)
    assert plan.stopped((seen(Kind.CORRUPT),), T4, policy)
    assert not plan.stopped((seen(),) * 28, T4, policy)
    assert plan.stopped((seen(),) * 29, T4, policy)


@given(st.integers(1, 400))
def test_the_bound_and_the_trials_for_a_target_agree(n):
    assert plan.bound(plan.trials_for(plan.bound(n))) <= plan.bound(n) + 1e-12


# --------------------------------------------------------------------------------------------
# Simulated diagnoses: known rates and costs in, how often a rare defect is found out


def simulate(rates: dict[str, tuple[float, float]], budget: float, seed: int) -> dict[str, dict]:
    """One diagnosis of probes with per-trial failure rate and cost per concurrent cell."""
    rng = random.Random(seed)
    states = {name: plan.ProbeState(name, CELLS, {plan.SERIAL: (ORACLE,)}) for name in rates}
    elapsed = 0.0
    policy = plan.Policy()
    while True:
        request = plan.next_trial(plan.Plan(tuple(states.values()), policy, elapsed, budget))
        if request is None:
            return {name: dict(s.seen) for name, s in states.items()}
        rate, cost = rates[request.probe]
        failing = request.cell.mode == Mode.THREADS and rng.random() < rate
        kind = Kind.CORRUPT if failing else Kind.OK
        elapsed += cost
        state = states[request.probe]
        history = dict(state.seen)
        history[request.cell] = history.get(request.cell, ()) + (seen(kind, request.purpose, cost),)
        states[request.probe] = plan.ProbeState(request.probe, CELLS, history)


def test_a_simulated_rare_defect_in_a_cheap_probe_is_found_among_many_dear_safe_ones():
    # 20 safe probes whose trials cost 0.3 s, 10 at 0.1 s, and one at 0.1 s failing 20% of its
    # threads trials: after the minimum rounds (~30 s) the adaptive phase must find it.
    rates = {f"dear{k}": (0.0, 0.3) for k in range(20)} | {f"cheap{k}": (0.0, 0.1) for k in range(10)}
    rates["rare"] = (0.2, 0.1)
    runs = [simulate(rates, budget=80.0, seed=k) for k in range(10)]
    found = sum(any(s.kind != Kind.OK for cell in (T2, T4) for s in run["rare"].get(cell, ())) for run in runs)
    trials = [len(run["rare"].get(T2, ())) for run in runs]
    assert found >= 9, (found, trials)


def test_the_plan_spends_more_trials_where_they_are_cheap():
    run = simulate({"cheap": (0.0, 0.05), "dear": (0.0, 1.0)}, budget=30.0, seed=1)
    assert len(run["cheap"][T2]) > 2 * len(run["dear"][T2])


def test_a_defect_that_always_fails_costs_one_or_three_trials_not_the_budget():
    run = simulate({"broken": (1.0, 0.1), "fine": (0.0, 0.1)}, budget=20.0, seed=2)
    assert len(run["broken"][T2]) <= 3 < len(run["fine"][T2])
    with pytest.raises(KeyError):
        run["broken"][plan.Cell(Mode.THREADS, 1, 8)]


# --------------------------------------------------------------------------------------------
# The GIL state as a dimension of the matrix (free-threaded builds)

BOTH = (GilState.AS_IMPORTED, GilState.OFF)


def test_both_gil_states_are_threads_cells_of_one_grid_with_one_serial_oracle():
    cells = plan.grid((2, 4), (2,), BOTH)
    assert [c.label for c in cells] == ["serial", "threads 2", "threads 2, GIL off", "threads 4",
                                        "threads 4, GIL off", "processes 2"]
    assert sum(c.mode == Mode.SERIAL for c in cells) == 1
    assert {c.gil for c in cells if c.mode != Mode.THREADS} == {GilState.AS_IMPORTED}


def test_the_gil_forced_off_alone_runs_every_cell_off():
    cells = plan.grid((2,), (2,), (GilState.OFF,))
    assert {c.gil for c in cells} == {GilState.OFF}
    state = plan.ProbeState("p", cells)
    request = plan.next_trial(plan.Plan((state,)))
    assert (request.cell, request.purpose) == (cells[0], Purpose.ORACLE) and request.cell.gil == GilState.OFF


def test_each_gil_state_samples_its_own_thread_states_and_times_its_own_cells():
    cells = plan.grid((2, 4), (2,), BOTH)
    state, asked = plan.ProbeState("p", cells, {cells[0]: (ORACLE,)}), []
    for _ in range(5):
        request = plan.next_trial(plan.Plan((state,), plan.Policy(timing_trials=1)))
        asked.append((request.cell.label, request.purpose, request.states))
        history = dict(state.seen)
        history[request.cell] = history.get(request.cell, ()) + (seen(purpose=request.purpose),)
        state = plan.ProbeState("p", cells, history)
    assert asked == [("threads 2", Purpose.TIMING, False), ("threads 2, GIL off", Purpose.TIMING, False),
                     ("threads 4", Purpose.TIMING, True), ("threads 4, GIL off", Purpose.TIMING, True),
                     ("processes 2", Purpose.TIMING, False)]
    assert plan.contention_cells(state, plan.Policy()) == (cells[3], cells[4])

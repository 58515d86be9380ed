"""A diagnosis's options by concern: each default is written once (the planner's are the policy's),
quick mode narrows the grid and the policy, and the command line leaves what it was not given to
the records."""

from __future__ import annotations

from pathlib import Path

from threadprobe.cli import build_parser, options_of
from threadprobe.diagnosis import plan
from threadprobe.diagnosis.options import EvidenceOptions, Grid, Launch, Options, Planner, RaceOptions
from threadprobe.harness import gil
from threadprobe.records import GilState, Mode, RaceSchedule, RaceTool, RemedySearch


def test_the_planners_defaults_are_the_policys():
    policy = Planner().policy(quick=False)
    default = plan.Policy()
    for knob in ("target", "stress_target", "jitter", "timing_trials", "quick_trials"):
        assert getattr(policy, knob) == getattr(default, knob), knob
    asked = Planner(target=0.1, stress_target=0.2, jitter=0.0, trials=3).policy(quick=False)
    assert (asked.target, asked.stress_target, asked.jitter, asked.min_stress) == (0.1, 0.2, 0.0, 3)


def test_quick_keeps_the_widest_cells_and_stops_at_the_first_failure():
    options = Options(grid=Grid(threads=(2, 4, 8), processes=(2, 3), quick=True))
    assert {(c.mode, c.workers) for c in options.cells()} == {(Mode.SERIAL, 1), (Mode.THREADS, 8), (Mode.PROCESSES, 3)}
    policy = options.policy()
    assert policy.quick and policy.timing_trials == 0 and policy.min_stress == 1


def test_the_race_pass_runs_with_the_gil_off_when_the_grid_has_it():
    both = Options(grid=Grid(gil=(GilState.AS_IMPORTED, GilState.OFF)))
    assert both.gil == (GilState.AS_IMPORTED, GilState.OFF) and both.race_state == GilState.OFF
    assert both.child_env() == dict(gil.FORCED_OFF) and Options().child_env() == {}


def test_a_flag_not_given_leaves_the_records_default(tmp_path: Path):
    args = build_parser().parse_args(["diagnose"])
    options = options_of(args, tmp_path)
    assert options.grid == Grid() and options.launch == Launch() and options.evidence == EvidenceOptions()
    assert options.planner.target == Planner.target and options.planner.stress
    assert (options.planner.trials, options.planner.timing_trials) == (Planner.trials, Planner.timing_trials)
    assert options.races is None and options.output.out == str(tmp_path)


def test_a_diagnosis_relies_on_every_workloads_probes_and_the_policy_gets_them(tmp_path: Path):
    from threadprobe.scheduling.workloads import WORKLOADS

    options = options_of(build_parser().parse_args(["diagnose"]), tmp_path)
    relied = {p for w in WORKLOADS.values() for p in w.probes_for()}
    assert options.planner.rely == relied and options.policy().rely == relied
    assert "iris_pp.wind_chunks" in relied and "netcdf4.read_shared_dataset.zlib" not in relied
    # Their top-up has an allowance beyond the budget, except in a quick diagnosis.
    from threadprobe.cli import RELY_BUDGET

    assert options.policy().rely_budget == RELY_BUDGET > 0
    assert options_of(build_parser().parse_args(["diagnose", "--quick"]), tmp_path).policy().rely_budget == 0


def test_the_flags_given_reach_their_records(tmp_path: Path):
    args = build_parser().parse_args(["diagnose", "--threads", "3", "--target", "0.1", "--timeout", "4", "--remedies",
                                      "all", "--races", "drd", "--race-seconds", "3", "--race-schedule", "natural"])
    options = options_of(args, tmp_path)
    assert options.grid.threads == (3,) and options.grid.processes == Grid.processes
    assert options.planner.target == 0.1 and options.launch.timeout == 4.0
    assert options.evidence == EvidenceOptions(remedies=RemedySearch.ALL)
    assert options.races == RaceOptions(RaceTool.DRD, seconds=3.0, schedule=RaceSchedule.NATURAL)


def test_the_help_gives_the_records_defaults():
    text = build_parser()._subparsers._group_actions[0].choices["diagnose"].format_help()  # type: ignore[union-attr]
    for default in (f"default {Planner.target:g}", f"default {Launch.timeout:g}", f"default {RaceOptions.seconds:g}",
                    f"default {','.join(map(str, Grid.threads))}"):
        assert default in " ".join(text.split()), default

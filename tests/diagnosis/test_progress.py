"""Progress: one protocol, whose updates say what their counts refer to; plain lines in a log (at
most one every few seconds, and one whenever the subject changes), rich on a terminal; a phase
ends when its work ends, also when it fails; and the lines of a real diagnosis agree with its JSON."""

from __future__ import annotations

import io
import re

import pytest

from tests.conftest import PLANTED
from threadprobe.diagnosis.diagnose import diagnose
from threadprobe.diagnosis.options import Grid, Launch, Options, Output, Planner, Selection
from threadprobe.diagnosis.progress import (Count, LineProgress, NullProgress, RichProgress, Update, make_progress,
                                            phase)
from threadprobe.harness import fingerprint


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_update_names_what_each_count_refers_to():
    update = Update("cf_units.parse", "threads 4", own=Count(3, failed=1), run=Count(17, failed=2))
    assert update.text() == "cf_units.parse threads 4; 3 trials, 1 failed in this cell; 17 trials, 2 failed in the run"
    assert Update("cf_units.parse", "prepare", run=Count(14, failed=0)).text() == (
        "cf_units.parse prepare; 14 trials, 0 failed in the run")  # no cell count: none of its trials ran yet
    assert Update("x_wind_003.nc", "written", run=Count(7, "files", 16)).text() == "x_wind_003.nc written; 7/16 files in the run"


def test_a_log_gets_one_line_per_subject_and_no_more_within_the_interval():
    out = io.StringIO()
    progress = LineProgress(out, every=3600)
    progress.begin("trials", 100)
    for done in range(5):
        progress.update(Update("cf_units.parse", "threads 2", own=Count(done, failed=0), run=Count(done, failed=0)))
    progress.update(Update("h5py.read_shared_file.gzip", "serial", own=Count(1, failed=1), run=Count(6, failed=1)))
    progress.note("races: planted.race: 1 race pair(s)")
    progress.end()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[threadprobe] trials: cf_units.parse threads 2; 0 trials, 0 failed in this cell")
    assert "of the budget left" in lines[0]
    assert "h5py.read_shared_file.gzip serial; 1 trials, 1 failed in this cell; 6 trials, 1 failed in the run" in lines[1]
    assert lines[2] == "[threadprobe] races: planted.race: 1 race pair(s)" and "trials done in" in lines[3]


def test_a_phase_ends_when_its_work_fails():
    out = Terminal()
    progress = RichProgress(out)
    with pytest.raises(ZeroDivisionError), phase(progress, "wind"):
        progress.update(Update("compute", run=Count(1, "tasks", 4)))
        1 / 0
    assert progress._bar is None  # the live display is down: the traceback is not drawn over
    assert "wind" in out.getvalue() and "1/4 tasks" in out.getvalue()


def test_the_kind_follows_the_stream():
    assert isinstance(make_progress(stream=io.StringIO()), LineProgress)
    assert isinstance(make_progress(stream=Terminal()), RichProgress)
    assert isinstance(make_progress(quiet=True, stream=Terminal()), NullProgress)


LINE = re.compile(r"\[threadprobe\] trials: (\S+) (.+?); (\d+) trials, (\d+) failed in this cell; "
                  r"(\d+) trials, (\d+) failed in the run")


def test_the_lines_of_a_two_probe_diagnosis_agree_with_its_report(planted, tmp_path):
    """Every count a line shows is the cell's own (or the run's), as the JSON has them: the last
    line of each cell says its trials and failures, and the run's count is their sum so far."""
    out = io.StringIO()
    diagnosis = diagnose(Options(selection=Selection(probes=("planted.race", "planted.safe"), plugins=(str(PLANTED),),
                                                     entry_points=False),
                                 grid=Grid(threads=(2,), processes=()),
                                 planner=Planner(trials=3, timing_trials=0, budget=3.0),
                                 launch=Launch(timeout=2.0),
                                 output=Output(workdir=str(tmp_path / "w")),
                                 evidence=None),
                         progress=LineProgress(out, every=0.0), fingerprint=fingerprint.light)
    seen = [LINE.match(line) for line in out.getvalue().splitlines()]
    counts = [(m[1], m[2], *map(int, m.groups()[2:])) for m in seen if m]
    assert counts, out.getvalue()
    last = {(probe, cell): (trials, failed) for probe, cell, trials, failed, _, _ in counts}
    results = {(r.probe, r.label): (r.trials, r.failed_trials) for r in diagnosis.results}
    assert last == results and {p for p, _ in last} == {"planted.race", "planted.safe"}
    assert any(failed for _, failed in results.values())  # the race failed somewhere: failures are counted
    run_trials = [run for *_, run, _ in counts]
    assert run_trials == sorted(run_trials) and run_trials[-1] == sum(t for t, _ in results.values())
    assert [f for *_, f in counts][-1] == sum(f for _, f in results.values())
    for probe, cell, trials, failed, run, run_failed in counts:
        assert trials <= results[probe, cell][0] and failed <= trials and trials <= run and run_failed <= run

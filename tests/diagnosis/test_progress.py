"""Progress: a plain line at most every few seconds in a log, and when the probe changes."""

from __future__ import annotations

import io

from threadprobe.diagnosis.progress import LineProgress, NullProgress, RichProgress, make_progress


def test_a_log_gets_one_line_per_probe_and_no_more_within_the_interval():
    out = io.StringIO()
    progress = LineProgress(out, every=3600)
    progress.begin(100)
    for done in range(5):
        progress.update("cf_units.parse", "threads 2", done, 0)
    progress.update("h5py.read_shared_file.gzip", "serial", 5, 1)
    progress.note("races: planted.race: 1 race pair(s)")
    progress.end()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("[threadprobe] cf_units.parse threads 2: 0 trials, 0 failed")
    assert "of the budget left" in lines[0] and "h5py.read_shared_file.gzip serial: 5 trials, 1 failed" in lines[1]
    assert lines[2] == "[threadprobe] races: planted.race: 1 race pair(s)" and "trials done in" in lines[3]


def test_the_kind_follows_the_stream():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(make_progress(stream=io.StringIO()), LineProgress)
    assert isinstance(make_progress(stream=Terminal()), RichProgress)
    assert isinstance(make_progress(quiet=True, stream=Terminal()), NullProgress)

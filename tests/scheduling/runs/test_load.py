"""The loading experiment: many files, metadata only, merged into one CubeList."""

from threadprobe.records import Choice
from threadprobe.scheduling.runs import load
from threadprobe.scheduling.schedulers import activated


def test_files_load_lazily_and_merge_along_time(wind_pp):
    for choice in (Choice("load", "synchronous"), Choice("load", "processes", 2, 1, context="fork")):
        got = load.run(str(wind_pp / "*.pp"), lambda job, stack, c=choice: (c, stack.enter_context(activated(c)), None))
        assert got.files == 6 and got.cubes == 2, got.summary
        assert "data still lazy" in got.summary
        assert any(line.startswith("x_wind") for line in got.summary)

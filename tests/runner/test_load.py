"""The loading experiment: many files, metadata only, merged into one CubeList."""

from toolkit.runner import load
from toolkit.runner.schedulers import Choice


def test_files_load_lazily_and_merge_along_time(wind_pp):
    for choice in (Choice("synchronous"), Choice("processes", 2, 1)):
        got = load.run(str(wind_pp / "*.pp"), choice, quiet=True)
        assert got.files == 6 and got.cubes == 2, got.summary
        assert "data still lazy" in got.summary
        assert any(line.startswith("x_wind") for line in got.summary)

"""The loading experiment: many files, metadata only, merged into one CubeList."""

import pytest

from threadprobe.records import Choice, Remedy, RemedyKind
from threadprobe.scheduling.runs import load
from threadprobe.scheduling.schedulers import activated


def test_files_load_lazily_and_merge_along_time(wind_pp):
    for choice in (Choice("load", "synchronous"), Choice("load", "processes", 2, 1, context="fork")):
        got = load.run(str(wind_pp / "*.pp"), lambda job, stack, c=choice: (c, stack.enter_context(activated(c)), None))
        assert got.files == 6 and got.cubes == 2, got.summary
        assert "data still lazy" in got.summary
        assert any(line.startswith("x_wind") for line in got.summary)


@pytest.mark.timeout(120)
def test_threads_holding_a_global_lock_or_a_library_lock_load_the_same_cubes(wind_pp):
    """The pool holds the global lock around every task: the job must not take it again (it waited
    for itself); a lock around cf_units leaves the same answer."""
    expected = load.run(str(wind_pp / "*.pp"), lambda job, stack, c=Choice("load", "synchronous"): (
        c, stack.enter_context(activated(c)), None)).summary
    held = (Remedy(RemedyKind.GLOBAL_LOCK),), (Remedy(RemedyKind.LIBRARY_LOCK, ("cf_units",)),)
    for locks in held:
        choice = Choice("load", "threads", 1, 2, locks=locks)
        got = load.run(str(wind_pp / "*.pp"), lambda job, stack, c=choice: (c, stack.enter_context(activated(c)), None))
        assert got.summary == expected

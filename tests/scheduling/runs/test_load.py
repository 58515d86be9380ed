"""The loading experiment: many files, metadata only, merged into one CubeList."""

import pickle
import threading

import pytest

from threadprobe.records import Choice, Remedy, RemedyKind
from threadprobe.records.errors import UsageError
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


def test_a_file_that_fails_only_under_a_scheduler_is_blamed_on_the_scheduler(wind_pp, monkeypatch):
    """A planted race: the threads' load of one good file raises, as Iris's netCDF loader did under
    a cf-units lock on 3.13t with the GIL off. The file reads fine alone, so the scheduler is named."""
    real, victim = load.load_one, sorted(wind_pp.glob("*.pp"))[1]

    def racy(path):
        if path == str(victim) and threading.current_thread() is not threading.main_thread():
            raise load.UnreadableFile(path, "KeyError: '<EncodedNetCDFDataProxy>'")
        return real(path)

    monkeypatch.setattr(load, "load_one", racy)
    choice = Choice("load", "threads", 1, 2, locks=(Remedy(RemedyKind.LIBRARY_LOCK, ("cf_units",)),))
    with pytest.raises(UsageError) as caught:
        load.run(str(wind_pp / "*.pp"), lambda job, stack: (choice, stack.enter_context(activated(choice)), None))
    text = str(caught.value)
    assert not isinstance(caught.value, load.UnreadableFile) and str(victim) in text and "reads fine alone" in text
    assert choice.describe() in text and "KeyError" in text


def test_a_file_that_fails_alone_too_is_the_input_s_fault(tmp_path):
    (tmp_path / "a.pp").write_bytes(b"not a PP file, but not empty either")
    failed = load.UnreadableFile(str(tmp_path / "a.pp"), "ValueError: bad header")
    assert load.blame(failed, Choice("load", "threads", 1, 2)) is failed
    assert load.blame(failed, Choice("load", "synchronous")) is failed
    assert pickle.loads(pickle.dumps(failed)).path == failed.path  # it crosses from a worker process intact

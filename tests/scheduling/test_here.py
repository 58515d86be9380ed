"""The run's own build and GIL state, read outside the pure choice: a diagnosis of another build or
of the other GIL state cannot choose for the run, and says so in one line."""

from __future__ import annotations

import json

import pytest

from tests.scheduling.test_choose import verdicts
from threadprobe.records import Diagnosis, GilState
from threadprobe.records.errors import UsageError
from threadprobe.scheduling import here, pipeline

PROBE = "iris_netcdf.wind_chunks"


def stored(tmp_path, free_threaded: bool, gil: GilState):
    python = {"version": "3.13.5", "gil_enabled": not free_threaded, "free_threaded_build": free_threaded}
    fingerprint = {"platform": "Linux", "python": python, "packages": {}}
    diag = Diagnosis("2026-12-06T00:00:00+00:00", "0", {}, fingerprint, tuple(verdicts(gil=gil)))
    path = tmp_path / "diagnosis.json"
    path.write_text(json.dumps(diag.to_json()))
    return diag, path


@pytest.fixture
def free_threaded(monkeypatch):
    """This run on a free-threaded build; the test says which state."""
    monkeypatch.setattr(here.gil, "free_threaded_build", lambda: True)

    def state(value):
        monkeypatch.setattr(here, "run_gil", lambda: value)
    return state


def test_a_diagnosis_of_the_other_build_is_refused_in_one_line(tmp_path):
    diag, path = stored(tmp_path, free_threaded=True, gil=GilState.AS_IMPORTED)
    assert "made on a free-threaded build, and this run is on a GIL build" in here.mismatch(diag, [PROBE])
    with pytest.raises(UsageError, match="cannot choose for this run"):
        pipeline.safety([PROBE], str(path))


def test_a_diagnosis_without_the_run_s_gil_state_is_refused_and_one_with_it_is_used(tmp_path, free_threaded):
    free_threaded(GilState.OFF)
    diag, path = stored(tmp_path, free_threaded=True, gil=GilState.AS_IMPORTED)
    why = here.mismatch(diag, [PROBE])
    assert "no cells of iris_netcdf.wind_chunks with the GIL off (only as_imported)" in why
    with pytest.raises(UsageError, match="GIL off"):
        pipeline.safety([PROBE], str(path))
    free_threaded(GilState.AS_IMPORTED)
    assert here.mismatch(diag, [PROBE]) is None
    assert "the GIL is" in here.describe() and here.machine().gil == GilState.AS_IMPORTED


def test_a_gil_build_knows_it_has_one_state():
    assert here.run_gil() is None and here.describe() == "this run: a GIL build" and here.cache_state() is None

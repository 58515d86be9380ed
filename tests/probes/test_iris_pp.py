"""Iris PP probes: real and generated files load; bad and packed files say why they cannot."""

import numpy as np
import pytest

from threadprobe.probes import iris_pp
from threadprobe.probe import digest


def test_sample_files_load_and_differ(tmp_path):
    pytest.importorskip("iris_sample_data")
    probe = iris_pp.LoadRealiseSample()
    probe.prepare(tmp_path)
    results = [probe.task(tmp_path, i) for i in range(len(iris_pp.SAMPLE_FILES))]
    assert all(len(r) >= 1 for r in results)
    assert len({digest(r) for r in results}) == len(results)


def test_generated_files_round_trip_through_load_load_raw_and_fields(tmp_path):
    iris_pp.write_generated(tmp_path)
    cube = iris_pp.cubes_summary
    loaded = iris_pp.LoadRealiseGenerated().task(tmp_path, 1)
    raw = iris_pp.LoadRawRealise().task(tmp_path, 1)
    fields = iris_pp.FieldLoad().task(tmp_path, 1)
    from threadprobe.probes.iris_netcdf import make_cube

    want = make_cube(1, iris_pp.LAYOUT).data
    assert np.array_equal(loaded[0][2], want)
    assert len(raw) == iris_pp.LAYOUT.shape[0] and len(fields) == iris_pp.LAYOUT.shape[0]
    assert np.array_equal(np.stack([f[3] for f in fields]), want)
    assert cube is iris_pp.cubes_summary


def test_save_reads_back(tmp_path):
    probe = iris_pp.Save()
    out = probe.open(tmp_path)
    fields = probe.readback(out, 3, probe.task(out, 3))
    assert len(fields) == iris_pp.LAYOUT.shape[0]


def test_a_corrupt_header_is_a_clear_error(tmp_path):
    probe = iris_pp.BadCorruptHeader()
    probe.prepare(tmp_path)
    with pytest.raises(ValueError, match="No format specification"):
        probe.task(tmp_path, 0)


def test_wgdos_packed_pp_is_unavailable_with_the_reason(tmp_path):
    import importlib.util

    if importlib.util.find_spec("mo_pack") is not None:
        pytest.skip("mo_pack is installed here")
    from threadprobe.harness import fingerprint
    from threadprobe.diagnosis.diagnose import diagnose
    from threadprobe.diagnosis.options import Options, Output, Planner, Selection

    diag = diagnose(Options(selection=Selection(probes=("iris_pp.load_realise.wgdos_packed",)),
                            planner=Planner(budget=1.0),
                            output=Output(workdir=str(tmp_path)),
                            evidence=None), fingerprint=fingerprint.light)
    assert {r.verdict for r in diag.results} == {"unavailable"}
    summary = diag.results[0].safety.evidence[0].summary
    assert "mo_pack" in summary and "not on PyPI" in summary


def test_the_race_pass_loads_fewer_fields_and_a_smaller_wind_grid_and_a_timing_trial_a_bigger_one(
        tmp_path, monkeypatch):
    from threadprobe.probe import PURPOSE_ENV
    from threadprobe.probes._common import tiled
    from threadprobe.probes.iris_netcdf import RACE_WIND_LAYOUT, WIND_LAYOUT, WIND_TILES

    many, wind = iris_pp.LoadMetadataManyTimes(), iris_pp.WindChunks()
    many.prepare(tmp_path)
    wind.prepare(tmp_path)
    monkeypatch.delenv(PURPOSE_ENV, raising=False)
    assert [c[2] for c in many.task(tmp_path, 1)] == [(many.TIMES, 6, 8)]
    assert wind.open(tmp_path)[0].shape == WIND_LAYOUT.shape
    monkeypatch.setenv(PURPOSE_ENV, "races")
    assert [c[2] for c in many.task(tmp_path, 1)] == [(many.RACE_TIMES, 6, 8)]
    small = wind.open(tmp_path)
    assert small[0].shape == RACE_WIND_LAYOUT.shape
    assert wind.task(small, 0)[0].shape == RACE_WIND_LAYOUT.shape[1:]
    monkeypatch.setenv(PURPOSE_ENV, "timing")
    big = wind.open(tmp_path)
    assert big[0].shape == tiled(WIND_LAYOUT, WIND_TILES).shape
    monkeypatch.setenv(PURPOSE_ENV, "oracle")
    expected = digest(wind.task(wind.open(tmp_path), 1))  # the stress input's, as the oracle reads it
    assert digest(wind.task(big, 1)) != expected  # not folded outside a timing trial
    monkeypatch.setenv(PURPOSE_ENV, "timing")
    assert digest(wind.task(big, 1)) == expected != digest(wind.task(big, 0))

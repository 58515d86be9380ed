"""netCDF4 probes: on many layouts, each read equals what was written, and digests discriminate."""

import numpy as np
from hypothesis import HealthCheck, example, given, settings

from threadprobe.probes import netcdf
from threadprobe.probes._common import Layout, expected, values
from tests.probes.layouts import layouts, with_layout
from threadprobe.probe import digest

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def same(a, b) -> bool:
    return np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b)) and np.ma.allequal(a, b)


@SETTINGS
@given(layouts())
def test_shared_and_per_thread_reads_return_what_was_written(tmp_path_factory, layout):
    work = tmp_path_factory.mktemp("nc")
    for cls in (netcdf.ReadSharedDataset, netcdf.ReadDatasetPerThread):
        probe = with_layout(cls, layout)()
        probe.prepare(work)
        ctx = probe.open(work)
        for t in range(layout.shape[0]):
            got = probe.task(ctx, t)
            want = expected(layout, 0)[t]
            assert same(got, want)
            assert digest(got) == digest(want)
        probe.close(ctx)


@SETTINGS
@given(layouts())
@example(layout=Layout(shape=(5, 1, 1), dtype="i4", chunks=None, compression=False, fill_value=-999.0))
def test_separate_files_each_hold_their_own_data(tmp_path_factory, layout):
    work = tmp_path_factory.mktemp("nc")
    probe = with_layout(netcdf.ReadSeparateFiles, layout)()
    probe.prepare(work)
    for i in range(netcdf.NFILES):
        got = probe.task(work, i)
        assert same(got, expected(layout, i % netcdf.NFILES)[0])
    # A task reads its file's first time slice; tiny slices (one masked value) may coincide.
    if values(layout, 0)[0].size > 4:
        assert digest(probe.task(work, 0)) != digest(probe.task(work, 1))


@SETTINGS
@given(layouts(max_side=6))
def test_writes_read_back_what_the_task_wrote(tmp_path_factory, layout):
    work = tmp_path_factory.mktemp("nc")
    for cls in (netcdf.WriteSeparateFiles, netcdf.WriteSharedFileVariables):
        probe = with_layout(cls, layout)()
        ctx = probe.open(work)
        written = {i: probe.task(ctx, i) for i in range(3)}
        written[1] = probe.task(ctx, 1)  # a timing round writes an index again
        for i, token in written.items():
            assert same(probe.readback(ctx, i, token), expected(layout, i))
        probe.close(ctx)


def test_bad_inputs_fail_with_the_library_message(tmp_path):
    for cls in (netcdf.BadTruncated, netcdf.BadEmpty):
        probe = cls()
        probe.prepare(tmp_path)
        try:
            probe.task(tmp_path, 0)
        except OSError as exc:
            assert "NetCDF" in str(exc) or "HDF" in str(exc) or "Unknown file format" in str(exc)
        else:
            raise AssertionError(f"{cls.name} read a broken file without complaint")

"""h5py probes: on many layouts, each read equals what was written."""

import numpy as np
from hypothesis import HealthCheck, given, settings

from threadprobe.probes import hdf5
from threadprobe.probes._common import h5_expected
from tests.probes.layouts import layouts, with_layout
from threadprobe.probe import digest

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(layouts())
def test_reads_return_what_was_written(tmp_path_factory, layout):
    work = tmp_path_factory.mktemp("h5")
    shared = with_layout(hdf5.ReadSharedFile, layout)()
    shared.prepare(work)
    fh = shared.open(work)
    for t in range(layout.shape[0]):
        got = shared.task(fh, t)
        assert np.array_equal(got, h5_expected(layout, 0)[t]) and digest(got) == digest(h5_expected(layout, 0)[t])
    shared.close(fh)
    separate = with_layout(hdf5.ReadSeparateFiles, layout)()
    separate.prepare(work)
    for i in range(hdf5.NFILES):
        assert np.array_equal(separate.task(work, i), h5_expected(layout, i)[0])


@SETTINGS
@given(layouts(max_side=6))
def test_writes_read_back_what_the_task_wrote(tmp_path_factory, layout):
    work = tmp_path_factory.mktemp("h5")
    for cls in (hdf5.WriteSeparateFiles, hdf5.WriteSharedFile):
        probe = with_layout(cls, layout)()
        ctx = probe.open(work)
        tokens = {i: probe.task(ctx, i) for i in range(3)}
        tokens[2] = probe.task(ctx, 2)
        for i, token in tokens.items():
            assert np.array_equal(probe.readback(ctx, i, token), h5_expected(layout, i))
        probe.close(ctx)

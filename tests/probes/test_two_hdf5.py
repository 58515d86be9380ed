"""Two HDF5 copies: both libraries read their own file correctly."""

import numpy as np

from threadprobe.probes import two_hdf5
from threadprobe.probes._common import expected, h5_expected


def test_even_tasks_read_netcdf_and_odd_tasks_read_hdf5(tmp_path):
    probe = two_hdf5.NetcdfAndH5py()
    probe.prepare(tmp_path)
    ctx = probe.open(tmp_path)
    assert np.ma.allequal(probe.task(ctx, 4), expected(two_hdf5.LAYOUT, 1)[2])
    assert np.array_equal(probe.task(ctx, 5), h5_expected(two_hdf5.LAYOUT, 2)[2])
    probe.close(ctx)

"""Fork-safety probes: the pool's children read what the parent would."""

import numpy as np

from threadprobe.probes import fork_safety
from threadprobe.probes._common import expected, h5_expected


def test_children_read_the_right_slices(tmp_path):
    for cls, want in ((fork_safety.NetcdfFreshOpen, expected), (fork_safety.NetcdfInherited, expected),
                      (fork_safety.H5pyFreshOpen, h5_expected)):
        probe = cls()
        probe.prepare(tmp_path)
        ctx = probe.open(tmp_path)
        try:
            got = probe.task(ctx, 5)
            assert np.ma.allequal(got, want(fork_safety.LAYOUT, 5)[5])
        finally:
            probe.close(ctx)

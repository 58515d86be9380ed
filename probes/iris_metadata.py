"""Probes of Iris's metadata machinery, whose hashing goes through xxhash.

With xxhash 4.x, Iris 3.14.1's metadata comparisons (``CubeList.concatenate``, merging cubes
with string attributes) raise ``TypeError: Strings must be encoded before hashing``: it fails in
serial mode already. A new build that breaks like this is a finding too, and this probe is how
``make diagnose`` catches it.
"""

from __future__ import annotations

import warnings

from threadprobe.probes._common import IRIS_PRELOAD, IRIS_RACE_SECONDS
from threadprobe.probe import Probe


class ConcatenateStringAttributes(Probe):
    """CubeList.concatenate and merge of cubes that carry string attributes."""

    name = "iris_metadata.concatenate_string_attributes"
    dependency = "scitools-iris"
    preload = IRIS_PRELOAD
    iterations = 8  # each task builds and joins cubes: ~45 ms
    race_seconds = IRIS_RACE_SECONDS

    def task(self, ctx, i):
        import numpy as np
        from iris.coords import DimCoord
        from iris.cube import Cube, CubeList

        def piece(start: int) -> Cube:
            time = DimCoord(np.arange(start, start + 3, dtype="f8"), standard_name="time",
                            units="hours since 1970-01-01")
            lat = DimCoord(np.linspace(-10, 10, 5), standard_name="latitude", units="degrees")
            return Cube(np.full((3, 5), float(i + start), "f4"), standard_name="x_wind", units="m s-1",
                        dim_coords_and_dims=[(time, 0), (lat, 1)],
                        attributes={"source": f"run {i % 7}", "history": "threadprobe"})

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            joined = CubeList([piece(0), piece(3), piece(6)]).concatenate_cube()
            merged = CubeList([piece(0)[0], piece(0)[1]]).merge()
        return (joined.data, joined.coord("time").points, sorted(joined.attributes.items()), len(merged))

"""What each workload runs concurrently, so that a recommendation judges the right operations.

Safety belongs to an operation, not to a library: Iris realising the chunks of one lazily loaded
cube can be safe under threads while concurrent ``iris.load`` calls crash. Each workload lists,
per input format, the probes that model what it runs *concurrently*; work done once up front
(the wind workload's metadata load) is not listed. Names match the runner's subcommands.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    probes: dict[str, tuple[str, ...]]  # input format -> probes modelling the concurrent work
    memory_per_worker_gb: float  # what one dask worker needs, to size a cluster to the machine

    def probes_for(self, fmt: str | None = None) -> tuple[str, ...]:
        if fmt is not None:
            return self.probes.get(fmt, ())
        return tuple(p for names in self.probes.values() for p in names)


WORKLOADS = {
    "wind": Workload(
        name="wind",
        description="load x/y wind metadata once, then realise chunks concurrently through Iris's lazy "
                    "data and do numpy arithmetic (speed, direction, variances over time)",
        probes={"nc": ("iris_netcdf.wind_chunks",), "pp": ("iris_pp.wind_chunks",)},
        memory_per_worker_gb=2.0,
    ),
    "load": Workload(
        name="load",
        description="run iris.load calls concurrently, one file each, and merge the cubes",
        probes={"nc": ("iris_netcdf.load_realise",), "pp": ("iris_pp.load_metadata.many_times",)},
        memory_per_worker_gb=1.0,
    ),
}

"""Workloads name the probes that model what they run concurrently, per input format."""

from threadprobe.probe import registry
from threadprobe.scheduling.workloads import WORKLOADS


def test_every_workload_names_probes_that_exist_for_each_format():
    known = {info.name for info in registry.discover()}
    for workload in WORKLOADS.values():
        assert set(workload.probes) == {"nc", "pp"}
        for fmt in ("nc", "pp"):
            assert workload.probes_for(fmt) and set(workload.probes_for(fmt)) <= known
        assert set(workload.probes_for()) == {p for names in workload.probes.values() for p in names}
        assert workload.probes_for("grib") == ()

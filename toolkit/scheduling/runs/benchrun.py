"""One timed run of the runner's bench, in the subprocess ``threadprobe.scheduling.runs.bench`` starts for it.

It lives above the runner because it composes a whole run (safety, choice, run) through
``threadprobe.scheduling.pipeline``, which the runner itself never imports.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import iris  # noqa: F401  (paid before timing, as a long-running service would have)
import netCDF4
import numpy as np

from threadprobe.harness import gil
from threadprobe.scheduling import pipeline
from threadprobe.scheduling.runs.bench import Run, Spec


def output_digest(path: Path) -> list[list[float]]:
    """The results, to compare between schedulers within float tolerance."""
    with netCDF4.Dataset(path) as ds:
        return [np.asarray(ds.variables[name][...], dtype="f8").ravel()[::97].tolist()
                for name in sorted(ds.variables) if ds.variables[name].ndim == 2]


def one(spec: Spec) -> Run:
    """One timed run in this process (the subprocess side); the wind study's output goes with it
    (each one left 9.5 MB in /tmp: 284 of them after one day's benches)."""
    with tempfile.TemporaryDirectory(prefix="threadprobe-bench-") as folder:
        return _one(spec, Path(folder) / "out.nc")


def _one(spec: Spec, out: Path) -> Run:
    started = time.perf_counter()
    if spec.workload == "wind":
        wind = pipeline.run_wind(spec.inputs.x, spec.inputs.y, out, spec.request)
        seconds, choice, pilot = time.perf_counter() - started, wind.choice, wind.pilot
        found = Run(digest=output_digest(out), peak_memory=wind.peak_memory, compute_seconds=wind.compute_seconds,
                    decide_seconds=wind.decide_seconds)
    else:
        load = pipeline.run_load(spec.inputs.files, spec.request)
        seconds, choice, pilot = time.perf_counter() - started, load.choice, load.pilot
        found = Run(digest=list(load.summary))
    return found.replace(seconds=seconds, choice=choice.describe(), choice_record=choice, gil_enabled=gil.enabled(),
                         source=choice.source, pilot_seconds=pilot.seconds if pilot else 0.0,
                         pilot_cost=pilot.cost if pilot else 0.0, pilot_table=choice.pilot, rationale=choice.rationale)


if __name__ == "__main__":
    print(json.dumps(one(Spec.from_json(json.loads(sys.argv[1]))).to_json()))

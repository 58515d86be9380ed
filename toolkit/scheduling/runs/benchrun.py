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
from typing import Any

import iris  # noqa: F401  (paid before timing, as a long-running service would have)
import netCDF4
import numpy as np

from threadprobe.harness import gil
from threadprobe.records import Remedy
from threadprobe.scheduling import pipeline


def output_digest(path: Path) -> list[Any]:
    """The results, to compare between schedulers within float tolerance."""
    with netCDF4.Dataset(path) as ds:
        return [np.asarray(ds.variables[name][...], dtype="f8").ravel()[::97].tolist()
                for name in sorted(ds.variables) if ds.variables[name].ndim == 2]


def one(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed run in this process (the subprocess side)."""
    options = dict(spec["options"])
    options["locks"] = tuple(Remedy.from_json(r) for r in options.get("locks", ()))
    out = Path(tempfile.mkdtemp(prefix="threadprobe-bench-")) / "out.nc"
    started = time.perf_counter()
    if spec["workload"] == "wind":
        result = pipeline.run_wind(spec["inputs"]["x"], spec["inputs"]["y"], out, diagnosis=spec.get("diagnosis"),
                                   **options)
        answer = output_digest(out)
        extra = {"peak_memory": result.peak_memory, "compute_seconds": result.compute_seconds,
                 "decide_seconds": result.decide_seconds}
    else:
        result = pipeline.run_load(spec["inputs"]["files"], diagnosis=spec.get("diagnosis"), **options)
        answer = list(result.summary)
        extra = {}
    pilot = result.pilot
    return {"seconds": time.perf_counter() - started, "digest": answer, "choice": result.choice.describe(),
            "choice_record": result.choice.to_json(), "gil_enabled": gil.enabled(),
            "source": result.choice.source, "pilot_seconds": pilot.seconds if pilot else 0.0,
            "pilot_cost": pilot.cost if pilot else 0.0, "pilot_table": [r.to_json() for r in result.choice.pilot],
            "rationale": list(result.choice.rationale), **extra}



if __name__ == "__main__":
    print(json.dumps(one(json.loads(sys.argv[1]))))

"""What a pilot batch costs whatever its size: the fixed cost ``pilot.fixed_cost`` separates.

The wind job on the bench data, on 2 threads and 2 forked processes side by side: batches of
2, 4 and 8 units (2 tasks each, as the pilot sends them), in rotating order, repeated. A line
through each size's median time gives the fixed cost (its intercept) and the cost per unit (its
slope). Scaled as if it grew with the work, the fixed cost made the pilot project a whole run
on processes far slower than it ran.

Writes reports/bench-pilot-batch.json (machine, date, command, raw repetitions).

    python tests/bench/pilot_batch.py [--data DIR] [--format nc|pp] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from threadprobe.records import Choice
from threadprobe.report import benchfile
from threadprobe.scheduling.runs import wind
from threadprobe.scheduling.schedulers import activated

SIZES = (2, 4, 8)
CANDIDATES = {"threads": Choice("w", "threads", 1, 2), "processes": Choice("w", "processes", 2, 1, context="fork")}


def measure(data: Path, fmt: str, repeats: int) -> dict[str, dict[int, list[float]]]:
    u, v, _ = wind.load_pair(str(data / fmt / f"x_wind_*.{fmt}"), str(data / fmt / f"y_wind_*.{fmt}"))
    job = wind.WindJob(u, v)
    left = list(range(job.units))
    seconds: dict[str, dict[int, list[float]]] = {name: {n: [] for n in SIZES} for name in CANDIDATES}
    with activated(CANDIDATES["threads"]) as threads, activated(CANDIDATES["processes"]) as processes:
        actives = {"threads": threads, "processes": processes}
        job.run(processes, left[:2], 2)  # the pool started and warm: its start-up is not a batch's
        for rep in range(repeats):
            names = list(actives)[rep % 2:] + list(actives)[:rep % 2]
            for n in SIZES:
                for name in names:
                    batch, left[:] = left[:n], left[n:] + left[:n]
                    t0 = time.perf_counter()
                    job.run(actives[name], batch, 2)
                    seconds[name][n].append(time.perf_counter() - t0)
    return seconds


def line(by_size: dict[int, list[float]]) -> tuple[float, float]:
    """Fixed cost (s a batch) and cost per unit, through each size's median."""
    sizes = sorted(by_size)
    per_unit, fixed = np.polyfit(sizes, [statistics.median(by_size[n]) for n in sizes], 1)
    return float(fixed), float(per_unit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="reports/bench-data", help="bench data (threadprobe bench makes it)")
    parser.add_argument("--format", default="nc", choices=("nc", "pp"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="reports/bench-pilot-batch.json")
    args = parser.parse_args()
    seconds = measure(Path(args.data), args.format, args.repeats)
    rows = []
    for name, by_size in seconds.items():
        fixed, per_unit = line(by_size)
        rows.append({"candidate": name, "fixed_seconds": round(fixed, 3), "seconds_per_unit": round(per_unit, 4),
                     "median": {str(n): round(statistics.median(xs), 3) for n, xs in by_size.items()},
                     "seconds": {str(n): [round(x, 4) for x in xs] for n, xs in by_size.items()}})
        print(f"{name}: fixed {fixed:.3f} s a batch, {per_unit:.3f} s a unit; medians "
              + ", ".join(f"{n} units {statistics.median(xs):.3f} s" for n, xs in by_size.items()))
    benchfile.write(Path(args.out), {"benchmark": "pilot_batch", "format": args.format, "repeats": args.repeats,
                                     "sizes": list(SIZES), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

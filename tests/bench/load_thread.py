"""Where the GIL build's netCDF load gains under threads holding one global lock.

The load bench found threads under a global lock x1.15 of synchronous on the GIL build's netCDF
load (a 1.3 s run of 16 files), though the lock lets one task run at a time; auto, taking
synchronous, missed its 5% there. This runs the load side by side, each run in a fresh process
with Iris imported before timing (as the bench does), in rotating order: synchronous, threads
under the global lock, and one worker thread with no lock (as serial as synchronous, but off the
main thread). Every task's own time is recorded, so a gain inside the tasks (the same
``iris.load`` quicker off the main thread) is told from one outside them (dask's bookkeeping
overlapping the I/O), and the first task, which pays Iris's first netCDF load, from the rest.

Writes reports/bench-load-thread.json (machine, date, command, every run). Run it again with
``MALLOC_ARENA_MAX=1`` (recorded in the file) to put every thread in the main thread's malloc arena.

    python tests/bench/load_thread.py [--files GLOB] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from threadprobe.report import benchfile

MODES = ("synchronous", "threads + global lock", "one worker thread")


def one(mode: str, files: str) -> dict[str, object]:
    """One timed run in this (fresh) process."""
    import iris  # noqa: F401  (paid before timing)

    from threadprobe.records import Remedy, RemedyKind, RunRequest, Scheduler
    from threadprobe.scheduling import pipeline
    from threadprobe.scheduling.runs import load

    request = {"synchronous": RunRequest(scheduler=Scheduler.SYNCHRONOUS),
               "threads + global lock": RunRequest(scheduler=Scheduler.THREADS,
                                                   locks=(Remedy(RemedyKind.GLOBAL_LOCK),)),
               "one worker thread": RunRequest(scheduler=Scheduler.THREADS, threads_per_worker=1)}[mode]
    tasks: list[float] = []
    inner = load.load_one

    def timed(path: str) -> object:
        t0 = time.perf_counter()
        try:
            return inner(path)
        finally:
            tasks.append(time.perf_counter() - t0)

    load.load_one = timed  # LoadJob.run looks it up when it builds its tasks
    t0 = time.perf_counter()
    result = pipeline.run_load(files, request)
    return {"mode": mode, "seconds": time.perf_counter() - t0, "tasks": tasks, "choice": result.choice.describe()}


def summary(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per mode: medians of the run, the first task, the later tasks' sum, and the rest (outside tasks)."""
    out = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        out[mode] = {"seconds": statistics.median(r["seconds"] for r in mine),
                     "first_task": statistics.median(r["tasks"][0] for r in mine),
                     "later_tasks": statistics.median(sum(r["tasks"][1:]) for r in mine),
                     "outside_tasks": statistics.median(r["seconds"] - sum(r["tasks"]) for r in mine)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="reports/bench-data/nc/*.nc",
                        help="netCDF files to load (default: the wind bench's, which threadprobe bench wind makes)")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--out", default="reports/bench-load-thread.json")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.files)))
        return 0
    runs = []
    for rep in range(args.repeats):
        for mode in MODES[rep % 3:] + MODES[:rep % 3]:
            done = subprocess.run([sys.executable, __file__, "--files", args.files, "--one", mode],
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    found = summary(runs)
    sync = [r["seconds"] for r in runs if r["mode"] == "synchronous"]
    ratios = {mode: [round(s / r["seconds"], 3) for s, r in zip(sync, [r for r in runs if r["mode"] == mode])]
              for mode in MODES[1:]}
    for mode, row in found.items():
        print(f"{mode}: " + ", ".join(f"{k} {v:.3f} s" for k, v in row.items())
              + (f"; x{statistics.median(ratios[mode]):.3f} of synchronous {ratios[mode]}" if mode in ratios else ""))
    benchfile.write(Path(args.out), {"benchmark": "load_thread", "files": args.files,
                                     "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
                                     "repeats": args.repeats, "summary": found, "ratios_to_synchronous": ratios,
                                     "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

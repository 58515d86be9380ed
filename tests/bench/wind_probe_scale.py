"""Does the wind probe's timing stand for the wind study's? Its speedups, by field size.

A run too short to pilot (under ``pilot.SHORT_RUN``) takes its scheduler by the diagnosis's
measured speedups of the workload's probe (``iris_pp.wind_chunks``, ``iris_netcdf.wind_chunks``).
On the wind bench the diagnoses read threads x1.25 to x1.74 and processes x1.81 to x2.00 on the
GIL build, where the study itself ran threads x1.78 to x1.85 and processes x1.76 to x1.83, so
auto took processes at a tie. The probe's stress fields are 240x320 (a task: about 50 ms with the
study's arithmetic), its timing input 480x640 (``Probe.timing_input``), the bench's 960x1280. This
times the probe's own task (``wind_chunk`` over its stress files, 8 steps a task, 8 tasks) serially,
on 2 threads and on 2 forked processes (each opening its files, as the harness's workers do), side
by side in rotating order, with the stress fields at three sizes, each size in a fresh process.

Writes reports/bench-wind-probe-scale.json (machine, date, command, every repetition).

    python tests/bench/wind_probe_scale.py [--repeats N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from threadprobe.report import benchfile

GRIDS = ((240, 320), (480, 640), (960, 1280))  # the probe's, twice it, the wind bench's
MODES = ("synchronous", "threads", "processes")
TASKS = 8
MIN_SERIAL = 1.0  # seconds of serial work a measurement repeats its tasks to, at least


def _probe(fmt: str, grid: tuple[int, int], work: Path):
    from threadprobe.probes import iris_netcdf, iris_pp

    layout = iris_netcdf.WIND_LAYOUT
    iris_netcdf.WIND_LAYOUT = dataclasses.replace(layout, shape=(layout.shape[0], *grid), chunks=(1, *grid))
    probe = (iris_pp.WindChunks if fmt == "pp" else iris_netcdf.WindChunks)()
    probe.prepare(work)
    return probe


def _tasks(probe, ctx, indices) -> None:
    for i in indices:
        probe.task(ctx, i)


def _measure(mode: str, probe, work: Path, rounds: int) -> float:
    """Seconds for ``rounds`` x ``TASKS`` tasks in ``mode``, from the workers' start to the last end."""
    from concurrent.futures import ThreadPoolExecutor

    indices = list(range(TASKS)) * rounds
    halves = [indices[0::2], indices[1::2]]
    if mode == "synchronous":
        ctx = probe.open(work)
        t0 = time.perf_counter()
        _tasks(probe, ctx, indices)
        return time.perf_counter() - t0
    if mode == "threads":
        ctx = probe.open(work)
        with ThreadPoolExecutor(2) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda half: _tasks(probe, ctx, half), halves))
            return time.perf_counter() - t0
    fork = multiprocessing.get_context("fork")
    barrier = fork.Barrier(3)

    def worker(half: list[int]) -> None:
        ctx = probe.open(work)  # each process its own files, as a harness worker opens them
        barrier.wait()
        _tasks(probe, ctx, half)

    children = [fork.Process(target=worker, args=(half,)) for half in halves]
    for child in children:
        child.start()
    barrier.wait()
    t0 = time.perf_counter()
    for child in children:
        child.join()
    return time.perf_counter() - t0


def one(fmt: str, grid: tuple[int, int], repeats: int) -> dict[str, object]:
    """One format and field size, in this fresh process: ``repeats`` side-by-side repetitions."""
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="threadprobe-windscale-") as folder:
        work = Path(folder)
        probe = _probe(fmt, grid, work)
        ctx = probe.open(work)
        t0 = time.perf_counter()
        _tasks(probe, ctx, range(TASKS))  # warm: imports, the files in the page cache
        per_round = time.perf_counter() - t0
        rounds = max(1, round(MIN_SERIAL / per_round))
        seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
        for rep in range(repeats):
            for mode in MODES[rep % 3:] + MODES[:rep % 3]:
                seconds[mode].append(_measure(mode, probe, work, rounds))
    task = statistics.median(seconds["synchronous"]) / (rounds * TASKS)
    ratios = {mode: [round(s / x, 3) for s, x in zip(seconds["synchronous"], seconds[mode])] for mode in MODES[1:]}
    return {"format": fmt, "grid": list(grid), "rounds": rounds, "task_seconds": round(task, 4),
            "speedup": {mode: round(statistics.median(xs), 3) for mode, xs in ratios.items()},
            "speedup_range": {mode: [min(xs), max(xs)] for mode, xs in ratios.items()},
            "ratios_to_synchronous": ratios, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="reports/bench-wind-probe-scale.json")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # the child's side: FORMAT NY NX
    args = parser.parse_args()
    if args.one:
        fmt, ny, nx = args.one
        print(json.dumps(one(fmt, (int(ny), int(nx)), args.repeats)))
        return 0
    found = []
    for fmt in ("pp", "nc"):
        for ny, nx in GRIDS:
            done = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), "--one", fmt, str(ny),
                                   str(nx)], capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            found.append(row)
            print(f"{fmt} {ny}x{nx}: task {row['task_seconds']:.3f} s; threads x{row['speedup']['threads']} "
                  f"{row['speedup_range']['threads']}, processes x{row['speedup']['processes']} "
                  f"{row['speedup_range']['processes']}", flush=True)
    benchfile.write(Path(args.out), {"benchmark": "wind_probe_scale", "repeats": args.repeats, "tasks": TASKS,
                                     "sizes": found})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

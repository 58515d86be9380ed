"""What starting a process pool costs before its first task's work: the start-up
``choose.POOL_START`` charges a processes candidate in a choice made without a pilot.

A pool of 2 (``ProcessPoolExecutor`` with dask's worker initializer, as
``schedulers.process_pool`` starts it) runs one task per worker that imports Iris's PP loading;
the parent has imported it already, as a run's parent has once its files are checked. Per start
method, the seconds from creating the pool to both tasks' results, on each interpreter given.

Writes reports/bench-pool-start.json (machine, date, command, raw repetitions).

    python tests/bench/pool_start.py [--python PATH ...] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from threadprobe.harness.proc import child_env, interpreter_of
from threadprobe.records import GilState
from threadprobe.report import benchfile
from threadprobe.scheduling.runs.builds import environments

CHILD = r"""
import json, multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from dask import multiprocessing as dask_mp
import iris, iris.fileformats.pp

def once(method):
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method),
                               initializer=partial(dask_mp.initialize_worker_process, user_initializer=None))
    list(pool.map(exec, ["import iris, iris.fileformats.pp"] * 2))  # what a load task needs (exec: picklable)
    took = time.perf_counter() - t0
    pool.shutdown()
    return took

if __name__ == "__main__":
    repeats = int(sys.argv[1])
    print(json.dumps({m: [once(m) for _ in range(repeats)] for m in ("fork", "spawn", "forkserver")}))
"""


def measure(python: str, repeats: int, gil_off: bool, label: str) -> dict[str, object]:
    path, foreign = interpreter_of(python)
    env = child_env(foreign=foreign)
    if gil_off:
        env["PYTHON_GIL"] = "0"
    done = subprocess.run([path, "-c", CHILD, str(repeats)], capture_output=True, text=True, env=env, timeout=1800,
                          check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return {"interpreter": path, "environment": label, "seconds": got,
            "median": {m: round(statistics.median(xs), 3) for m, xs in got.items()},
            "range": {m: [round(min(xs), 3), round(max(xs), 3)] for m, xs in got.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", default=[], help="interpreters (default: this one)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="reports/bench-pool-start.json")
    args = parser.parse_args()
    rows = [measure(env.python, args.repeats, env.gil == GilState.OFF, env.label)
            for env in environments(args.python or [sys.executable])]
    for row in rows:
        print(f"{row['environment']}: " + ", ".join(f"{m} median {row['median'][m]} s (range {row['range'][m]})"  # type: ignore[index]
                                                    for m in row["seconds"]))  # type: ignore[union-attr]
    benchfile.write(Path(args.out), {"benchmark": "pool_start", "repeats": args.repeats, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

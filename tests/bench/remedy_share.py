"""How far a library lock lets threads go: the share of a run its lock holds, and the bound that
sets (Amdahl), beside the speed-up threads reach under it.

The load experiment on 3.13t with the GIL off is unsafe under plain threads, and the narrowest
verified remedy is a lock around cf_units (udunits2 keeps global state) and Iris's
``_epoch_date_hours``. Under a lock a share ``f`` of the serial run is serial again, so two threads
can take no less than ``max(T/2, held)`` of a serial run ``T``: at most ``T / max(T/2, held)``.
Each lock is a guard of its own (``harness.libguard``), so the largest one's held time counts.

Per repetition, in one child of the interpreter (its GIL state forced as asked), in rotating
order: the files loaded serially with no lock, serially under the locks (their held seconds
summed by the guards), by two threads under the locks, and the same with the cyclic collector
off (on 3.13t a collection stops every thread). Metadata-only ``iris.load`` of each file, as the
load bench's units do.

Writes reports/bench-remedy-share.json (machine, date, command, raw repetitions).

    python tests/bench/remedy_share.py [--python PATH] [--gil off|as_imported] [--lock TARGET ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from threadprobe.harness.proc import child_env, interpreter_of
from threadprobe.report import benchfile

DATA = "reports/bench-data/load/pp"
LOCKS = ("cf_units", "iris.fileformats.pp_load_rules:_epoch_date_hours")

CHILD = r"""
import gc, glob, json, sys, time, warnings
from concurrent.futures import ThreadPoolExecutor
import iris
from threadprobe.harness import libguard

data, files, repeats, targets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
paths = sorted(glob.glob(data + "/*"))[:files]
warnings.simplefilter("ignore")
iris.load(paths[0])  # one-time costs (imports, unit tables) paid before any timing

def serial():
    for p in paths:
        iris.load(p)

def threads():
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(iris.load, paths))

def threads_nogc():  # the free-threaded collector stops every thread while it runs
    gc.disable()
    try:
        threads()
    finally:
        gc.enable()

def timed(fn, locked):
    guards = [libguard.guard(t) for t in targets] if locked else []
    before = [g.held for g in guards]
    t0 = time.perf_counter()
    fn()
    took = time.perf_counter() - t0
    held = {t: g.held - b for t, g, b in zip(targets, guards, before)}
    for t in targets if locked else ():
        libguard.release(t)
    return took, held

kinds = {"serial": (serial, False), "serial_locked": (serial, True), "threads_locked": (threads, True),
         "threads_locked_nogc": (threads_nogc, True)}
order = list(kinds)
for k in range(repeats):
    row = {}
    for name in order[k % len(order):] + order[:k % len(order)]:
        took, held = timed(*kinds[name])
        row[name] = took
        if name == "serial_locked":
            row["held"] = held
    print(json.dumps(row), flush=True)
"""


def summary(rows: list[dict]) -> dict[str, object]:
    """Medians and ranges of the serial time, the locks' share, the bound and the measured gain."""
    def spread(xs: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}

    share = [max(r["held"].values()) / r["serial_locked"] for r in rows]
    bound = [r["serial_locked"] / max(r["serial_locked"] / 2, max(r["held"].values())) for r in rows]
    return {"serial_seconds": spread([r["serial"] for r in rows]),
            "guard_overhead": spread([r["serial_locked"] / r["serial"] for r in rows]),
            "largest_lock_share": spread(share),
            "share_per_lock": {t: spread([r["held"][t] / r["serial_locked"] for r in rows]) for t in rows[0]["held"]},
            "bound_2_threads": spread(bound),
            "threads_locked_speedup": spread([r["serial"] / r["threads_locked"] for r in rows]),
            "threads_locked_nogc_speedup": spread([r["serial"] / r["threads_locked_nogc"] for r in rows]),
            "of_bound": spread([r["serial_locked"] / r["threads_locked"] / b for r, b in zip(rows, bound)])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=".venv-ft/bin/python")
    parser.add_argument("--gil", choices=("off", "as_imported"), default="off")
    parser.add_argument("--lock", action="append", default=[], help=f"guard targets (default {' and '.join(LOCKS)})")
    parser.add_argument("--data", default=DATA, help="the load bench's PP files (threadprobe bench load makes them)")
    parser.add_argument("--files", type=int, default=32, help="the first N files (default 32: a share is per file)")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--out", default="reports/bench-remedy-share.json")
    args = parser.parse_args()
    if not list(Path(args.data).glob("*")):
        print(f"remedy_share: no files in {args.data} (threadprobe bench load --python ... makes them)", file=sys.stderr)
        return 2
    path, foreign = interpreter_of(args.python)
    env = child_env({"PYTHON_GIL": "0"} if args.gil == "off" else {}, foreign=foreign)
    locks = args.lock or list(LOCKS)
    done = subprocess.run([path, "-c", CHILD, args.data, str(args.files), str(args.repeats), *locks], capture_output=True, text=True,
                          env=env, timeout=3600)
    if done.returncode:
        print(f"remedy_share: the child failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    result = summary(rows)
    print(json.dumps(result, indent=1))
    benchfile.write(Path(args.out), {"benchmark": "remedy_share", "interpreter": path, "gil": args.gil,
                                     "locks": locks, "files": min(args.files, len(list(Path(args.data).glob("*")))),
                                     "repeats": args.repeats, "rows": rows, "summary": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

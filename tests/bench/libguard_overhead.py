"""What a lock around a library costs when nothing contends for it: Iris's metadata-only PP load,
one thread, with and without a lock around cf_units (the library_lock remedy's mechanism,
threadprobe.harness.libguard), side by side in one process, alternating, on each interpreter given.

Writes reports/bench-libguard.json (machine, date, command, raw repetitions): per interpreter the
ratio guarded / bare of each repetition, their median and spread, and the calls the lock covered.

    python tests/bench/libguard_overhead.py [--python PATH ...] [--repeats N] [--files GLOB]
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
import glob, json, sys, time, warnings
warnings.simplefilter("ignore")
import iris
from threadprobe.harness import libguard
files, repeats, target = sorted(glob.glob(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
def load():
    t0 = time.perf_counter()
    for f in files:
        iris.load(f)
    return time.perf_counter() - t0
load()  # imports, first-use caches
guard = libguard.guard(target)
bare, guarded = [], []
for k in range(repeats):
    for on in ((False, True) if k % 2 else (True, False)):  # alternate which goes first
        guard.on = on
        (guarded if on else bare).append(load())
print(json.dumps({"bare": bare, "guarded": guarded, "calls": sum(guard.counts.values()) // repeats,
                  "python": sys.version.split()[0], "gil": getattr(sys, "_is_gil_enabled", lambda: True)()}))
"""


def measure(python: str, files: str, repeats: int, target: str, gil_off: bool, label: str) -> dict[str, object]:
    path, foreign = interpreter_of(python)
    env = child_env(foreign=foreign)
    if gil_off:
        env["PYTHON_GIL"] = "0"
    done = subprocess.run([path, "-c", CHILD, files, str(repeats), target], capture_output=True, text=True,
                          env=env, timeout=3600, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    ratios = [g / b for g, b in zip(got["guarded"], got["bare"])]
    return {**got, "interpreter": path, "environment": label, "gil_forced_off": gil_off, "ratios": [round(r, 4) for r in ratios],
            "median_ratio": round(statistics.median(ratios), 4),
            "ratio_range": [round(min(ratios), 4), round(max(ratios), 4)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", default=[], help="interpreters (default: this one)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--files", default="reports/bench-data/load/pp/x_wind_00*.pp")
    parser.add_argument("--target", default="cf_units")
    parser.add_argument("--out", default="reports/bench-libguard.json")
    args = parser.parse_args()
    rows = [measure(env.python, args.files, args.repeats, args.target, env.gil == GilState.OFF, env.label)
            for env in environments(args.python or [sys.executable])]
    for row in rows:
        print(f"{row['environment']}: guarded/bare "
              f"median x{row['median_ratio']} (range {row['ratio_range']}), {row['calls']} calls under the lock per pass")
    benchfile.write(Path(args.out), {"benchmark": "libguard_overhead", "target": args.target, "files": args.files,
                                     "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

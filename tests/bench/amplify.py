"""Race amplification, measured: which trial settings raise failures per CPU-second.

For each defect (a planted rare race, netCDF4's shared-Dataset read, cf-units' error messages)
and each technique, trials run interleaved (round-robin over the techniques, so a noisy spell
hits them alike) through the real harness; failures are counted against the CPU time the
workers used (their rusage) and against wall time. Every technique changes one thing from the
baseline: 2 threads, switch interval 1 us, 0.05 s of serial work per trial, threads free to run
on any core, no start delay.

    python tests/bench/amplify.py [--rounds N] [--out reports/bench-amplify.json]

Writes the table the README quotes (technique, failures per CPU-second, against the baseline).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from threadprobe.diagnosis import detect
from threadprobe.report import benchfile  # noqa: E402
from threadprobe import refs  # noqa: E402
from threadprobe.harness import launch, trial as harness  # noqa: E402
from threadprobe.records import Kind, Mode, Pin, Purpose, Trial  # noqa: E402

PLANTED = ROOT / "tests" / "planted" / "probes.py"
DEFECTS = {
    "planted rare race": (f"{PLANTED}:RareRace", [str(PLANTED)], ()),
    "netCDF4 shared read": ("probes.netcdf:ReadSharedDatasetRaw", [], ("numpy", "netCDF4")),
    "cf-units messages": ("probes.udunits:ParseErrorsMixed", [], ("numpy", "cf_units")),
}
BASE = {"threads": 2, "switch_interval": 1e-6, "target": 0.05, "pin": None, "jitter": 0.0}
TECHNIQUES = {
    "baseline": {},
    "default switch interval (5 ms)": {"switch_interval": 5e-3},
    "switch interval 100 us": {"switch_interval": 1e-4},
    "4 threads on 2 cores": {"threads": 4},
    "8 threads on 2 cores": {"threads": 8},
    "all threads pinned to one core": {"pin": Pin.ONE},
    "threads spread, one per core": {"pin": Pin.SPREAD},
    "random start delays (0-2 ms)": {"jitter": 0.002},
    "4x longer trials (0.2 s)": {"target": 0.2},
    "16x longer trials (0.8 s)": {"target": 0.8},
}


def measure(rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for defect, (ref, plugins, preload) in DEFECTS.items():
        server = launch.ForkServer([*preload, *plugins])
        work = pathlib.Path(tempfile.mkdtemp(prefix="threadprobe-amplify-"))
        try:
            harness.run_prepare(ref, server, work, work / "prepare", plugins)
            cls = refs.load(ref)
            iterations = cls.iterations or 100
            oracle_run = harness.run_trial(Trial(defect, ref, Mode.SERIAL, 1, 1, iterations, switch_interval=5e-3,
                                                 purpose=Purpose.ORACLE), server, work, work / "oracle", plugins)
            oracle = detect.Oracle.of(oracle_run)
            per_pass = oracle_run.seconds or 0.01
            tally = {name: {"trials": 0, "failures": 0, "cpu": 0.0, "wall": 0.0} for name in TECHNIQUES}
            for k in range(rounds):
                for name, change in TECHNIQUES.items():
                    s = {**BASE, **change}
                    trial = Trial(defect, ref, Mode.THREADS, 1, s["threads"], iterations, index=k,
                                  rounds=max(1, math.ceil(s["target"] / per_pass)), timeout=20,
                                  switch_interval=s["switch_interval"], jitter=s["jitter"], pin=s["pin"])
                    got = harness.run_trial(trial, server, work, work / f"{k}-{len(tally[name])}-{name[:12]}", plugins)
                    t = tally[name]
                    t["trials"] += 1
                    t["failures"] += detect.classify(got, oracle).kind != Kind.OK
                    t["cpu"] += sum(w.cpu or 0.0 for w in got.workers)
                    t["wall"] += got.wall
            out[defect] = {name: {**t, "per_cpu_second": t["failures"] / t["cpu"] if t["cpu"] else 0.0,
                                  "per_wall_second": t["failures"] / t["wall"] if t["wall"] else 0.0,
                                  "per_trial": t["failures"] / t["trials"]} for name, t in tally.items()}
            print(f"{defect}: " + "; ".join(f"{n} {v['per_cpu_second']:.2f}/cpu-s" for n, v in out[defect].items()),
                  flush=True)
        finally:
            server.close()
    return out


def table(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    defects = list(results)
    lines = ["| technique | " + " | ".join(f"{d}: failures per CPU-s (x baseline)" for d in defects) + " |",
             "| --- | " + " | ".join("---" for _ in defects) + " |"]
    for name in TECHNIQUES:
        cells = []
        for d in defects:
            v, base = results[d][name], results[d]["baseline"]
            ratio = v["per_cpu_second"] / base["per_cpu_second"] if base["per_cpu_second"] else float("nan")
            cells.append(f"{v['per_cpu_second']:.2f} (x{ratio:.2f}; {int(v['failures'])}/{int(v['trials'])} trials)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-amplify.json"))
    args = parser.parse_args()
    started = time.monotonic()
    results = measure(args.rounds)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    benchfile.write(args.out, {"rounds": args.rounds, "base": BASE, "results": results})
    print("\n".join(table(results)))
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The race pass's figures (issue 18), each repetition a fresh `threadprobe diagnose --races --no-stress`.

Parts (``--parts planted,rare,wheels,debian,repro,stress``; all by default, about 2 hours):

- ``planted``: the race on every call is racy naming ``racy_fill``; the same work behind a mutex
  and lock-free work have 0 race pairs in their own library.
- ``rare``: planted races that spoil a few per cent of 2-thread stress trials, found per pass.
- ``stress``: how often those rare races spoil a native 2-thread stress trial (what "rare" means).
- ``wheels``: the PyPI wheels: netCDF4 probes racy with a pair in libhdf5 or libnetcdf, h5py
  probes with 0 reports in libhdf5, cf-units' valid parses with 0 reports.
- ``debian``: Debian 12's build through ``--python /usr/bin/python3.11``.
- ``repro``: whole passes over every built-in probe: the share of cells with the same race
  verdict in all of them, and the cost (per probe, and in all).

Writes ``reports/bench-races.json`` (every repetition's outcome per probe) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from threadprobe.report import benchfile

ROOT = Path(__file__).resolve().parents[2]
PLANTED = str(ROOT / "tests" / "planted" / "probes.py")
PLANTED_PROBES = ("planted.race", "planted.mutex", "planted.safe")
RARE_PROBES = ("planted.rare_rebuild", "planted.rare_race")
WHEEL_PROBES = ("netcdf4.*", "h5py.*", "cf_units.parse")
DEBIAN = "/usr/bin/python3.11"


def race_pass(args: list[str], out: Path) -> tuple[dict, float]:
    """One fresh race pass; its results by probe (threads cells), and its wall time."""
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "threadprobe.cli", "diagnose", "--races", "--no-stress", "--no-evidence",
                    "--quiet", "--out", str(out), *args], check=True, capture_output=True, text=True)
    wall = time.monotonic() - began
    data = json.loads((out / "diagnosis.json").read_text())
    cells = {r["probe"]: r for r in data["results"] if r.get("races")}
    return cells, wall


def pairs_in(cell: dict, *objects: str) -> list[str]:
    return [f"{p['object']}: {' <-> '.join(p['functions'])}" for p in cell["races"].get("pairs", ())
            if not objects or any(o in p["object"] for o in objects)]


def summary_of(cell: dict) -> dict:
    races = cell["races"]
    return {"verdict": cell["verdict"], "status": races["status"], "calls": races["calls"],
            "seconds": races.get("seconds"), "pairs": pairs_in(cell), "reason": races.get("reason")}


def repeat(label: str, args: list[str], n: int, tmp: Path, log: dict) -> list[dict]:
    runs = []
    for k in range(n):
        cells, wall = race_pass(args, tmp / f"{label}-{k}")
        runs.append({"wall": round(wall, 1), "cells": {p: summary_of(c) for p, c in cells.items()}})
        print(f"{label} {k + 1}/{n}: {wall:.0f}s " + ", ".join(
            f"{p}={c['status']}({len(c['pairs'])})" for p, c in sorted(runs[-1]["cells"].items())), flush=True)
    log[label] = runs
    return runs


def count(runs: list[dict], probe: str, test) -> str:
    hits = sum(1 for r in runs if probe in r["cells"] and test(r["cells"][probe]))
    return f"{hits} of {len(runs)}"


def planted(n: int, tmp: Path, log: dict) -> list[str]:
    args = ["--plugin", PLANTED, "--no-entry-points", *[a for p in PLANTED_PROBES for a in ("--probe", p)]]
    runs = repeat("planted", args, n, tmp, log)
    return [f"planted.race racy naming racy_fill: {count(runs, 'planted.race', lambda c: any('racy_fill' in p for p in c['pairs']))}",
            *(f"{p} 0 pairs in libdefects.so: {count(runs, p, lambda c: c['status'] == 'clean' and not [x for x in c['pairs'] if 'libdefects' in x])}"
              for p in PLANTED_PROBES[1:])]


def rare(n: int, tmp: Path, log: dict) -> list[str]:
    args = ["--plugin", PLANTED, "--no-entry-points", *[a for p in RARE_PROBES for a in ("--probe", p)]]
    runs = repeat("rare", args, n, tmp, log)
    return [f"{p} found: {count(runs, p, lambda c: c['status'] == 'racy')}" for p in RARE_PROBES]


def stress(n: int, tmp: Path, log: dict) -> list[str]:
    """Native 2-thread stress trials of the rare races: the share that fails."""
    out = tmp / "stress"
    subprocess.run([sys.executable, "-m", "threadprobe.cli", "diagnose", "--plugin", PLANTED, "--no-entry-points",
                    *[a for p in RARE_PROBES for a in ("--probe", p)], "--threads", "2", "--processes", "1",
                    "--trials", str(n), "--target", "0.0001", "--budget", str(30 + n), "--no-evidence", "--quiet",
                    "--out", str(out)], check=True, capture_output=True)
    data = json.loads((out / "diagnosis.json").read_text())
    lines = []
    for r in data["results"]:
        if r["mode"] == "threads":
            failed = r["trials"] - r["outcomes"].get("ok", 0)
            log.setdefault("stress", {})[r["probe"]] = {"failed": failed, "trials": r["trials"]}
            lines.append(f"{r['probe']}: {failed} of {r['trials']} 2-thread stress trials failed natively")
    return lines


def wheels(n: int, tmp: Path, log: dict) -> list[str]:
    runs = repeat("wheels", [a for p in WHEEL_PROBES for a in ("--probe", p)], n, tmp, log)
    probes = sorted({p for r in runs for p in r["cells"]})
    lines = []
    for p in probes:
        if p.startswith("netcdf4."):
            lines.append(f"{p} racy with a pair in libhdf5/libnetcdf: "
                         f"{count(runs, p, lambda c: bool(pairs_in_summary(c, 'libhdf5', 'libnetcdf')))}")
        elif p.startswith("h5py."):
            lines.append(f"{p} 0 pairs in libhdf5: {count(runs, p, lambda c: c['status'] != 'failed' and not pairs_in_summary(c, 'libhdf5'))}")
        else:
            lines.append(f"{p} 0 pairs: {count(runs, p, lambda c: c['status'] == 'clean')}")
    return lines


def pairs_in_summary(c: dict, *objects: str) -> list[str]:
    return [p for p in c["pairs"] if any(o in p.split(":")[0] for o in objects)]


def debian(n: int, tmp: Path, log: dict) -> list[str]:
    if not Path(DEBIAN).exists():
        return [f"debian: {DEBIAN} is not here (.ci/debian-up installs Debian's netCDF4 and h5py)"]
    args = ["--python", DEBIAN, "--probe", "netcdf4.read_separate_files.*", "--probe", "netcdf4.read_shared_dataset.*"]
    runs = repeat("debian", args, n, tmp, log)
    probes = sorted({p for r in runs for p in r["cells"]})
    return [f"{p}: racy at add_to_NCList {count(runs, p, lambda c: any('add_to_NCList' in x for x in c['pairs']))}; "
            f"0 pairs {count(runs, p, lambda c: c['status'] == 'clean')}" for p in probes]


def reproducibility(n: int, tmp: Path, log: dict) -> list[str]:
    runs = repeat("repro", [], n, tmp, log)
    verdicts: dict[str, Counter] = defaultdict(Counter)
    for r in runs:
        for p, c in r["cells"].items():
            verdicts[p][c["status"]] += 1
    same = [p for p, seen in verdicts.items() if len(seen) == 1 and sum(seen.values()) == n]
    walls = [r["wall"] for r in runs]
    per_probe = [c["seconds"] for r in runs for c in r["cells"].values() if c["seconds"] is not None]
    changed = {p: dict(seen) for p, seen in verdicts.items() if p not in same}
    return [f"same race verdict in all {n} passes: {len(same)} of {len(verdicts)} cells "
            f"({len(same) / max(1, len(verdicts)):.1%}); changed: {changed}",
            f"whole pass: {min(walls):.0f} to {max(walls):.0f} s (median {sorted(walls)[len(walls) // 2]:.0f} s); "
            f"one probe at most {max(per_probe):.0f} s"]


def slow(n: int, tmp: Path, log: dict) -> list[str]:
    """The probe whose one call under helgrind takes most of the pass's seconds (Iris's netCDF load,
    8 s or more a call): its race verdict, pass by pass, and its calls. Pass ``--race-seconds`` through
    ``RACE_SECONDS`` to see whether more calls settle it."""
    seconds = os.environ.get("RACE_SECONDS")
    runs = repeat("slow", ["--probe", "iris_netcdf.load_realise", *(["--race-seconds", seconds] if seconds else [])],
                  n, tmp, log)
    seen = Counter(r["cells"]["iris_netcdf.load_realise"]["status"] for r in runs if "iris_netcdf.load_realise" in r["cells"])
    calls = [r["cells"]["iris_netcdf.load_realise"]["calls"] for r in runs if "iris_netcdf.load_realise" in r["cells"]]
    return [f"iris_netcdf.load_realise alone: {dict(seen)} in {n} passes; calls per pass {calls}"]


PARTS = {"planted": (planted, 10), "slow": (slow, 5), "rare": (rare, 10), "stress": (stress, 400), "wheels": (wheels, 10),
         "debian": (debian, 10), "repro": (reproducibility, 5)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per part (default: the part's own)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-races.json"))
    args = parser.parse_args()
    out = Path(args.out)
    log: dict = json.loads(out.read_text()) if out.exists() else {}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-races-") as tmp:
        for name in args.parts.split(","):
            part, n = PARTS[name]
            lines += part(args.repeats or n, Path(tmp), log)
            out.parent.mkdir(parents=True, exist_ok=True)
            benchfile.write(out, dict(log, summary=lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The race pass's figures (issue 18), each repetition a fresh `threadprobe diagnose --races --no-stress`.

Parts (``--parts power,planted,rare,wheels,debian,repro,stress``; all by default, about 3 hours):

- ``power``: the designs of issue 35 side by side on planted rare races (tests/planted/rare.c: a
  rare writer against common readers, and rare against rare, on 1 call in 14 to 96) and on the
  same work under a mutex or on private memory: per design, the share of passes that found each,
  the false pairs, the seconds, and what each pass said of its own power (the calls that ran
  unordered, and the rarest path it states it finds 9 in 10). ``FT_PYTHON`` names the
  free-threaded interpreter (default .venv-ft); its designs run with the GIL off.

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
RARE_PLANTED = str(ROOT / "tests" / "planted" / "rare_probes.py")
FT = os.environ.get("FT_PYTHON") or str(ROOT / ".venv-ft" / "bin" / "python")
POWER_PROBES = ("planted.rare.writer_24", "planted.rare.writer_48", "planted.rare.writer_96", "planted.rare.pair_14",
                "planted.rare.pair_24", "planted.rare.pair_48", "planted.rare.guarded_48", "planted.rare.private_48")
#: label: (interpreter, diagnose arguments). The default design is the one without arguments.
DESIGNS = {
    "gil natural T2": (None, ["--race-schedule", "natural", "--race-threads", "2"]),
    "gil meet T2": (None, ["--race-threads", "2"]),
    "gil meet T4": (None, ["--race-threads", "4"]),
    "gil meet T8": (None, ["--race-threads", "8"]),
    "ft-off natural T2": (FT, ["--gil", "off", "--race-schedule", "natural", "--race-threads", "2"]),
    "ft-off meet T8": (FT, ["--gil", "off", "--race-threads", "8"]),
}
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
    return cells, wall, [n for n in data["config"].get("notes", ()) if n.startswith("race pass ")]


def pairs_in(cell: dict, *objects: str) -> list[str]:
    return [f"{p['object']}: {' <-> '.join(p['functions'])}" for p in cell["races"].get("pairs", ())
            if not objects or any(o in p["object"] for o in objects)]


def summary_of(cell: dict) -> dict:
    races = cell["races"]
    return {"verdict": cell["verdict"], "status": races["status"], "calls": races["calls"],
            "seconds": races.get("seconds"), "pairs": pairs_in(cell), "reason": races.get("reason"),
            "threads": races.get("threads"), "unordered": races.get("unordered"), "sections": races.get("sections"),
            "overlap_pairs": races.get("overlap_pairs"), "gil_enabled": races.get("gil_enabled"),
            "rarest": rarest_of(races)}


def rarest_of(races: dict) -> int | None:
    from threadprobe.records import RacePass

    return RacePass.from_json(races).rarest()


def repeat(label: str, args: list[str], n: int, tmp: Path, log: dict) -> list[dict]:
    runs = []
    for k in range(n):
        cells, wall, imports = race_pass(args, tmp / f"{label}-{k}")
        runs.append({"wall": round(wall, 1), "imports": imports, "cells": {p: summary_of(c) for p, c in cells.items()}})
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
            failed = r["trials"] - r["safety"]["outcomes"].get("ok", 0)
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
    longest = Counter({p: c["seconds"] for p, c in runs[-1]["cells"].items() if c["seconds"] is not None})
    return [f"same race verdict in all {n} passes: {len(same)} of {len(verdicts)} cells "
            f"({len(same) / max(1, len(verdicts)):.1%}); changed: {changed}",
            f"whole pass: {min(walls):.0f} to {max(walls):.0f} s (median {sorted(walls)[len(walls) // 2]:.0f} s); "
            f"one probe at most {max(per_probe):.0f} s",
            # where the time went, in the last pass: the servers' imports, and the probes' own seconds
            f"last pass: {'; '.join(runs[-1]['imports'])}; probes' seconds {sum(longest.values()):.0f} in all, "
            f"longest {', '.join(f'{p} {s:.0f}' for p, s in longest.most_common(5))}"]


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


def power(n: int, tmp: Path, log: dict) -> list[str]:
    """Every design on the planted rare races, ``n`` fresh passes each (``DESIGNS_ONLY`` narrows)."""
    only = [d for d in os.environ.get("DESIGNS_ONLY", "").split(",") if d]
    lines = []
    for label, (python, extra) in DESIGNS.items():
        if only and label not in only:
            continue
        if python is not None and not Path(python).exists():
            lines.append(f"{label}: {python} is not here (.ci/freethreaded-up builds it)")
            continue
        args = ["--plugin", RARE_PLANTED, "--no-entry-points", *(["--python", python] if python else []), *extra,
                *[a for p in POWER_PROBES for a in ("--probe", p)]]
        runs = repeat(f"power {label}", args, n, tmp, log)
        lines += power_lines(label, runs)
        log.setdefault("power summary", {})[label] = lines[-1]  # kept when a later run measures other designs
    return lines


def power_lines(label: str, runs: list[dict]) -> list[str]:
    """Found per rare probe, false pairs on the correct ones, seconds, and the stated power."""
    def cells(probe: str) -> list[dict]:
        return [r["cells"][probe] for r in runs if probe in r["cells"]]

    found = ", ".join(f"{p.removeprefix('planted.rare.')} {count(runs, p, lambda c: c['status'] == 'racy')}"
                      for p in POWER_PROBES if "guarded" not in p and "private" not in p)
    false = sum(len(pairs_in_summary(c, "librare")) for p in POWER_PROBES if "guarded" in p or "private" in p
                for c in cells(p))
    seconds = sorted(c["seconds"] for p in POWER_PROBES for c in cells(p) if c.get("seconds"))
    unordered = sorted(c["unordered"] / c["calls"] for p in POWER_PROBES for c in cells(p)
                       if c.get("unordered") is not None and c["calls"])
    rarest = sorted(c["rarest"] for p in POWER_PROBES for c in cells(p) if c.get("rarest") is not None)
    pairs = sorted(c["overlap_pairs"] / c["calls"] for p in POWER_PROBES for c in cells(p)
                   if c.get("overlap_pairs") is not None and c["calls"])
    mid = lambda xs: xs[len(xs) // 2] if xs else None  # noqa: E731
    return [f"{label}: found {found}; false pairs in librare on guarded/private work: {false}; "
            f"seconds per probe median {mid(seconds)} ({seconds[0] if seconds else None} to "
            f"{seconds[-1] if seconds else None}); unordered calls median {mid(unordered)}; overlapping pairs per "
            f"call median {mid(pairs)}; stated rarest path found 9 in 10: median 1 in {mid(rarest)}"]


def plot_power(log: dict, path: Path) -> None:
    """Share of passes that found each planted rare race, against its rarity, one line per design."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, shape, title in zip(axes, ("writer", "pair"), ("a rare writer, common readers", "rare against rare")):
        for key, runs in sorted(log.items()):
            if not key.startswith("power ") or not isinstance(runs, list) or not runs:
                continue
            points = []
            for probe in POWER_PROBES:
                if f".{shape}_" in probe:
                    hits = [r["cells"][probe]["status"] == "racy" for r in runs if probe in r["cells"]]
                    if hits:
                        points.append((int(probe.rsplit("_", 1)[1]), sum(hits) / len(hits)))
            if points:
                ax.plot(*zip(*sorted(points)), marker="o", label=f"{key.removeprefix('power ')} ({len(runs)} passes)")
        ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        periods = sorted({int(p.rsplit("_", 1)[1]) for p in POWER_PROBES if f".{shape}_" in p})
        ax.set_xticks(periods, [str(n) for n in periods])
        ax.minorticks_off()
        ax.set_xlabel("the racing path is taken by 1 call in N")
        ax.set_title(title)
    axes[0].set_ylabel("passes that found it")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PARTS = {"power": (power, 10), "planted": (planted, 10), "slow": (slow, 5), "rare": (rare, 10), "stress": (stress, 400), "wheels": (wheels, 10),
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
    if any(k.startswith("power ") and isinstance(v, list) for k, v in log.items()):
        plot_power(log, out.with_name("bench-races-power.png"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

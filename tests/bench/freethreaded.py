"""The free-threaded build, diagnosed whole (issue 29): its figures, each over fresh runs.

Parts (``--parts``, all by default), each run a fresh ``threadprobe`` process against
``.venv-ft`` (built by ``.ci/freethreaded-up``):

- ``fingerprint``: the fingerprint names the module whose import turned the GIL back on.
- ``libraries``: default diagnoses of netCDF4's separate-file reads and of h5py with the GIL
  forced off: netCDF4 unsafe, h5py safe and ``library_lock``.
- ``planted``: the planted GIL-free, mutex, Python-lock, shared-object and GIL-holding probes
  (tests/planted/ft_probes.py) in both GIL states, beside a busy neighbour: each cell's
  contention class against the one it was planted to have.
- ``full``: a default diagnosis of every built-in probe in both states: its wall time.

Writes reports/bench-freethreaded.json (machine, date, command, every run's raw outcome, the
counts) and prints the counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from threadprobe.records import Result
from threadprobe.report import benchfile
from threadprobe.scheduling.runs.builds import turn

ROOT = Path(__file__).resolve().parents[2]
FT = ROOT / ".venv-ft" / "bin" / "python"
PLANTED = ROOT / "tests" / "planted" / "ft_probes.py"
THREADPROBE = [sys.executable, "-m", "threadprobe.cli"]
#: The planted cells and the class each was planted to have (as tests/harness/instruments/test_contention.py).
PLANTED_CASES = {"ft.free off": "none", "ft.mutex off": "library_lock", "ft.pylock off": "library_lock",
                 "ft.objects off": "none", "ft.gil as_imported": "gil", "ft.gil off": "none"}


def diagnose(out: Path, *args: str) -> tuple[dict[str, Any], float]:
    began = time.monotonic()
    subprocess.run([*THREADPROBE, "diagnose", "--python", str(FT), "--out", str(out), "--quiet", *args], check=True,
                   capture_output=True, text=True, timeout=1800)
    return json.loads((out / "diagnosis.json").read_text()), time.monotonic() - began


def cells(diag: dict[str, Any], mode: str = "threads") -> list[dict[str, Any]]:
    return [r for r in diag["results"] if r["mode"] == mode and r.get("remedy") is None]


def contention(r: dict[str, Any]) -> str | None:
    """A result's contention class, read by records from any diagnosis format (grouped from 5, flat before)."""
    kind = Result.from_json(r).contention.kind
    return None if kind is None else str(kind)


def waits_line(r: dict[str, Any]) -> str | None:
    """The shares a cell's contention class was decided on (its evidence's first line about waits)."""
    return next((line for line in Result.from_json(r).contention.evidence if "blocked on" in line), None)


def part_fingerprint(_: Path) -> dict[str, Any]:
    done = subprocess.run([*THREADPROBE, "fingerprint", "--python", str(FT)], check=True, capture_output=True,
                          text=True, timeout=600)
    python = json.loads(done.stdout)["python"]
    return {"gil_reenabled_by": python.get("gil_reenabled_by"), "gil_enabled": python.get("gil_enabled"),
            "right": "netCDF4._netCDF4" in (python.get("gil_reenabled_by") or [])}


def part_libraries(folder: Path) -> dict[str, Any]:
    diag, seconds = diagnose(folder, "--gil", "off", "--no-evidence", "--probe", "netcdf4.read_separate_files*",
                             "--probe", "h5py.*")
    unsafe = {"crash", "corrupt", "hang", "error", "racy"}
    nc = [r for r in cells(diag) if r["probe"].startswith("netcdf4.")]
    h5 = [r for r in cells(diag) if r["probe"].startswith("h5py.")]
    return {"seconds": round(seconds, 1),
            "netcdf4": {r["probe"] + f" {r['workers']}": r["verdict"] for r in nc},
            "h5py": {r["probe"] + f" {r['workers']}": [r["verdict"], contention(r)] for r in h5},
            "netcdf4_unsafe": any(r["verdict"] in unsafe for r in nc),
            "h5py_safe_library_lock": bool(h5) and all(r["verdict"] == "safe" and contention(r) == "library_lock"
                                                      for r in h5)}


def part_planted(folder: Path) -> dict[str, Any]:
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a busy neighbour, all along
    try:
        diag, seconds = diagnose(folder, "--plugin", str(PLANTED), "--no-entry-points", "--threads", "4",
                                 "--processes", "2", "--no-evidence", "--budget", "4")
    finally:
        neighbour.kill()
        neighbour.wait()
    got = {f"{r['probe']} {r['gil']}": contention(r) for r in cells(diag)}
    return {"seconds": round(seconds, 1), "classes": got,
            "right": {cell: got.get(cell) == want for cell, want in PLANTED_CASES.items()},
            "waits": {f"{r['probe']} {r['gil']}": waits_line(r) for r in cells(diag)}}


def part_full(folder: Path) -> dict[str, Any]:
    diag, seconds = diagnose(folder)
    return {"seconds": round(seconds, 1), "results": len(diag["results"]), "gil": diag["config"].get("gil"),
            "unsafe_off": sorted({r["probe"] for r in cells(diag) if r["gil"] == "off"
                                  and r["verdict"] in ("crash", "corrupt", "hang", "error")})}


PARTS: dict[str, tuple[Callable[[Path], dict[str, Any]], int]] = {
    "fingerprint": (part_fingerprint, 10), "libraries": (part_libraries, 10), "planted": (part_planted, 20),
    "full": (part_full, 3)}


def counts(part: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    if part == "fingerprint":
        return {"named": sum(r["right"] for r in runs), "of": len(runs)}
    if part == "libraries":
        return {"netcdf4_unsafe": sum(r["netcdf4_unsafe"] for r in runs),
                "h5py_safe_library_lock": sum(r["h5py_safe_library_lock"] for r in runs), "of": len(runs)}
    if part == "planted":
        return {cell: sum(r["right"][cell] for r in runs) for cell in PLANTED_CASES} | {"of": len(runs)}
    seconds = sorted(r["seconds"] for r in runs)
    return {"median_seconds": seconds[len(seconds) // 2], "min": seconds[0], "max": seconds[-1], "of": len(runs)}


def earlier(path: Path) -> dict[str, Any]:
    """The parts an earlier run of this bench wrote to ``path``: a run of some parts keeps the others."""
    try:
        return dict(json.loads(path.read_text()).get("parts") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--repeats", type=int, default=None, help="runs per part (default: the part's own)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-freethreaded.json"))
    parser.add_argument("--lock", default=None, metavar="FILE",
                        help="hold this lock file (flock) for each run, not the whole bench: on a shared machine "
                             "other heavy jobs take turns between runs")
    args = parser.parse_args()
    if not FT.exists():
        print(f"no {FT}: run .ci/freethreaded-up first", file=sys.stderr)
        return 2
    log: dict[str, Any] = {"schema": "threadprobe.bench/1", "bench": "freethreaded", "parts": {}}
    for part in args.parts.split(","):
        run, default = PARTS[part]
        runs = []
        for k in range(args.repeats or default):
            with tempfile.TemporaryDirectory(prefix=f"bench-ft-{part}-") as tmp, turn(Path(args.lock) if args.lock else None):
                runs.append(run(Path(tmp)))
            print(f"{part} {k + 1}/{args.repeats or default}: {json.dumps(runs[-1])[:300]}", flush=True)
        log["parts"][part] = {"busy_neighbour": part == "planted", "runs": runs, "counts": counts(part, runs)}
        print(f"{part}: {log['parts'][part]['counts']}", flush=True)
        # After every part (a long bench keeps what it measured), beside what other runs wrote.
        benchfile.write(args.out, {**log, "parts": {**earlier(Path(args.out)), **log["parts"]}})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

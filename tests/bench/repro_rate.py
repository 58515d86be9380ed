"""How often each generated reproducer reproduces, in fresh interpreters (issue 14's figure: at
least 4 of 5 runs, at most 80 lines).

    python tests/bench/repro_rate.py [REPRO_DIR] [--runs 5] [--out reports/bench-repro.json]

A run reproduces when the script exits non-zero: 1 for a wrong result or an exception, or death
by the library's signal (0 means "not reproduced"). Each run is a fresh interpreter with a
clean environment, as a maintainer upstream would run it.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from threadprobe.report import benchfile


def outcome(code: int) -> str:
    if code == 0:
        return "not reproduced"
    if code < 0:
        return signal.Signals(-code).name
    return f"exit {code}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repro", nargs="?", default="reports/repro")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="reports/bench-repro.json")
    args = parser.parse_args()
    scripts = sorted(Path(args.repro).glob("*.py"))
    if not scripts:
        print(f"no reproducer in {args.repro}: run make diagnose first", file=sys.stderr)
        return 2
    rows = []
    for script in scripts:
        seen = []
        began = time.perf_counter()
        for _ in range(args.runs):
            try:
                done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=300,
                                      env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
                seen.append(outcome(done.returncode))
            except subprocess.TimeoutExpired:
                seen.append("hang (300 s)")
        lines = len(script.read_text().splitlines())
        reproduced = sum(s != "not reproduced" for s in seen)
        rows.append({"probe": script.stem, "lines": lines, "runs": args.runs, "reproduced": reproduced,
                     "outcomes": seen, "seconds": round(time.perf_counter() - began, 1)})
        print(f"{script.stem:45s} {lines:3d} lines  {reproduced}/{args.runs}  {', '.join(sorted(set(seen)))}",
              flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    benchfile.write(args.out, {"python": sys.executable, "rows": rows})
    good = sum(r["reproduced"] >= 4 and r["lines"] <= 80 for r in rows)
    print(f"{good}/{len(rows)} reproducers reproduce in >= 4 of {args.runs} runs within 80 lines; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

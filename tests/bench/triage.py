"""The plugin's triage, repeated (issue 20): planted tests labelled in N fresh sessions each.

tests/plugin_targets/test_triage.py under ``--threadprobe-threads=2``, at 1 and at 3 iterations:
the test that re-uses its own ``tmp_path`` and the one that may pass once per process must be
labelled not re-entrant (the first only when a thread has more than one iteration: at one, it
passes unlabelled), the planted C race thread-unsafe, and the threads' claims on one module-scoped
fixture shared state. Optionally beside a busy neighbour.
Writes reports/bench-triage.json (every session's labels) and prints the counts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from threadprobe.report import benchfile

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "tests" / "plugin_targets" / "test_triage.py"
DEFECTS = ROOT / "tests" / "planted" / "defects.c"


def expected(iterations: int) -> dict[str, str]:
    labels = {"test_once_per_process": "not re-entrant", "test_planted_c_race": "thread-unsafe",
              "test_shared_module_box": "shared state", "TestClassFolder": "shared state",
              "test_rare_failure": "thread-unsafe"}
    if iterations > 1:
        labels["test_own_file"] = "not re-entrant"
    return labels


def labels_of(stdout: str) -> dict[str, str]:
    """test name -> the plugin's summary section it is listed under (thread-unsafe, not re-entrant...)."""
    found, section = {}, None
    for line in stdout.splitlines():
        if line.startswith("="):  # a section's title: "= threadprobe: 2 not re-entrant (...) ="
            title = line.split("threadprobe: ", 1)[1] if "threadprobe: " in line else None
            section = title.split(" (")[0].split(" ", 1)[1] if title and title[0].isdigit() else None
        elif section and "::" in line:
            found[line.split("::")[1].split(":")[0]] = section
    return found


def session(folder: Path, lib: Path, iterations: int) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(TARGET), "--rootdir", str(folder), "--threadprobe-threads=2",
                           f"--threadprobe-iterations={iterations}"], cwd=folder, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "LIBDEFECTS": str(lib)})
    return labels_of(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--busy", action="store_true", help="run a busy neighbour (one core spinning) beside it")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-triage.json"))
    args = parser.parse_args()
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    log: dict = {"busy": args.busy, "sessions": {}}
    lines = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-triage-") as tmp:
            lib = Path(tmp) / "libdefects.so"
            subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-pthread", "-o", str(lib), str(DEFECTS)], check=True)
            for iterations in (1, 3):
                runs = []
                for k in range(args.repeats):
                    began = time.monotonic()
                    runs.append(session(Path(tmp), lib, iterations))
                    print(f"iterations {iterations}, session {k + 1}/{args.repeats} "
                          f"({time.monotonic() - began:.0f}s): {runs[-1]}", flush=True)
                log["sessions"][str(iterations)] = runs
                want = expected(iterations)
                for test in ("test_own_file", "test_once_per_process", "test_planted_c_race", "test_shared_module_box",
                             "TestClassFolder"):
                    label = want.get(test, "unlabelled (passes)")
                    hits = sum(1 for r in runs if r.get(test, "unlabelled (passes)") == label)
                    seen = Counter(r.get(test, "unlabelled (passes)") for r in runs)
                    lines.append(f"iterations {iterations}: {test} {label}: {hits} of {len(runs)} ({dict(seen)})")
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    log["summary"] = lines
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    benchfile.write(args.out, log)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

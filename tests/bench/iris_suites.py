"""Benchmark: the pytest plugin on a peer's suite, Iris's own, with the shared Met Office test data.

1. ``test_thread_safety.py`` under ``--threadprobe-threads=2``, ``--sessions`` times: the failures,
   their labels and signals, and whether each session completed.
2. Iris's netCDF suites (``tests/integration/netcdf`` and ``tests/unit/fileformats/netcdf``, 456
   tests), side by side in one run, in rotating order: plain pytest, threadprobe with 2 threads,
   and pytest-run-parallel 0.10 with 2 threads (installed into a folder of its own on first use,
   and loaded only for its own run). Wall time, outcomes, and what fails under threads among the
   tests that pass plain.
3. The wider suite (``tests/unit/fileformats`` and ``tests/integration/netcdf``) under threadprobe:
   a table of not-re-entrant against thread-unsafe tests, per folder, and the plain run's outcomes
   for the same tests.

    python tests/bench/iris_suites.py [--sessions 5] [--rounds 1] [--out reports/bench-plugin.json]

Writes ``reports/bench-plugin.json``; every failure's node id and reason is kept for a hand check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "iris-test-data" / "test_data"
RUN_PARALLEL = "pytest-run-parallel==0.10.*"
SECTION = re.compile(r"^=+ threadprobe: (\d+) (thread-unsafe|not re-entrant) .*=+$")
SERIAL = re.compile(r"^-+ threadprobe: (\d+) ran serially -+$")


def iris_tests() -> Path:
    import iris

    return Path(iris.__file__).parent / "tests"


def run_parallel_site() -> Path:
    site = Path(tempfile.gettempdir()) / "threadprobe-run-parallel-site"
    if not (site / "pytest_run_parallel").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                        RUN_PARALLEL], check=True)
    return site


def session(paths: list[Path], mode: str, timeout: float = 3600.0) -> dict:
    """One pytest session: mode is plain, threadprobe or run-parallel."""
    work = Path(tempfile.mkdtemp(prefix="threadprobe-suite-"))
    junit = work / "junit.xml"
    env = {**os.environ, "OVERRIDE_TEST_DATA_REPOSITORY": str(DATA), "PYTHONHASHSEED": "0"}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-o", "addopts=",
            f"--junitxml={junit}", *map(str, paths)]
    if mode == "threadprobe":
        args += ["--threadprobe-threads=2"]
    elif mode == "run-parallel":
        env["PYTHONPATH"] = os.pathsep.join([str(run_parallel_site()), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        args += ["-p", "no:threadprobe", "--parallel-threads=2"]
    else:
        args += ["-p", "no:threadprobe"]
    began = time.perf_counter()
    try:
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        status, out = done.returncode, done.stdout
    except subprocess.TimeoutExpired as exc:
        status, out = "timeout", (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    seconds = time.perf_counter() - began
    outcomes = junit_outcomes(junit) if junit.exists() else {}
    return {"mode": mode, "seconds": round(seconds, 2), "status": status, "completed": junit.exists(),
            "counts": dict(Counter(outcomes.values())), "outcomes": outcomes, "labels": labels(out),
            "tail": out.strip().splitlines()[-1:] if out.strip() else []}


def junit_outcomes(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        found[name] = ("failed" if "failure" in kinds else "error" if "error" in kinds else
                       "skipped" if "skipped" in kinds else "passed")
    return found


def labels(output: str) -> dict[str, list[str]]:
    """The plugin's summary sections: label -> ["nodeid: why", ...]."""
    out: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        match = SECTION.match(line) or SERIAL.match(line)
        if match:
            current = match.group(2) if match.re is SECTION else "serial"
            out[current] = []
            continue
        if line.startswith(("=", "-")) and current is not None and line.strip("=- ") != "":
            current = None
        if current is not None and line.strip():
            out[current].append(line.strip())
    return out


def newly_failing(plain: dict, threaded: dict) -> list[str]:
    return sorted(name for name, outcome in threaded["outcomes"].items()
                  if outcome in ("failed", "error") and plain["outcomes"].get(name) == "passed")


def folder_of(nodeid: str) -> str:
    parts = nodeid.split("::")[0].replace("\\", "/").split("/")
    if "tests" in parts:
        parts = parts[parts.index("tests") + 1:]
    return "/".join(parts[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-plugin.json"))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: Iris's test data is not at {DATA}", file=sys.stderr)
        return 0
    tests = iris_tests()
    result: dict = {"schema": "threadprobe.bench-plugin/1", "data": str(DATA)}

    safety = [tests / "integration" / "netcdf" / "test_thread_safety.py"]
    sessions = []
    for k in range(args.sessions):
        got = session(safety, "threadprobe", timeout=900)
        unsafe = got["labels"].get("thread-unsafe", [])
        print(f"[thread safety {k + 1}/{args.sessions}] {got['seconds']:.0f}s {got['counts']} "
              f"thread-unsafe {len(unsafe)} not-re-entrant {len(got['labels'].get('not re-entrant', []))}",
              file=sys.stderr, flush=True)
        sessions.append(got)
    result["thread_safety"] = sessions

    netcdf = [tests / "integration" / "netcdf", tests / "unit" / "fileformats" / "netcdf"]
    runs: dict[str, list[dict]] = {"plain": [], "threadprobe": [], "run-parallel": []}
    modes = list(runs)
    for r in range(args.rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:
            got = session(netcdf, mode)
            print(f"[netcdf suites {r + 1}/{args.rounds}] {mode}: {got['seconds']:.0f}s {got['counts']} "
                  f"{got['tail']}", file=sys.stderr, flush=True)
            runs[mode].append(got)
    plain = runs["plain"][0]
    result["netcdf_suites"] = {
        mode: [{k: v for k, v in g.items() if k != "outcomes"} | {"newly_failing": newly_failing(plain, g)}
               for g in gs] for mode, gs in runs.items()}
    result["netcdf_ratios"] = {mode: [round(g["seconds"] / p["seconds"], 2) for g, p in zip(gs, runs["plain"])]
                               for mode, gs in runs.items() if mode != "plain"}

    wider = [tests / "unit" / "fileformats", tests / "integration" / "netcdf"]
    wide_plain, wide = session(wider, "plain"), session(wider, "threadprobe")
    table: dict[str, Counter] = {}
    for label in ("thread-unsafe", "not re-entrant", "serial"):
        for line in wide["labels"].get(label, []):
            table.setdefault(folder_of(line.split(": ")[0]), Counter())[label] += 1
    result["wider"] = {
        "plain": {k: v for k, v in wide_plain.items() if k != "outcomes"},
        "threadprobe": {k: v for k, v in wide.items() if k != "outcomes"} | {
            "newly_failing": newly_failing(wide_plain, wide)},
        "table": {folder: dict(c) for folder, c in sorted(table.items())},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

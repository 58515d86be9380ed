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
4. Overhead where pytest-run-parallel survives (Iris's unit tests of the PP, NAME, NIMROD and CF
   rules, which never reach netcdf-c): plain, threadprobe and run-parallel side by side, in
   rotating order, ``--rounds`` times.

    python tests/bench/iris_suites.py [--sessions 5] [--rounds 1] [--parts ...] [--out reports/bench-plugin.json]

``--parts`` runs some of them (thread_safety, netcdf, wider, overhead) and keeps the others'
figures already in the output file.

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

from threadprobe.report import benchfile

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "iris-test-data" / "test_data"
RUN_PARALLEL = "pytest-run-parallel==0.10.*"
SECTION = re.compile(r"^=+ threadprobe: (\d+) (thread-unsafe|not re-entrant|shared state|serial failure) .*=+$")
SERIAL = re.compile(r"^-+ threadprobe: (\d+) ran serially .*-+$")
PARTS = ("thread_safety", "netcdf", "wider", "overhead")
#: Iris's unit tests that never reach netcdf-c, so that pytest-run-parallel (whose session a
#: segfault ends) finishes them too.
OVERHEAD_FOLDERS = ("pp", "pp_load_rules", "nimrod_load_rules", "name_loaders", "rules", "cf", "nc_load_rules")


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
        if line.startswith(("=", "-", "threadprobe:")) and current is not None and line.strip("=- ") != "":
            current = None
        if current is not None and "::" in line:  # a test's line, not a crash's frames under it
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
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-plugin.json"))
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(set(parts) - set(PARTS)))}: choose from {', '.join(PARTS)}")
    if not DATA.is_dir():
        print(f"skipped: Iris's test data is not at {DATA}", file=sys.stderr)
        return 0
    tests = iris_tests()
    out = Path(args.out)
    result: dict = json.loads(out.read_text()) if out.exists() and set(parts) != set(PARTS) else {}
    result.update({"schema": "threadprobe.bench-plugin/1", "data": str(DATA)})
    if "thread_safety" in parts:
        result["thread_safety"] = thread_safety(tests, args.sessions)
    if "netcdf" in parts:
        result.update(netcdf_suites(tests, args.rounds))
    if "wider" in parts:
        result["wider"] = wider_suite(tests)
    if "overhead" in parts:
        result["overhead"] = side_by_side(
            [tests / "unit" / "fileformats" / d for d in OVERHEAD_FOLDERS], args.rounds, "overhead")
    out.parent.mkdir(parents=True, exist_ok=True)
    benchfile.write(out, result)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def thread_safety(tests: Path, count: int) -> list[dict]:
    safety = [tests / "integration" / "netcdf" / "test_thread_safety.py"]
    sessions = []
    for k in range(count):
        got = session(safety, "threadprobe", timeout=900)
        unsafe = got["labels"].get("thread-unsafe", [])
        print(f"[thread safety {k + 1}/{count}] {got['seconds']:.0f}s {got['counts']} "
              f"thread-unsafe {len(unsafe)} not-re-entrant {len(got['labels'].get('not re-entrant', []))}",
              file=sys.stderr, flush=True)
        sessions.append(got)
    return sessions


def side_by_side(paths: list[Path], rounds: int, name: str) -> dict:
    """Plain, threadprobe and run-parallel on the same tests, in rotating order: sessions, and
    each threaded mode's time over plain's of the same round."""
    runs: dict[str, list[dict]] = {"plain": [], "threadprobe": [], "run-parallel": []}
    modes = list(runs)
    for r in range(rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:
            got = session(paths, mode)
            print(f"[{name} {r + 1}/{rounds}] {mode}: {got['seconds']:.0f}s {got['counts']} "
                  f"{got['tail']}", file=sys.stderr, flush=True)
            runs[mode].append(got)
    plain = runs["plain"][0]
    return {
        "sessions": {mode: [{k: v for k, v in g.items() if k != "outcomes"} | {"newly_failing": newly_failing(plain, g)}
                            for g in gs] for mode, gs in runs.items()},
        "ratios": {mode: [round(g["seconds"] / p["seconds"], 2) for g, p in zip(gs, runs["plain"])]
                   for mode, gs in runs.items() if mode != "plain"},
    }


def netcdf_suites(tests: Path, rounds: int) -> dict:
    got = side_by_side([tests / "integration" / "netcdf", tests / "unit" / "fileformats" / "netcdf"], rounds,
                       "netcdf suites")
    return {"netcdf_suites": got["sessions"], "netcdf_ratios": got["ratios"]}


def wider_suite(tests: Path) -> dict:
    wider = [tests / "unit" / "fileformats", tests / "integration" / "netcdf"]
    wide_plain, wide = session(wider, "plain"), session(wider, "threadprobe")
    table: dict[str, Counter] = {}
    for label in ("thread-unsafe", "shared state", "not re-entrant", "serial"):
        for line in wide["labels"].get(label, []):
            table.setdefault(folder_of(line.split(": ")[0]), Counter())[label] += 1
    return {
        "plain": {k: v for k, v in wide_plain.items() if k != "outcomes"},
        "threadprobe": {k: v for k, v in wide.items() if k != "outcomes"} | {
            "newly_failing": newly_failing(wide_plain, wide)},
        "table": {folder: dict(c) for folder, c in sorted(table.items())},
    }


if __name__ == "__main__":
    sys.exit(main())

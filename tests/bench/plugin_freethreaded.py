"""Benchmark: threadprobe's plugin and pytest-run-parallel side by side on the free-threaded build.

Iris's netCDF suites (iris/tests/integration/netcdf and iris/tests/unit/fileformats/netcdf of the
Iris in .venv-ft) with ``PYTHON_GIL=0``, ``--rounds`` times in rotating order: a plain run,
threadprobe with ``--threadprobe-threads=2``, and pytest-run-parallel with ``--parallel-threads=2``
(installed into .venv-ft by this script when missing), each with the other plugin disabled. Per
session: whether it finished (its final summary, no signal), how many tests it ran (an outcome
line each, ``-v``), which it named (threadprobe: its summary's sections, each crash with its
signal and frames; run-parallel: its short summary), the tests that pass plain and fail under
threads, and its wall time over the plain run's of the same round (finished sessions only: a
dead session's time is how long it lived). Each crash threadprobe names keeps the head of its
faulthandler output, from the JUnit file, and each crash the JUnit file shows must be in the summary.
Every session runs with an empty ini file of its own and the rootdir at Iris's site-packages, so no
pytest configuration of this repository reaches Iris's suites.

    python tests/bench/plugin_freethreaded.py [--rounds 10] [--lock FILE] [--out reports/bench-plugin-ft.json]
                                              [--resume]

``--resume``: keep the sessions the JSON at ``--out`` already holds (same suites and run-parallel
version) and run only the rounds still missing; each session records the date it ran.

``--lock``: hold that flock file for each round (the three sessions of a round side by side), not
the whole run, so other heavy jobs on a shared machine get their turn between rounds.

Writes the JSON (machine, date, command, every session raw) and a plot beside it (.png).
Skips, saying why, without .venv-ft or Iris's test data.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.iris_suites import DATA, junit_outcomes  # noqa: E402
from threadprobe.report import benchfile  # noqa: E402
from threadprobe.scheduling.runs.builds import turn  # noqa: E402

FT = ROOT / ".venv-ft" / "bin" / "python"
RUN_PARALLEL = "pytest-run-parallel==0.10.*"
MODES = ("plain", "threadprobe", "run-parallel")
OUTCOME = re.compile(r"^(\S+::\S+?)\s+(?:PARALLEL )?(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
FINAL = re.compile(r"^=+ .*\bin [\d.]+s( \([\d:]+\))? =+$")
SECTION = re.compile(r"^[=-]+ threadprobe: \d+ (.+?) \(.*[=-]+$")
SHORT = re.compile(r"^(?:PARALLEL )?(FAILED|ERROR) (\S+::\S+)")
SIGNAL = re.compile(r"killed by (SIG[A-Z]+)")
#: Lines of a crash's faulthandler output kept (its first lines say what failed, then the frames).
FAULT_LINES = 40


def suites() -> list[str]:
    found = subprocess.run([str(FT), "-c", "import iris, os; print(os.path.dirname(iris.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return [f"{found}/tests/integration/netcdf", f"{found}/tests/unit/fileformats/netcdf"]


#: What importing ``iris.tests`` and collecting the suites need beyond Iris (../shared/README.md;
#: ``derived_bounds`` imports the sample data): the GIL venv has them from the ``[test]`` extra,
#: .venv-ft only Iris's own dependencies.
IRIS_TESTS = ("requests", "filelock", "imagehash", "pytest-mock", "iris-sample-data")


def ensure_iris_tests() -> None:
    if subprocess.run([str(FT), "-c", "import iris.tests, iris_sample_data"], capture_output=True).returncode != 0:
        subprocess.run([str(FT), "-m", "pip", "install", "--quiet", "--prefer-binary", *IRIS_TESTS], check=True)


def ensure_run_parallel() -> str:
    probe = [str(FT), "-c", "import importlib.metadata as m; print(m.version('pytest-run-parallel'))"]
    done = subprocess.run(probe, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run([str(FT), "-m", "pip", "install", "--quiet", "--only-binary", ":all:", RUN_PARALLEL], check=True)
        done = subprocess.run(probe, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def command(mode: str, paths: list[str], work: Path) -> list[str]:
    (work / "pytest.ini").write_text("[pytest]\n")
    rootdir = Path(paths[0]).parents[3]  # site-packages: node ids start at iris/
    args = [str(FT), "-m", "pytest", "-v", "-c", str(work / "pytest.ini"), "--rootdir", str(rootdir),
            "-p", "no:cacheprovider", "-p", "no:randomly", f"--junitxml={work / 'junit.xml'}", *paths]
    if mode == "threadprobe":
        return args + ["-p", "no:run-parallel", "--threadprobe-threads=2"]
    if mode == "run-parallel":
        return args + ["-p", "no:threadprobe", "--parallel-threads=2"]
    return args + ["-p", "no:threadprobe", "-p", "no:run-parallel"]


def session(mode: str, paths: list[str], timeout: float) -> dict[str, Any]:
    """One pytest session under the free-threaded build with the GIL forced off, as it ended."""
    work = Path(tempfile.mkdtemp(prefix="threadprobe-ft-suite-"))
    junit = work / "junit.xml"
    env = {**os.environ, "OVERRIDE_TEST_DATA_REPOSITORY": str(DATA), "PYTHON_GIL": "0", "PYTHONHASHSEED": "0"}
    began = time.perf_counter()
    try:
        done = subprocess.run(command(mode, paths, work), cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)
        status: int | str = done.returncode
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        status, out, err = "timeout", _text(exc.stdout), _text(exc.stderr)
    seconds = time.perf_counter() - began
    try:
        return ended(mode, status, seconds, out, err, junit)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ended(mode: str, status: int | str, seconds: float, out: str, err: str, junit: Path) -> dict[str, Any]:
    """A session as it ended: its status, what it ran and named, and its crashes' faults."""
    died = signal.Signals(-status).name if isinstance(status, int) and status < 0 else None
    lines = out.splitlines()
    ran = {m.group(1): m.group(2) for line in lines if (m := OUTCOME.match(line))}
    outcomes = junit_outcomes(junit) if junit.exists() else {k: v.lower() for k, v in ran.items()}
    failures = junit_failures(junit) if junit.exists() else {}
    found = named(mode, lines)
    for n in found:
        if n.get("signal"):
            n["fault"] = fault_head(failures.get(junit_name(n["nodeid"]), ""))
    finished = died is None and status != "timeout" and any(FINAL.match(line) for line in lines[-5:])
    return {"mode": mode, "seconds": round(seconds, 2), "status": status, "signal": died, "finished": finished,
            "ran": len(ran), "counts": dict(Counter(outcomes.values())), "outcomes": outcomes,
            "named": found, "crashed": sorted(k for k, text in failures.items() if SIGNAL.search(text)),
            "last_started": None if finished else last_started(lines),
            "fault": [] if finished else session_fault(err), "tail": lines[-1:]}


def junit_failures(path: Path) -> dict[str, str]:
    """Each failed or erring test's whole failure text, under the JUnit file's name for it."""
    found: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                found[f"{case.get('classname')}::{case.get('name')}"] = child.text or child.get("message") or ""
    return found


def junit_name(nodeid: str) -> str:
    """A node id (iris/tests/x/test_y.py::Class::test[p]) as the JUnit file names it."""
    parts = nodeid.split("::")
    return ".".join([parts[0].removesuffix(".py").replace("/", "."), *parts[1:-1]]) + "::" + parts[-1]


def session_fault(err: str) -> list[str]:
    """A session's own faulthandler output when it died (pytest enables it): every thread's frames,
    up to the list of extension modules, which names nothing of the crash."""
    if "Fatal Python error" not in err:  # no fault (pytest's exit status with no summary): its stderr's end
        return err.splitlines()[-40:]
    head = fault_head(err, limit=400)
    return [line for line in head if not line.startswith("Extension modules:")]


def fault_head(text: str, limit: int = FAULT_LINES) -> list[str]:
    """The first lines of a crash's faulthandler output, where it begins in the failure text."""
    lines = text.splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith(("Fatal Python error", "Current thread",
                                                                          "Thread 0x"))), 0)
    return lines[start:start + limit]


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else (raw or "")


def last_started(lines: list[str]) -> str | None:
    """The test a dead session was in: the last node id printed with no outcome after it."""
    for line in reversed(lines):
        if "::" in line:
            return None if OUTCOME.match(line) else line.split()[0]
    return None


def named(mode: str, lines: list[str]) -> list[dict[str, Any]]:
    """The tests the session itself named: threadprobe's summary sections, with each crash's
    signal and frames; otherwise pytest's short summary."""
    found: list[dict[str, Any]] = []
    if mode == "threadprobe":
        label = None
        for line in lines:
            section = SECTION.match(line)
            if section or line.startswith(("=", "threadprobe:")):
                label = section.group(1) if section else None
            elif label and "::" in line and not line.startswith(" "):
                nodeid, why = line.split(": ", 1) if ": " in line else (line, "")
                hit = SIGNAL.search(why)
                found.append({"nodeid": nodeid, "label": label, "why": why, "signal": hit.group(1) if hit else None,
                              "frames": []})
            elif label and line.startswith("    File ") and found:
                found[-1]["frames"].append(line.strip())
        return found
    return [{"nodeid": m.group(2), "label": m.group(1).lower()} for line in lines if (m := SHORT.match(line))]


def newly_failing(plain: dict[str, Any], threaded: dict[str, Any]) -> list[str]:
    """Tests that pass plain and fail or err under threads (the only ones compared)."""
    return sorted(name for name, outcome in threaded["outcomes"].items()
                  if outcome in ("failed", "error") and plain["outcomes"].get(name) == "passed")


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def figures(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per mode: sessions finished, tests ran and named, wall time over plain's of the same round."""
    plain = runs["plain"]
    out: dict[str, Any] = {}
    for mode, sessions in runs.items():
        crashes = [n for s in sessions for n in s["named"] if n.get("signal")]
        out[mode] = {
            "finished": sum(s["finished"] for s in sessions), "sessions": len(sessions),
            "ran": spread([s["ran"] for s in sessions]), "named": spread([len(s["named"]) for s in sessions]),
            "died_by": dict(Counter(s["signal"] for s in sessions if s["signal"])),
            "seconds": spread([s["seconds"] for s in sessions]),
            "over_plain": spread([s["seconds"] / p["seconds"] for s, p in zip(sessions, plain)
                                  if s["finished"] and p["finished"]]),
            "newly_failing": spread([len(newly_failing(p, s)) for s, p in zip(sessions, plain) if s["finished"]]),
        }
        if mode == "threadprobe":
            failures_killed = [sum(1 for n in s["named"] if n.get("signal")) for s in sessions]
            unnamed = [c for s in sessions for c in sorted(set(s["crashed"]) - {junit_name(n["nodeid"])
                                                                               for n in s["named"] if n.get("signal")})]
            out[mode].update(crashes_named=len(crashes), crashes_with_frames=sum(bool(n["frames"]) for n in crashes),
                             crashes_in_junit=sum(len(s["crashed"]) for s in sessions), crashes_not_named=unnamed,
                             crashed_tests=dict(Counter(n["nodeid"] for n in crashes)),
                             died_by_test=dict(Counter(f"{n['signal']}" for n in crashes)),
                             crashes_per_session=failures_killed,
                             labels=dict(Counter(n["label"] for s in sessions for n in s["named"])))
    return out


def plot(runs: dict[str, list[dict[str, Any]]], total: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for k, mode in enumerate(MODES):
        sessions = runs[mode]
        for s in sessions:
            marker, colour = ("o", "tab:green") if s["finished"] else ("x", "tab:red")
            left.scatter(k, s["seconds"], marker=marker, color=colour)
            right.scatter(k, s["ran"], marker=marker, color=colour)
    for ax, title in ((left, "wall time of each session (s)"), (right, "tests run before the session ended")):
        ax.set_xticks(range(len(MODES)), MODES)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
    right.axhline(total, color="grey", linestyle="--", linewidth=1)
    right.text(0.02, total, f" {total} tests", va="bottom", fontsize=8, transform=right.get_yaxis_transform())
    fig.suptitle("Iris's netCDF suites, 2 threads, free-threaded CPython with PYTHON_GIL=0 "
                 "(o finished, x died)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(out: Path, runs: dict[str, list[dict[str, Any]]], about: dict[str, Any]) -> None:
    """The JSON and its plot, after every round (a long benchmark cut short keeps what it measured)."""
    total = max(s["ran"] for s in runs["plain"])
    result = {"schema": "threadprobe.bench-plugin-ft/1", "python": str(FT), "gil": "off (PYTHON_GIL=0)",
              "threads": 2, "data": str(DATA), "tests": total, **about, "figures": figures(runs),
              "sessions": {mode: [s | {"newly_failing": newly_failing(p, s)} for s, p in zip(ss, runs["plain"])]
                           for mode, ss in runs.items()}}
    benchfile.write(out, result)
    plot(runs, total, out.with_suffix(".png"))


def earlier(out: Path, version: str, paths: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The whole rounds an earlier run wrote to ``out``, when it ran the same suites with the same
    run-parallel; none otherwise (a partial round is dropped: its sessions are not side by side)."""
    import json

    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        return {mode: [] for mode in MODES}
    def tails(found: list[str]) -> list[str]:  # the clone the venv was linked into does not matter
        return [p.split("site-packages/", 1)[-1] for p in found]

    if old.get("run_parallel") != version or tails(old.get("suites") or []) != tails(paths):
        print(f"not resumed: {out} ran other suites or another run-parallel", file=sys.stderr)
        return {mode: [] for mode in MODES}
    sessions = old.get("sessions") or {}
    whole = min(len(sessions.get(mode) or []) for mode in MODES)
    return {mode: [{k: v for k, v in s.items() if k != "newly_failing"} for s in sessions[mode][:whole]]
            for mode in MODES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one session may take")
    parser.add_argument("--lock", default=None, metavar="FILE", help="hold this flock file for each round only")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-plugin-ft.json"))
    parser.add_argument("--resume", action="store_true", help="keep the rounds already in --out and run the rest")
    args = parser.parse_args()
    if not FT.exists():
        print(f"skipped: {FT} is missing (.ci/freethreaded-up builds it)", file=sys.stderr)
        return 0
    if not DATA.is_dir():
        print(f"skipped: Iris's test data is not at {DATA}", file=sys.stderr)
        return 0
    ensure_iris_tests()
    version = ensure_run_parallel()
    paths = suites()
    out = Path(args.out)
    runs = earlier(out, version, paths) if args.resume else {mode: [] for mode in MODES}
    out.parent.mkdir(parents=True, exist_ok=True)
    for r in range(len(runs["plain"]), args.rounds):
        with turn(Path(args.lock) if args.lock else None):
            for mode in MODES[r % 3:] + MODES[:r % 3]:
                got = session(mode, paths, args.timeout) | {"date": time.strftime("%Y-%m-%d")}
                runs[mode].append(got)
                state = "finished" if got["finished"] else f"died ({got['signal'] or got['status']})"
                print(f"[round {r + 1}/{args.rounds}] {mode}: {got['seconds']:.0f}s {state}, ran {got['ran']}, "
                      f"named {len(got['named'])} {got['counts']}", file=sys.stderr, flush=True)
        if runs["plain"][-1]["ran"] == 0:  # the suites did not even run plainly: set-up, not a finding
            print(f"stopped: the plain run of round {r + 1} ran no test: {' '.join(runs['plain'][-1]['fault'][-1:])}",
                  file=sys.stderr)
            return 1
        write(out, runs, {"run_parallel": version, "suites": paths, "rounds_done": r + 1, "rounds": args.rounds})
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

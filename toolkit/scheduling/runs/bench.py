"""Benchmark of the runner: the same workload on the same data under every scheduler, and auto.

Each repetition may start from a fresh diagnosis (``--fresh``: the wind probes and the
fork-safety probes, into a folder of its own, and an empty choice cache), then runs every
configuration in a fresh subprocess, in an order rotated per repetition so that a noisy spell
hits them alike: synchronous, threads, processes (fork), distributed, ``auto`` (safety from that
diagnosis, a pilot on the input), and ``auto`` again (the cached choice). Every result is
checked against the synchronous one.

Figures, per repetition, side by side: auto's regret (its time over the fastest safe explicit
configuration's), the best speedup over synchronous, the pilot's cost (its time beyond what the
pick would have taken, as a share of auto's run) and the cached choice's cost. Writes
``reports/bench.json`` (``threadprobe.bench/1``) and a plot.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from threadprobe.diagnosis.progress import Count, NullProgress, Progress, Update, phase
from threadprobe.harness.proc import signal_name
from threadprobe.records import BENCH_SCHEMA
from threadprobe.report import benchfile
from threadprobe.scheduling.workloads import WORKLOADS

CONFIGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("synchronous", {"scheduler": "synchronous"}),
    ("threads", {"scheduler": "threads"}),
    ("processes", {"scheduler": "processes"}),
    ("distributed", {"scheduler": "distributed"}),
    ("auto", {"scheduler": "auto", "cache": False}),
    ("auto cached", {"scheduler": "auto", "cache": True}),
)
EXPLICIT = ("synchronous", "threads", "processes", "distributed")
#: At the study's scale (files of 1.5 GB): auto, synchronous and the explicit schedulers that can
#: be fastest here. Distributed is left out: on 2 cores its LocalCluster ran at x0.77 to x0.79 of
#: synchronous at the smaller scale (a scheduler and nannies beside two workers), and each of its
#: runs here would cost minutes.
STUDY_CONFIGS = ("synchronous", "threads", "processes", "auto")


def inputs(data: Path, fmt: str) -> dict[str, str]:
    return {"x": str(data / fmt / f"x_wind_*.{fmt}"), "y": str(data / fmt / f"y_wind_*.{fmt}"),
            "files": str(data / fmt / f"*.{fmt}")}


def _subprocess(spec: dict[str, Any], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    try:
        done = subprocess.run([sys.executable, "-m", "threadprobe.scheduling.runs.benchrun", json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"failed": f"no result within {timeout:.0f}s"}
    if done.returncode != 0:
        why = signal_name(done.returncode) or f"exit code {done.returncode}"
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        return {"failed": f"{why}: {tail}" if tail else why}
    return json.loads(done.stdout.strip().splitlines()[-1])


def same(a: list[Any] | None, b: list[Any] | None) -> bool:
    import numpy as np

    if a is None or b is None or len(a) != len(b):
        return False
    if a and isinstance(a[0], str):
        return a == b
    return all(np.allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-5, atol=1e-6, equal_nan=True)
               for x, y in zip(a, b))


def fresh_diagnosis(folder: Path, formats: list[str], workload: str) -> Path:
    """A diagnosis of what ``auto`` needs, made now, in a folder of its own."""
    probes = [p for fmt in formats for p in WORKLOADS[workload].probes_for(fmt)] + ["fork_safety.*"]
    args = [sys.executable, "-m", "threadprobe.cli", "diagnose", "--quiet", "--no-evidence", "--out", str(folder),
            "--budget", "20"] + [x for p in probes for x in ("--probe", p)]
    subprocess.run(args, check=True, capture_output=True, timeout=900)
    return folder / "diagnosis.json"


def bench(workload: str, data: Path, formats: list[str], repeats: int = 3, fresh: bool = False,
          diagnosis: str | None = None, timeout: float = 1800.0, progress: Progress | None = None,
          configs: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``configs``: which of ``CONFIGS`` to run (default: all)."""
    shown = progress or NullProgress()
    with phase(shown, f"bench {workload}"):
        return _bench(workload, data, formats, repeats, fresh, diagnosis, timeout, shown, configs)


def _bench(workload: str, data: Path, formats: list[str], repeats: int, fresh: bool, diagnosis: str | None,
           timeout: float, shown: Progress, configs: tuple[str, ...] | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="threadprobe-bench-"))
    names = [name for name, _ in CONFIGS if configs is None or name in configs]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {fmt: {name: [] for name in names} for fmt in formats}
    diagnoses = []
    for rep in range(repeats):
        env = dict(os.environ, THREADPROBE_CACHE=str(work / f"cache-{rep}.json"))
        if fresh:
            shown.note(f"repetition {rep + 1}/{repeats}: a fresh diagnosis")
            diagnosis = str(fresh_diagnosis(work / f"diagnosis-{rep}", formats, workload))
            diagnoses.append(diagnosis)
        rotating = [n for n in names if n != "auto cached"]
        shift = rep % len(rotating)
        order = rotating[shift:] + rotating[:shift] + [n for n in names if n == "auto cached"]  # after a pilot
        for fmt in formats:
            for name in order:
                options = dict(dict(CONFIGS)[name])
                ran = sum(len(by_name) for by_format in runs.values() for by_name in by_format.values())
                shown.update(Update(f"{workload} {fmt} {name}", f"repetition {rep + 1}/{repeats}",
                                    run=Count(ran, "runs", repeats * len(formats) * len(names))))
                spec = {"workload": workload, "inputs": inputs(data, fmt), "options": options,
                        "diagnosis": diagnosis}
                runs[fmt][name].append(_subprocess(spec, timeout, env))
    return {"schema": BENCH_SCHEMA, "workload": workload, "repeats": repeats, "fresh_diagnosis": fresh,
            "formats": {fmt: summarise(runs[fmt], data, fmt) for fmt in formats}}


def summarise(runs: dict[str, list[dict[str, Any]]], data: Path, fmt: str,
              explicit: tuple[str, ...] = EXPLICIT) -> dict[str, Any]:
    """Per repetition and over them: seconds, ratios to synchronous, correctness, and auto's regret
    against the fastest of ``explicit`` (the configurations that count as safe)."""
    repeats = len(runs["synchronous"])
    reference = next((r["digest"] for r in runs["synchronous"] if "digest" in r), None)
    per_rep = []
    for k in range(repeats):
        row = {name: runs[name][k] for name in runs}
        ok = {name: r for name, r in row.items() if "seconds" in r and same(r["digest"], reference)}
        timed = {name: ok[name]["seconds"] for name in explicit if name in ok}
        best = min(timed, key=timed.__getitem__) if timed else None
        entry: dict[str, Any] = {"seconds": {name: r.get("seconds") for name, r in row.items()},
                                 "failures": {name: r["failed"] for name, r in row.items() if "failed" in r},
                                 "fastest_explicit": best}
        if best and "auto" in ok:
            entry["regret"] = round(ok["auto"]["seconds"] / timed[best], 3)
            entry["auto_choice"] = ok["auto"]["choice"]
            entry["pilot_share"] = round(ok["auto"]["pilot_cost"] / ok["auto"]["seconds"], 4)
            entry["pilot_seconds"] = round(ok["auto"]["pilot_seconds"], 2)
        if best and "synchronous" in ok:
            entry["best_speedup"] = round(ok["synchronous"]["seconds"] / timed[best], 3)
        if "auto cached" in ok and best:
            entry["cached_regret"] = round(ok["auto cached"]["seconds"] / timed[best], 3)
            entry["cached_source"] = ok["auto cached"]["source"]
            entry["cached_decide_seconds"] = round(ok["auto cached"].get("decide_seconds", 0.0), 3)
        entry["peak_memory"] = {name: r.get("peak_memory") for name, r in row.items() if r.get("peak_memory")}
        per_rep.append(entry)
    medians = {name: statistics.median([r["seconds"] for r in rs if "seconds" in r])
               for name, rs in runs.items() if any("seconds" in r for r in rs)}
    return {
        "format": fmt,
        "input_bytes": sum(p.stat().st_size for p in (data / fmt).glob(f"*.{fmt}")),
        "input_files": len(list((data / fmt).glob(f"*.{fmt}"))),
        "repetitions": per_rep,
        "median_seconds": medians,
        "speedup": {name: round(medians["synchronous"] / s, 3) for name, s in medians.items()} if "synchronous" in medians
        else {},
        "seconds_range": {name: [round(min(x), 2), round(max(x), 2)] for name, rs in runs.items()
                          if (x := [r["seconds"] for r in rs if "seconds" in r])},
        # Per repetition, each configuration against synchronous in the same repetition: the spread.
        "ratios_to_synchronous": {name: [round(row["seconds"]["synchronous"] / row["seconds"][name], 3)
                                         if row["seconds"].get(name) and row["seconds"].get("synchronous") else None
                                         for row in per_rep] for name in runs},
        "peak_memory_max": {name: max(x) for name, rs in runs.items()
                            if (x := [r["peak_memory"] for r in rs if r.get("peak_memory")])},
        "regrets": [r.get("regret") for r in per_rep],
        "pilot_shares": [r.get("pilot_share") for r in per_rep],
        "best_speedups": [r.get("best_speedup") for r in per_rep],
        "cached_decide_seconds": [r.get("cached_decide_seconds") for r in per_rep],
        "correct": {name: all(same(r.get("digest"), reference) for r in rs) for name, rs in runs.items()},
        "pilot_tables": [r.get("pilot_table") for r in runs["auto"]],
        "runs": {name: [{k: v for k, v in r.items() if k != "digest"} for r in rs] for name, rs in runs.items()},
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    """Seconds per configuration per repetition (dots) and median (bar), one panel per format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = list(result["formats"].values())
    fig, axes = plt.subplots(1, len(formats), figsize=(6 * len(formats), 4.2), squeeze=False)
    for ax, res in zip(axes[0], formats):
        names = [n for n in res["median_seconds"]]
        ax.barh(names, [res["median_seconds"][n] for n in names], color="#90caf9")
        for k, n in enumerate(names):
            xs = [r["seconds"] for r in res["runs"][n] if "seconds" in r]
            ax.scatter(xs, [k] * len(xs), color="#0d47a1", s=10, zorder=3)
            ax.text(res["median_seconds"][n], k, f" x{res['speedup'].get(n, 0):.2f}", va="center", fontsize=8)
        regrets = [r for r in res["regrets"] if r]
        ax.set_title(f"{result['workload']} {res['format']} ({res['input_bytes'] / 2**30:.2f} GiB): auto's regret "
                     f"{min(regrets):.2f}-{max(regrets):.2f}" if regrets else res["format"], fontsize=9)
        ax.set_xlabel("seconds (bar: median; dots: each repetition)")
        ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict[str, Any], out: Path, workload: str) -> Path:
    """Merge this workload's results into reports/bench.json (other workloads' entries stay)."""
    path = out / "bench.json"
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != BENCH_SCHEMA:
            data = {}
    except (OSError, ValueError):
        data = {}
    data["schema"] = BENCH_SCHEMA
    data.setdefault("workloads", {})[workload] = benchfile.stamp(result)  # each workload says how it was made
    return benchfile.write(path, data)

